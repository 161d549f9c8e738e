"""vectorfusion (see vectorfusion/README.md once its issue lands)."""
