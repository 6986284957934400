"""The operators' read-only web console."""
