"""docs/BENCHMARKS.md from the results of one benchmark run."""

from __future__ import annotations

from typing import Any

GOALS = {
    "throughput": 0.5,  # pipeline / plain loop, 2 worker processes
    "calls_10k": 1.1,  # API calls per completed job, 10,000 in flight, coalesced
    "latency_callbacks_p99": 0.5,
    "bytes_per_job": 2048,
    "sweep_s": 5.0,
    "flow_live_p99_s": 2.0,  # a live request's registration behind a bulk backfill
    "flow_site_s": 5.0,  # another site's batch behind a backfill, all registered
    "flow_cap_job_times": 2.0,  # a live request's completion with a cap, in job times
    "flow_bulk_share": 0.1,  # bulk's share of the registrations under a high-priority stream
    "webhook_lag_p99_s": 1.0,  # a completed event to its webhook's 2xx
    "webhook_dead_cost": 0.05,  # what an endpoint that never answers adds to the others' lag p99
}

#: The first cell of each flow goal's row (how :func:`splice_flow` finds them).
FLOW_GOALS = (
    "| a live request registered within 2 s (p99) behind a bulk backfill",
    "| another site's batch all registered within 5 s behind a backfill",
    "| with a cap, a live request behind a backfill completes within 2 job times",
    "| bulk keeps at least 10 % of the registrations",
)
FLOW_HEADING = "## 8. Flow control"
#: The first cell of each webhook goal's row (how :func:`splice_webhooks` finds them).
WEBHOOK_GOALS = (
    "| webhook lag p99 under 1 s, a `completed` event to its 2xx",
    "| an endpoint that never answers adds nothing (50 ms at most) to another's webhook lag",
)
WEBHOOK_HEADING = "## 10. Webhook deliveries"


def _ok(good: bool) -> str:
    return "met" if good else "**not met**"


def render(r: dict[str, Any]) -> str:
    m, t, s, sc = r["machine"], r["throughput"], r["signing"], r["scale"]
    calls = {(c["in_flight"], c["coalesced"]): c for c in r["calls"]}
    lat = {x["mode"]: x for x in r["latency"]}
    c10k = calls[(10_000, True)]
    poll = lat["polling"]
    lines = [
        "# Benchmarks",
        "",
        "What a job costs: API calls, latency, Redis memory, throughput. Every figure comes from one",
        "run of `uv run python -m bench` (about 31 minutes), which starts real processes on the",
        "machine (a valkey server, the emulator with faults off, Celery worker processes, the",
        "callback receiver) and writes this file; `build/benchmarks.json` keeps the raw numbers.",
        "Each comparison is measured side by side in the same run. The machine is noisy: where a",
        "figure was run several times, the median is quoted and the runs are listed.",
        "",
        f"Machine: {m['cpus']} cores, Python {m['python']}, {m['platform']}, {m['redis']}. "
        f"Run finished {r['finished']}.",
        "",
        "## Goals",
        "",
        "| Goal | Measured | |",
        "| --- | --- | --- |",
        f"| pipeline throughput at least 50 % of a plain signing loop, 2 worker processes | "
        f"{t['ratio'] * 100:.0f} % | {_ok(t['ratio'] >= GOALS['throughput'])} |",
        f"| at most 1.1 API calls per completed job, 10,000 in flight | "
        f"{c10k['calls_per_job']} | {_ok(c10k['calls_per_job'] <= GOALS['calls_10k'])} |",
        f"| completion latency p99 at most poll interval + 1 s, polling only | "
        f"{poll['p99_s']} s (interval {poll['poll_interval']} s) | "
        f"{_ok(poll['p99_s'] <= poll['poll_interval'] + 1)} |",
        f"| completion latency p99 at most 0.5 s with callbacks | {lat['callbacks']['p99_s']} s | "
        f"{_ok(lat['callbacks']['p99_s'] <= GOALS['latency_callbacks_p99'])} |",
        f"| at most 2 KiB of Redis per in-flight job | {sc['bytes_per_job']} B | "
        f"{_ok(sc['bytes_per_job'] <= GOALS['bytes_per_job'])} |",
        f"| a sweep of 100,000 due jobs in under 5 s | {sc['full_sweep_s']} s | "
        f"{_ok(sc['full_sweep_s'] < GOALS['sweep_s'])} |",
        *(flow_goals(r["flow"]) if r.get("flow") else []),
        *(webhook_goals(r["webhooks"]) if r.get("webhooks") else []),
        "",
        "## 1. End-to-end throughput",
        "",
        f"{t['count']} requests from `Producer.submit_many` to their `completed` event, through Redis, one",
        "worker with 2 processes and the emulator (jobs finish at once, polls every 0.5 s), against a",
        "plain loop that signs and registers the same number of jobs with the client alone, against",
        f"the same emulator in the same run. {t['runs']} runs.",
        "",
        "| | requests/s (median) | runs |",
        "| --- | --- | --- |",
        f"| plain loop (client only) | {t['plain_per_s']:.1f} | {t['plain_runs']} |",
        f"| pipeline (submit to completed) | {t['pipeline_per_s']:.1f} | {t['pipeline_runs']} |",
        f"| ratio | {t['ratio'] * 100:.0f} % | |",
        "",
        "**Where the time goes.** CPU milliseconds per job spent by each process, read from",
        "`/proc` before and after each phase (median of the runs). The plain loop is the client and",
        "the emulator; the pipeline adds the durable work the plain loop skips: the record, its",
        "schedules and events in Redis, the fsync before each batch of POSTs, the shared rate-limit",
        "token per call, the Celery tasks, and the polls that turn a registration into a completion.",
        "",
        "| process | plain loop | pipeline |",
        "| --- | --- | --- |",
    ]
    plain_cpu, pipe_cpu = t["plain_cpu_ms_per_job"], t["pipeline_cpu_ms_per_job"]
    lines += [
        f"| {part} | {plain_cpu[part]:.2f} ms | {pipe_cpu[part]:.2f} ms |" for part in pipe_cpu
    ]
    lines += [
        f"| all | {sum(plain_cpu.values()):.2f} ms | {sum(pipe_cpu.values()):.2f} ms |",
        "",
        f"On {m['cpus']} cores the pipeline's processes run side by side; the plain loop waits for",
        "each answer before it sends the next request, so it uses about one core. A submit batch",
        "reads its records in one round trip, marks them and fsyncs once, then POSTs (from threads)",
        "and commits `PALLYCON_SUBMIT_CONCURRENCY` requests at a time; polls read only the list",
        "entries of the jobs they want.",
        "",
        "## 2. API calls per completed job",
        "",
        "Every request the emulator received (registrations, job-list pages, lookups), divided by",
        "the jobs completed. Default poll settings (10 s, 30 s in long stages, grid 5 s); jobs take",
        "60 s; 4 worker processes. Coalesced: one job-list pass covers every due job; per job: the",
        "same polls with one lookup per job (`PALLYCON_POLL_COALESCE=false`). Submitted 500 per",
        "`submit_many` call, as a backfill is (one `submit` per request waits for one fsync each, so",
        "that fewer would be in flight at once). One run each.",
        "",
        "| in flight (peak) | polling | API calls | per job | registrations | pages | lookups |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in r["calls"]:
        mode = "coalesced" if c["coalesced"] else "one lookup per job"
        lines.append(f"| {c['in_flight']:,} ({c['peak_in_flight']:,}) | {mode} | {c['api_calls']:,} | "
                     f"**{c['calls_per_job']}** | {c['registrations']:,} | {c['list_pages']:,} | "
                     f"{c['lookups']:,} |")  # fmt: skip
    lines += [
        "",
        "## 3. Completion latency",
        "",
        "From the moment the emulator marks a job done (its registration plus its duration) to the",
        f"request's `completed` event. {poll['count']} requests per mode, one run each; polling every",
        f"{poll['poll_interval']} s on a grid of the same length (so a job ends anywhere between two",
        "polls); with callbacks, polls 120 s apart so that only the callback can end a job early.",
        "",
        "| mode | p50 | p99 | max |",
        "| --- | --- | --- | --- |",
    ]
    for x in r["latency"]:
        lines.append(f"| {x['mode']} | {x['p50_s']} s | {x['p99_s']} s | {x['max_s']} s |")
    lines += [
        "",
        "## 4. 100,000 jobs in flight",
        "",
        f"{sc['jobs']:,} requests accepted and submitted through the product's own code (records,",
        "events, poll schedule, job index), then Redis's `used_memory` compared with before; then",
        f"every poll made due at once and one sweep timed ({sc['runs']} runs, median): it claims",
        "them all and sends them as poll tasks.",
        "",
        "| | |",
        "| --- | --- |",
        f"| Redis memory per in-flight job, all included | {sc['bytes_per_job']} B |",
        f"| ... of which not the result stream | {sc['bytes_per_job_without_result_stream']} B |",
        f"| one request record (median) | {sc['record_bytes_median']} B |",
        f"| one sweep of {sc['claimed_per_sweep']:,} due jobs | {sc['sweep_s']} s |",
        "",
        "## 5. Signing",
        "",
        f"{s['count']:,} signatures of a job JSON, one core, {s['runs']} runs, median: "
        f"**{s['signs_per_s']:,.0f} signatures/s**; verification (the emulator's side) "
        f"{s['verifies_per_s']:,.0f}/s.",
        "",
    ]
    startup = r.get("startup")  # results from before it was measured have none
    if startup:
        lines += [
            "## 6. Command-line start-up",
            "",
            "Wall-clock time of `python -m pallycon_pack ARGS` in a new process, median of "
            f"{startup['runs']} runs; a bare `python -c pass` takes {startup['python_s']} s. The "
            "top-level help loads no subcommand; a subcommand's help loads its options and help only.",
            "",
            "| command | seconds |",
            "| --- | --- |",
        ]
        lines += [f"| `pallycon-pack {args}` | {t} |" for args, t in startup["commands_s"].items()]
        lines.append("")
    backfill = r.get("backfill")
    if backfill:
        singles_min = backfill["singles_extrapolated_s"] / 60
        lines += [
            "## 7. A backfill from the command line",
            "",
            f"{backfill['lines']:,} requests (each with a request id and metadata) through one",
            "`pallycon-pack submit --batch FILE.jsonl` (every line checked, then recorded 500 per",
            f"atomic script and fsync), against {backfill['single_sample']} `pallycon-pack submit`",
            "commands timed one after another and extrapolated to the same number. Redis only, no",
            "worker: what is timed is getting the requests durably recorded.",
            "",
            "| | seconds | requests/s |",
            "| --- | --- | --- |",
            f"| `submit --batch` | {backfill['batch_s']} | {backfill['batch_per_s']:,.0f} |",
            f"| one `submit` per request (extrapolated) | {backfill['singles_extrapolated_s']:,.0f}"
            f" ({singles_min:,.0f} min) | {1 / backfill['single_s_each']:.2f} |",
            "",
        ]
    if r.get("flow"):
        lines += flow_section(r["flow"], r["finished"])
    if r.get("http"):
        lines += http_section(r["http"], r["finished"], r["machine"])
    if r.get("webhooks"):
        lines += webhook_section(r["webhooks"], r["machine"], r["finished"])
    return "\n".join(lines)


def flow_goals(f: dict[str, Any]) -> list[str]:
    """The Goals table's rows of the flow-control figures (their first cells: FLOW_GOALS)."""
    live = {x["backfill_priority"]: x for x in f["live"]}["bulk"]
    cap = {x["cap"]: x for x in f["cap"]}
    capped = next(x for c, x in cap.items() if c)
    done = capped["live_completed_s"]
    in_time = done is not None and done <= GOALS["flow_cap_job_times"] * capped["job_seconds"]
    share = f["share"]["bulk_share"]
    measured = [
        (f"{live['p99_s']} s", live["p99_s"] <= GOALS["flow_live_p99_s"]),
        (f"{f['sites']['all_registered_s']} s", f["sites"]["all_registered_s"] <= GOALS["flow_site_s"]),
        (f"{done} s (jobs of {capped['job_seconds']:.0f} s)" if done is not None else "not completed",
         in_time),
        (f"{share * 100:.1f} %", share >= GOALS["flow_bulk_share"]),
    ]  # fmt: skip
    return [
        f"{goal} | {value} | {_ok(good)} |"
        for goal, (value, good) in zip(
            (
                f"{FLOW_GOALS[0]} ({live['backfill']:,} requests)",
                FLOW_GOALS[1],
                FLOW_GOALS[2],
                f"{FLOW_GOALS[3]} under a stream of high priority",
            ),
            measured,
            strict=True,
        )
    ]


def flow_section(f: dict[str, Any], finished: str) -> list[str]:
    """Section 8, the flow-control figures."""
    live, sites, share = f["live"], f["sites"], f["share"]
    cap = {x["cap"]: x for x in f["cap"]}
    capped = next(x for c, x in cap.items() if c)
    free = cap[0]
    first = live[0]
    lines = [
        FLOW_HEADING,
        "",
        "What a waiting request's priority, its site and a cap on the jobs in flight at PallyCon",
        "change (docs/FLOW.md). Each case starts its own stack (a valkey server, the emulator, one",
        f"worker of 2 processes, polls every 0.5 s) with each site's API rate at {first['rate']:.0f}",
        "calls/s (its burst one second of it), so that a 10,000-request backfill drains in about",
        "100 s; backfills are submitted as `submit --batch` records them, 500 per `submit_many`",
        "call. One run each. `uv run python -m bench --only flow` runs these alone (about 10",
        f"minutes) and rewrites this section and its goals; this run finished {finished}.",
        "",
        "**A live request while a backfill drains.** A backfill of "
        f"{first['backfill']:,} requests, then {first['live']} live requests at `normal`, one every "
        f"{first['live_every_s']} s over the first 80 % of the drain (jobs of 1 s). Registration "
        "delay: the live request's `submitted_at - created_at`. The same with the backfill at "
        "`normal` too, as everything was before priorities. Behind a `bulk` backfill a live "
        "request still waits for what is already dispatched ahead of it (half a second of the "
        "site's rate: `flow_rules.HORIZON`) and for the fsync before its batch's POSTs (up to a "
        "second with `appendfsync everysec`): about 1.5 s at worst.",
        "",
        "| backfill at | live registration p50 | p99 | max | backfill registered by the last live one | API calls/s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| `{x['backfill_priority']}` | {x['p50_s']} s | {x['p99_s']} s | {x['max_s']} s | "
        f"{x['backfill_registered_by_then']:,} | {x['api_calls_per_s']} |"
        for x in live
    ]
    lines += [
        "",
        f"**Another site behind a backfill.** Two sites served by the same worker, each at "
        f"{sites['rate']:.0f} calls/s with its own bucket; site A's backfill of {sites['backfill']:,} "
        f"requests at `bulk` submitted first, then site B's batch of {sites['batch']} (`bulk` too: "
        "only its site sets it apart). B's first request was registered "
        f"{sites['first_registered_s']} s after B's submit, **all {sites['batch']} after "
        f"{sites['all_registered_s']} s**, while site A had {sites['backfill_registered_by_then']:,} "
        "registered.",
        "",
        f"**A cap on the jobs in flight.** The emulator works on at most {capped['slots']} of the "
        f"site's jobs at once (`--slots {capped['slots']}`), each {capped['job_seconds']:.0f} s; "
        f"a backfill of {capped['backfill']} requests at `bulk`, then, 2 s later, one live "
        "request at `normal`. Followed until the live request completed, or for 2.5 job times "
        "when it could not; then the stack was torn down with the rest of the backfill still "
        "waiting (the live request's time does not depend on how much is left behind it: with "
        "the cap, at most the cap is ever ahead of it). The emulator's slot use was sampled every "
        "0.25 s. With the cap, the live request waits at most one job time for the first place "
        "to free, then its own job time, plus the poll that sees it end.",
        "",
        "| `max_in_flight` | live registered | live completed | live request at the end | working peak | waiting (`WM000`) peak |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for x in (capped, free):
        done = f"{x['live_completed_s']} s" if x["live_completed_s"] is not None else "not yet"
        registered = (
            f"{x['live_registered_s']} s" if x["live_registered_s"] is not None else "not yet"
        )
        lines.append(
            f"| {x['cap'] or 'none'} | {registered} | {done} | {x['live_state']} {x['live_status']} | "
            f"{x['working_peak']} | {x['waiting_peak']} |"
        )
    ahead = free["jobs_ahead_at_pallycon"]
    if ahead is not None and free["live_completed_s"] is None:
        rounds = ahead // free["slots"] + 1
        lines += [
            "",
            f"Without the cap the whole backfill was registered at once and the live job joined "
            f"PallyCon's own queue behind {ahead} others: first come first served, it starts once "
            f"they have, in about {rounds - 1} rounds of {free['job_seconds']:.0f} s, and completes "
            f"about {rounds * free['job_seconds']:.0f} s after the backfill (computed, not waited "
            f"for); with a backfill of 2,000, about {(2000 // free['slots'] + 1) * free['job_seconds'] / 60:.0f} "
            "minutes. With the cap, nothing waits at PallyCon: the live request waits in its lane "
            "and takes the first place that frees.",
        ]
    lines += [
        "",
        f"**Bulk's guaranteed share.** A backlog of {share['backlog']:,} requests at `bulk`, then "
        f"requests at `high` submitted steadily at {share['high_submitted_per_s']}/s, more than the "
        f"site's rate of {share['rate']:.0f} calls/s: alone they would take every registration. "
        f"Of the {share['registrations']:,} registrations in a {share['window_s']:.0f} s window "
        f"(after 5 s), {share['high']} were `high` and {share['bulk']} `bulk`: "
        f"**{share['bulk_share'] * 100:.1f} % bulk** (its guaranteed share is 10 %); "
        f"{share['high_left_waiting']:,} `high` requests were still waiting at the end. The rate "
        f"is shared with the polls, so {share['registered_per_s']} registrations/s. The share is "
        "one place in ten, exactly: the window is long so that its edges (a registration or two) "
        "do not move the figure.",
        "",
    ]
    return lines


def splice_flow(text: str, r: dict[str, Any]) -> str:
    """docs/BENCHMARKS.md's ``text`` with its flow goals and section 8 replaced by (or, where
    there were none, given) those of results ``r`` (``--only flow``)."""
    return _splice(text, FLOW_GOALS, FLOW_HEADING, flow_goals(r["flow"]),
                   flow_section(r["flow"], r["finished"]))  # fmt: skip


def splice_webhooks(text: str, r: dict[str, Any]) -> str:
    """docs/BENCHMARKS.md's ``text`` with its webhook goals and section 10 replaced by (or
    given) those of results ``r`` (``--only webhooks``)."""
    w = r["webhooks"]
    return _splice(text, WEBHOOK_GOALS, WEBHOOK_HEADING, webhook_goals(w),
                   webhook_section(w, r["machine"], r["finished"]))  # fmt: skip


def _splice(
    text: str, firsts: tuple[str, ...], heading: str, goals: list[str], section: list[str]
) -> str:
    """``text`` with the Goals rows starting with ``firsts`` replaced by ``goals`` (after the
    table's last row) and the section under ``heading`` by ``section`` (in its place; at the
    end where there was none)."""
    lines = [line for line in text.rstrip("\n").split("\n") if not line.startswith(firsts)]
    row = next(i for i in range(lines.index("## Goals"), len(lines)) if lines[i].startswith("|"))
    while row + 1 < len(lines) and lines[row + 1].startswith("|"):
        row += 1
    lines[row + 1 : row + 1] = goals
    if heading in lines:  # in its place: the sections after it stay after it
        start = lines.index(heading)
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        lines[start:end] = [*section, ""] if end < len(lines) else section
        return "\n".join(lines).rstrip("\n") + "\n"
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join([*lines, "", *section]).rstrip("\n") + "\n"


HTTP_HEADING = "## 9. The HTTP API"


def http_section(h: dict[str, Any], finished: str, m: dict[str, Any]) -> list[str]:
    """Section 9: ``POST /v1/requests`` against ``Producer.submit``, in the same run (``m``:
    the machine)."""
    lines = [
        HTTP_HEADING,
        "",
        "What submitting over HTTP costs (docs/HTTP.md): `POST /v1/requests` to a real",
        "`pallycon-pack http` process (one keep-alive connection per client), against the Python",
        "`Producer.submit` in the benchmark's own process, in the same run, on the same Redis",
        "(valkey, AOF on, `appendfsync everysec`), no worker. Every request is new, with its own",
        "id (an `Idempotency-Key` over HTTP); each answer is the recorded request. One client",
        "sending one request after another gives the latency and its rate; then",
        f"{h['clients']} clients at once (threads) give the throughput. {h['runs']} rounds, the",
        "two ways alternating; medians. With the fsync wait (the default,",
        "`PALLYCON_REDIS_FSYNC_WAIT_MS`: a request is acknowledged once Redis has it on disk) the",
        "wait for the fsync is most of a request's time, whichever the way; without it, what is",
        "left is each way's own cost. `uv run python -m bench --only http` runs this alone and",
        f"rewrites this section; this run finished {finished}, on {m['cpus']} cores.",
        "",
        "| | requests a round | latency p50 | p99 | requests/s, one client | "
        f"requests/s, {h['clients']} clients |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for mode in ("fsync wait", "no fsync wait"):
        for way, name in (("producer", "`Producer.submit`"), ("http", "`POST /v1/requests`")):
            x = h[mode][way]
            lines.append(
                f"| {name}, {mode} | {h[mode]['count']:,} | {x['p50_ms']:.1f} ms | "
                f"{x['p99_ms']:.1f} ms | {x['per_s']:,.0f} | {x['parallel_per_s']:,.0f} |"
            )
    bare = h["no fsync wait"]
    durable = h["fsync wait"]
    added = bare["http"]["p50_ms"] - bare["producer"]["p50_ms"]

    def rounds(way: str) -> str:
        return ", ".join(f"{value:,.0f}" for value in durable[way]["parallel_runs"])

    lines += [
        "",
        f"Without the fsync wait, HTTP adds about {added:.1f} ms to a request at the median (the",
        "token's lookup and its rate-limit script are two more round trips to Redis, then the",
        "HTTP exchange and JSON both ways); one server process answered",
        f"{bare['http']['parallel_per_s']:,.0f} requests/s to {h['clients']} clients at once "
        "(replicas share the load). With the",
        "wait, most of a request's time is the wait for Redis's fsync (about 100 ms here), the",
        "same for both ways. Clients at once can share an fsync, so the throughput with several",
        "clients depends on how their requests fall together; its rounds",
        f"varied (`Producer.submit`: {rounds('producer')}; HTTP: {rounds('http')} requests/s),",
        "and the median is quoted.",
    ]
    return lines


def splice_http(text: str, r: dict[str, Any]) -> str:
    """docs/BENCHMARKS.md's ``text`` with section 9 replaced by (or, where there was none,
    given) that of results ``r`` (``--only http``)."""
    lines = text.rstrip("\n").split("\n")
    section = http_section(r["http"], r["finished"], r["machine"])
    if HTTP_HEADING in lines:
        start = lines.index(HTTP_HEADING)
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        lines[start:end] = section
    else:
        lines += ["", *section]
    return "\n".join(lines).rstrip("\n") + "\n"


def webhook_goals(w: dict[str, Any]) -> list[str]:
    """The Goals table's rows of the webhook figures (their first cells: WEBHOOK_GOALS)."""
    alone, dead = w["alone"]["lag_p99_s"], w["with_dead"]["lag_p99_s"]
    cost = None if alone is None or dead is None else round(dead - alone, 3)
    return [
        f"{WEBHOOK_GOALS[0]} ({w['alone']['rate']:.0f} requests/s) | {alone} s | "
        f"{_ok(alone is not None and alone < GOALS['webhook_lag_p99_s'])} |",
        f"{WEBHOOK_GOALS[1]} (lag p99 with it, less without) | {cost:+} s ({dead} s against "
        f"{alone} s) | {_ok(cost is not None and cost <= GOALS['webhook_dead_cost'])} |",
    ]


def webhook_section(w: dict[str, Any], m: dict[str, Any], finished: str) -> list[str]:
    """Section 10, the webhook deliveries."""
    b, alone, dead, stuck = w["burst"], w["alone"], w["with_dead"], w["dead_endpoint"]
    cost = round(dead["lag_p99_s"] - alone["lag_p99_s"], 3)
    lines = [
        WEBHOOK_HEADING,
        "",
        "Webhook deliveries by the workers (docs/WEBHOOKS.md) while they run the API pipeline: "
        "one stack (a valkey server, the emulator with jobs that finish at once, one worker of 2 "
        "processes whose main process runs the webhooks loop, polls every 0.5 s) and a receiver "
        "in the benchmark's process (`bench/webhook_receiver.py`: Python's "
        "`ThreadingHTTPServer`, HTTP/1.1 keep-alive) that verifies every delivery with "
        "`standardwebhooks` and answers 204. Default settings: "
        f"`PALLYCON_WEBHOOK_CONCURRENCY` {w['concurrency']}, "
        f"`PALLYCON_WEBHOOK_ENDPOINT_CONCURRENCY` {w['endpoint_concurrency']}, "
        f"`PALLYCON_WEBHOOK_TIMEOUT` {w['timeout_s']:.0f} s. The lag is the receiver's clock "
        "when the delivery of a request's `completed` event arrived, less the event's `ts` (one "
        f"machine, one clock). Machine: {m['cpus']} cores, Python {m['python']}, {m['redis']}, "
        "every process of the stack and the benchmark on it. One run. "
        "`uv run python -m bench --only webhooks` runs this alone (about 2 minutes) and "
        f"rewrites this section and its goals; this run finished {finished}.",
        "",
        "| case | requests | deliveries | deliveries/s | `completed` lag p50 | p99 | max |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| burst: {b['requests']:,} submitted at once, the endpoint on every event type | "
        f"{b['requests']:,} | {b['deliveries']:,} | {b['deliveries_per_s']} (over "
        f"{b['span_s']} s) | {b['lag_p50_s']} s | {b['lag_p99_s']} s | {b['lag_max_s']} s |",
        f"| steady: {alone['rate']:.0f} requests/s for {alone['seconds']:.0f} s, the endpoint "
        f"on the outcomes | {alone['requests']:,} | {alone['deliveries']:,} | "
        f"{alone['deliveries_per_s']} | {alone['lag_p50_s']} s | {alone['lag_p99_s']} s | "
        f"{alone['lag_max_s']} s |",
        f"| the same, beside an endpoint that never answers | {dead['requests']:,} | "
        f"{dead['deliveries']:,} | {dead['deliveries_per_s']} | {dead['lag_p50_s']} s | "
        f"{dead['lag_p99_s']} s | {dead['lag_max_s']} s |",
        "",
        "**The burst** is the most one endpoint takes: its events come faster than they are "
        "sent (the pipeline completes the burst in a few seconds, beside the deliveries), and "
        "at most `PALLYCON_WEBHOOK_ENDPOINT_CONCURRENCY` of an endpoint's deliveries are in "
        "flight at once across all workers, so one endpoint's rate is that many times the "
        "inverse of a delivery's round trip (claim, sign, POST, answer, settle); its lag is "
        "the queue's. Several endpoints are sent in parallel, each within its own cap. "
        "Every delivery verified"
        + ("." if all(x["all_verified"] for x in (b, alone, dead)) else ": **no**, some did not."),
        "",
        "**The endpoint that never answers** takes connections and never answers: each of its "
        f"attempts holds a send thread for {w['timeout_s']:.0f} s. At the end of the run it had "
        f"{stuck['pending']:,} deliveries pending, {stuck['in_flight']} in flight (its cap) "
        f"and {stuck['timeouts']:,} attempts timed out. The fast endpoint's deliveries were "
        "claimed beside it, each endpoint within its own cap, and none waited for a send "
        f"thread; its lag p99 moved by {cost:+} s (the goal: at most "
        f"{GOALS['webhook_dead_cost'] * 1000:.0f} ms).",
    ]
    if cost > GOALS["webhook_dead_cost"]:
        lines += [
            "",
            "**The goal of no cost is not met in this run**: the fast endpoint's lag p99 "
            f"moved by more than {GOALS['webhook_dead_cost'] * 1000:.0f} ms beside the endpoint "
            "that never answers. Its deliveries are claimed within their own cap and a new "
            "event wakes the webhooks loop at once (the wake-up channel), so what is left is "
            "the machine's: every process of the run shares its 2 cores.",
        ]
    return [*lines, ""]
