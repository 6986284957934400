"""JSON log lines on stderr, one object a line: one per change of a request (the worker), per
callback (the receiver and the emulator), per HTTP request (``--access-log``), and one when a
process starts, with its effective settings. Never a secret, never a body.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from pydantic_settings import BaseSettings

from pallycon_config.settings import unknown_settings, variable_name
from pallycon_config.show import masked, warnings

#: The loggers every process configures: the project's and uvicorn's (servers).
LOGGERS = ("pallycon_pack", "uvicorn.error")


class JsonFormatter(logging.Formatter):
    """``{"ts": ..., "level": ..., "logger": ..., "msg": ..., "request_id": ..., ...}``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if hasattr(record, "request_id"):
            line["request_id"] = record.request_id
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(level: str, names: tuple[str, ...] = LOGGERS) -> None:
    """JSON lines on stderr for the project's loggers.

    The real stderr, past Celery's redirection of stdout/stderr into its own log format.
    httpx is kept to warnings: its request lines would carry signed ``pallycon-apidata``.
    """
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    handler = logging.StreamHandler(sys.__stderr__)
    handler.setFormatter(JsonFormatter())
    for name in names:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False


def log_start(process: str, *settings: BaseSettings, **fields: Any) -> None:
    """One ``start`` line: the process, its effective settings by
    variable name (secrets masked: ``SecretStr``,
    a URL's password, a callback URL's token) and ``fields``; then a warning for each risky
    setting (the placeholder callback token of ``.env.example``) and each unknown
    ``PALLYCON_*`` name (a misspelt setting).

    For every long-running process (worker, callback receiver, emulator, other servers), once
    :func:`configure` has run.
    """
    shown: dict[str, Any] = {}
    for each in settings:
        shown.update(
            {variable_name(type(each), name): value for name, value in masked(each).items()}
        )
    log = logging.getLogger("pallycon_pack.start")
    log.info("start", extra={"fields": {"process": process, "settings": shown, **fields}})
    for each in settings:
        for warning in warnings(each):
            log.warning(warning, extra={"fields": {"process": process}})
    for unknown in unknown_settings():  # told on stderr as the settings loaded; here as JSON
        log.warning(unknown.sentence(), extra={"fields": {"process": process}})
