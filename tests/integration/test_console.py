"""``pallycon-pack console`` as an operator opens it: a real Chromium (headless) on the page of a
real console process, over a real stack (Redis, worker, emulator) holding known requests: two
completed, one failed for a missing input file (WM900013), one with a hostile metadata.

The browser is the Chromium or Chrome :func:`support.browser.find_browser` finds (Playwright's
own download, else one on ``PATH``), driven by Playwright. Without one the browser tests skip with
one line saying how to get one; on CI (``CI`` set: ``.ci/run`` sets it, and installs Debian's
``chromium``) they fail instead, so CI never skips them.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from pallycon_pack.web import asgi
from pallycon_pack.web.console.app import create_app
from pallycon_pack.web.console.auth import MIN_TOKEN
from pallycon_producers.api import Producer
from pallycon_store.events import EventType, State, event
from pallycon_store.failures import explain
from pallycon_store.keys import Keys
from pallycon_store.overview import Overview
from pallycon_store.record import Fields
from pallycon_store.records import Change
from pallycon_store.sites import announce
from pallycon_store.wiring import Store
from support.browser import MISSING, find_browser, on_ci, playwright_browser
from support.env import clean_env
from support.processes import ServerProcess, cli, start_server
from support.queue import announce_sites
from support.samples import REGION
from support.stack import Stack
from support.webhook_outbox import GONE, known_outbox

pytestmark = pytest.mark.integration

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
PROBE = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'
#: Where the test leaves its screenshot of the page (docs/console.png is a copy of one).
SHOT = Path(__file__).resolve().parents[2] / "build" / "console.png"


@pytest.fixture(scope="session")
def chromium() -> str:
    """The browser to drive; none: the test skips with :data:`MISSING` (fails on CI). Session
    scoped, so that a browser test skips before the stack starts."""
    found = find_browser(os.environ.get("PATH"), playwright_browser())
    if found is None:
        if on_ci(os.environ):
            pytest.fail(f"{MISSING} (CI is set: the browser tests must run)", pytrace=False)
        pytest.skip(MISSING)
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The known requests, final; a hostile metadata written on one, as a producer might."""
    root = tmp_path_factory.mktemp("console")
    inputs = root / "data" / "my-bucket" / "in"
    inputs.mkdir(parents=True)
    with Stack.start(
        root / "stack", "--data-dir", str(root / "data"), "--job-seconds", "0.3"
    ) as running:
        running.start_workers(1)
        ids = []
        for request_id, content_id in [("ok-1", "one"), ("ok-2", "two"), ("bad-1", "gone")]:
            if content_id != "gone":
                (inputs / f"{content_id}.mp4").write_bytes(b"video")
            body = running.body(content_id)
            body["storage"]["input"]["contents_path"] = [f"in/{content_id}.mp4"]
            ids.append(running.producer.submit(body, request_id))
        final = running.wait_final(ids, timeout=60)
        assert [final[i].state for i in ids] == [State.COMPLETED] * 2 + [State.FAILED]
        client = redis.Redis.from_url(running.settings.redis_url)
        key = Keys(running.settings.key_prefix).request("ok-2")
        client.hset(key, "metadata", json.dumps({"note": PROBE}))
        yield running


@pytest.fixture(scope="module")
def console(stack: Stack) -> Iterator[ServerProcess]:
    env = clean_env(stack.settings.environment())
    server = start_server("console", "--port", "0", env=env, cwd=stack.root)
    yield server
    server.stop()


@contextmanager
def browser_page(chromium: str, url: str) -> Iterator[tuple[Any, list[str]]]:
    """The headless ``chromium`` (Playwright) on ``url``: the page, and the errors it logs
    (uncaught exceptions and console errors), which a test expects to stay empty."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(url)
            yield page, errors
        finally:
            browser.close()


def test_the_page_in_a_browser(chromium: str, stack: Stack, console: ServerProcess):
    """Counts, the chart, the failure's code and meaning, a timeline after a click (a failed
    request's record with its code's meaning), search by id and by state; the hostile metadata
    shows as text and runs nothing."""
    from playwright.sync_api import expect

    with browser_page(chromium, console.url + "/") as (page, errors):
        expect(page.locator("#counts [data-state=completed] b")).to_have_text("2")
        expect(page.locator("#counts [data-state=failed] b")).to_have_text("1")
        expect(page.locator("#counts [data-state=accepted] b")).to_have_text("0")
        expect(page.locator("#sitebox")).to_be_hidden()  # one site: no filter, no column
        expect(page.locator("#webhooks")).to_be_hidden()  # no endpoint: no webhook panel
        expect(page.locator("#list tr td.sitecol").first).to_be_hidden()
        failure = page.locator("#failures tr[data-code=WM900013] td")
        expect(failure).to_have_text(["WM900013", "1", explain("WM900013")])
        assert "Download failed" in explain("WM900013")
        expect(page.locator("#chart rect[data-kind=completed]")).not_to_have_count(0)
        expect(page.locator("#chart rect[data-kind=failed]")).to_have_count(1)
        expect(page.locator("#list tr")).to_have_count(3)
        # newest first; a tie as Redis orders it (ZREVRANGE: the greater id first)
        entered = {i: _entered(stack, i) for i in ("ok-1", "ok-2", "bad-1")}
        newest_first = sorted(entered, key=lambda i: (entered[i], i), reverse=True)
        expect(page.locator("#list tr td:first-child")).to_have_text(newest_first)

        page.locator("#list tr[data-id=bad-1]").click()
        expect(page.locator("#tltitle")).to_have_text("Timeline of bad-1")
        types = page.locator("#events tr[data-type]")
        expect(types.first).to_have_attribute("data-type", "accepted")
        expect(types.last).to_have_attribute("data-type", "failed")
        expect(types.last).to_contain_text("code=WM900013")
        meaning = page.locator("#timeline tr", has=page.locator("th", has_text="error_meaning"))
        expect(meaning.locator("td")).to_have_text(explain("WM900013", "packaging"))

        page.locator("#q").fill("OK-")  # any case
        expect(page.locator("#list tr")).to_have_count(2)
        page.locator("#q").fill("")
        page.locator("#state").select_option("failed")
        expect(page.locator("#list tr")).to_have_count(1)
        expect(page.locator("#list tr").first).to_have_attribute("data-id", "bad-1")
        page.locator("#state").select_option("")
        expect(page.locator("#list tr")).to_have_count(3)

        page.locator("#list tr[data-id=ok-2]").click()
        expect(page.locator("#timeline pre")).to_have_text(
            json.dumps({"note": PROBE}, separators=(",", ":"))
        )
        assert page.evaluate("window.__xss") is None
        assert page.locator("#timeline img, #timeline script").count() == 0
        expect(page.locator("#error")).to_be_hidden()
        SHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOT), full_page=True)
        assert errors == []


def test_the_api_and_its_headers(stack: Stack, console: ServerProcess):
    """The JSON endpoints (a failed request's record says what its code means, after its
    message) and the page's headers; only localhost names answer."""
    with httpx.Client(base_url=console.url, timeout=10) as http:
        page = http.get("/")
        assert page.status_code == 200
        assert "script-src 'sha256-" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        summary = http.get("/api/summary").json()
        assert summary["counts"] == {
            "accepted": 0, "submitting": 0, "submitted": 0, "completed": 2, "failed": 1,
            "cancelled": 0, "stopped": 0,
        }  # fmt: skip
        assert summary["sites"] == {stack.settings.site_id: summary["counts"]}
        assert len(summary["chart"]["completed"]) == 60
        assert sum(summary["chart"]["failed"]) == 1
        shown = http.get("/api/request", params={"id": "ok-2"}).json()
        assert shown["record"]["metadata"] == {"note": PROBE}
        assert [e["type"] for e in shown["events"]][-1] == "completed"
        assert "error_meaning" not in shown["record"]
        failed = http.get("/api/request", params={"id": "bad-1"}).json()["record"]
        assert failed["error_meaning"] == explain("WM900013", "packaging")
        assert list(failed).index("error_meaning") == list(failed).index("error_message") + 1
        assert http.get("/api/request", params={"id": "nope"}).status_code == 404
        assert http.get("/api/requests", params={"state": "<x>"}).status_code == 400
        assert http.get("/api/requests", params={"limit": "x"}).status_code == 400
        huge = http.get("/api/requests", params={"q": "x" * 5000, "limit": "99999"})
        assert (huge.status_code, huge.json()) == (200, [])
        rebound = http.get("/api/summary", headers={"Host": "evil.example:80"})
        assert rebound.status_code == 403  # DNS rebinding: only localhost names answer


def _entered(stack: Stack, request_id: str) -> float:
    """When the request entered its state, as its state's index holds it."""
    keys, records = Keys(stack.settings.key_prefix), stack.producer.records
    record = records.get(request_id)
    assert record is not None
    client = redis.Redis.from_url(stack.settings.redis_url)
    score = client.zscore(keys.state_index(record.state.value), request_id)
    assert score is not None
    return float(score)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_refusals_are_one_line(stack: Stack, tmp_path: Path):
    env = clean_env(stack.settings.environment())
    anywhere = "0.0.0.0"  # noqa: S104 - refused without a token: what is tested
    off_loopback = cli("console", "--host", anywhere, "--port", "0", env=env, cwd=tmp_path)
    assert off_loopback.returncode == 2
    assert off_loopback.stderr.decode().count("\n") == 1
    assert "PALLYCON_CONSOLE_TOKEN" in off_loopback.stderr.decode()
    short = clean_env(env, PALLYCON_CONSOLE_TOKEN="short")
    weak = cli("console", "--port", "0", env=short, cwd=tmp_path)
    assert (weak.returncode, weak.stderr.decode().count("\n")) == (2, 1)
    no_redis = clean_env(env, PALLYCON_REDIS_URL=f"redis://127.0.0.1:{_free_port()}/0")
    down = cli("console", "--port", "0", env=no_redis, cwd=tmp_path)
    assert down.returncode == 3
    assert down.stderr.decode().startswith("Error: Redis at redis://127.0.0.1:")
    assert down.stderr.decode().count("\n") == 1
    assert b"Traceback" not in down.stderr + down.stdout


def _serving(app: Any) -> Any:
    return asgi.running(asgi.make_server(app, "127.0.0.1", 0, settings_prefix="PALLYCON_CONSOLE"))


def test_token_and_redis_down_in_process(stack: Stack):
    """The token: header, cookie from /?token=, or 401; an unreadable record: its one-line
    reason; Redis gone: a 503 with one line."""
    keys = Keys(stack.settings.key_prefix)
    client = redis.Redis.from_url(stack.settings.redis_url, decode_responses=True)
    live = Overview(client, keys, default_site=None)
    token = "t" * MIN_TOKEN
    with (
        _serving(create_app(live, token, loopback_only=False)) as url,
        httpx.Client(base_url=url, timeout=10) as http,
    ):
        assert http.get("/api/summary").status_code == 401
        assert http.get("/").status_code == 401
        assert http.get("/?token=wrong").status_code == 401
        bearer = http.get("/api/summary", headers={"Authorization": f"Bearer {token}"})
        assert bearer.json()["counts"]["completed"] == 2
        opened = http.get(f"/?token={token}")
        assert (opened.status_code, opened.headers["location"]) == (303, "/")
        assert "httponly" in opened.headers["set-cookie"].lower()
        http.cookies = opened.cookies
        assert http.get("/api/summary").status_code == 200  # the cookie now
        assert token not in http.get("/").text
    # A record this version cannot read (another prefix: the stack's requests stay as they are)
    other = Keys("unreadable")
    live.redis.hset(other.request("odd"), mapping={"state": "bogus", "version": "1"})
    live.redis.zadd(other.state_index("failed"), {"odd": time.time()})
    with _serving(
        create_app(Overview(live.redis, other, default_site=None), None, loopback_only=False)
    ) as url:
        summary = httpx.get(url + "/api/summary", timeout=10).json()
        assert summary["counts"]["failed"] == 1
        assert summary["failures_error"] == ("1 failed record(s) this version cannot read left out")
        assert summary["failures"] == []
        listed = httpx.get(url + "/api/requests", timeout=10)
        assert listed.status_code == 200  # the record is left out of the list
        assert "odd" not in listed.text
    dead = redis.Redis(port=_free_port(), socket_connect_timeout=1, decode_responses=True)
    with _serving(
        create_app(Overview(dead, keys, default_site=None), None, loopback_only=True)
    ) as url:
        answer = httpx.get(url + "/api/summary", timeout=10)
        assert answer.status_code == 503
        assert "is it running and reachable?" in answer.json()["error"]
        assert "\n" not in answer.json()["error"]


def test_the_site_filter_in_a_browser(chromium: str, stack: Stack, tmp_path: Path):
    """Requests of two sites (under a prefix of their own, which no worker reads: they stay
    accepted): the page offers a site filter and a site column; the filter narrows the counts
    and the list to one site."""
    from playwright.sync_api import expect

    settings = stack.settings.model_copy(update={"key_prefix": f"t{os.urandom(4).hex()}"})
    default = settings.site_id
    assert default is not None
    producer = Producer.from_settings(settings)
    announce_sites(producer, default, "BRND")  # as workers serving both sites do
    producer.submit(stack.body("site-d"), "site-d")
    for n in range(2):
        producer.submit(stack.body(f"site-b{n}"), f"site-b{n}", site_id="BRND")
    env = clean_env(settings.environment())
    server = start_server("console", "--port", "0", env=env, cwd=tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            summary = http.get("/api/summary", params={"site": "BRND"}).json()
            assert summary["counts"]["accepted"] == 2
            assert {name: c["accepted"] for name, c in summary["sites"].items()} == {
                default: 1,
                "BRND": 2,
            }
            listed = http.get("/api/requests", params={"site": default}).json()
            assert [(r["request_id"], r["site"]) for r in listed] == [("site-d", default)]
            found = http.get("/api/requests", params={"site": "BRND", "q": "site-d"}).json()
            assert found == []  # the exact id, but of another site
            wrong = http.get("/api/requests", params={"site": "NOPE"})
            assert (wrong.status_code, wrong.json()) == (
                400,
                {"error": f"site: one of {default}, BRND"},
            )
        with browser_page(chromium, server.url + "/") as (page, errors):
            expect(page.locator("#sitebox")).to_be_visible()
            expect(page.locator("#site option")).to_have_text(
                ["every site", f"{default} (1)", "BRND (2)"]
            )
            expect(page.locator("#counts [data-state=accepted] b")).to_have_text("3")
            expect(page.locator("#list tr")).to_have_count(3)
            expect(page.locator("#list tr[data-id=site-d] td.sitecol")).to_have_text(default)
            expect(page.locator("#list tr[data-id=site-b0] td.sitecol")).to_be_visible()

            page.locator("#site").select_option("BRND")
            expect(page.locator("#counts [data-state=accepted] b")).to_have_text("2")
            expect(page.locator("#list tr td:first-child")).to_have_text(["site-b1", "site-b0"])
            page.locator("#site").select_option(default)
            expect(page.locator("#counts [data-state=accepted] b")).to_have_text("1")
            expect(page.locator("#list tr td:first-child")).to_have_text(["site-d"])
            page.locator("#site").select_option("")
            expect(page.locator("#list tr")).to_have_count(3)
            expect(page.locator("#error")).to_be_hidden()
            assert errors == []
    finally:
        server.stop()


def test_the_flow_panel_in_a_browser(chromium: str, stack: Stack, tmp_path: Path):
    """Requests waiting by priority on two sites (under a prefix of their own, which no worker
    reads: they stay waiting), one site with a cap and paused with a reason: the flow panel
    shows each site's waiting per priority, in flight against its cap, and the pause (its
    reason, since when, and the pause event); /api/flow says the same."""
    from playwright.sync_api import expect

    settings = stack.settings.model_copy(update={"key_prefix": f"t{os.urandom(4).hex()}"})
    default = settings.site_id
    assert default is not None
    store = Store.of(settings)
    announce(store.redis, store.keys, {default: REGION, "BRND": REGION}, default, {"BRND": 4})
    producer = Producer.from_settings(settings)
    for n in range(2):
        producer.submit(stack.body(f"fl-h{n}"), f"fl-h{n}", priority="high")
    producer.submit(stack.body("fl-b"), "fl-b", priority="bulk")
    for n in range(3):
        producer.submit(stack.body(f"fl-n{n}"), f"fl-n{n}", site_id="BRND", priority="normal")
    paused_at = time.time() - 3 * 3600
    store.flow.pause("BRND", "quota <b>talks</b>", paused_at)
    env = clean_env(settings.environment())
    server = start_server("console", "--port", "0", env=env, cwd=tmp_path)
    try:
        shown = httpx.get(server.url + "/api/flow", timeout=10).json()
        assert shown["priorities"] == ["high", "normal", "bulk"]
        rows = {row["site"]: row for row in shown["sites"]}
        assert list(rows) == [default, "BRND"]
        assert rows[default]["waiting"] == {"high": 2, "normal": 0, "bulk": 1}
        assert (rows[default]["cap"], rows[default]["paused"]) == (0, None)
        assert rows["BRND"]["waiting"] == {"high": 0, "normal": 3, "bulk": 0}
        assert rows["BRND"]["paused"]["reason"] == "quota <b>talks</b>"
        assert rows["BRND"]["paused"]["since"] == pytest.approx(paused_at)
        assert [(e["type"], e["site"]) for e in shown["events"]] == [("paused", "BRND")]

        with browser_page(chromium, server.url + "/") as (page, errors):
            mine, brnd = (page.locator(f"#flowrows tr[data-site={s}]") for s in (default, "BRND"))
            expect(mine.locator("td[data-priority]")).to_have_text(["2", "0", "1"])
            expect(brnd.locator("td[data-priority]")).to_have_text(["0", "3", "0"])
            expect(mine.locator("td.inflight")).to_have_text("0 / no cap")
            expect(brnd.locator("td.inflight")).to_have_text("0 / 4")
            expect(mine.locator("td.paused")).to_have_text("no")
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(paused_at))
            expect(brnd.locator("td.paused")).to_have_text(
                re.compile(rf"^paused since {since} UTC, for 3h 0m: quota <b>talks</b>$")
            )
            assert brnd.locator("td.paused b").count() == 0  # the reason is text
            expect(page.locator("#flowevents tr[data-type=paused] td")).to_have_text(
                [since, "paused", "BRND", "quota <b>talks</b>"]
            )
            expect(page.locator("#error")).to_be_hidden()
            assert errors == []
    finally:
        server.stop()


def test_the_webhooks_panel_in_a_browser(chromium: str, stack: Stack, tmp_path: Path):
    """Endpoints in a known state (under a prefix of their own): one delivering, one failing
    with a delivery 20 minutes old, one disabled by a 410. The panel shows each one's backlog,
    dead letters, last 2xx and state, the totals under it; /api/webhooks says the same."""
    from playwright.sync_api import expect

    settings = stack.settings.model_copy(update={"key_prefix": f"t{os.urandom(4).hex()}"})
    now = time.time()
    ids = known_outbox(Store.of(settings), now, url="https://{name}.example.com/<b>hook</b>")
    env = clean_env(settings.environment())
    server = start_server("console", "--port", "0", env=env, cwd=tmp_path)
    try:
        shown = httpx.get(server.url + "/api/webhooks", timeout=10).json()
        rows = {row["id"]: row for row in shown["endpoints"]}
        assert list(rows) == [ids["good"], ids["down"], ids["gone"]]
        assert (rows[ids["good"]]["pending"], rows[ids["good"]]["in_flight"]) == (1, 1)
        assert rows[ids["down"]]["failing_since"] is not None
        assert rows[ids["gone"]]["disabled"]["reason"] == GONE
        assert (shown["delivered"], shown["dead_lettered"]) == (2, 2)

        with browser_page(chromium, server.url + "/") as (page, errors):
            good, down, gone = (
                page.locator(f"#whrows tr[data-endpoint={ids[n]}]")
                for n in ("good", "down", "gone")
            )
            expect(page.locator("#webhooks")).to_be_visible()
            expect(good.locator("td")).to_have_count(8)
            expect(good.locator("td.url")).to_have_text("https://good.example.com/<b>hook</b>")
            assert good.locator("td.url b").count() == 0  # the URL is text
            expect(good.locator("td.pending")).to_have_text("1")
            expect(good.locator("td.inflight")).to_have_text("1")
            expect(good.locator("td.whstate")).to_have_text("ok")
            expect(down.locator("td.oldest")).to_have_text(re.compile(r"^20m \d+s$"))
            expect(down.locator("td.dead")).to_have_text("1")
            expect(down).to_have_class("whfailing")
            expect(down.locator("td.whstate")).to_have_text(re.compile(r"^failing since .* UTC"))
            expect(gone).to_have_class("whdisabled")
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now))
            expect(gone.locator("td.whstate")).to_have_text(f"disabled since {since} UTC: {GONE}")
            expect(gone.locator("td.day")).to_have_text("-")  # never delivered
            expect(page.locator("#whtotals")).to_have_text(
                "delivered 2, dead-lettered 2, replayed 0; attempts 2xx=2 410=1 5xx=1 timeout=1"
            )
            expect(page.locator("#error")).to_be_hidden()
            assert errors == []
    finally:
        server.stop()


#: The widths the page is checked at (a phone, a narrow window, a small laptop, a desktop, a wide
#: screen), each with a height of its kind.
WIDTHS = [(360, 740), (760, 900), (1024, 768), (1440, 900), (1920, 1080)]
#: page.css's breakpoint: narrower than this, one panel per row.
ONE_COLUMN = 1100
#: What the layout test measures on the page, in CSS pixels.
LAYOUT = """() => {
 const box = e => { const r = e.getBoundingClientRect();
  return {left: r.left, right: r.right, top: r.top, height: r.height}; };
 const all = s => [...document.querySelectorAll(s)];
 const line = parseFloat(getComputedStyle(document.querySelector("#list td")).lineHeight);
 return {
  scroll: document.documentElement.scrollWidth, inner: window.innerWidth, line: line,
  sections: all("main > section:not([hidden])").map(box),
  rows: Object.fromEntries(["#list", "#failures", "#flowrows", "#flowevents", "#whrows"].map(
   s => [s, all(s + " tr").map(e => e.getBoundingClientRect().height)])),
  key: all("#list td:first-child, #list .st, #flowrows td:first-child, #whrows td:first-child, #counts .count")
   .map(e => ({text: e.textContent, ...box(e)})),
 };
}"""


def test_the_page_fits_any_width(chromium: str, stack: Stack, tmp_path: Path):
    """From a phone to a wide screen, on requests with long ids, long failure messages and a
    site paused for a long reason: the page never scrolls sideways, its panels stack below
    the breakpoint (two columns above it), a table's row is one or two lines, and the request
    ids, their states, the sites and the counts are in view. Screenshots:
    build/console-<width>.png."""
    from playwright.sync_api import expect

    settings = stack.settings.model_copy(update={"key_prefix": f"t{os.urandom(4).hex()}"})
    default = settings.site_id
    assert default is not None
    producer = Producer.from_settings(settings)
    announce_sites(producer, default, "BRANDEUROPEWEST")
    ids = [str(uuid.UUID(int=n * 0x1234567890ABCDEF1234567)) for n in range(1, 13)]
    for n, request_id in enumerate(ids):
        site = "BRANDEUROPEWEST" if n % 3 == 0 else None
        producer.submit(stack.body(f"content-{n}"), request_id, site_id=site)
    now = time.time()
    message = "Download failed: s3://my-bucket/in/" + "long-folder-name/" * 6 + "movie.mp4"
    for request_id in ids[:3]:
        record = producer.get(request_id)
        assert record is not None
        failed = Fields(
            state=State.FAILED, error_stage="packaging", error_code="WM900013",
            error_message=message, updated_at=now, finished_at=now,
        )  # fmt: skip
        said = event(
            EventType.FAILED, request_id, now, stage="packaging", code="WM900013", message=message
        )
        assert producer.records.apply([Change(record, failed, said, finish=True)]) == [True]
    store = Store.of(settings)
    store.flow.pause("BRANDEUROPEWEST", "quota talks with the vendor " * 4, now - 600)
    long_url = "https://cms.example.com/" + "hooks/" * 12 + "{name}"
    known_outbox(store, now, url=long_url)  # a webhook panel, with long URLs and reasons
    env = clean_env(settings.environment())
    server = start_server("console", "--port", "0", env=env, cwd=tmp_path)
    try:
        with browser_page(chromium, server.url + "/") as (page, errors):
            expect(page.locator("#list tr")).to_have_count(len(ids))
            expect(page.locator("#failures tr[data-code=WM900013]")).to_have_count(1)
            page.locator(f"#list tr[data-id='{ids[0]}']").click()
            expect(page.locator("#events tr[data-type=failed]")).to_have_count(1)
            measured = {}
            SHOT.parent.mkdir(exist_ok=True)
            for width, height in WIDTHS:  # every screenshot first, to look at when one fails
                page.set_viewport_size({"width": width, "height": height})
                page.screenshot(path=str(SHOT.parent / f"console-{width}.png"), full_page=True)
                measured[width] = page.evaluate(LAYOUT)
            assert errors == []
        for width, facts in measured.items():
            _fits(facts, width)
    finally:
        server.stop()


def _fits(facts: dict[str, Any], width: int) -> None:
    """The layout ``facts`` (:data:`LAYOUT`) of the page at ``width`` are as the test says."""
    assert facts["inner"] == width
    assert facts["scroll"] <= width, f"{width}px: the page scrolls sideways"
    sections = facts["sections"]
    assert min(s["left"] for s in sections) >= 0, width
    assert max(s["right"] for s in sections) <= width, width
    lefts = {round(s["left"]) for s in sections}
    if width < ONE_COLUMN:
        assert len(lefts) == 1, f"{width}px: panels side by side"
        tops = [s["top"] for s in sections]
        assert tops == sorted(set(tops)), f"{width}px: panels overlap"
    else:
        assert len(lefts) == 2, f"{width}px: panels not in two columns"
    most = 2 * facts["line"] + 12  # two lines, the cell's padding and border
    for table, heights in facts["rows"].items():
        assert heights, table
        assert max(heights) <= most, f"{width}px: {table} rows {heights}"
    for key in facts["key"]:
        assert key["text"], (width, key)
        assert key["left"] >= 0, (width, key)
        assert key["right"] <= width, (width, key)
