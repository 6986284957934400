"""Every command's --help as a person reads it: plain text, none of the docstrings' markup."""

from __future__ import annotations

import re
from collections.abc import Iterator

import click

from pallycon_pack.cli.main import main

#: reStructuredText that click shows as it is: literals and Sphinx roles.
MARKUP = re.compile(r"``|:(?:mod|func|class|meth|attr|data):`")


def _commands(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, str]]:
    """Each command and subcommand's name and the text of its --help."""
    yield " ".join(path) or "pallycon-pack", command.get_help(click.Context(command))
    if isinstance(command, click.Group):
        for name in command.list_commands(click.Context(command)):
            sub = command.get_command(click.Context(command), name)
            assert sub is not None
            yield from _commands(sub, (*path, name))


def test_no_help_shows_restructuredtext_markup():
    """No --help shows ``literal`` or :func:`role` markup (click prints docstrings as they
    are): requests list's once showed ``site_id``."""
    marked = {
        name: [line for line in text.splitlines() if MARKUP.search(line)]
        for name, text in _commands(main)
    }
    assert {name: lines for name, lines in marked.items() if lines} == {}
