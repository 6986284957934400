"""The HTTP servers: uvicorn hardening, launchers, the callback receiver, the exporter, the
console."""
