"""Phases 3-5 after the data: orphans and views (indexes, keys and foreign keys are sequenced by asyncmig.run over asyncmig.ddl)."""
