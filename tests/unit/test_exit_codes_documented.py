"""The exit codes the CLI uses are the ones docs/OPERATIONS.md lists."""

from __future__ import annotations

import re
from pathlib import Path

from pallycon_pack import errors

ROOT = Path(__file__).resolve().parents[2]


def test_operations_lists_every_exit_code():
    """Each EXIT_* code of pallycon_pack.errors is in OPERATIONS.md's list (4 was missing)."""
    text = (ROOT / "docs" / "OPERATIONS.md").read_text()
    listed = text.split("The CLI's exit codes:", 1)[1].split("\n\n", 1)[0]
    numbers = {int(n) for n in re.findall(r"(?:^|[:,]\s)(\d+) ", " ".join(listed.split()))}
    codes = {value for name, value in vars(errors).items() if name.startswith("EXIT_")}
    assert codes | {0} <= numbers, sorted(codes - numbers)
