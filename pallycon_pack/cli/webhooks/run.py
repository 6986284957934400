"""The work of ``webhooks add|list|remove|rotate-secret|test|failures|replay|enable|disable``:
the endpoints in Redis (:mod:`pallycon_store.webhooks.endpoints`), their dead-letter lists
(:mod:`pallycon_store.webhooks.deliveries`), and one signed test event sent from here."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import click

from pallycon_config import Settings, load_settings
from pallycon_config.rules import check_site_id
from pallycon_pack.cli.inputs import read_secret
from pallycon_pack.errors import EXIT_FAILED, EXIT_INVALID, Failure
from pallycon_pack.interrupts import on_interrupt
from pallycon_pack.present import render
from pallycon_pack.present.flow import unserved_sites_line
from pallycon_pack.present.records import parse_since
from pallycon_pack.present.webhooks import (
    added_line,
    endpoint_lines,
    endpoint_row,
    failure_lines,
    failure_row,
    replayed_line,
    rotated_line,
    state,
    test_line,
)
from pallycon_store import heartbeats, sites
from pallycon_store.events import iso
from pallycon_store.webhooks import outcome, payload, rules
from pallycon_store.webhooks.deliveries import Deliveries
from pallycon_store.webhooks.endpoints import Endpoint, Endpoints
from pallycon_store.webhooks.errors import RefusedAddress
from pallycon_store.webhooks.sealing import Sealer
from pallycon_store.webhooks.signing import Secret
from pallycon_store.wiring import Store
from pallycon_worker import webhook_send

#: The longest a test delivery may take, in seconds (as a delivery's by default).
TIMEOUT = webhook_send.TIMEOUT
#: The option that reads a secret.
FILE_OPTION = "--secret-file"
#: What ``add`` and ``test`` say when no live worker can send deliveries.
NO_SENDER = (
    "warning: no running worker can send webhooks (none has PALLYCON_WEBHOOK_KEY): deliveries "
    "wait; set PALLYCON_WEBHOOK_KEY for the workers (as here) and restart them"
)


@dataclass(frozen=True)
class Hand:
    """What the commands work with: the endpoints in Redis, and the settings."""

    settings: Settings
    endpoints: Endpoints

    @classmethod
    def of(cls) -> Hand:
        settings = load_settings()
        store = Store.of(settings)
        return cls(settings, Endpoints(store.redis, store.keys))

    def deliveries(self) -> Deliveries:
        """The deliveries on the same connection."""
        return Deliveries(self.endpoints.redis, self.endpoints.keys)

    def warn_if_no_sender(self) -> None:
        """One warning line (stderr) when workers are alive but none can send a delivery
        (each without PALLYCON_WEBHOOK_KEY, as their heartbeats say)."""
        beats = heartbeats.read(self.endpoints.redis, self.endpoints.keys, time.time())
        if rules.no_sender(beats):
            click.echo(NO_SENDER, err=True)

    def sealer(self) -> Sealer:
        """The sealer of PALLYCON_WEBHOOK_KEY (a one-line error naming it when unset)."""
        return Sealer.of(self.settings.require_webhook_key().get_secret_value())


def secret_of(path: str | None) -> tuple[Secret, bool]:
    """The secret in the file at ``path`` ('-': standard input), or a new one if ``path`` is
    None; and whether it was generated."""
    if path is None:
        return Secret.generate(), True
    return Secret.parse(read_secret(path, FILE_OPTION)), False


def add(
    url: str, secret_file: str | None, events: str, site: str | None, allow_private: bool
) -> None:
    """``add``: store the endpoint; its id on stdout (a generated secret below it), what was
    added on stderr."""
    if site is not None:
        try:
            check_site_id(site)
        except ValueError as exc:
            raise Failure(f"--site {site!r}: {exc}", EXIT_INVALID) from None
    hand = Hand.of()
    sealer = hand.sealer()
    secret, generated = secret_of(secret_file)
    same = [e.id for e in hand.endpoints.list() if e.url == url]
    on_interrupt("interrupted: the endpoint may have been added; see pallycon-pack webhooks list")
    endpoint = hand.endpoints.add(
        sealer,
        url,
        secret,
        time.time(),
        events=events.split(","),
        site=site or "",
        allow_private=allow_private,
    )
    click.echo(endpoint.id)
    if generated:
        click.echo(secret.text())
    click.echo(added_line(endpoint, generated), err=True)
    if not allow_private:
        warn_if_refused_now(endpoint)
    hand.warn_if_no_sender()
    if same:
        verb = "delivers" if len(same) == 1 else "deliver"
        click.echo(
            f"warning: {', '.join(same)} already {verb} to this URL: it will get each event "
            "once per endpoint (remove one with: pallycon-pack webhooks remove ID)",
            err=True,
        )
    if site:
        known = sites.book(hand.endpoints.redis, hand.endpoints.keys, default=hand.settings.site_id)
        line = unserved_sites_line(
            [site], known.ids, "the endpoint gets its requests' events once one does"
        )
        if line:
            click.echo(line, err=True)


def warn_if_refused_now(endpoint: Endpoint) -> None:
    """One warning line (stderr) when ``endpoint``'s host resolves now to no address a
    delivery may reach (it stays added: the name may resolve otherwise by then)."""
    try:
        webhook_send.resolve(endpoint)
    except RefusedAddress as exc:
        click.echo(
            f"warning: {exc}; added all the same (the address is checked at each delivery)",
            err=True,
        )


def list_(as_json: bool) -> None:
    """``list``: every endpoint and its deliveries (pending, dead, last 2xx, failing since and
    the last outcome), never a secret."""
    hand = Hand.of()
    now = time.time()
    found = hand.endpoints.list()
    health = {h.endpoint_id: h for h in hand.deliveries().overview(now).endpoints}
    if as_json:
        render.emit_json([endpoint_row(e, now, health.get(e.id)) for e in found])
        return
    for line in endpoint_lines(found, now, health):
        click.echo(line)


def remove(endpoint_id: str) -> None:
    """``remove``: one line naming what was removed."""
    removed = Hand.of().deliveries().remove_endpoint(endpoint_id)
    click.echo(f"removed webhook endpoint {removed.id}: {removed.url}")


def rotate(endpoint_id: str, secret_file: str | None) -> None:
    """``rotate-secret``: the new secret current, the old ones signing beside it a while."""
    hand = Hand.of()
    sealer = hand.sealer()
    hand.endpoints.get(endpoint_id)  # an unknown id before a secret is read or generated
    secret, generated = secret_of(secret_file)
    on_interrupt("interrupted: the secret may have been rotated; see pallycon-pack webhooks list")
    now = time.time()
    endpoint = hand.endpoints.rotate(sealer, endpoint_id, secret, now)
    if generated:
        click.echo(secret.text())
    click.echo(rotated_line(endpoint, now, generated), err=True)


def test(endpoint_id: str) -> None:
    """``test``: one signed test event sent now; one line; exit 1 unless delivered."""
    hand = Hand.of()
    sealer = hand.sealer()
    endpoint = hand.endpoints.get(endpoint_id)
    now = time.time()
    secrets = hand.endpoints.open_secrets(sealer, endpoint, now)
    hand.warn_if_no_sender()
    on_interrupt("interrupted: the test event may have been sent; nothing was changed")
    found, seconds = send_test(endpoint, secrets, now, hand.settings.webhook_timeout)
    line = test_line(endpoint.id, found, seconds)
    if found.verdict is not outcome.Verdict.DELIVERED:
        raise Failure(line, EXIT_FAILED)
    click.echo(line)


def test_body(endpoint: Endpoint, now: float) -> tuple[str, bytes]:
    """The ``webhook-id`` and body of a test event to ``endpoint``."""
    webhook_id = f"test_{endpoint.id}_{os.urandom(6).hex()}"
    data = {"endpoint_id": endpoint.id, "message": "a test event from pallycon-pack webhooks test"}
    return webhook_id, payload.encode(payload.TEST_TYPE, iso(now), data)


def send_test(
    endpoint: Endpoint, secrets: list[Secret], now: float, timeout: float = TIMEOUT
) -> tuple[outcome.Outcome, float | None]:
    """Send one signed test event to ``endpoint`` as a delivery is sent
    (:func:`pallycon_worker.webhook_send.send`): its outcome, and the seconds the response took
    (None: no response)."""
    webhook_id, body = test_body(endpoint, now)
    limit = webhook_send.attempt_limit(timeout)
    with webhook_send.new_client(timeout) as client, webhook_send.attempt_deadline(limit):
        sent = webhook_send.send(client, endpoint, webhook_id, body, secrets, now)
    return sent.outcome, sent.seconds


def failures(endpoint_id: str | None, since: str | None, limit: int, as_json: bool) -> None:
    """``failures``: the dead-letter list, newest first."""
    hand = Hand.of()
    now = time.time()
    after = parse_since(since, now) if since else None
    ids = [hand.endpoints.get(endpoint_id).id] if endpoint_id else endpoint_ids(hand)
    found = hand.deliveries().failures(ids, after, limit)
    if as_json:
        render.emit_json([failure_row(letter) for letter in found])
        return
    for line in failure_lines(found):
        click.echo(line)


def endpoint_ids(hand: Hand) -> list[str]:
    return [endpoint.id for endpoint in hand.endpoints.list()]


def replay(endpoint_id: str | None, since: str | None) -> None:
    """``replay``: the dead-lettered deliveries due again; one line."""
    hand = Hand.of()
    now = time.time()
    after = parse_since(since, now) if since else None
    if endpoint_id:
        endpoint = hand.endpoints.get(endpoint_id)
        if endpoint.disabled is not None:
            raise Failure(
                f"{endpoint.id} is disabled ({endpoint.disabled.reason}): enable it first "
                f"(pallycon-pack webhooks enable {endpoint.id}), then replay",
                EXIT_INVALID,
            )
        chosen, left = [endpoint.id], []
    else:
        found = hand.endpoints.list()
        chosen = [e.id for e in found if e.disabled is None]
        left = [e.id for e in found if e.disabled is not None]
    on_interrupt("interrupted: some deliveries may have been replayed; see webhooks failures")
    count = hand.deliveries().replay(chosen, now, hand.settings.webhook_endpoint_concurrency, after)
    click.echo(replayed_line(count, left))


def enable(endpoint_id: str) -> None:
    """``enable``: one line."""
    endpoint = Hand.of().deliveries().enable_endpoint(endpoint_id)
    click.echo(f"enabled webhook endpoint {endpoint.id}: {endpoint.url}")


def disable(endpoint_id: str, reason: str) -> None:
    """``disable``: one line."""
    endpoint = Hand.of().deliveries().disable_by_hand(endpoint_id, reason.strip(), time.time())
    click.echo(f"disabled webhook endpoint {endpoint.id}: {state(endpoint)}")
