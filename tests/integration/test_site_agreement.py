"""Every way in agrees on every spelling of a site: the Python API (``submit`` and
``submit_many``), ``submit --batch``, ``submit --site`` and the stream intake accept the same
requests, stored alike, and refuse the others with the same words. In-process, on the session's
Redis: a worker runtime announces its sites (the API's fake), the CLI runs under click's runner.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from pallycon.errors import InvalidRequest
from pallycon_config import Settings
from pallycon_pack.cli.main import main
from pallycon_producers.api import Producer
from pallycon_store.admission import Limits, Submission, prepare
from pallycon_store.events import State
from pallycon_worker.intake_stream import Delivery, Intake
from pallycon_worker.loops import LoopHealth
from pallycon_worker.runtime import Runtime
from support.env import clean_env
from support.queue import make_settings
from support.redis_server import RedisServer
from support.samples import OTHER_SITE, body_for, job_body
from support.stack import write_sites_file
from support.world import producer_on

pytestmark = pytest.mark.integration

BODY = body_for("ST000001", "agree")
SPELLINGS = [None, "", "TUTO", "BRND", "NOPE", "no/pe"]
SHAPE = "must be letters and digits only, e.g. TUTO"


@dataclass(frozen=True)
class Accepted:
    site_id: str  # as the record keeps it
    body_hash: str


@dataclass(frozen=True)
class Refused:
    message: str  # the site_id error's


Verdict = Accepted | Refused


@dataclass
class Fleet:
    """A worker runtime of these settings, its sites announced, and how to ask each way in."""

    settings: Settings
    rt: Runtime
    tmp: Path

    @property
    def producer(self) -> Producer:
        return producer_on(self.rt)

    def verdict(self, request_id: str) -> Accepted:
        record = self.rt.shared.records.get(request_id)
        assert record is not None, request_id
        assert record.state == State.ACCEPTED, record
        return Accepted(record.site_id, record.body_hash)

    def by_submit(self, request_id: str, site: str | None) -> Verdict:
        try:
            self.producer.submit(BODY, request_id, site_id=site)
        except InvalidRequest as exc:
            return _site_error(exc)
        return self.verdict(request_id)

    def by_submit_many(self, request_id: str, site: str | None) -> Verdict:
        try:
            self.producer.submit_many([BODY], [request_id], site_ids=[site])
        except InvalidRequest as exc:
            return _site_error(exc)
        return self.verdict(request_id)

    def cli(self, *args: str) -> Any:
        env = clean_env(self.settings.environment())
        return CliRunner().invoke(main, list(args), env=env)

    def by_batch(self, request_id: str, site: str | None) -> Verdict:
        line = {"body": BODY, "request_id": request_id}
        if site is not None:
            line["site_id"] = site
        path = self.tmp / f"{request_id}.jsonl"
        path.write_text(json.dumps(line) + "\n")
        result = self.cli("submit", "--batch", str(path))
        if result.exit_code == 0:
            return self.verdict(request_id)
        assert result.exit_code == 2, result.output
        prefix = "line 1: site_id: "
        (message,) = [x for x in result.stderr.splitlines() if x.startswith(prefix)]
        return Refused(message.removeprefix(prefix))

    def by_cli(self, request_id: str, site: str | None) -> Verdict:
        path = self.tmp / f"{request_id}.json"
        path.write_text(json.dumps(BODY))
        given = ["--site", site] if site is not None else []
        result = self.cli("submit", str(path), "--request-id", request_id, *given)
        if result.exit_code == 0:
            return self.verdict(request_id)
        assert result.exit_code == 2, result.output
        prefix = "  site_id: "
        (message,) = [x for x in result.stderr.splitlines() if x.startswith(prefix)]
        return Refused(message.removeprefix(prefix))

    def by_intake(self, request_id: str, site: str | None) -> Verdict:
        shared = self.rt.shared
        health = LoopHealth(shared.redis, shared.keys, "test")
        intake = Intake(self.rt, "c1", health)
        intake.ensure_group()
        entry = {"request_id": request_id, "request": json.dumps(BODY)}
        if site is not None:
            entry["site_id"] = site
        shared.redis.xadd(shared.keys.intake, entry)  # type: ignore[arg-type]
        assert intake.handle_all(intake.read(">"), Delivery.NEW) == 0
        record = shared.records.get(request_id)
        assert record is not None
        if record.state == State.ACCEPTED:
            return self.verdict(request_id)
        entries: Any = shared.redis.xrange(shared.keys.results)
        events = [json.loads(fields["event"]) for _, fields in entries]
        (failed,) = [e for e in events if e["request_id"] == request_id and e["type"] == "failed"]
        (field,) = [f for f in failed["fields"] if f["field"] == "site_id"]
        return Refused(field["message"])


def _site_error(exc: InvalidRequest) -> Refused:
    (error,) = [e for e in exc.errors if e.field == "site_id"]
    return Refused(error.message)


WAYS: dict[str, Callable[[Fleet, str, str | None], Verdict]] = {
    "submit": Fleet.by_submit,
    "submit_many": Fleet.by_submit_many,
    "batch": Fleet.by_batch,
    "cli": Fleet.by_cli,
    "intake": Fleet.by_intake,
}


@pytest.fixture
def make_fleet(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Fleet]]:
    """Fleets of a default site TUTO (unless ``site_id=None``) and BRND in a sites file; each
    one's keys deleted after the test."""
    for name in list(os.environ):
        if name.startswith("PALLYCON_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    made: list[Fleet] = []

    def make(**overrides: Any) -> Fleet:
        sites = write_sites_file(tmp_path / "sites.toml", OTHER_SITE)
        settings = make_settings(redis_server.url, "http://api.test", sites_path=sites, **overrides)
        fail = httpx.MockTransport(lambda request: httpx.Response(500))
        rt = Runtime.build(settings, transport=fail)
        rt.announce()  # as a worker does at start-up
        made.append(Fleet(settings, rt, tmp_path))
        return made[-1]

    yield make
    for fleet in made:
        for site in fleet.rt.sites.values():
            site.api.close()
        stale = list(fleet.rt.shared.redis.scan_iter(f"{fleet.settings.key_prefix}:*"))
        if stale:
            fleet.rt.shared.redis.delete(*stale)


NO_DEFAULT = {"site_id": None, "access_key": None, "site_key": None, "callback_token": None}

EXPECTED: dict[str, dict[str | None, str | Refused]] = {
    "with-default": {
        None: "",
        "": "",
        "TUTO": "",
        "BRND": "BRND",
        "NOPE": Refused("unknown site 'NOPE' (sites served: BRND, TUTO)"),
        "no/pe": Refused(SHAPE),
    },
    "no-default": {
        None: Refused("no site named, and no default site (sites served: BRND)"),
        "": Refused("no site named, and no default site (sites served: BRND)"),
        "TUTO": Refused("unknown site 'TUTO' (sites served: BRND)"),
        "BRND": "BRND",
        "NOPE": Refused("unknown site 'NOPE' (sites served: BRND)"),
        "no/pe": Refused(SHAPE),
    },
}


@pytest.mark.parametrize("fleet_kind", ["with-default", "no-default"])
@pytest.mark.parametrize("site", SPELLINGS)
def test_every_way_in_agrees_on_every_spelling(make_fleet, fleet_kind: str, site: str | None):
    """Accepted by all (the same stored site, the same body hash: one request whatever the
    spelling) or refused by all with the same site_id message; a fleet without a default site
    refuses a request naming none everywhere, the Python API too."""
    fleet = make_fleet(**(NO_DEFAULT if fleet_kind == "no-default" else {}))
    verdicts = {way: ask(fleet, f"{way}-{n}", site) for n, (way, ask) in enumerate(WAYS.items())}
    expected = EXPECTED[fleet_kind][site]
    if isinstance(expected, str):
        hashes = {v.body_hash for v in verdicts.values() if isinstance(v, Accepted)}
        assert len(hashes) == 1, verdicts
        assert verdicts == dict.fromkeys(WAYS, Accepted(expected, hashes.pop()))
    else:
        assert verdicts == dict.fromkeys(WAYS, expected)


def test_before_any_site_is_announced_a_request_naming_none_is_accepted(make_fleet):
    """An empty book (no worker has announced yet) still takes a request naming no site, and
    refuses one naming a site."""
    fleet = make_fleet()
    fleet.rt.shared.redis.delete(fleet.rt.shared.keys.sites)
    assert fleet.by_submit("early-1", None) == fleet.verdict("early-1")
    assert fleet.by_submit("early-2", "BRND") == Refused(
        "unknown site 'BRND' (sites served: none announced yet)"
    )


# --- The batch named the default site by its id as another site -------------------------------


def test_a_batch_line_naming_the_default_by_its_id_is_the_request_the_api_recorded(make_fleet):
    """The Python API records a request naming no site; a batch line with the same id and body
    naming the default site by its id is that request (submitted before), and the reverse."""
    fleet = make_fleet()
    fleet.producer.submit(BODY, "r1")
    fleet.producer.submit(BODY, "r2", site_id="TUTO")
    path = fleet.tmp / "again.jsonl"
    path.write_text(
        json.dumps({"body": BODY, "request_id": "r1", "site_id": "TUTO"})
        + "\n"
        + json.dumps({"body": BODY, "request_id": "r2"})
        + "\n"
    )
    result = fleet.cli("submit", "--batch", str(path))
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[-1] == (
        f"2 requests from {path}: 0 new, 2 submitted before (nothing new enqueued for them)"
    )


def test_one_id_in_a_batch_under_two_spellings_of_the_default_is_one_request(make_fleet):
    """Line 1 names the default site by its id, line 2 names none: the same request."""
    fleet = make_fleet()
    path = fleet.tmp / "twice.jsonl"
    path.write_text(
        json.dumps({"body": BODY, "request_id": "r3", "site_id": "TUTO"})
        + "\n"
        + json.dumps({"body": BODY, "request_id": "r3"})
        + "\n"
    )
    result = fleet.cli("submit", "--batch", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["r3", "r3"]
    record = fleet.rt.shared.records.get("r3")
    assert record is not None
    assert record.site_id == ""


def test_a_batch_line_naming_the_default_by_its_id_has_the_default_sites_limit(make_fleet):
    """A body the default site can carry, though a named site could not, is accepted by the
    batch as by the Python API when the line names the default site by its id."""
    fleet = make_fleet()
    limits = fleet.producer.limits
    if limits.max_api_json - limits.max_api_json_any_site < 2:
        pytest.skip("no size between the two limits for this API URL")
    target = (limits.max_api_json + limits.max_api_json_any_site) // 2
    body = job_body(content_id="big")
    paths = body["storage"]["input"]["contents_path"] = ["in/x.mp4"]
    while _api_json_size(fleet, body) + 300 < target:  # paths of 512 bytes at most
        paths.append(f"in/{len(paths):03d}-{'x' * 200}.mp4")
    paths.append("in/x.mp4")
    paths[-1] = f"in/x{'x' * (target - _api_json_size(fleet, body))}.mp4"
    assert limits.max_api_json_any_site < _api_json_size(fleet, body) <= limits.max_api_json
    fleet.producer.submit(body, "big-api", site_id="TUTO")
    path = fleet.tmp / "big.jsonl"
    path.write_text(json.dumps({"body": body, "request_id": "big-batch", "site_id": "TUTO"}) + "\n")
    result = fleet.cli("submit", "--batch", str(path))
    assert result.exit_code == 0, result.output
    assert fleet.verdict("big-batch") == fleet.verdict("big-api")


def _api_json_size(fleet: Fleet, body: dict[str, Any]) -> int:
    """The size admission gives ``body``'s API JSON (as its size error says it)."""
    tiny = Limits(1, 1)
    with pytest.raises(InvalidRequest) as caught:
        prepare([Submission(body, "sized")], 0.0, sites=fleet.rt.book, limits=tiny)
    (error,) = caught.value.errors
    return int(error.message.split(" bytes of API JSON")[0])
