"""The double-entry ledger: the only writer of money rows, the integrity checks of the books, and their
reconciliation with the gateway."""
