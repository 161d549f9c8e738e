"""sjc (see sjc/README.md once its issue lands)."""
