"""When a webhook delivery is tried again. Pure: the random source is an argument.

In the spirit of Standard Webhooks: at once, then after 5 s, 5 min, 30 min, 2 h, 5 h and six
times 10 h: twelve attempts over about 2.8 days (about 3 with jitter and Retry-After). Each
delay is spread by ±:data:`JITTER` so that the deliveries of one burst do not come back
together. A ``Retry-After`` the receiver sent (bounded by :data:`MAX_RETRY_AFTER`) is a floor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

#: The delay before each attempt after the first, in seconds.
DELAYS: tuple[float, ...] = (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600) + (10 * 3600,) * 6
#: The number of attempts a delivery gets before it goes to the dead-letter list.
ATTEMPTS = len(DELAYS) + 1
#: Each delay is multiplied by a factor drawn from [1 - JITTER, 1 + JITTER].
JITTER = 0.2
#: The longest ``Retry-After`` honoured, in seconds (a longer one is cut to this).
MAX_RETRY_AFTER = 10 * 3600.0


def next_delay(
    attempts: int,
    random: Callable[[], float],
    retry_after: float | None = None,
    delays: Sequence[float] = DELAYS,
) -> float | None:
    """The delay before the next attempt of a delivery tried ``attempts`` times (1 or more),
    ``random`` giving a float in [0, 1); ``None`` once the schedule (``delays``: the
    setting ``PALLYCON_WEBHOOK_RETRY_SCHEDULE``, :data:`DELAYS` by default) has run out. A
    ``retry_after`` (seconds) makes the delay at least that long, at most
    :data:`MAX_RETRY_AFTER`."""
    if attempts < 1:
        raise ValueError("a delivery is scheduled again only after an attempt")
    if attempts > len(delays):
        return None
    delay = delays[attempts - 1] * (1 + JITTER * (2 * random() - 1))
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


def total_span() -> float:
    """The time from the first attempt to the last, without jitter, in seconds."""
    return sum(DELAYS)
