"""Checks: pre-flight (validate), after the load (verify) and deep (checksums)."""
