"""dreamfields (see dreamfields/README.md once its issue lands)."""
