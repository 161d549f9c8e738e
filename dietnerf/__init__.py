"""dietnerf (see dietnerf/README.md once its issue lands)."""
