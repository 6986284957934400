"""The HTTP API for producers that do not speak Redis (``pallycon-pack http``)."""
