"""funds: a double-entry ledger of community funds (integer fen, never floats)."""
