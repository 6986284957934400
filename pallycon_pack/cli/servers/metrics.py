"""``pallycon-pack metrics``: serve Prometheus metrics of the whole fleet at ``/metrics``.

One exporter process covers every worker: it reads the shared state in Redis at each scrape
(:mod:`pallycon_pack.web.exporter`). Run one or two (they hold no state that matters).
"""

from __future__ import annotations

import click

from pallycon_pack.errors import EXIT_UNAVAILABLE, Failure

DEFAULT_PORT = 9840
#: Seconds a scrape waits on Redis per round trip (keep scrapes under Prometheus's 10 s).
SCRAPE_TIMEOUT = 3.0


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0 in a container).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port to listen on (0: any free port, printed).",
)
def metrics(host: str, port: int) -> None:
    """Serve Prometheus metrics of the whole fleet at /metrics, read from Redis at each scrape.

    Requests by state, transitions, API calls by code and their durations, queue and schedule
    depths, poll and intake lag, rate-limit waits, retries, reconciliations, dead letters, the
    workers' heartbeats; pallycon_pack_up is 0 while Redis cannot be read.
    """
    import signal
    import sys
    import threading

    from pallycon_config import load_settings
    from pallycon_store.wiring import Store
    from prometheus_client import start_http_server
    from prometheus_client.registry import CollectorRegistry

    from pallycon_pack.web.exporter import FleetCollector

    settings = load_settings()
    # A scrape of a stalled Redis gives up within seconds (pallycon_pack_up 0), no retries.
    collector = FleetCollector(Store.of(settings, deadline=SCRAPE_TIMEOUT))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    try:
        server, _ = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise Failure(
            f"metrics: cannot listen on {host}:{port} ({exc.strerror or exc}); see --host, --port",
            EXIT_UNAVAILABLE,
        ) from None
    bound = server.server_address[1]
    from pallycon_config.logs import configure, log_start

    configure(settings.log_level)
    log_start("metrics", settings, host=host, port=bound)
    click.echo(f"metrics: listening on http://{host}:{bound} (GET /metrics)", err=True)
    sys.stderr.flush()
    threading.Thread(target=collector.start, name="tail-start", daemon=True).start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
