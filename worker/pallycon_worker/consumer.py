"""Celery's consumer, with one defect of Celery 5.7 on losing the broker worked around.

When the broker connection drops while tasks are unacknowledged (late acks), Celery 5.7's
``on_connection_error_after_connected`` first ``collect()``s the connection, which detaches
its transport, then ``close()``s it; closing the channel a second time tries to restore the
unacknowledged messages through the detached transport and raises ``AttributeError``
(``'NoneType' object has no attribute 'hostname'``). Celery treats that as unrecoverable and
the worker exits: seen when Redis is killed mid-run. Here that error ends the cleanup only;
the tasks that would have been cancelled are cancelled, and the consumer reconnects as it
does after any connection loss. Nothing else is relied on: the unacknowledged messages come
back after the visibility timeout, and the requests by the schedules' leases.

The same detached transport breaks the acknowledgement of a task that finished just as the
connection dropped, once the consumer has reconnected: its message belongs to the old channel,
and acking it raises the same ``AttributeError`` in the event loop, which ended the worker too
(seen once in the Redis crash figure). :class:`Request` counts that error among the connection
errors an acknowledgement may meet: it is logged, and the message comes back after the
visibility timeout to a step that finds its request already moved on.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer
from celery.worker.request import Request as CeleryRequest
from celery.worker.state import active_requests

log = logging.getLogger("pallycon_pack.worker")


class Consumer(CeleryConsumer):
    def on_connection_error_after_connected(self, exc: Exception) -> None:
        try:
            super().on_connection_error_after_connected(exc)
        except AttributeError as error:
            log.warning("broker connection cleanup failed (%r); reconnecting anyway", error)
            if self.app.conf.worker_cancel_long_running_tasks_on_connection_loss:
                _cancel_unacknowledged(self.pool)


def _cancel_unacknowledged(pool: Any) -> None:
    """What Celery does after the cleanup: late-ack tasks still running are cancelled."""
    for request in tuple(active_requests):
        if request.task.acks_late and not request.acknowledged:
            try:
                request.cancel(pool)
            except Exception:  # as Celery does: one failure must not stop the others
                log.warning("could not cancel %r after the connection loss", request, exc_info=True)


class Request(CeleryRequest):
    """A task request whose ack (or reject) on a channel already detached is logged, not fatal."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        known: tuple[type[BaseException], ...] = self._connection_errors  # type: ignore[has-type]
        self._connection_errors = (*known, AttributeError)
