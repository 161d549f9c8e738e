"""shapeworld (see shapeworld/README.md once its issue lands)."""
