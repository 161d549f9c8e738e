"""iss (see iss/README.md once its issue lands)."""
