"""Ctrl-C in a real terminal: exit 130, never a traceback, and one last line saying what goes on
and how to resume. The commands run in a pseudo-terminal (:mod:`support.terminal`) against the
real Redis server; nothing needs the API."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pallycon.models import DashOption, JobRegisterRequest
from pallycon_config import Settings
from pallycon_producers.api import Producer
from pallycon_store.wiring import keys_of
from support.env import clean_env
from support.processes import PALLYCON_PACK, cli
from support.queue import make_settings
from support.redis_server import RedisServer
from support.samples import body_for
from support.terminal import Terminal

pytestmark = pytest.mark.integration

#: Nothing listens there: no test here calls the API.
NO_API = "http://127.0.0.1:9"
#: The batch's size: forty chunks, so that an interrupt lands mid-way (it is sent after two).
LINES = 20_000


@pytest.fixture
def settings(redis_server: RedisServer) -> Settings:
    return make_settings(redis_server.url, NO_API)


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    return clean_env(settings.environment())


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    opened: list[Terminal] = []
    yield opened
    for terminal in opened:
        terminal.close()


def _start(terminals: list[Terminal], env: dict[str, str], cwd: Path, *args: str) -> Terminal:
    terminal = Terminal([*PALLYCON_PACK, *args], env=env, cwd=cwd)
    terminals.append(terminal)
    return terminal


def _accepted(producer: Producer, settings: Settings) -> int:
    """Requests recorded (all accepted: no worker runs)."""
    return int(producer.redis.zcard(keys_of(settings).state_index("accepted")))


def _interrupted(terminal: Terminal) -> str:
    """The command's last line once Ctrl-C stopped it; exit 130 and no traceback checked."""
    code = terminal.wait()
    text = terminal.text()
    assert code == 130, text[-3000:]
    assert "Traceback" not in text, text
    assert "Aborted!" not in text, text
    assert not [line for line in text.splitlines() if line.startswith("Error")], text
    return terminal.lines()[-1]


def test_an_interrupted_batch_says_how_many_are_recorded_and_running_it_again_records_the_rest(
    settings, env, terminals, tmp_path: Path
):
    """Ctrl-C during submit --batch: exit 130 and one line with the exact count recorded (a chunk
    under way is finished first); running the same file again records the rest, and every
    line is recorded once."""
    producer = Producer.from_settings(settings)
    path = tmp_path / "batch.jsonl"
    body = body_for("ST1", "movie")
    ids = [f"line-{n}" for n in range(LINES)]
    path.write_text("".join(json.dumps({"body": body, "request_id": i}) + "\n" for i in ids))
    terminal = _start(terminals, env, tmp_path, "submit", "--batch", str(path), "--quiet")
    terminal.wait_for("recording")
    deadline = time.monotonic() + 60
    while _accepted(producer, settings) < 1000:
        assert terminal.process.poll() is None, terminal.text()[-3000:]  # ended before Ctrl-C
        assert time.monotonic() < deadline, terminal.text()[-3000:]
        time.sleep(0.005)
    terminal.interrupt()
    line = _interrupted(terminal)
    match = re.fullmatch(
        rf"interrupted: (\d+) of {LINES} recorded; run the same command again to record the rest",
        line,
    )
    assert match, line
    recorded = int(match.group(1))
    assert recorded == _accepted(producer, settings) < LINES
    again = cli("submit", "--batch", str(path), "--quiet", env=env, cwd=tmp_path, timeout=110)
    assert again.returncode == 0, again.stderr.decode()
    assert again.stderr.decode().splitlines()[-1] == (
        f"{LINES} requests from {path}: {LINES - recorded} new, {recorded} submitted before "
        "(nothing new enqueued for them)"
    )
    assert _accepted(producer, settings) == LINES
    assert len(producer.records.get_many(ids)) == LINES


def test_an_interrupted_wait_says_the_request_goes_on(settings, env, terminals, tmp_path: Path):
    """Ctrl-C during submit --wait: exit 130 and one line: the request goes on, and the command
    that shows it; it is still recorded."""
    request = tmp_path / "request.json"
    request.write_text(json.dumps(body_for("ST1", "waited")))
    terminal = _start(terminals, env, tmp_path, "submit", str(request), "--wait")
    terminal.wait_for("accepted")
    request_id = terminal.lines()[0].strip()
    terminal.interrupt()
    assert _interrupted(terminal) == (
        f"interrupted: request {request_id} goes on; see it with pallycon-pack status {request_id}"
    )
    assert Producer.from_settings(settings).get(request_id) is not None


def test_an_interrupted_worker_stops_warm_and_exits_130(env, terminals, tmp_path: Path):
    """Ctrl-C on a worker in a terminal: Celery's warm shutdown, then exit 130 and one line,
    not an "unrecoverable error"."""
    terminal = _start(terminals, env, tmp_path, "worker", "--concurrency", "1")
    terminal.wait_for(" ready.")
    terminal.interrupt()
    assert _interrupted(terminal) == "worker stopped (interrupted)"
    assert "Warm shutdown" in terminal.text()


@pytest.mark.parametrize("server", ["callbacks", "metrics"])
def test_an_interrupted_server_exits_130_with_one_line(server, env, terminals, tmp_path: Path):
    """Ctrl-C on a server (after uvicorn's shutdown): exit 130 and one line saying it
    stopped."""
    terminal = _start(terminals, env, tmp_path, server, "--port", "0")
    terminal.wait_for("listening on")
    terminal.interrupt()
    assert _interrupted(terminal) == f"{server} stopped (interrupted)"


class _CtrlC(float):
    """A number whose reading is interrupted, as Ctrl-C interrupts whatever runs."""

    def is_integer(self) -> bool:
        raise KeyboardInterrupt


def test_submit_many_lets_an_interrupt_through_a_serializer(settings):
    """A KeyboardInterrupt raised inside a model's serializer (pydantic-core wraps it in a
    PydanticSerializationError) reaches submit_many's caller as the KeyboardInterrupt it is;
    nothing is recorded."""
    producer = Producer.from_settings(settings)
    body = JobRegisterRequest.model_validate(body_for("ST1", "serialized"))
    dash = DashOption.model_construct(min_buffer_time=_CtrlC(2.0))
    with pytest.raises(KeyboardInterrupt):
        producer.submit_many([body.model_copy(update={"dash_option": dash})], ["ctrl-c"])
    assert producer.get("ctrl-c") is None


def test_a_command_reading_a_terminal_says_so(env, terminals, tmp_path: Path):
    """sign with nothing piped in: one line says it reads standard input and how to end it (it
    waited without a word); what is typed then is signed."""
    terminal = _start(terminals, env, tmp_path, "sign")
    terminal.wait_for("reading standard input (end it with Ctrl-D)")
    terminal.type(b'{"a": 1}\n\x04')
    assert terminal.wait() == 0, terminal.text()
    assert len(terminal.lines()[-1]) > 40  # the pallycon-apidata value
