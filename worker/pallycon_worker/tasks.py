"""The Celery application: configuration, two thin tasks, and the background step.

Configured as docs/RELIABILITY notes require: JSON only, late acks, reject on worker lost,
prefetch 1, a deliberate visibility timeout, endless broker reconnection. Tasks carry request
ids only and do one short step; the durable schedules in Redis (not Celery countdowns) decide
when the next step runs. Every worker's main process also runs the sweeper, the stream
intake and the webhook deliveries in background threads: any number of workers may run them at
once.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery, bootsteps
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init

from pallycon_config import Settings
from pallycon_config.logs import configure
from pallycon_store.connect import REDIS_AWAY, describe
from pallycon_store.messages import (
    POLL_TASK,
    QUEUE_ORDER,
    SUBMIT_TASK,
    send_poll,
    send_submit,
    sending_conf,
)
from pallycon_store.wiring import keys_of
from pallycon_worker.intake_stream import consume_intake
from pallycon_worker.loops import LoopHealth, supervise
from pallycon_worker.poll import poll
from pallycon_worker.runtime import Runtime
from pallycon_worker.submit import submit_batch
from pallycon_worker.sweeper import sweep_forever
from pallycon_worker.webhooks import deliver_webhooks

log = logging.getLogger("pallycon_pack.worker")

# Celery warns at every broker connection loss that it will cancel running tasks by default in
# a later version: this app decides (below, worker_cancel_long_running_tasks_on_connection_loss).
warnings.filterwarnings(
    "ignore", message=r"(?s).*In Celery 5\.1 we introduced an optional breaking"
)


def configure_celery(app: Celery, settings: Settings) -> None:
    sending = sending_conf(settings.redis, keys_of(settings))
    transport = sending.pop("broker_transport_options", {})
    app.conf.update(sending)
    app.conf.update(
        broker_transport_options={
            **transport,
            "visibility_timeout": settings.visibility_timeout,
            "queue_order_strategy": QUEUE_ORDER,  # the poll queue first
        },
        broker_connection_max_retries=None,
        broker_channel_error_retry=True,
        # A step cut off from Redis goes on, keeps what it could not write and writes it once
        # Redis is back (pallycon_worker.runtime.Unsettled): cancelling it would kill its pool
        # process and lose that, leaving marks to wait out the hard time limit. Its message comes
        # back after the visibility timeout to a step that finds its requests moved on.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        result_serializer="json",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        result_backend=None,
        task_time_limit=settings.task_time_limit,
        task_soft_time_limit=settings.task_soft_time_limit,
        worker_hijack_root_logger=False,
        worker_consumer="pallycon_worker.consumer:Consumer",
        worker_send_task_events=False,
    )


class _Process:
    """This process's runtime, rebuilt after a fork (connections are not shared)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pid = -1
        self._runtime: Runtime | None = None
        self._lock = threading.Lock()

    def runtime(self) -> Runtime:
        with self._lock:
            if self._runtime is None or self._pid != os.getpid():
                configure(self.settings.log_level)
                self._runtime = Runtime.build(self.settings)
                self._pid = os.getpid()
            return self._runtime


def create_app(settings: Settings) -> Celery:
    """The worker's Celery app for these settings: the tasks and the background loops.

    Processes that only send tasks use :func:`pallycon_store.messages.sender`."""
    app = Celery("pallycon_pack", set_as_current=False)
    configure_celery(app, settings)
    process = _Process(settings)

    @app.task(name=SUBMIT_TASK, ignore_result=True, Request=REQUEST)
    def submit_task(request_ids: list[str]) -> None:
        with _step_ends("submit", request_ids):
            submit_batch(
                process.runtime(), request_ids, isolate=lambda rid: send_submit(app, [rid])
            )

    @app.task(name=POLL_TASK, ignore_result=True, Request=REQUEST)
    def poll_task(request_ids: list[str]) -> None:
        with _step_ends("poll", request_ids):
            rt = process.runtime()
            rt.unsettled.settle()  # what this process could not write before, first
            poll(rt, request_ids, isolate=lambda rid: send_poll(app, [rid]))

    app.steps["worker"].add(_background_step(process, app))
    return app


#: The tasks' request class: an ack on a channel a lost connection left behind is not fatal.
REQUEST = "pallycon_worker.consumer:Request"


@contextmanager
def _step_ends(step: str, request_ids: list[str]) -> Iterator[None]:
    """A step cut short by Redis going away or by the soft time limit ends with one warning
    line, not a traceback: what it did is recorded, and the requests' schedule entries (leased
    when the step was dispatched) bring the rest back. The message is acknowledged either way
    (late ack), as it would be had the task raised."""
    try:
        yield
    except REDIS_AWAY as exc:
        log.warning(
            "%s of %d request(s) stopped: Redis unavailable (%s); their schedule brings them back",
            step,
            len(request_ids),
            describe(exc),
        )
    except SoftTimeLimitExceeded:
        log.warning(
            "%s of %d request(s) stopped at the soft time limit; what was done is recorded, "
            "their schedule brings the rest back",
            step,
            len(request_ids),
        )


def _background_step(process: _Process, app: Celery) -> type[bootsteps.StartStopStep]:
    class Background(bootsteps.StartStopStep):
        """The sweeper, the stream intake and the webhooks, in threads of the worker's main
        process."""

        requires = ("celery.worker.components:Pool",)

        def __init__(self, worker: Any, **kwargs: Any) -> None:
            super().__init__(worker, **kwargs)
            self.stop_event = threading.Event()
            self.threads: list[threading.Thread] = []
            # Connected here, in a worker's main process before its pool forks (not in every
            # process that makes the app): each pool process inherits it.
            worker_process_init.connect(self.warm_up, weak=False)

        @staticmethod
        def warm_up(**_: Any) -> None:
            """Build a pool process's runtime as it starts, not in its first task's time."""
            try:
                process.runtime()
                log.debug("pool process ready", extra={"fields": {"pid": os.getpid()}})
            except Exception:  # the first task will raise it again, where Celery reports it
                log.exception("worker process start-up failed")

        def start(self, worker: Any) -> None:
            rt = process.runtime()
            try:
                rt.announce()
            except REDIS_AWAY as exc:  # the sweeper announces them again within a minute
                log.warning("sites not announced yet: Redis unavailable (%s)", describe(exc))
            stop = self.stop_event
            health = LoopHealth(rt.shared.redis, rt.shared.keys, worker.hostname)
            loops: list[tuple[str, Callable[[], None]]] = [
                ("sweeper", lambda: sweep_forever(rt, app, stop, health)),
                ("intake", consume_intake(rt, worker.hostname, stop, health)),
                ("webhooks", deliver_webhooks(rt, worker.hostname, stop, health)),
            ]
            for name, loop in loops:
                thread = threading.Thread(
                    target=supervise,
                    args=(name, loop, stop, health),
                    name=f"pallycon-{name}",
                    daemon=True,
                )
                thread.start()
                self.threads.append(thread)
            log.info(
                "sweeper, intake and webhooks started", extra={"fields": {"node": worker.hostname}}
            )

        def stop(self, worker: Any) -> None:
            self.stop_event.set()
            for thread in self.threads:
                thread.join(5)
                if thread.is_alive():
                    log.warning("%s did not stop within 5 s; the worker exits anyway", thread.name)

    return Background
