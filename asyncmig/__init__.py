"""asyncmig: move a SQLite database into PostgreSQL, typed, fast and verified."""

__version__ = "0.1.0"
