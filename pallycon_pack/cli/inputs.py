"""Input of the commands: files or standard input, and secrets kept out of the command line.

A failure is one line naming the option and where it read from, never what it read.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from pallycon.errors import FieldError, InvalidRequest
from pallycon.limits import MAX_FORM_API_JSON_BYTES
from pallycon_pack.errors import EXIT_INVALID, Failure

#: The path that means standard input.
STDIN = "-"
#: The name of standard input opened by click (``click.File`` given '-').
STDIN_NAME = "<stdin>"
SECRET_FILE_LIMIT = 64 * 1024
#: The largest input read as one request (``submit FILE``, ``jobs register FILE``, ``sign``'s
#: API JSON, a line of ``submit --batch``): twice the largest API JSON any transport sends
#: (a form body's), room for a file's indentation. A larger one is refused as it is read.
MAX_INPUT_BYTES = 2 * MAX_FORM_API_JSON_BYTES

#: A request's priorities, highest first (``pallycon_store.flow.PRIORITIES``, named here so that
#: showing a command's help loads no Redis client; a test keeps the two the same).
PRIORITY_NAMES = ("high", "normal", "bulk")
#: What ``--priority`` means, for the help of the commands that take it.
PRIORITY_HELP = (
    "high, normal or bulk: what is registered next for a site is the oldest request of the "
    "highest priority waiting, normal and bulk keeping a guaranteed share (20 % and 10 %)."
)


def read_json(file: Any) -> Any:
    """The JSON in an open file, read up to :data:`MAX_INPUT_BYTES`: past them a one-line
    Failure (nothing more is read: a pipe that never ends is refused as soon); not JSON is an
    ``InvalidRequest`` naming the file."""
    name = getattr(file, "name", "input")
    name = source_name(STDIN if name == STDIN_NAME else name)
    raw = file.read(MAX_INPUT_BYTES + 1)
    if len(raw) > MAX_INPUT_BYTES:
        raise Failure(too_large(name), EXIT_INVALID)
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest([FieldError("body", f"{name} is not JSON: {exc}")]) from None


def too_large(where: str, limit: int = MAX_INPUT_BYTES) -> str:
    """The one line refusing an input larger than ``limit`` bytes."""
    return f"{where}: larger than {limit} bytes, more than any request the API takes"


def source_name(path: str) -> str:
    """How an error names a file option's source: its path, or "standard input" for '-'."""
    return "standard input" if path == STDIN else path


def read_source(path: str, option: str, limit: int | None = None) -> bytes:
    """The bytes of the file at ``path`` ('-' = standard input), at most ``limit`` of them.

    A failure is a one-line error naming ``option`` and the path, never the content.
    """
    data = _read_at_most(path, option, -1 if limit is None else limit + 1)
    if limit is not None and len(data) > limit:
        raise Failure(f"{option}: {source_name(path)} is larger than {limit} bytes", EXIT_INVALID)
    return data


def _read_at_most(path: str, option: str, size: int) -> bytes:
    """At most ``size`` bytes (-1: all) of the file at ``path`` ('-' = standard input); a
    one-line Failure naming ``option`` and the path when it cannot be read."""
    try:
        if path == STDIN:
            if sys.stdin.isatty():  # else it would wait without a word
                click.echo("reading standard input (end it with Ctrl-D)", err=True)
            return bytes(sys.stdin.buffer.read(size))
        with open(path, "rb") as file:
            return file.read(size)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise Failure(
            f"{option}: cannot read {source_name(path)}: {reason}", EXIT_INVALID
        ) from None


def read_api_json(path: str, option: str) -> bytes:
    """The bytes of a JSON document at ``path`` ('-' = standard input), as given: past
    :data:`MAX_INPUT_BYTES` (nothing more read) or not JSON, a one-line Failure naming
    ``option`` and the path, never the content."""
    data = _read_at_most(path, option, MAX_INPUT_BYTES + 1)
    where = source_name(path) if path == STDIN else f"{option}: {path}"
    if len(data) > MAX_INPUT_BYTES:
        raise Failure(too_large(where), EXIT_INVALID)
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError) as exc:
        reason = exc if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise Failure(f"{where} is not JSON: {reason}", EXIT_INVALID) from None
    if not isinstance(parsed, dict):
        kind = type(parsed).__name__.replace("dict", "object").replace("list", "array")
        raise Failure(f"{where} is not a JSON object (the API takes one): {kind}", EXIT_INVALID)
    return data


def read_secret(path: str, option: str) -> str:
    """A secret kept alone in a file ('-' = standard input), one trailing newline removed.

    Empty, several lines or not UTF-8 is a one-line error naming ``option``, never the secret.
    """
    where = f"{option}: {source_name(path)}"
    try:
        text = read_source(path, option, SECRET_FILE_LIMIT).decode("utf-8")
    except UnicodeDecodeError:
        raise Failure(f"{where} is not UTF-8 text", EXIT_INVALID) from None
    for ending in ("\r\n", "\n"):
        if text.endswith(ending):
            text = text[: -len(ending)]
            break
    if not text:
        raise Failure(f"{where} is empty", EXIT_INVALID)
    if "\n" in text or "\r" in text:
        raise Failure(
            f"{where} holds more than one line: it must hold the secret alone", EXIT_INVALID
        )
    return text


def one_secret(value: str | None, path: str | None, *, flag: str) -> str | None:
    """The secret given as ``flag`` VALUE or in ``flag``-file PATH, or None if neither is.

    Both at once is an error: which one was meant is not for the program to guess.
    """
    if path is None:
        return value
    if value is not None:
        raise Failure(f"{flag} and {flag}-file: give one of them, not both", EXIT_INVALID)
    return read_secret(path, f"{flag}-file")
