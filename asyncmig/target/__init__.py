"""The PostgreSQL side: connecting, the embedded server, the history, rollback, sync, and the private files a run writes."""
