"""What the CLI, the console and the demo show: tables, one-line forms, progress."""
