"""The operator's views of the whole fleet, ``pallycon-pack health`` and ``pallycon-pack
stats``, and its hand on the flow, ``pause`` and ``resume`` (their options and help; the work is
in :mod:`.run`).

``health`` runs the checks of :mod:`pallycon_pack.health` and exits 0 only when all pass: a
container probe (with ``--this-host``, the workers check judges this pod's own workers only).
``stats`` prints what the fleet holds and has done. Both read Redis through
:mod:`pallycon_store.fleet`, the same model the Prometheus exporter reads.
"""

from __future__ import annotations

import click

from pallycon_pack.health import CHECKS, OPTIONAL_CHECKS, Thresholds


def parse_checks(text: str) -> list[str]:
    """``--check redis,api``: known names, in the order given, without repeats."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    known = (*CHECKS, *OPTIONAL_CHECKS)
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise click.BadParameter(
            f"{', '.join(unknown) or 'nothing'}: choose among {', '.join(known)}",
            param_hint="--check",
        )
    return list(dict.fromkeys(names))


@click.command()
@click.option(
    "--check",
    "checks",
    default=",".join(CHECKS),
    show_default=True,
    help="The checks to run, comma-separated (a worker pod's liveness probe: workers, with "
    "--this-host); callbacks, only when named: the callback receiver of this machine "
    "(PALLYCON_CALLBACK_HOST, _PORT) is ready.",
)
@click.option(
    "--wait",
    type=click.FloatRange(0, 3600),
    default=0,
    metavar="SECONDS",
    help="Run the checks again until all pass, for up to SECONDS (a line on stderr each time "
    "the failing checks change): wait for a fleet that is starting. The exit code is that of "
    "the last round.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 60),
    default=3.0,
    show_default=True,
    help="Seconds each check may take.",
)
@click.option(
    "--worker-stale",
    type=click.FloatRange(1),
    default=Thresholds.worker_stale,
    show_default=True,
    help="A worker loop silent this long (s) is not answering.",
)
@click.option(
    "--max-schedule-lag",
    type=click.FloatRange(0),
    default=Thresholds.max_schedule_lag,
    show_default=True,
    help="Most seconds the oldest overdue poll may be late (a request waiting for its turn "
    "to be registered is not late).",
)
@click.option(
    "--max-intake-backlog",
    type=click.IntRange(0),
    default=Thresholds.max_intake_backlog,
    show_default=True,
    help="Most intake stream entries not yet handled.",
)
@click.option(
    "--this-host",
    is_flag=True,
    help="Judge only the workers on this host (node name ending in @<this host name>; in "
    "Kubernetes, the pod's name): a per-pod probe.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def health(
    checks: str,
    wait: float,
    timeout: float,
    worker_stale: float,
    max_schedule_lag: float,
    max_intake_backlog: int,
    this_host: bool,
    as_json: bool,
) -> None:
    """Check Redis, the API, the workers and the backlogs; exit 0 only when all pass.

    One line per check. Exit codes: 0 healthy, 4 a check failed (the lines say which and why),
    2 bad usage or settings. Every check is bounded by --timeout. With --wait, the checks run
    again until all pass or SECONDS have passed; the lines are those of the last round.
    """
    from pallycon_pack.cli.fleet import run

    chosen = parse_checks(checks)
    run.health(
        chosen,
        Thresholds(worker_stale, max_schedule_lag, max_intake_backlog),
        this_host,
        timeout,
        as_json,
        wait,
    )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--since",
    default="24h",
    show_default=True,
    help="The window of the failures shown by stage and code (30m, 2h, 7d or ISO 8601).",
)
def stats(as_json: bool, since: str) -> None:
    """Print requests by state and stage, queues, lags, API calls by code and failures.

    Everything is read from Redis (the counters since Redis last lost them). The flow, by site:
    the requests waiting for their turn by priority, dispatched to a submit task, in flight at
    PallyCon against the site's cap, and the pause that holds it.
    """
    from pallycon_pack.cli.fleet import run

    run.stats(as_json, since)


PAUSE_SITE_HELP = (
    "The site, as requests list names it (the default site by its id, or 'default' when "
    "PALLYCON_SITE_ID is not set); default: every site."
)


@click.command()
@click.option("--site", help=PAUSE_SITE_HELP)
@click.option("--reason", help="Why, shown with the pause (kept when pausing again without).")
@click.option("--list", "show", is_flag=True, help="Show the pauses in force; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --list: print a JSON array.")
def pause(site: str | None, reason: str | None, show: bool, as_json: bool) -> None:
    """Stop registering new jobs at PallyCon for a site, or every site, until resume.

    Requests are still accepted and queued; polls and callbacks go on; the requests waiting
    are registered, by priority, once the site is resumed. Kept in Redis: a pause outlives
    any restart and holds every worker. Exit 0 (also when it was already paused), 2 for a
    site no worker serves, 3 when Redis is unavailable.
    """
    from pallycon_pack.cli.fleet import run

    if show:
        if site is not None or reason is not None:
            raise click.UsageError("--list takes no --site or --reason")
        run.pauses(as_json)
    elif as_json:
        raise click.UsageError("--json goes with --list (pause --list --json); nothing paused")
    else:
        run.pause(site, reason)


@click.command()
@click.option("--site", help=PAUSE_SITE_HELP.replace("every site", "the pause of every site"))
@click.option("--reason", default="", help="Why, kept in the flow's events.")
def resume(site: str | None, reason: str) -> None:
    """Lift a pause: registrations of the site (or of every site) go on, by priority.

    Without --site, the pause of every site is lifted; the pauses of single sites stay (the
    line names them). Exit 0 (also when it was not paused), 2 for a site no worker serves, 3
    when Redis is unavailable.
    """
    from pallycon_pack.cli.fleet import run

    run.resume(site, reason)
