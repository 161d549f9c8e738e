"""Shipped shapeworld prior weights (package data; see shapeworld/README.md)."""
