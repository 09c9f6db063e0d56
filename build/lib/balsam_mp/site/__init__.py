"""The site service: layout, supervisor, workers."""
