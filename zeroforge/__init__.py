"""zeroforge (see zeroforge/README.md once its issue lands)."""
