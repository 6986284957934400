"""The pure forms of flow control on the command line: what pause, resume and cancel say, the
pauses listed, ``stats``'s flow by site and priority, a batch line's priority, the priorities the
commands offer and how a cancelled request reads."""

from __future__ import annotations

from typing import Any

import pytest

from pallycon_config.site_ref import SiteBook
from pallycon_pack.cli.inputs import PRIORITY_HELP, PRIORITY_NAMES
from pallycon_pack.cli.queue.batch import parse
from pallycon_pack.present.flow import (
    cancel_line,
    flow_lines,
    flow_report,
    pause_lines,
    paused_line,
    resumed_line,
)
from pallycon_pack.present.records import detail, state_text
from pallycon_store.cancel import Cancel, CancelOutcome
from pallycon_store.events import State
from pallycon_store.flow import (
    EVERY_SITE,
    PRIORITIES,
    SHARES,
    FlowSnapshot,
    Lane,
    Pause,
    Priority,
)
from pallycon_store.record import Record

AT = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC
SINCE = "2026-05-28 20:26:40 UTC"
BOOK = SiteBook("TUTO", ("BRND", "TUTO"), served=True)
NO_DEFAULT = SiteBook(None, ("BRND",), served=True)
MEANS = "requests are still accepted and queued; polls and callbacks go on"


def test_the_commands_offer_the_stores_priorities_highest_first():
    """The names the commands' help offers (kept apart so that help loads no Redis client)
    are the store's priorities, in its order, and the shares it quotes are the store's."""
    assert tuple(priority.value for priority in PRIORITIES) == PRIORITY_NAMES
    shares = " and ".join(f"{SHARES[p] * 100:g} %" for p in (Priority.NORMAL, Priority.BULK))
    assert f"({shares})" in PRIORITY_HELP


@pytest.mark.parametrize(
    ("site", "created", "reason", "before", "pauses", "said"),
    [
        (EVERY_SITE, True, "", None, {}, f"paused every site: {MEANS}; no new registration for "
         "any site until `pallycon-pack resume`"),
        ("", True, "quota", None, {}, f"paused site TUTO (quota): {MEANS}; no new registration "
         "for TUTO until `pallycon-pack resume --site TUTO`"),
        ("BRND", False, "quota", Pause("BRND", "quota", AT), {},
         f"site BRND was already paused (since {SINCE}: quota): {MEANS}; no new registration "
         "for BRND until `pallycon-pack resume --site BRND`"),
        ("BRND", False, "new", Pause("BRND", "old", AT), {},
         f"site BRND was already paused (since {SINCE}); reason now: new: {MEANS}; no new "
         "registration for BRND until `pallycon-pack resume --site BRND`"),
        ("BRND", True, "", None, {EVERY_SITE: Pause(EVERY_SITE, "upgrade", AT)},
         f"paused site BRND: {MEANS}; no new registration for BRND until `pallycon-pack resume "
         f"--site BRND` (every site is paused too, since {SINCE}: upgrade: `pallycon-pack "
         "resume` lifts it)"),
    ],
)  # fmt: skip
def test_what_pause_says(
    site: str, created: bool, reason: str, before: Pause | None, pauses: Any, said: str
):
    """One line: what changed (or that it was paused already, and the reason now), what a
    pause means, the command that lifts it, and a pause of every site that holds it too."""
    assert paused_line(site, created, reason, before, pauses, BOOK) == said


@pytest.mark.parametrize(
    ("site", "before", "pauses", "said"),
    [
        ("BRND", None, {}, "site BRND was not paused: nothing changed"),
        ("", Pause("", "", AT), {},
         f"resumed site TUTO (paused since {SINCE}): its registrations go on"),
        (EVERY_SITE, Pause(EVERY_SITE, "x", AT), {"BRND": Pause("BRND", "quota", AT)},
         f"resumed every site (paused since {SINCE}: x): its registrations go on; still "
         f"paused: site BRND (since {SINCE}: quota; `pallycon-pack resume --site BRND`)"),
        ("BRND", Pause("BRND", "", AT), {EVERY_SITE: Pause(EVERY_SITE, "", AT)},
         f"resumed site BRND (paused since {SINCE}): its registrations go on; still paused: "
         f"every site (since {SINCE}; `pallycon-pack resume`)"),
        ("BRND", None, {"": Pause("", "", AT)}, "site BRND was not paused: nothing changed"),
    ],
)  # fmt: skip
def test_what_resume_says(site: str, before: Pause | None, pauses: Any, said: str):
    """What was lifted (or that nothing was), and the pauses that still hold the site: every
    site's for one site, each site's for every site."""
    assert resumed_line(site, before, pauses, BOOK) == said


def test_pauses_are_listed_every_sites_first_by_the_readers_names():
    pauses = {"BRND": Pause("BRND", "quota", AT), "": Pause("", "", AT),
              EVERY_SITE: Pause(EVERY_SITE, "upgrade", AT)}  # fmt: skip
    assert pause_lines(pauses, BOOK) == [
        f"every site       paused since {SINCE}: upgrade",
        f"site BRND        paused since {SINCE}: quota",
        f"site TUTO        paused since {SINCE}",
    ]
    assert pause_lines({}, BOOK) == ["no site is paused"]


@pytest.mark.parametrize(
    ("outcome", "dry_run", "word"),
    [
        (CancelOutcome.CANCELLED, False, "cancelled"),
        (CancelOutcome.CANCELLED, True, "would cancel"),
        (CancelOutcome.STOPPED_TRACKING, False, "tracking stopped"),
        (CancelOutcome.STOPPED_TRACKING, True, "would stop tracking"),
        (CancelOutcome.FINISHED, True, "finished"),
        (CancelOutcome.UNKNOWN, False, "unknown"),
        (CancelOutcome.BUSY, False, "busy"),
    ],
)
def test_a_cancels_line_names_what_was_or_would_be_done(
    outcome: CancelOutcome, dry_run: bool, word: str
):
    assert cancel_line(Cancel("r-1", outcome, "why"), dry_run) == f"r-1  {word:<19}  why"


def _snapshot(**pauses: Pause) -> FlowSnapshot:
    def lane(site: str, priority: Priority) -> Lane:
        return Lane(site, priority, f"lane:{site}:{priority}")

    return FlowSnapshot(
        now=AT,
        due={
            lane("", Priority.HIGH): 1,
            lane("", Priority.BULK): 5,
            lane("TUTO", Priority.BULK): 2,  # named the default site by id, before it was one
            lane("OLD", Priority.NORMAL): 3,  # a site no longer announced
        },
        dispatched={"": 1},
        in_flight={"": 4, "BRND": 0},
        pauses={site if site != "every" else EVERY_SITE: p for site, p in pauses.items()},
    )


def test_the_flow_is_reported_by_site_with_caps_and_pauses():
    """Every served site (the default first, by its id) and every site with a lane; a default
    site's lanes under either stored form add up; a cap of 0 is none; a site is held by its
    own pause or every site's."""
    report = flow_report(_snapshot(BRND=Pause("BRND", "quota", AT)), {"TUTO": 4, "BRND": 0}, BOOK)
    assert list(report["sites"]) == ["TUTO", "BRND", "OLD"]
    tuto, brnd, old = (report["sites"][s] for s in ("TUTO", "BRND", "OLD"))
    assert tuto == {
        "waiting": {"high": 1, "normal": 0, "bulk": 7},
        "dispatched": 1,
        "in_flight": 4,
        "max_in_flight": 4,
        "paused": None,
    }
    assert brnd["max_in_flight"] is None
    assert brnd["paused"] == {
        "reason": "quota",
        "since": "2026-05-28T20:26:40.000+00:00",
        "every_site": False,
    }
    assert old["waiting"] == {"high": 0, "normal": 3, "bulk": 0}
    assert [p["site"] for p in report["pauses"]] == ["BRND"]
    every = flow_report(_snapshot(every=Pause(EVERY_SITE, "", AT)), {}, NO_DEFAULT)
    assert list(every["sites"]) == ["default", "BRND", "TUTO", "OLD"]  # no default: TUTO is one
    assert all(site["paused"]["every_site"] for site in every["sites"].values())


def test_the_flows_text_is_a_line_per_site():
    report = flow_report(_snapshot(BRND=Pause("BRND", "quota", AT)), {"TUTO": 4}, BOOK)
    assert flow_lines(report)[:2] == [
        "flow TUTO       waiting high=1 normal=0 bulk=7  dispatched=1  in flight=4 (cap 4)",
        "flow BRND       waiting high=0 normal=0 bulk=0  dispatched=0  in flight=0 (cap none)"
        f"  PAUSED since {SINCE}: quota",
    ]
    idle = FlowSnapshot(AT, {}, {}, {}, {EVERY_SITE: Pause(EVERY_SITE, "", AT)})
    assert flow_lines(flow_report(idle, {}, SiteBook(None, ()))) == [
        "flow            every site PAUSED"
    ]


@pytest.mark.parametrize(
    ("text", "given", "batch", "used"),
    [
        ('{"body": {}}', None, "bulk", "bulk"),
        ('{"body": {}, "priority": ""}', "", "bulk", "bulk"),
        ('{"body": {}, "priority": null}', None, "high", "high"),
        ('{"body": {}, "priority": "normal"}', "normal", "bulk", "normal"),
        ('{"body": {}, "priority": 3}', 3, "bulk", 3),  # checked (and refused) by prepare
    ],
)
def test_a_batch_lines_priority_wins_over_the_batchs(text: str, given: Any, batch: str, used: Any):
    """A line's priority is kept as given; none (or "") is the batch's."""
    line = parse(1, text)
    assert line.priority == given
    assert line.priority_or(batch) == used


def test_a_cancelled_request_reads_as_what_its_cancel_did():
    """``status``'s state and the list's detail of a cancelled request say what the cancel did
    and why; a stopped one shows its status."""
    message = "cancelled before it was registered; reason: not needed"
    cancelled = Record(request_id="r", state=State.CANCELLED, version=3, error_message=message)
    assert state_text(cancelled) == f"cancelled ({message})"
    assert detail(cancelled) == message
    stopped = Record(request_id="s", state=State.STOPPED, version=5, job_id="7", status="WM200")
    assert state_text(stopped).startswith("stopped (job 7, WM200")


@pytest.mark.parametrize(
    ("stage", "code", "message", "said"),
    [
        ("submit", "A1000", "A1000: unknown storage", "submit A1000: unknown storage"),
        ("submit", "A1000", "unknown storage", "submit A1000: unknown storage"),
        ("", "A1003", "A1003: bad key", "A1003: bad key"),
        ("packaging", "WM900013", "input not found", "packaging WM900013: input not found"),
    ],
)
def test_a_failure_names_its_stage_and_code_once(stage: str, code: str, message: str, said: str):
    """A failed request's detail: ``<stage> <code>: <message>``, the code not said twice when
    the message starts with it, no stray space without a stage."""
    failed = Record(
        request_id="f",
        state=State.FAILED,
        version=4,
        error_stage=stage,
        error_code=code,
        error_message=message,
    )
    assert detail(failed) == said
    assert state_text(failed) == f"failed ({said})"
