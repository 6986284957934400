"""The operator's views of the whole fleet: ``pallycon-pack health`` and ``pallycon-pack stats``
(their options and help; the work is in :mod:`.run`).

``health`` runs the checks of :mod:`pallycon_pack.health` and exits 0 only when all pass: a
container probe (with ``--this-host``, the workers check judges this pod's own workers only).
``stats`` prints what the fleet holds and has done. Both read Redis through
:mod:`pallycon_store.fleet`, the same model the Prometheus exporter reads.
"""

from __future__ import annotations

import click

from pallycon_pack.health import CHECKS, Thresholds


def parse_checks(text: str) -> list[str]:
    """``--check redis,api``: known names, in the order given, without repeats."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in CHECKS]
    if unknown or not names:
        raise click.BadParameter(
            f"{', '.join(unknown) or 'nothing'}: choose among {', '.join(CHECKS)}",
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
    "--this-host).",
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
    timeout: float,
    worker_stale: float,
    max_schedule_lag: float,
    max_intake_backlog: int,
    this_host: bool,
    as_json: bool,
) -> None:
    """Check Redis, the API, the workers and the backlogs; exit 0 only when all pass.

    One line per check. Exit codes: 0 healthy, 4 a check failed (the lines say which and why),
    2 bad usage or settings. Every check is bounded by --timeout.
    """
    from pallycon_pack.cli.fleet import run

    chosen = parse_checks(checks)
    run.health(
        chosen,
        Thresholds(worker_stale, max_schedule_lag, max_intake_backlog),
        this_host,
        timeout,
        as_json,
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

    Everything is read from Redis (the counters since Redis last lost them).
    """
    from pallycon_pack.cli.fleet import run

    run.stats(as_json, since)
