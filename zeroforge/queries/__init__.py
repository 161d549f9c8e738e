"""Data package: the ZeroForge query sets (one query per line; see README.md here)."""
