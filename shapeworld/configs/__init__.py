"""open_clip architecture configs of the shapeworld CLIPs (package data)."""
