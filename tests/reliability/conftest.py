"""Fixtures for the reliability figures: a private stack per test (``support.stack.Stack``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from support.queue import make_settings
from support.stack import Stack


@pytest.fixture
def stack_factory(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """``build(*emulator_args, sentinel=False, **settings)``: one test's own Redis server (or
    Sentinel group), emulator (the sample site), settings (fast timings and ``settings``),
    producer and storage; all are stopped at the end of the test."""
    stacks: list[Stack] = []

    def build(
        *emulator_args: str, sentinel: bool = False, two_sites: bool = False, **settings: Any
    ) -> Stack:
        root = tmp_path / f"stack-{len(stacks)}"
        configure = partial(make_settings, **settings)
        stack = Stack.start(
            root, *emulator_args, settings=configure, sentinel=sentinel, two_sites=two_sites
        )
        stacks.append(stack)
        return stack

    yield build
    for stack in stacks:
        stack.stop()
