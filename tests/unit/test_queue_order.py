"""A worker reads the poll queue before the submit queue, whichever it took from last: polls
and callbacks of jobs already at PallyCon never wait behind registrations."""

from __future__ import annotations

from kombu.utils.scheduling import cycle_by_name

from pallycon_config import Settings
from pallycon_store.wiring import keys_of
from pallycon_worker.tasks import create_app


def _worker_conf() -> tuple[list[str], str]:
    settings = Settings(_env_file=None, redis_url="redis://127.0.0.1:9/0")
    app = create_app(settings)
    consumed = list(app.amqp.queues.consume_from)
    return consumed, app.conf.broker_transport_options["queue_order_strategy"]


def test_the_worker_consumes_the_poll_queue_first_by_priority() -> None:
    """The queues in the order the worker consumes them: poll, then submit; kombu told to keep
    that order (not to rotate them)."""
    keys = keys_of(Settings(_env_file=None))
    consumed, strategy = _worker_conf()
    assert consumed == [keys.poll_queue, keys.submit_queue]
    assert strategy == "priority"


def test_the_order_holds_whichever_queue_gave_the_last_message() -> None:
    """The BRPOP keys kombu's Redis transport sends (its cycle's order) stay poll first after a
    message from either queue; the default strategy would put the poll queue last."""
    consumed, strategy = _worker_conf()
    orders = []
    for name in (strategy, "round_robin"):
        cycle = cycle_by_name(name)()
        cycle.update(list(consumed))
        taken = []
        for last in (consumed[0], consumed[1], consumed[0]):
            cycle.rotate(last)
            taken.append(next(iter(cycle.consume(len(consumed)))))
        orders.append(taken)
    assert orders[0] == [consumed[0]] * 3
    assert orders[1] != [consumed[0]] * 3
