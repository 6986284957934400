"""docs/HTTP.md's shell examples, run as written, in order, against a real ``pallycon-pack
http`` over a private Redis, as test_readme.py runs the README's.

What the test changes, for isolation only: ``uv`` is the stand-in running this checkout's
``pallycon-pack``, PALLYCON_REDIS_URL points at the private Redis, and the port is a free one
(PALLYCON_HTTP_PORT, and ``127.0.0.1:8800`` in the examples' URL). The log (bash -x) is in the
failure message.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from support.env import clean_env
from support.redis_server import RedisServer, free_port
from support.shell import BLOCK, run_script, uv_stand_in

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "HTTP.md"
DEFAULT_ADDRESS = "127.0.0.1:8800"


def test_the_docs_examples_are_found():
    """Every route has an example (an empty list would make the test vacuous)."""
    joined = "\n".join(BLOCK.findall(DOC.read_text()))
    for route in ("/v1/requests ", "/v1/requests/batch", "/v1/requests/movie-1", "?since=",
                  "/retry", "/cancel", "/health/ready", "/health/live", "tokens add"):  # fmt: skip
        assert route in joined, route
    assert DEFAULT_ADDRESS in joined


def test_every_http_example_runs_as_written(tmp_path: Path):
    work = tmp_path / "checkout"
    work.mkdir()
    shutil.copytree(ROOT / "examples", work / "examples")
    bin_dir = uv_stand_in(tmp_path)
    port = free_port()
    blocks = "\n".join(BLOCK.findall(DOC.read_text()))
    source = "\n".join(["set -euo pipefail", "PS4='+ HTTP.md ${SECONDS}s: '", "set -x", blocks])
    source = source.replace(DEFAULT_ADDRESS, f"127.0.0.1:{port}")
    with RedisServer(tmp_path / "redis") as redis_server:
        env = clean_env(
            PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            PALLYCON_REDIS_URL=redis_server.url,
            PALLYCON_HTTP_PORT=str(port),
        )
        returncode, text = run_script(source, work, env, tmp_path / "http.log", timeout=60)
    assert returncode == 0, text[-6000:]
    # The request recorded once, then found again; the conflict refused; the batch recorded.
    assert text.count('"request_id":"movie-1","state":"accepted"') >= 3, text[-6000:]
    assert '"type":"urn:pallycon-pack:problem:conflict"' in text, text[-6000:]
    assert '"type":"urn:pallycon-pack:problem:invalid-request"' in text, text[-6000:]
    assert re.search(r'"results":\[\{"line":1,"request_id":"movie-2","created":true\}', text)
    # A page with a next cursor, the retry refused, the cancel done, the 401, health.
    assert '"outcome":"cancelled"' in text, text[-6000:]
    assert "not retried: it is accepted" in text, text[-6000:]
    assert '"type":"urn:pallycon-pack:problem:unauthorized"' in text, text[-6000:]
    assert re.search(r"^pph_[\w-]{43}$", text, re.MULTILINE), text[-6000:]
    assert "brand-eu  read-only   sites=TUTO" in text, text[-6000:]
