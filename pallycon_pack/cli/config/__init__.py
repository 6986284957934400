"""config: the effective settings."""
