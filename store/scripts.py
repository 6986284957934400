"""The Lua scripts of this package, read from the ``.lua`` files beside its modules."""

from __future__ import annotations

import functools
from pathlib import Path

import redis
from redis.commands.core import Script


@functools.cache
def source(name: str) -> str:
    """The text of ``<name>.lua`` in this package."""
    return (Path(__file__).parent / f"{name}.lua").read_text(encoding="utf-8")


def register(client: redis.Redis, name: str) -> Script:
    """``<name>.lua``, registered with ``client`` (sent by its SHA, loaded when missing)."""
    return client.register_script(source(name))
