"""Algorithm pipelines (DESIGN M9); not built yet, see README.md."""
