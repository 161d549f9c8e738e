"""Shared library of the suite: cameras, rendering, fields, priors, guidance, losses, metrics, export."""
