"""``pallycon-pack demo``: its options and help (the work is in :mod:`.run`, imported when it
runs)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option(
    "--jobs",
    "count",
    type=click.IntRange(1, 1000),
    default=6,
    show_default=True,
    help="How many sample requests.",
)
@click.option(
    "--job-seconds",
    type=click.FloatRange(0, 600),
    default=6.0,
    show_default=True,
    help="How long each emulated job takes.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(1, 86400),
    default=300.0,
    show_default=True,
    help="Give up after this many seconds.",
)
@click.option(
    "--log-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("build/demo-logs"),
    show_default=True,
    help="Keep the worker's log in a folder of this run here.",
)
def demo(count: int, job_seconds: float, timeout: float, log_dir: Path) -> None:
    """Run the whole pipeline end to end: Redis, emulator, worker, callbacks, N requests.

    Its keys carry a prefix of their own (demo-<run>); in a Redis it did not start (the one at
    PALLYCON_REDIS_URL, if it answers) they are deleted at the end. The worker's log is kept in
    LOG_DIR/<run>/worker.log.
    """
    from pallycon_pack.demo import run

    run.demo(count, job_seconds, timeout, log_dir)
