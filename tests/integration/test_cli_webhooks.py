"""``pallycon-pack webhooks`` against a real Redis, and ``webhooks test`` against a local
receiver that verifies each delivery with the specification's own library
(``standardwebhooks``). The CLI runs in this process (:func:`support.cli.run_cli`)."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks

from pallycon_config.rules import ConfigError
from pallycon_store.webhooks import rules
from pallycon_store.webhooks.deliveries import Attempted, Deliveries
from pallycon_store.webhooks.endpoints import Endpoints
from pallycon_store.webhooks.rules import AttemptKind, Decision, NewDelivery, Settle
from pallycon_store.webhooks.signing import Secret
from pallycon_store.wiring import Store
from pallycon_worker.loops import LoopHealth
from support.cli import run_cli
from support.env import clean_env
from support.queue import make_settings
from support.redis_server import RedisServer

pytestmark = pytest.mark.integration

KEY = "a-webhook-key-of-at-least-32-characters"


@dataclass
class Receiver:
    """A local webhook receiver: answers ``status`` and keeps each request's headers and body."""

    status: int = 204
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def verify(self, secret: Secret, index: int = -1) -> dict[str, Any]:
        """The ``index``-th delivery, verified with ``secret`` by `standardwebhooks`."""
        headers, body = self.received[index]
        found: dict[str, Any] = standardwebhooks.Webhook(secret.text()).verify(body, headers)
        return found


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            state.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(state.status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


class Cli:
    """One test's settings (its own key prefix) and command line."""

    def __init__(self, redis_url: str, root: Path) -> None:
        self.settings = make_settings(redis_url, "http://127.0.0.1:9", webhook_key=KEY)
        store = Store.of(self.settings)
        self.endpoints = Endpoints(store.redis, store.keys)
        self.root = root

    def run(self, *args: str, stdin: bytes | None = None, key: bool = True) -> tuple[int, str, str]:
        """``pallycon-pack webhooks ARGS`` (without PALLYCON_WEBHOOK_KEY unless ``key``)."""
        env = clean_env(self.settings.environment())
        if not key:
            del env["PALLYCON_WEBHOOK_KEY"]
        result = run_cli("webhooks", *args, env=env, cwd=self.root, stdin=stdin)
        return result.returncode, result.stdout.decode(), result.stderr.decode()

    def secret_file(self, secret: Secret, name: str = "secret") -> str:
        path = self.root / name
        path.write_text(secret.text() + "\n")
        return str(path)

    def dump(self) -> str:
        """What Redis holds of the endpoints, as text."""
        return json.dumps(self.endpoints.redis.hgetall(self.endpoints.keys.webhook_endpoints))


@pytest.fixture
def cli(redis_server: RedisServer, tmp_path: Path) -> Cli:
    return Cli(redis_server.url, tmp_path)


def test_add_from_a_file_then_test_delivers_a_verifiable_event(cli: Cli, receiver: Receiver):
    """add --secret-file prints the id only; test sends one event that `standardwebhooks`
    verifies with that secret, says the status in one line and exits 0."""
    secret = Secret.generate()
    code, out, err = cli.run(
        "add", receiver.url, "--secret-file", cli.secret_file(secret), "--allow-private"
    )
    assert code == 0, err
    [endpoint_id] = out.split()
    assert endpoint_id.startswith("ep_")
    assert secret.text() not in out + err + cli.dump()
    code, out, err = cli.run("test", endpoint_id)
    assert code == 0, err
    [line] = out.splitlines()
    assert line.startswith(f"{endpoint_id}: HTTP 204 in ")
    assert line.endswith(": delivered")
    message = receiver.verify(secret)
    assert message["type"] == "webhook.test"
    assert message["data"]["endpoint_id"] == endpoint_id
    assert receiver.received[-1][0]["user-agent"] == "pallycon-pack-webhooks/1"


def test_a_host_name_is_connected_to_at_its_checked_address_and_keeps_its_host(
    cli: Cli, receiver: Receiver
):
    """An endpoint named by host (localhost, allowed private) gets the test at the address
    it resolved to, with its own name in ``Host``."""
    code, out, err = cli.run("add", f"http://localhost:{receiver.port}/hook", "--allow-private")
    assert code == 0, err
    endpoint_id, printed = out.split()
    assert cli.run("test", endpoint_id)[0] == 0
    receiver.verify(Secret.parse(printed))
    headers, _ = receiver.received[-1]
    assert headers["host"] == f"localhost:{receiver.port}"


def test_a_generated_secret_is_printed_once_and_read_from_stdin_too(cli: Cli, receiver: Receiver):
    """Without --secret-file a secret is generated and printed once below the id (never shown
    by list); --secret-file - reads it from standard input."""
    code, out, err = cli.run("add", receiver.url, "--allow-private")
    assert code == 0, err
    endpoint_id, printed = out.split()
    assert "shown this once" in err
    code, out, _ = cli.run("list")
    assert endpoint_id in out
    assert printed not in out
    assert cli.run("test", endpoint_id)[0] == 0
    receiver.verify(Secret.parse(printed))

    piped = Secret.generate()
    code, out, err = cli.run(
        "add", receiver.url, "--secret-file", "-", "--allow-private", stdin=piped.text().encode()
    )
    assert code == 0, err
    assert cli.run("test", out.strip())[0] == 0
    receiver.verify(piped)


def test_a_site_no_worker_serves_is_added_with_a_warning(cli: Cli, receiver: Receiver):
    """--site naming a site no worker announces (a typo, or workers not started yet): added,
    with one warning line naming the sites known; the settings' own site is known."""
    code, _, err = cli.run("add", receiver.url, "--allow-private", "--site", "NOPE")
    assert code == 0, err
    assert "warning: no worker serves site 'NOPE' (known: " in err
    own = cli.settings.site_id
    assert own
    code, _, err = cli.run("add", receiver.url, "--allow-private", "--site", own)
    assert code == 0, err
    assert "no worker serves" not in err


def test_tokens_add_warns_of_a_site_no_worker_serves_as_webhooks_add_does(cli: Cli):
    """tokens add --site NOPE: added (the token on stdout), one warning line naming the sites
    known; the settings' own site is known."""
    env = clean_env(cli.settings.environment())
    result = run_cli("tokens", "add", "cms-nope", "--site", "NOPE", env=env, cwd=cli.root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().startswith("pph_")
    [warning] = [
        line for line in result.stderr.decode().splitlines() if line.startswith("warning:")
    ]
    assert warning.startswith("warning: no worker serves site 'NOPE' (known: ")
    own = cli.settings.site_id
    assert own
    result = run_cli("tokens", "add", "cms-own", "--site", own, env=env, cwd=cli.root)
    assert result.returncode == 0, result.stderr
    assert b"no worker serves" not in result.stderr


def test_a_second_endpoint_for_the_same_url_is_added_with_a_warning(cli: Cli, receiver: Receiver):
    """The same URL added twice: two endpoints (filters may differ), the second add warning
    that the URL will get each event once per endpoint, naming the first."""
    url = f"{receiver.url}/twice-{os.urandom(4).hex()}"
    code, first, err = cli.run("add", url, "--allow-private")
    assert code == 0, err
    assert "warning" not in err
    code, _, err = cli.run("add", url, "--allow-private", "--events", "failed")
    assert code == 0, err
    assert f"warning: {first.split()[0]} already delivers to this URL" in err
    code, _, err = cli.run("add", url, "--allow-private", "--events", "completed")
    assert code == 0, err
    assert " already deliver to this URL" in err  # two of them


def test_rotate_secret_signs_with_both_secrets(cli: Cli, receiver: Receiver):
    """After rotate-secret, a test event verifies with the new secret and with the old one
    (two signatures), and list says until when the old one signs."""
    old, new = Secret.generate(), Secret.generate()
    _, out, _ = cli.run(
        "add", receiver.url, "--secret-file", cli.secret_file(old), "--allow-private"
    )
    endpoint_id = out.strip()
    code, out, err = cli.run(
        "rotate-secret", endpoint_id, "--secret-file", cli.secret_file(new, "new")
    )
    assert code == 0, err
    assert out == ""
    assert "signs beside it until" in err
    assert cli.run("test", endpoint_id)[0] == 0
    receiver.verify(new)
    receiver.verify(old)
    headers, _ = receiver.received[-1]
    assert len(headers["webhook-signature"].split()) == 2
    code, out, _ = cli.run("list")
    assert "2 secrets sign until" in out
    for secret in (old, new):
        assert secret.text() not in out + cli.dump()


def test_list_json_never_holds_a_secret_and_remove_forgets(cli: Cli, receiver: Receiver):
    """list --json gives the URL, events, site and secrets' count, never a secret; remove
    removes; an unknown id is exit 2 in one line."""
    secret = Secret.generate()
    _, out, _ = cli.run(
        "add",
        "https://hooks.example.com/pallycon",
        "--secret-file",
        cli.secret_file(secret),
        "--events",
        "completed,failed",
        "--site",
        "BRND",
    )
    endpoint_id = out.strip()
    code, out, err = cli.run("list", "--json")
    assert code == 0, err
    [row] = json.loads(out)
    assert row["id"] == endpoint_id
    assert (row["url"], row["events"], row["site"]) == (
        "https://hooks.example.com/pallycon",
        ["completed", "failed"],
        "BRND",
    )
    assert row["signing_secrets"] == 1
    assert secret.text() not in out
    assert "sealed" not in out
    code, out, err = cli.run("remove", endpoint_id)
    assert code == 0, err
    assert json.loads(cli.run("list", "--json")[1]) == []
    for command in ("remove", "test", "rotate-secret"):
        code, out, err = cli.run(command, endpoint_id)
        assert code == 2
        assert err.strip().splitlines() == [
            f"Error: no webhook endpoint {endpoint_id} (webhooks list shows them)"
        ]


def test_loopback_is_refused_without_allow_private(cli: Cli, receiver: Receiver):
    """Without --allow-private, a loopback address is refused at add in one line (exit 2); a
    name that resolves to loopback is added with a warning line (DNS may change), but test
    refuses to send to it, in one line (exit 1) saying how to allow it (the flag is set only
    as an endpoint is added), and nothing reaches the receiver."""
    code, out, err = cli.run("add", f"https://127.0.0.1:{receiver.port}/hook")
    assert code == 2
    assert out == ""
    [line] = err.strip().splitlines()
    assert "loopback" in line
    assert "--allow-private" in line
    code, out, err = cli.run("add", f"https://localhost:{receiver.port}/hook")
    assert code == 0, err
    [warning] = [line for line in err.splitlines() if line.startswith("warning:")]
    assert "localhost resolves to" in warning
    assert "added all the same" in warning
    code, out, err = cli.run("test", out.split()[0])
    assert code == 1
    [line] = err.strip().splitlines()
    assert "localhost resolves to" in line
    assert "loopback address" in line
    assert "remove the endpoint and add it again with --allow-private" in line
    assert "unless you pass the same --secret-file" in line
    assert receiver.received == []


def test_a_failing_receiver_is_one_line_and_exit_1(cli: Cli, receiver: Receiver):
    """A 500 is not delivered: one line naming the status and that a delivery would be
    retried; a 410 says it would disable the endpoint; a refused connection is one line."""
    _, out, _ = cli.run("add", receiver.url, "--allow-private")
    endpoint_id = out.split()[0]
    receiver.status = 500
    code, _, err = cli.run("test", endpoint_id)
    assert code == 1
    [line] = err.strip().splitlines()
    assert "HTTP 500" in line
    assert "would be retried" in line
    receiver.status = 410
    code, _, err = cli.run("test", endpoint_id)
    assert code == 1
    assert "would disable the endpoint" in err
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    _, out, _ = cli.run("add", f"http://127.0.0.1:{port}/hook", "--allow-private")
    code, _, err = cli.run("test", out.split()[0])
    assert code == 1
    [line] = err.strip().splitlines()
    assert "no response (ConnectError" in line


def test_without_the_key_each_command_that_needs_it_says_so(cli: Cli, receiver: Receiver):
    """Without PALLYCON_WEBHOOK_KEY, add, rotate-secret and test stop with one line naming
    it (exit 2); list and remove need no key."""
    _, out, _ = cli.run("add", receiver.url, "--allow-private")
    endpoint_id = out.split()[0]
    for args in (
        ["add", receiver.url, "--allow-private"],
        ["rotate-secret", endpoint_id],
        ["test", endpoint_id],
    ):
        code, _, err = cli.run(*args, key=False)
        assert code == 2
        [line] = err.strip().splitlines()
        assert "missing setting: PALLYCON_WEBHOOK_KEY" in line
    assert cli.run("list", key=False)[0] == 0
    assert cli.run("remove", endpoint_id, key=False)[0] == 0


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["ftp://hooks.example.com/"], "https://"),
        (["https://hooks.example.com/", "--events", "finished"], "unknown event type finished"),
        (["https://hooks.example.com/", "--site", "no such"], "--site"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli: Cli, args: list[str], says: str):
    """A URL, event type or site that cannot be used is refused in one line, exit 2."""
    code, _, err = cli.run("add", *args)
    assert code == 2
    [line] = err.strip().splitlines()
    assert says in line


def test_a_malformed_secret_file_is_refused_without_quoting_it(cli: Cli, tmp_path: Path):
    """A secret file that is not whsec_ + base64 is refused in one line that does not quote
    it."""
    path = tmp_path / "bad"
    path.write_text("not-a-secret-value\n")
    code, _, err = cli.run("add", "https://hooks.example.com/", "--secret-file", str(path))
    assert code == 2
    assert "whsec_" in err
    assert "not-a-secret-value" not in err


def dead_letter(cli: Cli, endpoint_id: str, request: str) -> None:
    """A delivery of ``endpoint_id`` put on its dead-letter list as a worker does it."""
    outbox = Deliveries(cli.endpoints.redis, cli.endpoints.keys)
    now = time.time()
    outbox.fan_out(
        [],
        [NewDelivery(endpoint_id, f"{request}:4", "failed", request, now - 60, b"{}")],
        now,
        cap=4,
    )
    claimed, _ = outbox.claim(now, 30.0, cap=4, limit=100)
    [mine] = [c for c in claimed if c.endpoint_id == endpoint_id]
    ran_out = Decision(Settle.DEAD, "12 attempts failed (last: HTTP 503)")
    outbox.settle(mine, ran_out, Attempted(AttemptKind.HTTP_5XX, 0.1, "HTTP 503"), now, cap=4)


def test_failures_lists_the_dead_letters_and_replay_puts_them_back(cli: Cli, receiver: Receiver):
    """failures shows each dead-lettered delivery (endpoint, webhook-id, type, attempts, last
    outcome, when); replay makes them due again and says how many; replay refuses a disabled
    endpoint until it is enabled."""
    _, out, _ = cli.run("add", receiver.url, "--allow-private")
    endpoint_id = out.split()[0]
    dead_letter(cli, endpoint_id, "req-a")
    code, out, err = cli.run("failures")
    assert code == 0, err
    first, second = out.splitlines()
    assert first.startswith(f"{endpoint_id}  req-a:4  request.failed  1 attempt  dead since ")
    assert second.strip() == "12 attempts failed (last: HTTP 503)"
    code, out, _ = cli.run("failures", "--endpoint", endpoint_id, "--json")
    [row] = json.loads(out)
    assert (row["webhook_id"], row["attempts"], row["last_outcome"]) == ("req-a:4", 1, "HTTP 503")
    assert row["type"] == "request.failed"  # as the receiver sees it
    code, out, _ = cli.run("failures", "--help")
    assert "went to the dead-letter list since T" in " ".join(out.split())
    assert cli.run("failures", "--since", "2099-01-01T00:00Z")[1].startswith("no dead-lettered")

    code, out, err = cli.run("disable", endpoint_id, "--reason", "maintenance")
    assert code == 0, err
    assert "disabled since" in out
    assert "maintenance" in out
    code, _, err = cli.run("replay", "--endpoint", endpoint_id)
    assert code == 2
    assert f"enable it first (pallycon-pack webhooks enable {endpoint_id})" in err
    code, out, _ = cli.run("replay")
    assert out.startswith("0 webhook deliveries replayed")
    assert f"left those of disabled endpoint(s) {endpoint_id}" in out

    code, out, err = cli.run("enable", endpoint_id)
    assert code == 0, err
    assert out.startswith(f"enabled webhook endpoint {endpoint_id}")
    code, out, err = cli.run("replay", "--endpoint", endpoint_id, "--since", "1h")
    assert code == 0, err
    assert out.strip() == "1 webhook delivery replayed (due now)"
    assert cli.run("failures")[1].startswith("no dead-lettered")
    assert cli.run("replay", "--endpoint", "ep_nosuchendpoint")[0] == 2
    assert cli.run("enable", "ep_nosuchendpoint")[0] == 2


def test_add_and_test_warn_when_no_live_worker_can_send_and_health_says_why(
    cli: Cli, receiver: Receiver
):
    """A worker alive without PALLYCON_WEBHOOK_KEY (its heartbeats, as its loops write them):
    add and test warn in one line to set the key and restart the workers; health names the
    webhooks loop's reason. A worker with the key alive too: no warning."""
    store = Store.of(cli.settings)
    keyless = LoopHealth(store.redis, store.keys, "w1@host")
    keyless.ok("sweeper")
    keyless.note(rules.LOOP, signs=False)
    keyless.failed(rules.LOOP, ConfigError(rules.NO_KEY))
    code, out, err = cli.run("add", receiver.url, "--allow-private")
    assert code == 0, err
    [warning] = [line for line in err.splitlines() if line.startswith("warning:")]
    assert "set PALLYCON_WEBHOOK_KEY" in warning
    assert "restart" in warning
    code, _, err = cli.run("test", out.split()[0])
    assert code == 0, err
    assert warning in err
    result = run_cli(
        "health", "--check", "workers", env=clean_env(cli.settings.environment()), cwd=cli.root
    )
    assert result.returncode == 0, result.stderr
    assert (
        "unhealthy: w1@host/webhooks (ConfigError: PALLYCON_WEBHOOK_KEY is not set"
        in result.stdout.decode()
    )
    keyed = LoopHealth(store.redis, store.keys, "w2@host")
    keyed.note(rules.LOOP, signs=True)
    keyed.ok(rules.LOOP)
    code, _, err = cli.run("add", receiver.url, "--allow-private")
    assert code == 0, err
    assert "no running worker" not in err


def test_list_shows_each_endpoints_waiting_deliveries_and_why_they_fail(
    cli: Cli, receiver: Receiver
):
    """A delivery whose attempt failed and waits for its next (as a worker settles it): list
    shows the endpoint's pending count, since when it fails and the last outcome, as stats
    does; --json too. An endpoint with nothing pending says so."""
    _, out, _ = cli.run("add", receiver.url, "--allow-private")
    endpoint_id = out.split()[0]
    _, out, _ = cli.run("add", f"{receiver.url}/other", "--allow-private")
    quiet_id = out.split()[0]
    outbox = Deliveries(cli.endpoints.redis, cli.endpoints.keys)
    now = time.time()
    made = NewDelivery(endpoint_id, "req-w:4", "completed", "req-w", now - 60, b"{}")
    outbox.fan_out([], [made], now, cap=4)
    claimed, _ = outbox.claim(now, 30.0, cap=4, limit=100)
    [mine] = [c for c in claimed if c.endpoint_id == endpoint_id]
    retry = Decision(Settle.RETRY, "HTTP 503", at=now + 300, failing_since=now - 120)
    outbox.settle(mine, retry, Attempted(AttemptKind.HTTP_5XX, 0.1, "HTTP 503"), now, cap=4)
    code, out, err = cli.run("list")
    assert code == 0, err
    shown = {line.split()[0]: line for line in out.splitlines() if line.startswith("ep_")}
    lines = out.splitlines()
    failing = lines[lines.index(shown[endpoint_id]) + 2]
    assert failing.startswith(
        "    deliveries: pending=1 (due 0, in flight 0, oldest 1m 0s)  dead=0"
    )
    assert "last 2xx never  FAILING since " in failing
    assert failing.endswith("(2m 0s; last: HTTP 503)")
    quiet = lines[lines.index(shown[quiet_id]) + 2]
    assert quiet == "    deliveries: pending=0  dead=0  last 2xx never"
    code, out, err = cli.run("list", "--json")
    assert code == 0, err
    rows = {row["id"]: row for row in json.loads(out)}
    row = rows[endpoint_id]
    assert (row["pending"], row["dead"], row["last_outcome"]) == (1, 0, "HTTP 503")
    assert row["failing_since"] is not None
    assert rows[quiet_id]["failing_since"] is None
