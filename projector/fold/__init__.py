"""Pure folds: (event, current ledger state) → what to write. No I/O."""
