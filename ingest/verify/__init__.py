"""Repository structure and proofs: the MST, commit signatures and op inversion (Sync 1.1)."""
