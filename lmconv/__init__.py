"""lmconv (see lmconv/README.md once its issue lands)."""
