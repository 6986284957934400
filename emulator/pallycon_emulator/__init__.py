"""A PallyCon-compatible Packaging API server, for development, tests and demonstrations.

It verifies every request as the real service does, keeps storages and jobs in memory, runs each
job through the guide's status sequence, writes outputs and POSTs callbacks, and injects faults
on demand. See docs/EMULATOR.md.
"""
