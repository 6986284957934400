"""The task messages: their names, queues and routes, and a task-less app that sends them.

Producers, the intake, the sweeper and the callback receiver send tasks by name; only the
worker defines them (worker/tasks.py), with the routes and queues given here. A message is a
hint to act now: every request is also on a durable schedule, so a lost message only delays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pallycon_store.connect import Target, broker_conf
from pallycon_store.keys import Keys

if TYPE_CHECKING:  # Celery is imported by what sends, not by what only reads
    from celery import Celery
    from kombu import Queue

SUBMIT_TASK = "pallycon.submit"
POLL_TASK = "pallycon.poll"

#: The most request ids per submit task: registrations of a batch go out concurrently, and
#: small batches spread them over every worker (the sweeper sends about a second of a site's
#: API rate per task, at most this).
SUBMIT_CHUNK = 50
#: Request ids per poll task: one paged job-list pass covers them all.
POLL_CHUNK = 5000

#: Publishing waits out a broker outage of about a minute before it gives up.
PUBLISH_RETRY_POLICY = {
    "max_retries": 20,
    "interval_start": 0.1,
    "interval_step": 0.5,
    "interval_max": 3,
}


#: How a worker reads its queues: in the order :func:`queues` lists them, the first that holds a
#: message first (kombu's Redis transport asks BRPOP for the queues in that order; its default,
#: ``round_robin``, would take a submit and a poll task in turn).
QUEUE_ORDER = "priority"


def queues(keys: Keys) -> list[Queue]:
    """The task queues, the poll queue first: a worker takes a poll task before any submit task
    (see :data:`QUEUE_ORDER`), so polls and callbacks of jobs already at PallyCon never wait
    behind registrations; submits wait at most for the polls, which are few (one job-list pass
    covers many) and bounded by the jobs in flight."""
    from kombu import Queue

    return [Queue(keys.poll_queue), Queue(keys.submit_queue)]


def routes(keys: Keys) -> dict[str, dict[str, str]]:
    return {SUBMIT_TASK: {"queue": keys.submit_queue}, POLL_TASK: {"queue": keys.poll_queue}}


def sending_conf(redis: Target, keys: Keys) -> dict[str, Any]:
    """The Celery configuration every sender shares with the worker (its broker: the Redis
    of ``redis``, found through sentinels if it names some)."""
    return {
        **broker_conf(redis),
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_queues": queues(keys),
        "task_default_queue": keys.submit_queue,
        "task_routes": routes(keys),
        "task_publish_retry": True,
        "task_publish_retry_policy": PUBLISH_RETRY_POLICY,
        "enable_utc": True,
    }


def sender(redis: Target, keys: Keys) -> Celery:
    """An app that sends the tasks and defines none (for processes that are not workers)."""
    from celery import Celery

    app = Celery("pallycon_pack", set_as_current=False)
    app.conf.update(sending_conf(redis, keys))
    return app


def send_submit(app: Celery, request_ids: Sequence[str], chunk: int = SUBMIT_CHUNK) -> None:
    """Submit tasks for these requests, ``chunk`` per task."""
    for start in range(0, len(request_ids), chunk):
        app.send_task(SUBMIT_TASK, args=[list(request_ids[start : start + chunk])])


def send_poll(app: Celery, request_ids: Sequence[str]) -> None:
    """Poll tasks for these requests, :data:`POLL_CHUNK` per task."""
    for start in range(0, len(request_ids), POLL_CHUNK):
        app.send_task(POLL_TASK, args=[list(request_ids[start : start + POLL_CHUNK])])
