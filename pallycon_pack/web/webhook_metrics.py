"""The webhook deliveries as Prometheus metrics (pure): the exporter reads
:meth:`pallycon_store.webhooks.deliveries.Deliveries.overview` once per scrape (one pipelined
round trip of five commands per endpoint, and the endpoints' hash) and turns it into these.

Labels are bounded: attempt outcomes come from :class:`pallycon_store.webhooks.rules.AttemptKind`,
and the per-endpoint gauges are labelled by the endpoint's id (``ep_...``: one series per endpoint
an operator added), never by its URL. The counters live in Redis (``webhooks:counters``) and only
go back to zero if Redis loses them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from pallycon_store.webhooks import rules
from pallycon_store.webhooks.deliveries import Histogram, WebhookOverview

PREFIX = "pallycon_pack_webhook"


def webhook_metrics(overview: WebhookOverview, now: float) -> Iterator[Metric]:
    """Attempts by outcome, their latency, the lag to a 2xx, the totals delivered, dead,
    replayed and endpoints disabled; per endpoint: pending, in flight, the oldest pending's
    age, the dead-letter list, how long it has been failing, whether it is disabled."""
    counters = overview.counters
    attempts = CounterMetricFamily(
        f"{PREFIX}_attempts",
        "Webhook delivery attempts by outcome: 2xx (delivered), 3xx (a redirect, not followed), "
        "410 (disables the endpoint), 429, 4xx, 5xx, timeout, no_connection, refused_address "
        "(a private address), error.",
        labels=["outcome"],
    )
    for kind in rules.AttemptKind:
        attempts.add_metric([kind.value], counters.attempts.get(kind.value, 0))
    yield attempts
    yield _histogram(
        f"{PREFIX}_attempt_duration_seconds",
        "Webhook attempts that got a response: from sending to the response.",
        counters.latency,
        rules.LATENCY_BUCKETS,
    )
    yield _histogram(
        f"{PREFIX}_delivery_lag_seconds",
        "Webhook deliveries: from their result event to the 2xx that delivered them.",
        counters.lag,
        rules.LAG_BUCKETS,
    )
    for name, help_text, value in (
        ("delivered", "Webhook deliveries delivered (a 2xx).", counters.delivered),
        ("dead_lettered", "Webhook deliveries sent to a dead-letter list (out of attempts, "
         "or pending when their endpoint was disabled).", counters.dead),
        ("replayed", "Webhook deliveries replayed from a dead-letter list.", counters.replayed),
        ("endpoints_disabled", "Webhook endpoints disabled by a delivery (410 Gone, or "
         "failing for PALLYCON_WEBHOOK_DISABLE_AFTER).", counters.disabled),
    ):  # fmt: skip
        yield CounterMetricFamily(f"{PREFIX}_{name}", help_text, value=value)
    yield from _endpoint_metrics(overview, now)


def _endpoint_metrics(overview: WebhookOverview, now: float) -> Iterator[Metric]:
    families = {
        name: GaugeMetricFamily(f"{PREFIX}_{name}", help_text, labels=["endpoint"])
        for name, help_text in (
            ("pending", "Webhook deliveries neither delivered nor dead (waiting or being "
             "sent), by endpoint id."),
            ("in_flight", "Webhook deliveries being sent, by endpoint id."),
            ("oldest_pending_age_seconds", "Seconds since the result event of the endpoint's "
             "oldest pending delivery: its lag (0: none pending)."),
            ("dead_letters", "Webhook deliveries on the endpoint's dead-letter list."),
            ("failing_seconds", "Seconds since the endpoint's first failed attempt after its "
             "last 2xx (0: not failing)."),
            ("endpoint_disabled", "1 when the endpoint is disabled (by a delivery or by hand), "
             "else 0."),
        )
    }  # fmt: skip
    for e in overview.endpoints:
        label = [e.endpoint_id]
        failing = 0.0 if e.failing_since is None else max(0.0, now - e.failing_since)
        for name, value in (
            ("pending", e.pending),
            ("in_flight", e.in_flight),
            ("oldest_pending_age_seconds", e.oldest_pending_age or 0.0),
            ("dead_letters", e.dead),
            ("failing_seconds", failing),
            ("endpoint_disabled", 0 if e.disabled is None else 1),
        ):
            families[name].add_metric(label, value)
    yield from families.values()
    endpoints = GaugeMetricFamily(
        f"{PREFIX}_endpoints", "Webhook endpoints by state (enabled, disabled).", labels=["state"]
    )
    disabled = sum(e.disabled is not None for e in overview.endpoints)
    endpoints.add_metric(["enabled"], len(overview.endpoints) - disabled)
    endpoints.add_metric(["disabled"], disabled)
    yield endpoints


def _histogram(
    name: str, help_text: str, found: Histogram, bounds: Sequence[float]
) -> HistogramMetricFamily:
    """A histogram from counts per bucket as stored (not cumulative) to Prometheus's form."""
    cumulative, total = [], 0
    for bound in bounds:
        total += found.buckets.get(f"{bound:g}", 0)
        cumulative.append((floatToGoString(bound), float(total)))  # type: ignore[no-untyped-call]
    total += found.buckets.get("+Inf", 0)
    cumulative.append(("+Inf", float(total)))
    return HistogramMetricFamily(name, help_text, buckets=cumulative, sum_value=found.sum_seconds)
