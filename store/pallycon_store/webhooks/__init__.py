"""Signed webhooks (Standard Webhooks 1.0): what the CLI and the worker share, without HTTP.

- :mod:`.errors`: the exception tree;
- :mod:`.signing`: ``whsec_`` secrets and the ``webhook-*`` headers (pure);
- :mod:`.schedule`: when to try a delivery again (pure, random source injected);
- :mod:`.outcome`: what a response means for a delivery (pure, clock injected);
- :mod:`.addresses`: which addresses a delivery may connect to (pure; resolution is the
  caller's);

The HTTP delivery itself lives in the worker (``pallycon_worker``): this package must not
import an HTTP client (import-linter contract in pyproject.toml).
"""
