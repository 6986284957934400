"""The pure parts of webhook endpoints: ids, sealed secrets, the pinned URL of a delivery, and
what ``webhooks list`` and ``test`` print."""

from __future__ import annotations

import ipaddress

import pytest

from pallycon_pack.present import webhooks as shown
from pallycon_pack.present.webhooks import endpoint_lines, endpoint_row
from pallycon_store.webhooks import addresses, outcome
from pallycon_store.webhooks.endpoints import (
    ROTATION_OVERLAP,
    Disabled,
    Endpoint,
    SealedSecret,
    new_id,
)
from pallycon_store.webhooks.errors import UnreadableSecret
from pallycon_store.webhooks.sealing import VERSION, Sealer
from pallycon_store.webhooks.signing import Secret

KEY = "a-webhook-key-of-at-least-32-characters"
NOW = 1_800_000_000.0


def test_ids_are_ep_and_twelve_base32_characters():
    """An endpoint id is ``ep_`` + 12 lowercase base32 characters."""
    made = new_id(lambda n: bytes(range(n)))
    assert made == "ep_aaaqeayeaudaoca"[:15]
    assert len({new_id() for _ in range(100)}) == 100


def test_a_sealed_secret_opens_only_for_its_endpoint_and_key():
    """Sealing twice gives two texts (a nonce each); each opens to the secret for its
    endpoint only, and not under another key or when damaged."""
    sealer = Sealer.of(KEY)
    secret = Secret.generate()
    one, two = sealer.seal("ep_a", secret), sealer.seal("ep_a", secret)
    assert one != two
    assert one.startswith(VERSION)
    assert sealer.open("ep_a", one) == secret
    assert secret.text() not in one
    for endpoint_id, sealed, key in (
        ("ep_b", one, KEY),
        ("ep_a", one, KEY + "x"),
        ("ep_a", one[:-4] + "AAAA", KEY),
        ("ep_a", "v1:!!", KEY),
        ("ep_a", "v2:" + one[3:], KEY),
    ):
        with pytest.raises(UnreadableSecret, match="PALLYCON_WEBHOOK_KEY"):
            Sealer.of(key).open(endpoint_id, sealed)


@pytest.mark.parametrize(
    ("url", "address", "pinned"),
    [
        ("https://hooks.example.com/a?b=1", "93.184.216.34", "https://93.184.216.34/a?b=1"),
        ("https://hooks.example.com:8443/a", "93.184.216.34", "https://93.184.216.34:8443/a"),
        ("http://h.example/x", "2606:2800:220:1::1", "http://[2606:2800:220:1::1]/x"),
    ],
)
def test_a_delivery_connects_to_the_address_that_was_checked(url: str, address: str, pinned: str):
    """The URL's host is replaced by the checked address, port, path and query kept."""
    assert addresses.pinned(url, ipaddress.ip_address(address)) == pinned


def _endpoint(**changes: object) -> Endpoint:
    base: dict[str, object] = {
        "id": "ep_abc",
        "url": "https://hooks.example.com/x",
        "events": frozenset({"completed", "failed"}),
        "site": "",
        "allow_private": False,
        "created_at": NOW,
        "secrets": (SealedSecret("v1:sealed-text"),),
    }
    return Endpoint(**{**base, **changes})  # type: ignore[arg-type]


def test_an_endpoint_survives_its_stored_json():
    """to_json and from_json give back the same endpoint, disabled or rotating too."""
    endpoint = _endpoint(
        disabled=Disabled("HTTP 410", NOW),
        secrets=(SealedSecret("v1:new"), SealedSecret("v1:old", NOW + ROTATION_OVERLAP)),
        site="BRND",
    )
    assert Endpoint.from_json(endpoint.to_json()) == endpoint


def test_list_shows_state_scope_and_rotation_never_a_sealed_secret():
    """list's lines and JSON row name the endpoint's state, events, site and rotation, never
    the stored secrets."""
    rotating = _endpoint(
        secrets=(SealedSecret("v1:new"), SealedSecret("v1:old", NOW + 60)),
        disabled=Disabled("HTTP 410", NOW),
        site="BRND",
    )
    lines = endpoint_lines([rotating], NOW)
    text = "\n".join(lines)
    assert "disabled since 2027-01-15 08:00:00 UTC: HTTP 410" in lines[0]
    assert "completed, failed of site BRND" in lines[1]
    assert "2 secrets sign until 2027-01-15 08:01:00 UTC (rotation)" in lines[1]
    row = endpoint_row(rotating, NOW)
    assert (row["signing_secrets"], row["rotation_ends"]) == (2, "2027-01-15T08:01:00.000+00:00")
    assert row["created_at"] == row["disabled"]["at"] == "2027-01-15T08:00:00.000+00:00"
    assert endpoint_row(rotating, NOW + 60)["signing_secrets"] == 1
    assert "v1:" not in text + str(row)
    assert endpoint_lines([], NOW) == [
        "no webhook endpoints (add one with: pallycon-pack webhooks add URL)"
    ]


@pytest.mark.parametrize(
    ("found", "seconds", "line"),
    [
        (outcome.classify(200, None, NOW), 0.0123, "ep_abc: HTTP 200 in 0.012 s: delivered"),
        (
            outcome.classify(503, "5", NOW),
            1.0,
            "ep_abc: HTTP 503 in 1.000 s: not delivered: a delivery would be retried",
        ),
        (
            outcome.classify(410, None, NOW),
            0.5,
            "ep_abc: HTTP 410 in 0.500 s: not delivered: a delivery would disable the endpoint "
            "(410 Gone)",
        ),
        (
            outcome.no_response("no response in 15 s (timeout)"),
            None,
            "ep_abc: no response in 15 s (timeout): not delivered: a delivery would be retried",
        ),
    ],
)
def test_the_test_line_says_the_status_and_what_it_would_mean(
    found: outcome.Outcome, seconds: float | None, line: str
):
    """test's one line: the status (or why none), how long, and what a delivery would do."""
    assert shown.test_line("ep_abc", found, seconds) == line
