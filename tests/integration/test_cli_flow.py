"""Flow control from the command line: ``submit --priority`` and a batch's priorities, ``pause``,
``resume``, ``cancel``, ``requests list --priority`` and ``stats``'s flow, against a real Redis
where no worker runs (the requests stay on their lanes, as a paused or busy fleet keeps them).
Each test has a key prefix of its own; the CLI runs in this process (:func:`support.cli.run_cli`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from pallycon_config import Settings
from pallycon_producers.api import Producer
from pallycon_store.events import State
from pallycon_store.flow import EVERY_SITE
from pallycon_store.record import Fields
from pallycon_store.records import Change
from pallycon_store.sites import announce
from pallycon_store.wiring import Store
from support.cli import run_cli
from support.env import clean_env
from support.queue import events_of, make_settings
from support.redis_server import RedisServer
from support.samples import REGION, SAMPLE_SITE, job_body

pytestmark = pytest.mark.integration

DEFAULT = SAMPLE_SITE.site_id
OTHER = "BRND"


class Fleet:
    """One test's settings, producer and command line (the default site and BRND announced,
    the default site with a cap of 4 jobs in flight)."""

    def __init__(self, redis_url: str, root: Path) -> None:
        self.settings: Settings = make_settings(redis_url, "http://127.0.0.1:9")
        self.producer = Producer.from_settings(self.settings)
        self.root = root
        regions = {DEFAULT: REGION, OTHER: REGION}
        announce(self.producer.redis, self.producer.keys, regions, DEFAULT, {DEFAULT: 4})

    def run(self, *args: str) -> tuple[int, str, str]:
        """``pallycon-pack ARGS`` on this fleet's settings."""
        env = clean_env(self.settings.environment())
        result = run_cli(*args, env=env, cwd=self.root)
        return result.returncode, result.stdout.decode(), result.stderr.decode()

    def on_lane(self, request_id: str, site: str, priority: str) -> bool:
        lane = self.producer.keys.submit_lane(site, priority)
        return self.producer.redis.zscore(lane, request_id) is not None

    def body_file(self, name: str) -> Path:
        path = self.root / f"{name}.json"
        path.write_text(json.dumps(job_body(content_id=name)))
        return path


@pytest.fixture
def fleet(redis_server: RedisServer, tmp_path: Path) -> Fleet:
    return Fleet(redis_server.url, tmp_path)


def _line(request_id: str, **fields: Any) -> str:
    return json.dumps({"body": job_body(content_id=request_id), "request_id": request_id, **fields})


def test_one_request_is_normal_unless_told_and_status_says_its_priority(fleet: Fleet):
    """``submit FILE`` records a normal request (no priority field, the normal lane);
    ``--priority high`` puts it on the high lane; ``status`` names the priority of each."""
    code, out, err = fleet.run("submit", str(fleet.body_file("one")), "--request-id", "one")
    assert code == 0, err
    code, _, err = fleet.run(
        "submit", str(fleet.body_file("two")), "--request-id", "two", "--priority", "high"
    )
    assert code == 0, err
    records = fleet.producer.records.get_many(["one", "two"])
    assert (records["one"].priority, records["two"].priority) == ("", "high")
    assert fleet.on_lane("one", "", "normal")
    assert fleet.on_lane("two", "", "high")
    code, out, _ = fleet.run("status", "two")
    assert code == 4  # still accepted
    assert f"{'priority':15} high" in out.splitlines()
    code, out, _ = fleet.run("status", "one")
    assert f"{'priority':15} normal" in out.splitlines()
    code, _, err = fleet.run("submit", str(fleet.body_file("x")), "--priority", "urgent")
    assert code == 2
    assert "--priority" in err


def test_a_batch_is_bulk_unless_told_and_a_lines_priority_wins(fleet: Fleet):
    """``submit --batch`` records its lines bulk by default; ``--priority high`` makes those
    that give none high; a line's own priority wins either way ("" gives none)."""
    path = fleet.root / "backfill.jsonl"
    path.write_text(
        "\n".join(
            [_line("b-none"), _line("b-high", priority="high"), _line("b-empty", priority="")]
        )
    )
    code, out, err = fleet.run("submit", "--batch", str(path))
    assert code == 0, err
    assert out.split() == ["b-none", "b-high", "b-empty"]
    found = fleet.producer.records.get_many(["b-none", "b-high", "b-empty"])
    assert {rid: r.priority for rid, r in found.items()} == {
        "b-none": "bulk",
        "b-high": "high",
        "b-empty": "bulk",
    }
    assert fleet.on_lane("b-none", "", "bulk")
    assert fleet.on_lane("b-high", "", "high")

    path.write_text("\n".join([_line("c-none"), _line("c-normal", priority="normal")]))
    code, _, err = fleet.run("submit", "--batch", str(path), "--priority", "high")
    assert code == 0, err
    found = fleet.producer.records.get_many(["c-none", "c-normal"])
    assert {rid: r.priority for rid, r in found.items()} == {"c-none": "high", "c-normal": ""}


def test_a_bad_priority_in_a_batch_is_that_lines_error_and_nothing_is_recorded(fleet: Fleet):
    """A line whose priority is not high, normal or bulk is named by its number and the field;
    exit 2; no line of the file is recorded."""
    path = fleet.root / "bad.jsonl"
    path.write_text(
        "\n".join([_line("d-ok"), _line("d-bad", priority="urgent"), _line("d-int", priority=3)])
    )
    code, out, err = fleet.run("submit", "--batch", str(path))
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == "line 2: priority: must be one of high, normal, bulk (got 'urgent')"
    assert lines[1] == "line 3: priority: must be one of high, normal, bulk (got 3)"
    assert fleet.producer.records.get_many(["d-ok", "d-bad", "d-int"]) == {}


def test_requests_are_listed_by_priority_with_a_priority_column(fleet: Fleet):
    """``requests list --priority P`` lists that priority's requests only (normal: those that
    gave none); the table has a priority column."""
    producer = fleet.producer
    producer.submit(job_body(content_id="l-n"), "l-n")
    producer.submit(job_body(content_id="l-b"), "l-b", priority="bulk")
    code, out, _ = fleet.run("requests", "list", "--priority", "bulk", "--json")
    assert code == 0
    assert [(r["request_id"], r["priority"]) for r in json.loads(out)] == [("l-b", "bulk")]
    code, out, _ = fleet.run("requests", "list", "--priority", "normal", "--json")
    assert [r["request_id"] for r in json.loads(out)] == ["l-n"]
    code, out, _ = fleet.run("requests", "list")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["request", "state", "priority"]
    assert {row.split()[0]: row.split()[2] for row in rows} == {"l-n": "normal", "l-b": "bulk"}
    code, _, err = fleet.run("requests", "list", "--priority", "high")
    assert (code, err) == (0, "no requests of priority high\n")


def test_pause_and_resume_say_what_changed_and_are_kept_with_their_events(fleet: Fleet):
    """``pause`` (every site) and ``pause --site`` are kept in Redis with their reasons, each
    said in one line with what it means; pausing again keeps the reason; ``resume`` names the
    pauses still in force; every change is a flow event; an unknown site is exit 2."""
    store = Store.of(fleet.settings)
    code, out, _ = fleet.run("pause", "--reason", "PallyCon maintenance")
    assert code == 0
    assert out == (
        "paused every site (PallyCon maintenance): requests are still accepted and queued; "
        "polls and callbacks go on; no new registration for any site until "
        "`pallycon-pack resume`\n"
    )
    since = store.flow.pauses()[EVERY_SITE].at
    code, out, _ = fleet.run("pause")
    assert code == 0
    assert store.flow.pauses()[EVERY_SITE].at == since  # paused since the first time
    code, _, err = fleet.run("pause", "--json")  # not a list: refused, nothing paused anew
    assert code == 2
    assert "--json goes with --list" in err
    assert out.startswith("every site was already paused (since ")
    assert ": PallyCon maintenance): requests are still accepted" in out
    assert store.flow.pauses()[EVERY_SITE].reason == "PallyCon maintenance"
    code, out, _ = fleet.run("pause", "--site", OTHER, "--reason", "quota")
    assert code == 0
    assert out.startswith(f"paused site {OTHER} (quota): ")
    assert f"no new registration for {OTHER} until `pallycon-pack resume --site {OTHER}`" in out
    assert "(every site is paused too, since " in out
    assert {site: p.reason for site, p in store.flow.pauses().items()} == {
        EVERY_SITE: "PallyCon maintenance",
        OTHER: "quota",
    }
    code, out, _ = fleet.run("pause", "--list")
    assert code == 0
    assert [line.split(" paused since ")[0].strip() for line in out.splitlines()] == [
        "every site",
        f"site {OTHER}",
    ]
    assert out.splitlines()[1].endswith(": quota")
    code, out, _ = fleet.run("pause", "--list", "--json")
    assert [(p["site"], p["reason"]) for p in json.loads(out)] == [
        ("*", "PallyCon maintenance"),
        (OTHER, "quota"),
    ]

    code, out, _ = fleet.run("resume")
    assert code == 0
    assert out.startswith("resumed every site (paused since ")
    assert f"still paused: site {OTHER} (since " in out
    assert f"`pallycon-pack resume --site {OTHER}`" in out
    code, out, _ = fleet.run("resume", "--site", OTHER)
    assert code == 0
    assert out.startswith(f"resumed site {OTHER} (paused since ")
    code, out, _ = fleet.run("resume", "--site", OTHER)
    assert (code, out) == (0, f"site {OTHER} was not paused: nothing changed\n")
    assert store.flow.pauses() == {}
    code, out, _ = fleet.run("pause", "--list")
    assert (code, out) == (0, "no site is paused\n")

    events = [(e["type"], e["site"], e["reason"]) for e in reversed(store.flow.events(10))]
    assert events == [  # pausing again with the same reason, resuming what was not: no event
        ("paused", EVERY_SITE, "PallyCon maintenance"),
        ("paused", OTHER, "quota"),
        ("resumed", EVERY_SITE, ""),
        ("resumed", OTHER, ""),
    ]
    code, out, err = fleet.run("pause", "--site", "NOPE")
    assert (code, out) == (2, "")
    assert err == f"Error: --site: unknown site 'NOPE' (sites served: {DEFAULT}, {OTHER})\n"
    code, _, err = fleet.run("pause", "--site", "")  # not every site by accident
    assert (code, err) == (2, "Error: --site: give a site (without --site: every site)\n")
    assert store.flow.pauses() == {}


def test_the_default_site_is_paused_by_its_id(fleet: Fleet):
    """``pause --site <the default site's id>`` pauses the default site's stored form (""),
    which is what holds its requests."""
    code, out, _ = fleet.run("pause", "--site", DEFAULT)
    assert code == 0
    assert out.startswith(f"paused site {DEFAULT}: ")
    assert list(Store.of(fleet.settings).flow.pauses()) == [""]


def _mark_submitted(producer: Producer, request_id: str, job_id: str) -> None:
    """Move an accepted request to ``submitted`` as a worker does (its job registered: off its
    lane, in flight, its poll scheduled)."""
    record = producer.get(request_id)
    assert record is not None
    now = time.time()
    fields = Fields(state=State.SUBMITTED, job_id=job_id, updated_at=now)
    producer.records.apply_each([Change(record, fields, None, schedule="poll", at=now + 3600)])


def test_cancel_ends_a_request_cancelled_off_its_lane_and_a_dry_run_writes_nothing(
    fleet: Fleet,
):
    """``cancel --dry-run`` says what it would do and writes nothing; ``cancel`` ends an
    accepted request ``cancelled`` with a ``cancelled`` event, off its lane; a finished one is
    left (exit 0); an unknown id is named and makes it exit 2, as ``status`` and ``requests
    show`` of an unknown id (bad input, not a failed job); ``status`` of a cancelled request
    exits 1."""
    producer = fleet.producer
    producer.submit(job_body(content_id="k-1"), "k-1", priority="bulk")
    before = producer.get("k-1")
    entries = len(events_of(producer))
    code, out, _ = fleet.run("cancel", "k-1", "--dry-run", "--reason", "not needed")
    assert code == 0
    assert out == "k-1  would cancel         cancelled before it was registered\n"
    assert producer.get("k-1") == before
    assert len(events_of(producer)) == entries
    assert fleet.on_lane("k-1", "", "bulk")

    code, out, err = fleet.run("cancel", "k-1", "nobody", "--reason", "not needed")
    assert code == 2
    assert out.splitlines() == [
        "k-1  cancelled            cancelled before it was registered",
        "nobody  unknown              no such request (or its record expired)",
    ]
    assert err == "Error: 1 of 2 requests not cancelled (1 unknown)\n"
    record = producer.get("k-1")
    assert record is not None
    assert record.state is State.CANCELLED
    assert record.error_message == "cancelled before it was registered; reason: not needed"
    last = events_of(producer, "k-1")[-1]
    assert (last["type"], last["reason"], last["registered"]) == ("cancelled", "not needed", False)
    assert not fleet.on_lane("k-1", "", "bulk")

    code, out, _ = fleet.run("cancel", "k-1")
    assert code == 0
    assert out == "k-1  finished             already cancelled: nothing to cancel\n"
    code, out, _ = fleet.run("status", "k-1")
    assert code == 1
    assert f"{'state':15} cancelled" in out.splitlines()
    code, _, _ = fleet.run("requests", "list", "--state", "cancelled", "--json")
    assert code == 0
    assert fleet.run("status", "nobody") == (2, "", "Error: no request nobody\n")
    code, _, err = fleet.run("requests", "show", "nobody")
    assert (code, err) == (2, "Error: no request nobody (or its record expired)\n")


def test_cancel_by_state_says_when_limit_left_matching_requests(fleet: Fleet):
    """``cancel --state accepted --limit 2`` with three accepted: two cancelled and one line
    saying more match (nothing silently left); --dry-run says it too; the next run takes the
    rest and says nothing more."""
    for n in range(3):
        fleet.producer.submit(job_body(content_id=f"l-{n}"), f"l-{n}")
    more = "more accepted requests match than --limit 2: "
    code, out, err = fleet.run("cancel", "--state", "accepted", "--limit", "2", "--dry-run")
    assert (code, err) == (0, more + "raise --limit\n")
    code, out, err = fleet.run("cancel", "--state", "accepted", "--limit", "2")
    assert code == 0
    assert len(out.splitlines()) == 2
    assert err == more + "run the same command again (or raise --limit)\n"
    code, out, err = fleet.run("cancel", "--state", "accepted", "--limit", "2")
    assert (code, len(out.splitlines()), err) == (0, 1, "")


def test_cancel_by_state_and_site_stops_tracking_a_job_that_may_run(fleet: Fleet):
    """``cancel --state accepted --site`` cancels that site's accepted requests only;
    ``cancel --state submitted`` stops tracking, saying the job may still run at PallyCon."""
    producer = fleet.producer
    for n in range(2):
        producer.submit(job_body(content_id=f"s-{n}"), f"s-{n}", site_id=OTHER)
    producer.submit(job_body(content_id="s-home"), "s-home")
    producer.submit(job_body(content_id="s-reg"), "s-reg")
    _mark_submitted(producer, "s-reg", "1001")

    code, out, _ = fleet.run("cancel", "--state", "accepted", "--site", OTHER, "--json")
    assert code == 0
    assert sorted((o["request_id"], o["outcome"]) for o in map(json.loads, out.splitlines())) == [
        ("s-0", "cancelled"),
        ("s-1", "cancelled"),
    ]
    assert not fleet.on_lane("s-0", OTHER, "normal")
    assert fleet.producer.get("s-home").state is State.ACCEPTED  # type: ignore[union-attr]

    code, out, _ = fleet.run("cancel", "--state", "submitted", "--reason", "wrong asset")
    assert code == 0
    assert out == (
        "s-reg  tracking stopped     tracking stopped; job 1001 may still run at PallyCon, "
        "which has no cancel call (stop it in PallyCon Console)\n"
    )
    assert producer.get("s-reg").state is State.CANCELLED  # type: ignore[union-attr]
    last = events_of(producer, "s-reg")[-1]
    assert (last["type"], last["registered"], last["job_id"]) == ("cancelled", True, "1001")

    code, _, err = fleet.run("cancel", "--state", "accepted", "--site", OTHER)
    assert (code, err) == (0, "no accepted requests match\n")
    code, _, err = fleet.run("cancel", "s-home", "--state", "accepted")
    assert code == 2
    assert "not both" in err
    code, _, err = fleet.run("cancel", "s-home", "--site", OTHER)
    assert code == 2
    assert "--state" in err


def test_stats_shows_the_flow_by_site_and_priority(fleet: Fleet):
    """``stats`` shows, per site, the requests waiting by priority, in flight against the cap
    the workers announce ("none" without one) and the pause that holds it; ``--json`` the same
    under ``flow``."""
    producer = fleet.producer
    producer.submit(job_body(content_id="f-h"), "f-h", priority="high")
    producer.submit_many(
        [job_body(content_id=f"f-b{n}") for n in range(2)], priority="bulk", site_ids=[None, None]
    )
    producer.submit(job_body(content_id="f-o"), "f-o", site_id=OTHER)
    producer.submit(job_body(content_id="f-r"), "f-r", site_id=OTHER)
    _mark_submitted(producer, "f-r", "1002")
    assert fleet.run("pause", "--site", OTHER, "--reason", "quota")[0] == 0

    code, out, err = fleet.run("stats", "--json")
    assert code == 0, err
    flow = json.loads(out)["flow"]
    assert list(flow["sites"]) == [DEFAULT, OTHER]
    home, other = flow["sites"][DEFAULT], flow["sites"][OTHER]
    assert home["waiting"] == {"high": 1, "normal": 0, "bulk": 2}
    assert (home["in_flight"], home["max_in_flight"], home["paused"]) == (0, 4, None)
    assert other["waiting"] == {"high": 0, "normal": 1, "bulk": 0}
    assert (other["in_flight"], other["max_in_flight"]) == (1, None)
    assert (other["paused"]["reason"], other["paused"]["every_site"]) == ("quota", False)
    assert [p["site"] for p in flow["pauses"]] == [OTHER]

    code, out, _ = fleet.run("stats")
    assert code == 0
    lines = out.splitlines()
    at = next(n for n, line in enumerate(lines) if line.startswith("flow "))
    assert lines[at] == (
        f"flow {DEFAULT:<10} waiting high=1 normal=0 bulk=2  dispatched=0  in flight=0 (cap 4)"
    )
    assert lines[at + 1].startswith(
        f"flow {OTHER:<10} waiting high=0 normal=1 bulk=0  dispatched=0  in flight=1 (cap none)"
        "  PAUSED since "
    )
    assert lines[at + 1].endswith(" UTC: quota")
