"""Secrets read from files: the forms Docker and Kubernetes mount them in.

For every ``SecretStr`` field of a settings class, with ``VAR`` its variable
(e.g. ``PALLYCON_SITE_KEY``):

- ``VAR_FILE=/path`` names a file holding the secret (Docker's convention);
- ``PALLYCON_SECRETS_DIR=/dir`` names a directory holding one file per secret, named exactly
  ``VAR`` (what a Kubernetes Secret volume with those keys gives).

Precedence: a command-line value, then ``VAR``, then ``VAR_FILE``, then the secrets directory,
then ``.env``. ``VAR`` and ``VAR_FILE`` both set is an error (ambiguous). ``VAR_FILE`` and
``PALLYCON_SECRETS_DIR`` are read from the process environment only, never from ``.env``, and
no directory is read unless ``PALLYCON_SECRETS_DIR`` names it (not Docker's ``/run/secrets``
implicitly).

One trailing newline is removed from a file's content; any other whitespace is kept. A missing,
unreadable, empty, non-UTF-8 or oversized file is a :class:`ConfigError` naming the variable and
the path, never the content.
"""

from __future__ import annotations

import stat
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic_settings import BaseSettings

#: The variable naming a directory of secret files (one per secret, named like its variable).
SECRETS_DIR_VARIABLE = "PALLYCON_SECRETS_DIR"
#: Appended to a secret's variable: the variable naming its file.
FILE_SUFFIX = "_FILE"
#: The largest secret file read, in bytes.
MAX_SECRET_BYTES = 64 * 1024

#: Where a secret file was named: by ``VAR_FILE`` or by the secrets directory.
BY_FILE_VARIABLE = "file"
BY_SECRETS_DIR = "secrets dir"


class SecretFileError(Exception):
    """A secret file cannot be used; the message names the variable and the path."""


@dataclass(frozen=True)
class SecretFile:
    """Where one secret setting is read from."""

    field: str
    variable: str  # the variable that named the file: VAR_FILE, or PALLYCON_SECRETS_DIR
    path: Path
    by: str  # BY_FILE_VARIABLE or BY_SECRETS_DIR

    def label(self) -> str:
        """Where the value came from, as ``config show`` prints it (never the value)."""
        if self.by == BY_SECRETS_DIR:
            return f"file {self.path} ({SECRETS_DIR_VARIABLE})"
        return f"file {self.path}"


def is_secret(annotation: Any) -> bool:
    """Whether a field annotated ``annotation`` holds a ``SecretStr`` (alone or optional)."""
    if annotation is SecretStr:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(is_secret(arg) for arg in typing.get_args(annotation))
    return False


def secret_fields(kind: type[BaseSettings]) -> list[str]:
    """The fields of ``kind`` that hold secrets, in declaration order."""
    return [name for name, info in kind.model_fields.items() if is_secret(info.annotation)]


def _lookup(environ: Mapping[str, str], name: str) -> str | None:
    """``name``'s value in ``environ`` as pydantic-settings finds it (case-insensitively)."""
    if name in environ:
        return environ[name]
    folded = name.lower()
    for key, value in environ.items():
        if key.lower() == folded:
            return value
    return None


def locate(
    kind: type[BaseSettings],
    name_of: Callable[[str], str],
    environ: Mapping[str, str],
    skip: frozenset[str] = frozenset(),
) -> dict[str, SecretFile]:
    """The secret fields of ``kind`` (but ``skip``, set otherwise) read from a file, and where.

    A field whose variable is set in ``environ`` is not read from a file, unless ``VAR_FILE``
    is set too: that is a :class:`SecretFileError` naming both. An unusable
    ``PALLYCON_SECRETS_DIR`` is one too; a secret missing from the directory is simply unset.
    """
    directory = _lookup(environ, SECRETS_DIR_VARIABLE) or None
    if directory is not None:
        _check_directory(Path(directory))
    secrets = secret_fields(kind)
    _refuse_files_of_plain_settings(kind, name_of, environ, secrets)
    found: dict[str, SecretFile] = {}
    for field in secrets:
        variable = name_of(field)
        file_variable = variable + FILE_SUFFIX
        named = _lookup(environ, file_variable)
        if named is not None and _lookup(environ, variable) is not None:
            raise SecretFileError(
                f"{variable} and {file_variable} are both set; set only one of them"
            )
        if field in skip or _lookup(environ, variable) is not None:
            continue
        if named is not None:
            if not named:
                raise SecretFileError(f"{file_variable} is empty; set it to a file's path")
            found[field] = SecretFile(field, file_variable, Path(named), BY_FILE_VARIABLE)
        elif directory is not None:
            path = Path(directory) / variable
            if path.exists() or path.is_symlink():
                found[field] = SecretFile(field, SECRETS_DIR_VARIABLE, path, BY_SECRETS_DIR)
    return found


def _refuse_files_of_plain_settings(
    kind: type[BaseSettings],
    name_of: Callable[[str], str],
    environ: Mapping[str, str],
    secrets: list[str],
) -> None:
    """A :class:`SecretFileError` for ``VAR_FILE`` set where ``VAR`` is not a secret (e.g.
    ``PALLYCON_REGION_FILE``): it would be ignored, and the setting silently left unset."""
    for field in kind.model_fields:
        file_variable = name_of(field) + FILE_SUFFIX
        if field not in secrets and _lookup(environ, file_variable) is not None:
            readable = ", ".join(name_of(secret) for secret in secrets)
            raise SecretFileError(
                f"{file_variable}: only secrets are read from files ({readable}); "
                f"set {name_of(field)} itself"
            )


def refuse_in_dotenv(
    kind: type[BaseSettings], name_of: Callable[[str], str], names: Iterable[str]
) -> None:
    """A :class:`SecretFileError` if ``names`` (those set in ``.env``) hold a ``VAR_FILE`` of
    ``kind`` or ``PALLYCON_SECRETS_DIR``: they are read from the environment only, and a line
    of ``.env`` silently ignored would be worse than a refusal."""
    wanted = {SECRETS_DIR_VARIABLE.lower()} | {
        (name_of(field) + FILE_SUFFIX).lower() for field in secret_fields(kind)
    }
    found = sorted(name.upper() for name in names if name.lower() in wanted)
    if found:
        raise SecretFileError(
            f"{', '.join(found)} in .env: secret files are named in the environment only "
            "(export it, or give it to the container)"
        )


def _check_directory(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise SecretFileError(
            f"{SECRETS_DIR_VARIABLE}: cannot use {path}: {exc.strerror or type(exc).__name__}"
        ) from None
    if not stat.S_ISDIR(mode):
        raise SecretFileError(f"{SECRETS_DIR_VARIABLE}: {path} is not a directory")


def read_secret(where: SecretFile) -> str:
    """The secret in ``where.path``, one trailing newline removed; a :class:`SecretFileError`
    naming the variable and the path (never the content) if the file cannot be used."""
    what = f"{where.variable}: {where.path}"
    if where.by == BY_SECRETS_DIR:
        what += f" (for {where.path.name})"
    try:
        if not stat.S_ISREG(where.path.stat().st_mode):  # a directory, a FIFO that would block
            raise SecretFileError(f"{what} is not a regular file")
        with open(where.path, "rb") as handle:
            data = handle.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SecretFileError(f"{what} cannot be read: {reason}") from None
    if len(data) > MAX_SECRET_BYTES:
        raise SecretFileError(f"{what} is larger than {MAX_SECRET_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretFileError(f"{what} is not UTF-8 text") from None
    text = strip_newline(text)
    if not text:
        raise SecretFileError(f"{what} is empty")
    return text


def strip_newline(text: str) -> str:
    """``text`` without one trailing newline (``\\n`` or ``\\r\\n``); other whitespace kept."""
    if text.endswith("\r\n"):
        return text[:-2]
    return text.removesuffix("\n")
