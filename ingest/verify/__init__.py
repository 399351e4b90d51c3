"""Repository structure and proofs: the MST, and (later) commit signatures and op inversion."""
