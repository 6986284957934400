"""Lua scripts, read from the ``.lua`` files beside the modules that run them."""

from __future__ import annotations

import functools
from pathlib import Path

import redis
from redis.commands.core import Script


@functools.cache
def source(name: str, beside: str = __file__) -> str:
    """The text of ``<name>.lua`` in the directory of the module file ``beside`` (this
    package's by default)."""
    return (Path(beside).parent / f"{name}.lua").read_text(encoding="utf-8")


def register(client: redis.Redis, name: str) -> Script:
    """``<name>.lua`` of this package, registered with ``client`` (sent by its SHA, loaded
    when missing)."""
    return client.register_script(source(name))
