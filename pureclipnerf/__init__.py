"""pureclipnerf (see pureclipnerf/README.md once its issue lands)."""
