"""``pallycon-pack`` run inside the test's own process (click's ``CliRunner``): the same
exit code, standard output and standard error as :func:`support.processes.cli`, in tens of
milliseconds instead of a process start-up.

For the cases that check what a command prints and how it exits. A case that needs a real
process (what ``ps`` shows, a terminal, a port, a worker's start-up, signals) keeps
:func:`support.processes.cli`; so does one smoke per command family.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from click.testing import CliRunner

from pallycon.options import max_api_json_bytes
from pallycon_config import names
from pallycon_pack.cli.main import main
from pallycon_store import connect

#: The name click gives the program run as ``python -m pallycon_pack`` (usage lines).
PROG_NAME = "python -m pallycon_pack"


def reset_process_caches() -> None:
    """Forget what a command leaves behind for the next one in the same process: the
    sentinel clients shared by a process's Redis clients, the URL limits per API, and the
    unknown settings already told of."""
    connect._sentinels.cache_clear()
    max_api_json_bytes.cache_clear()
    names.forget_told()


def run_cli(
    *args: str, env: dict[str, str], cwd: Path, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``pallycon-pack ARGS`` in this process, seeing exactly the variables of ``env``
    (a variable of this process that ``env`` lacks, a ``PALLYCON_*`` setting above all, is
    unset meanwhile) from the directory
    ``cwd``, with ``stdin`` on standard input (not a terminal). An exception the CLI does not
    turn into a message and an exit code is raised, not hidden in an exit code 1."""
    overrides: dict[str, str | None] = {name: None for name in os.environ if name not in env}
    overrides.update(env)
    reset_process_caches()
    runner = CliRunner(env=overrides, catch_exceptions=False)
    before = Path.cwd()
    os.chdir(cwd)
    try:
        result = runner.invoke(main, list(args), input=stdin, prog_name=PROG_NAME)
    finally:
        os.chdir(before)
        reset_process_caches()
    return subprocess.CompletedProcess(
        [PROG_NAME, *args], result.exit_code, result.stdout_bytes, result.stderr_bytes
    )
