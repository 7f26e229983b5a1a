"""Phase 2, the data: readers, transform workers and COPY writers, the value policies and the reject store, and the progress board."""
