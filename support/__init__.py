"""Helpers for tests, benchmarks and the demo; never imported by the product's runtime.

Private Redis servers, the product's own processes started and killed from Python, sample
requests and sites, and whole private stacks (Redis, emulator, workers). Only the tests, the
benchmarks and ``pallycon-pack demo`` (lazily, when it runs) import it; its third-party needs
are the ``demo`` extra (``pallycon-pack[demo]``).
"""
