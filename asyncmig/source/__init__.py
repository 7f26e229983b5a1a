"""The SQLite side: open the file read-only, introspect it, scan its values."""
