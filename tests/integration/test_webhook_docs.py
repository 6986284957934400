"""docs/WEBHOOKS.md's "To try a receiver" block, run as written against a private Redis: the
key put in ``.env``, a secret made, the Python receiver started, the endpoint added, a test
event sent and verified by the receiver.

What the test changes, for isolation only: ``uv`` is a stand-in running this checkout's
``pallycon-pack`` and ``python``, PALLYCON_REDIS_URL points at the private Redis, and the
receiver's port is a free one (``8000`` in the block). The log (bash -x) is in the failure
message.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from support.env import clean_env
from support.redis_server import RedisServer, free_port
from support.shell import BLOCK, run_script, uv_stand_in

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "WEBHOOKS.md"
HEADING = "To try a receiver"


def try_block() -> str:
    """The first ``sh`` block after the heading's words."""
    text = DOC.read_text()
    start = text.index(HEADING)
    found = BLOCK.search(text, start)
    assert found is not None
    return found.group(1)


def test_the_try_a_receiver_block_runs_as_written(tmp_path: Path):
    work = tmp_path / "checkout"
    work.mkdir()
    shutil.copytree(ROOT / "examples" / "webhooks", work / "examples" / "webhooks")
    bin_dir = uv_stand_in(tmp_path)
    port = free_port()
    block = try_block()
    assert "PORT=8000" in block
    assert "127.0.0.1:8000/" in block
    block = block.replace("PORT=8000", f"PORT={port}").replace(":8000/", f":{port}/")
    source = "\n".join(["set -euo pipefail", "PS4='+ WEBHOOKS.md: '", "set -x", block])
    with RedisServer(tmp_path / "redis") as redis_server:
        env = clean_env(
            PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", PALLYCON_REDIS_URL=redis_server.url
        )
        returncode, text = run_script(source, work, env, tmp_path / "try.log", timeout=60)
    assert returncode == 0, text[-6000:]
    assert ": delivered" in text, text[-6000:]
    assert '"webhook.test"' in text, text[-6000:]  # the receiver printed the verified event
    assert "PALLYCON_WEBHOOK_KEY=" in (work / ".env").read_text()
