"""``pallycon-pack console``: the operators' read-only web page, and the JSON it reads.

One HTML page (:data:`PAGE`: inline CSS and JS, nothing fetched from elsewhere) and a few JSON
endpoints under ``/api/``, all read from the state indexes (:class:`store.overview.Overview`):

- ``/api/summary?site=``: requests per state, completions and failures per minute over the last
  hour, and the failures of that hour by code with each code's meaning
  (:func:`pallycon_store.failures.explain`); with ``site``, of that site only; ``sites``: each
  site's requests per state;
- ``/api/requests?state=&q=&limit=&site=``: requests newest first, by state, part of their id
  and site;
- ``/api/request?id=``: one request's record (with its error code's meaning) and its timeline
  of result events.

Nothing is written. It listens on 127.0.0.1 by default; on any other address it refuses to start
without ``PALLYCON_CONSOLE_TOKEN``, and a set token is required on every request (a
``Authorization: Bearer`` header, or the cookie set by opening ``/?token=...`` once). Producer
input (ids, messages, metadata) reaches the page as JSON and is shown as text only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import time
from typing import TYPE_CHECKING, Any

import click
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from pallycon_pack.errors import EXIT_INVALID, Failure
from pallycon_pack.present.records import STATES, explained

if TYPE_CHECKING:
    from collections.abc import Callable

    from pallycon_store.overview import Overview
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

log = logging.getLogger("pallycon_pack.console")

ENV_PREFIX = "PALLYCON_CONSOLE_"
#: The shortest token accepted (characters).
MIN_TOKEN = 16
#: The window of the chart and of the failures by code (seconds), and its buckets.
WINDOW = 3600.0
BUCKET = 60.0
#: Most requests one list returns; records read to search ids by a part of them.
MAX_LIST = 500
SEARCH_SCAN = 2000
COOKIE = "pallycon_console"
#: Seconds a Redis command may take before the page says Redis is unavailable.
REDIS_TIMEOUT = 5.0
LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


class ConsoleSettings(BaseSettings):
    """The console's own settings (``PALLYCON_CONSOLE_*``, the environment or ``.env``)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    host: str = Field(default="127.0.0.1", description="Console listen address.")
    port: int = Field(default=8780, ge=0, le=65535, description="Console port.")
    token: SecretStr | None = Field(
        default=None, description="Required on every request; needed to listen off loopback."
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a listen address or a Host header's name) is this machine only."""
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_token(host: str, token: SecretStr | None) -> str | None:
    """The token the console requires (None: none); a one-line Failure when ``host`` is off
    loopback without one, or the token is too short to be a secret."""
    secret = token.get_secret_value() if token is not None else ""
    if secret and len(secret) < MIN_TOKEN:
        raise Failure(
            f"PALLYCON_CONSOLE_TOKEN is too short: use at least {MIN_TOKEN} random characters",
            EXIT_INVALID,
        )
    if not secret and not is_loopback(host):
        raise Failure(
            f"the console serves {host}, not only this machine: set PALLYCON_CONSOLE_TOKEN "
            "(16+ random characters) or listen on 127.0.0.1",
            EXIT_INVALID,
        )
    return secret or None


# --- What the page shows: pure -----------------------------------------------------------------


def record_row(record: Any, default_site: str = "") -> dict[str, Any]:
    """A request as the list shows it (its site: the one it named, else ``default_site``)."""
    detail = ""
    if record.error_code:
        detail = f"{record.error_code}: {record.error_message}"
    elif record.status:
        detail = f"{record.status} {record.status_meaning}".strip()
    return {
        "request_id": record.request_id,
        "state": record.state.value,
        "updated_at": record.updated_at or record.created_at,
        "job_id": record.job_id,
        "site": record.site_id or default_site,
        "detail": detail[:300],
    }


def site_of(overview: Overview, label: str) -> str | None:
    """A ``site`` parameter (a site's name as the page shows it; "" for every site) as
    :class:`Overview` takes it; :class:`pallycon_config.UnknownSite` (a 400 naming the sites)
    for one it does not know."""
    return overview.site_filter(label)


def search(
    overview: Overview, state: str | None, query: str, limit: int, site: str | None = None
) -> list[dict[str, Any]]:
    """Up to ``limit`` requests newest first, in ``state`` (any when None) and of ``site`` (as
    :meth:`Overview.list`) whose id contains ``query`` (any case): among the newest
    :data:`SEARCH_SCAN`, plus the request whose id it is exactly."""
    from pallycon_store.events import State

    wanted = State(state) if state else None
    book = overview.book()
    default = book.label("")
    if not query:
        return [record_row(r, default) for r in overview.list(wanted, limit=limit, site=site)]
    needle = query.lower()
    found = []
    exact = overview.get(query)
    mine = () if site is None else book.stored_forms(site)
    if (
        exact is not None
        and (wanted is None or exact.state == wanted)
        and (site is None or exact.site_id in mine)
    ):
        found.append(exact)
    for record in overview.list(wanted, limit=SEARCH_SCAN, site=site):
        if len(found) >= limit:
            break
        if needle in record.request_id.lower() and record.request_id != query:
            found.append(record)
    return [record_row(r, default) for r in found[:limit]]


def summary(overview: Overview, now: float, site: str | None = None) -> dict[str, Any]:
    """Counts by state, the last hour per minute, and its failures by code (or why they cannot
    be read: a failed record this version cannot decode): of ``site`` (as
    :meth:`Overview.counts`; None: every site); and each site's counts by state."""
    from pallycon_store.events import State
    from pallycon_store.failures import explain

    since = now - WINDOW
    skipped = overview.unreadable
    try:
        failures, unreadable = overview.failures_by_code(since, site=site), ""
    except (ValueError, TypeError, KeyError) as exc:  # a failed record this version cannot read
        failures, unreadable = {}, " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
    if overview.unreadable > skipped:  # left out of the list (store.overview skips them)
        unreadable = (
            f"{overview.unreadable - skipped} failed record(s) this version cannot read left out"
        )
    return {
        "now": now,
        "counts": {state.value: n for state, n in overview.counts(site).items()},
        "sites": {
            name: {state.value: n for state, n in counts.items()}
            for name, counts in overview.counts_of_sites().items()
        },
        "chart": {
            "since": since,
            "bucket": BUCKET,
            "completed": overview.per_bucket(State.COMPLETED, since, now, BUCKET, site),
            "failed": overview.per_bucket(State.FAILED, since, now, BUCKET, site),
        },
        "failures": [
            {"code": code, "count": n, "meaning": explain(code)} for code, n in failures.items()
        ],
        "failures_error": unreadable,
    }


# --- The app -----------------------------------------------------------------------------------


def create_app(overview: Overview, token: str | None, loopback_only: bool) -> Starlette:
    """The console's ASGI app over ``overview``; every request must carry ``token`` when set,
    and name this machine in its Host header when ``loopback_only`` (no DNS rebinding)."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    handlers = _Handlers(overview, token, loopback_only)
    return Starlette(
        routes=[
            Route("/", handlers.page),
            Route("/api/summary", handlers.api_summary),
            Route("/api/requests", handlers.api_requests),
            Route("/api/request", handlers.api_request),
            Route("/favicon.ico", lambda _: Response(status_code=204)),  # none, and no 404
        ]
    )


HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def _json(body: Any, status: int = 200) -> Response:
    from starlette.responses import JSONResponse

    return JSONResponse(body, status, HEADERS)


class _Handlers:
    """The endpoints: each checks the caller, reads, and answers JSON (503 when Redis fails)."""

    def __init__(self, overview: Overview, token: str | None, loopback_only: bool) -> None:
        self.overview = overview
        self.token = token
        self.loopback_only = loopback_only

    def refused(self, request: Request) -> Response | None:
        if self.loopback_only and not is_loopback(request.url.hostname or ""):
            return _json({"error": "this console answers to localhost only"}, 403)
        if self.token is None:
            return None
        given = request.cookies.get(COOKIE, "")
        bearer = request.headers.get("authorization", "")
        if bearer.lower().startswith("bearer "):
            given = bearer[7:].strip()
        if hmac.compare_digest(given.encode(), self.token.encode()):
            return None
        return _json({"error": "a token is required: open /?token=<PALLYCON_CONSOLE_TOKEN>"}, 401)

    def answer(self, request: Request, read: Callable[[], tuple[Any, int]]) -> Response:
        import redis
        from pallycon_config import UnknownSite

        from pallycon_pack.problems import redis_problem

        refused = self.refused(request)
        if refused is not None:
            return refused
        try:
            body, status = read()
        except redis.RedisError as exc:
            return _json({"error": redis_problem(exc)}, 503)
        except UnknownSite as exc:
            return _json({"error": "site: one of " + ", ".join(exc.known)}, 400)
        except (ValueError, TypeError, KeyError) as exc:  # a record this version cannot read
            message = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            log.warning("console: a request's record cannot be read: %s", message)
            return _json({"error": f"a request's record in Redis cannot be read: {message}"}, 500)
        return _json(body, status)

    def page(self, request: Request) -> Response:
        from starlette.responses import HTMLResponse, RedirectResponse

        given = request.query_params.get("token")
        if self.token is not None and given is not None:
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return _json({"error": "wrong token"}, 401)
            back = RedirectResponse("/", 303, HEADERS)
            back.set_cookie(COOKIE, self.token, httponly=True, samesite="strict", path="/")
            return back
        refused = self.refused(request)
        if refused is not None:
            return refused
        return HTMLResponse(PAGE, headers=HEADERS | {"Content-Security-Policy": CSP})

    def api_summary(self, request: Request) -> Response:
        label = request.query_params.get("site", "")[:100]

        def read() -> tuple[Any, int]:
            return summary(self.overview, time.time(), site_of(self.overview, label)), 200

        return self.answer(request, read)

    def api_requests(self, request: Request) -> Response:
        params = request.query_params
        state = params.get("state") or None
        if state is not None and state not in STATES:
            return _json({"error": "state: one of " + ", ".join(STATES)}, 400)
        try:
            limit = min(max(int(params.get("limit", "100")), 1), MAX_LIST)
        except ValueError:
            return _json({"error": "limit: a whole number"}, 400)
        query = params.get("q", "").strip()[:200]
        label = params.get("site", "")[:100]

        def read() -> tuple[Any, int]:
            site = site_of(self.overview, label)
            return search(self.overview, state, query, limit, site), 200

        return self.answer(request, read)

    def api_request(self, request: Request) -> Response:
        request_id = request.query_params.get("id", "")

        def read() -> tuple[Any, int]:
            record = self.overview.get(request_id) if request_id else None
            if record is None:
                return {"error": "no such request (or its record expired)"}, 404
            return {"record": explained(record), "events": self.overview.timeline(request_id)}, 200

        return self.answer(request, read)


@click.command()
@click.option("--host", help="Listen address (default: PALLYCON_CONSOLE_HOST, 127.0.0.1).")
@click.option("--port", type=int, help="Port (default: PALLYCON_CONSOLE_PORT, 8780; 0 = any).")
def console(host: str | None, port: int | None) -> None:
    """Serve the operators' read-only web console: counts, failures, requests, timelines.

    Off 127.0.0.1 (--host) it needs PALLYCON_CONSOLE_TOKEN; then open /?token=<token> once.
    """

    from pallycon_config import load_settings
    from pallycon_config.settings import read_settings
    from pallycon_store.wiring import Store

    from pallycon_pack.web import asgi

    options = read_settings(
        ConsoleSettings, lambda field: f"{ENV_PREFIX}{field.upper()}", {"host": host, "port": port}
    )
    token = check_token(options.host, options.token)
    settings = load_settings()
    # A deadline on every command: a stalled Redis is a 503.
    store = Store.of(settings, deadline=REDIS_TIMEOUT)
    store.redis.ping()  # a wrong URL or password: one line now, not a page of errors later
    overview = store.overview()
    app = create_app(overview, token, loopback_only=token is None)
    server = asgi.make_server(app, options.host, options.port, settings_prefix="PALLYCON_CONSOLE")

    def ready(url: str) -> None:
        click.echo(f"console listening on {url}" + (" (token required)" if token else ""))

    from pallycon_config.logs import configure, log_start

    configure(settings.log_level)
    log_start("console", options, settings)
    asgi.serve(server, ready)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pallycon-pack console</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:16px;align-items:baseline}
header h1{font-size:17px;margin:0}#updated{opacity:.7;font-size:12px}
main{padding:16px 20px;display:grid;grid-template-columns:1fr 1fr;gap:16px}
section{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:12px 14px;min-width:0}
section.wide{grid-column:1/3}h2{font-size:14px;margin:0 0 8px}
#counts{display:flex;gap:10px;flex-wrap:wrap}
.count{border:1px solid #dde1e8;border-radius:6px;padding:6px 12px;min-width:90px}
.count b{display:block;font-size:22px}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:4px 6px;
border-bottom:1px solid #eef0f4;vertical-align:top;overflow-wrap:anywhere}
th{font-weight:600;font-size:12px;color:#5a6275;white-space:nowrap}
.nw{white-space:nowrap}#list td:first-child{min-width:6em}
#list tr{cursor:pointer}#list tr:hover{background:#eef3ff}#list tr.sel{background:#dce7ff}
.st{font-size:12px;padding:1px 6px;border-radius:9px;background:#eef0f4}
.st-completed{background:#d9f2df}.st-failed{background:#fbdada}.st-submitted{background:#e3ecff}
#error{display:none;background:#fbdada;color:#7a1010;padding:8px 20px}
input,select{font:inherit;padding:3px 6px}pre{white-space:pre-wrap;overflow-wrap:anywhere;
margin:0;font-size:12px}.muted{color:#6b7386}.legend span{margin-right:12px}
.sw{display:inline-block;width:10px;height:10px;margin-right:4px}
.sitecol{display:none}body.multi .sitecol{display:table-cell}#sitebox{font-size:13px}
</style></head><body>
<header><h1>pallycon-pack console</h1><label id="sitebox" hidden>site
<select id="site"><option value="">every site</option></select></label>
<span id="updated"></span></header>
<div id="error" role="alert"></div>
<main>
<section class="wide"><h2>Requests by state</h2><div id="counts"></div></section>
<section><h2>Last hour, per minute</h2>
<div class="legend"><span><i class="sw" style="background:#2e9d4f"></i>completed</span>
<span><i class="sw" style="background:#d23a3a"></i>failed</span></div>
<svg id="chart" width="100%" height="160" viewBox="0 0 600 160" role="img"
aria-label="completions and failures per minute"></svg></section>
<section><h2>Failures in the last hour, by code</h2>
<table><thead><tr><th>code</th><th>count</th><th>meaning</th></tr></thead>
<tbody id="failures"></tbody></table></section>
<section><h2>Requests</h2>
<div><input id="q" type="search" placeholder="request id contains..." maxlength="200">
<select id="state"><option value="">any state</option></select></div>
<table><thead><tr><th>request</th><th>state</th><th class="sitecol">site</th>
<th>updated (UTC)</th><th>detail</th></tr>
</thead><tbody id="list"></tbody></table><p id="listnote" class="muted"></p></section>
<section><h2 id="tltitle">Timeline</h2><div id="timeline" class="muted">Click a request.</div>
</section>
</main>
<script>
"use strict";
const STATES=["accepted","submitting","submitted","completed","failed"];
const $=id=>document.getElementById(id);
function el(tag,text,cls){const e=document.createElement(tag);
 if(text!==undefined&&text!==null)e.textContent=String(text);if(cls)e.className=cls;return e;}
function clear(e){while(e.firstChild)e.removeChild(e.firstChild);}
function when(epoch){
 return epoch?new Date(epoch*1000).toISOString().slice(0,19).replace("T"," "):"-";}
async function get(url){
 const r=await fetch(url,{credentials:"same-origin",headers:{"Accept":"application/json"}});
 let body=null;try{body=await r.json();}catch(e){}
 if(!r.ok)throw new Error((body&&body.error)||("HTTP "+r.status));return body;}
function problem(e){const b=$("error");if(e){b.textContent=String(e.message||e);
 b.style.display="block";}else{b.style.display="none";}}
for(const s of STATES){const o=el("option",s);o.value=s;$("state").appendChild(o);}
function drawCounts(counts){const c=$("counts");clear(c);for(const s of STATES){
 const d=el("div",null,"count");d.dataset.state=s;d.appendChild(el("b",counts[s]||0));
 d.appendChild(el("span",s));c.appendChild(d);}}
const NS="http://www.w3.org/2000/svg";
function svg(tag,attrs,text){const e=document.createElementNS(NS,tag);
 for(const k in attrs)e.setAttribute(k,attrs[k]);if(text!==undefined)e.textContent=text;return e;}
function drawChart(ch){const g=$("chart");clear(g);const W=600,H=160,L=34,B=20,T=8;
 const n=ch.completed.length;if(!n)return;
 const top=Math.max(1,...ch.completed,...ch.failed);const w=(W-L-4)/n;
 const y=v=>H-B-(H-B-T)*v/top;
 g.appendChild(svg("line",{x1:L,y1:H-B,x2:W,y2:H-B,stroke:"#9aa3b5"}));
 g.appendChild(svg("text",{x:L-4,y:T+8,"text-anchor":"end","font-size":10},String(top)));
 g.appendChild(svg("text",{x:L-4,y:H-B,"text-anchor":"end","font-size":10},"0"));
 for(let i=0;i<n;i++){const x=L+i*w;
  for(const [k,col,dx] of [["completed","#2e9d4f",0],["failed","#d23a3a",w/2]]){const v=ch[k][i];
   if(!v)continue;const r=svg("rect",{x:x+dx,y:y(v),width:Math.max(w/2-0.5,0.5),
   height:H-B-y(v),fill:col,"data-kind":k});
   r.appendChild(svg("title",{},when(ch.since+i*ch.bucket)+" "+k+": "+v));g.appendChild(r);}}
 for(const m of [0,15,30,45,60]){const x=L+(W-L-4)*m/60;
  g.appendChild(svg("text",{x:x,y:H-5,"text-anchor":"middle","font-size":10},
   m===60?"now":"-"+(60-m)+"m"));}
 g.lastChild.setAttribute("text-anchor","end");}
function drawFailures(list,unreadable){const t=$("failures");clear(t);
 if(!list.length){const r=el("tr");const d=el("td",unreadable?"cannot read them: "+unreadable:
  "none","muted");d.colSpan=3;r.appendChild(d);
  t.appendChild(r);return;}
 for(const f of list){const r=el("tr");r.dataset.code=f.code;r.appendChild(el("td",f.code,"nw"));
  r.appendChild(el("td",f.count));r.appendChild(el("td",f.meaning||"-"));t.appendChild(r);}}
let selected=null;
async function loadList(){const p=new URLSearchParams({q:$("q").value,state:$("state").value,
 site:$("site").value,limit:"100"});
 try{const rows=await get("/api/requests?"+p);const t=$("list");clear(t);
  for(const r of rows){const tr=el("tr");tr.dataset.id=r.request_id;
   if(r.request_id===selected)tr.className="sel";
   tr.appendChild(el("td",r.request_id));const s=el("td");
   s.appendChild(el("span",r.state,"st st-"+r.state));s.className="nw";tr.appendChild(s);
   tr.appendChild(el("td",r.site||"-","nw sitecol"));
   tr.appendChild(el("td",when(r.updated_at),"nw"));tr.appendChild(el("td",r.detail||"-"));
   tr.addEventListener("click",()=>show(r.request_id));t.appendChild(tr);}
  $("listnote").textContent=rows.length?rows.length+" shown, newest first":"no requests match";
  problem(null);}catch(e){problem(e);}}
async function show(id){selected=id;for(const tr of $("list").children)
 tr.className=tr.dataset.id===id?"sel":"";const box=$("timeline");
 $("tltitle").textContent="Timeline of "+id;
 try{const d=await get("/api/request?id="+encodeURIComponent(id));clear(box);box.className="";
  const rec=d.record;const meta=el("table");
  for(const k of ["state","job_id","content_id","error_code","error_message","error_meaning",
   "retries","created_at","finished_at"]){if(rec[k]===undefined)continue;const tr=el("tr");
   tr.appendChild(el("th",k));tr.appendChild(el("td",rec[k]));meta.appendChild(tr);}
  if(rec.metadata!==undefined){const tr=el("tr");tr.appendChild(el("th","metadata"));
   const td=el("td");td.appendChild(el("pre",JSON.stringify(rec.metadata)));tr.appendChild(td);
   meta.appendChild(tr);}
  box.appendChild(meta);const ev=el("table");ev.id="events";
  const h=el("tr");for(const c of ["time (UTC)","event","details"])h.appendChild(el("th",c));
  ev.appendChild(h);const skip=new Set(["schema","event_id","type","request_id","ts"]);
  for(const e of d.events){const tr=el("tr");tr.dataset.type=e.type;
   tr.appendChild(el("td",String(e.ts).slice(0,23).replace("T"," ")));
   tr.appendChild(el("td",e.type,"nw"));const rest={};for(const k in e)if(!skip.has(k))rest[k]=e[k];
   tr.appendChild(el("td",Object.entries(rest).map(([k,v])=>k+"="+(typeof v==="object"?
    JSON.stringify(v):v)).join("  ")));ev.appendChild(tr);}
  if(!d.events.length){const tr=el("tr");tr.appendChild(el("td","no events left","muted"));
   ev.appendChild(tr);}box.appendChild(ev);problem(null);}
 catch(e){clear(box);box.className="muted";box.textContent=String(e.message||e);}}
function drawSites(sites){const names=Object.keys(sites);const multi=names.length>1;
 document.body.classList.toggle("multi",multi);$("sitebox").hidden=!multi;
 const box=$("site");const chosen=box.value;while(box.options.length>1)box.remove(1);
 for(const n of names){const total=STATES.reduce((a,k)=>a+(sites[n][k]||0),0);
  const o=el("option",n+" ("+total+")");o.value=n;box.appendChild(o);}
 box.value=names.includes(chosen)?chosen:"";}
async function refresh(){try{const p=new URLSearchParams({site:$("site").value});
 const s=await get("/api/summary?"+p);drawSites(s.sites);drawCounts(s.counts);
 drawChart(s.chart);drawFailures(s.failures,s.failures_error);
 $("updated").textContent="updated "+when(s.now)+" UTC";problem(null);}catch(e){problem(e);}}
let timer=null;function later(){clearTimeout(timer);timer=setTimeout(loadList,250);}
$("q").addEventListener("input",later);$("state").addEventListener("change",loadList);
$("site").addEventListener("change",()=>{refresh();loadList();});
refresh();loadList();setInterval(()=>{refresh();loadList();},10000);
</script></body></html>
"""


def _script_hash(page: str) -> str:
    script = page.split("<script>", 1)[1].split("</script>", 1)[0]
    return base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()


#: Only the page's own script runs; it may fetch from this server only.
CSP = (
    f"default-src 'none'; script-src 'sha256-{_script_hash(PAGE)}'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
