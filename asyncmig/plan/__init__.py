"""The plan: one frozen value that DDL, the load, the checks and the history read, and everything that decides it (types, names, overrides, SQL translation)."""
