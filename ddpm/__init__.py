"""ddpm (see ddpm/README.md once its issue lands)."""
