"""worker, callbacks, console, metrics, emulator: the long-running processes."""
