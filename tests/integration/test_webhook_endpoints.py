"""Webhook endpoints in a real Redis: added, listed, rotated, disabled, removed; their secrets
encrypted at rest (never in clear in a dump of the keys) and bound to their endpoint."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable

import pytest
import redis

from pallycon_store.keys import Keys
from pallycon_store.webhooks.endpoints import ROTATION_OVERLAP, Endpoints
from pallycon_store.webhooks.errors import (
    MalformedEndpoint,
    RefusedAddress,
    UnknownEndpoint,
    UnreadableSecret,
)
from pallycon_store.webhooks.payload import DEFAULT_EVENTS
from pallycon_store.webhooks.sealing import Sealer
from pallycon_store.webhooks.signing import Secret
from support.redis_server import RedisServer

pytestmark = pytest.mark.integration

KEY = "a-webhook-key-of-at-least-32-characters"
NOW = 1_800_000_000.0
URL = "https://hooks.example.com/pallycon"


@pytest.fixture
def client(redis_server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url, decode_responses=True)


@pytest.fixture
def endpoints(client: redis.Redis) -> Endpoints:
    return Endpoints(client, Keys(f"w{os.urandom(4).hex()}"))


def _dump(endpoints: Endpoints) -> str:
    """Everything Redis holds under the deployment's prefix, as text (what a dump shows)."""
    client = endpoints.redis
    keys = client.scan_iter(f"{endpoints.keys.prefix}:*")
    return "\n".join(f"{key} {json.dumps(client.hgetall(key))}" for key in keys)


def _clear_forms(secret: Secret) -> list[str]:
    """The ways a secret could appear in clear: as written, its base64, its hex, its bytes."""
    b64 = base64.b64encode(secret.key).decode()
    return [secret.text(), b64, b64[:16], secret.key.hex(), secret.key.decode("latin-1")]


def test_an_endpoint_is_stored_with_its_filters_and_its_secret_encrypted(endpoints: Endpoints):
    """add stores the URL, events, site and flags; get and list read them back; the dump of
    the keys never holds the secret in clear, and the sealer opens it again."""
    sealer = Sealer.of(KEY)
    secret = Secret.generate()
    added = endpoints.add(sealer, URL, secret, NOW, events=["completed", "failed"], site="BRND")
    assert added.id.startswith("ep_")
    assert len(added.id) == 15
    assert endpoints.get(added.id) == added
    assert endpoints.list() == [added]
    assert (added.url, added.events, added.site) == (
        URL,
        frozenset({"completed", "failed"}),
        "BRND",
    )
    assert not added.allow_private
    assert added.disabled is None
    dump = _dump(endpoints)
    assert added.id in dump
    assert URL in dump
    for form in _clear_forms(secret):
        assert form not in dump
    assert endpoints.open_secrets(sealer, endpoints.get(added.id), NOW) == [secret]


def test_no_events_named_means_the_outcomes_and_every_site(endpoints: Endpoints):
    """An endpoint that names no events gets the outcomes, of every site."""
    added = endpoints.add(Sealer.of(KEY), URL, Secret.generate(), NOW)
    assert added.events == DEFAULT_EVENTS
    assert added.wants("completed", "ANY")
    assert not added.wants("progress", "ANY")


def test_a_secret_opens_only_with_its_key_and_for_its_endpoint(endpoints: Endpoints):
    """Another PALLYCON_WEBHOOK_KEY, or a sealed secret copied onto another endpoint, does not
    decrypt: UnreadableSecret, whose message names the setting and no secret."""
    sealer = Sealer.of(KEY)
    secret = Secret.generate()
    one = endpoints.add(sealer, URL, secret, NOW)
    other = endpoints.add(sealer, URL + "/2", Secret.generate(), NOW)
    with pytest.raises(UnreadableSecret, match="PALLYCON_WEBHOOK_KEY") as caught:
        endpoints.open_secrets(Sealer.of(KEY + "-changed"), one, NOW)
    assert secret.text() not in str(caught.value)
    swapped = type(other)(**{**other.__dict__, "secrets": one.secrets})
    with pytest.raises(UnreadableSecret):
        endpoints.open_secrets(sealer, swapped, NOW)


def test_a_rotation_signs_with_both_secrets_until_the_old_one_expires(endpoints: Endpoints):
    """rotate makes the new secret current; the old one signs beside it for 24 h, then not;
    neither is in clear in the dump."""
    sealer = Sealer.of(KEY)
    old, new = Secret.generate(), Secret.generate()
    added = endpoints.add(sealer, URL, old, NOW)
    rotated = endpoints.rotate(sealer, added.id, new, NOW + 10)
    stored = endpoints.get(added.id)
    assert stored == rotated
    assert endpoints.open_secrets(sealer, stored, NOW + 20) == [new, old]
    assert stored.rotation_ends(NOW + 20) == NOW + 10 + ROTATION_OVERLAP
    later = NOW + 10 + ROTATION_OVERLAP
    assert endpoints.open_secrets(sealer, stored, later) == [new]
    assert stored.rotation_ends(later) is None
    dump = _dump(endpoints)
    for form in [*_clear_forms(old), *_clear_forms(new)]:
        assert form not in dump


def test_a_second_rotation_keeps_the_first_ones_expiry_and_drops_expired_secrets(
    endpoints: Endpoints,
):
    """Rotating again within the overlap keeps the older secret's end; once it has expired, a
    rotation drops it."""
    sealer = Sealer.of(KEY)
    first, second, third, fourth = (Secret.generate() for _ in range(4))
    added = endpoints.add(sealer, URL, first, NOW)
    endpoints.rotate(sealer, added.id, second, NOW)
    endpoints.rotate(sealer, added.id, third, NOW + 100)
    stored = endpoints.get(added.id)
    assert endpoints.open_secrets(sealer, stored, NOW + 200) == [third, second, first]
    assert [s.expires_at for s in stored.secrets] == [
        None,
        NOW + 100 + ROTATION_OVERLAP,
        NOW + ROTATION_OVERLAP,
    ]
    endpoints.rotate(sealer, added.id, fourth, NOW + ROTATION_OVERLAP + 50)
    assert len(endpoints.get(added.id).secrets) == 3  # fourth, third, second


def test_a_rotation_after_the_key_changed_drops_the_secrets_it_cannot_open(
    endpoints: Endpoints,
):
    """PALLYCON_WEBHOOK_KEY changed: the stored secret cannot be opened, and rotating (as the
    error says to) leaves the new secret alone, so the endpoint signs again."""
    old_key, new_key = Sealer.of(KEY), Sealer.of(KEY.upper() + "-changed")
    added = endpoints.add(old_key, URL, Secret.generate(), NOW)
    with pytest.raises(UnreadableSecret):
        endpoints.open_secrets(new_key, added, NOW)
    new = Secret.generate()
    rotated = endpoints.rotate(new_key, added.id, new, NOW + 10)
    assert endpoints.open_secrets(new_key, rotated, NOW + 20) == [new]


def test_disable_and_enable(endpoints: Endpoints):
    """A disabled endpoint keeps its first reason and time and wants no event; enable clears
    it."""
    added = endpoints.add(Sealer.of(KEY), URL, Secret.generate(), NOW)
    endpoints.disable(added.id, "HTTP 410", NOW + 1)
    endpoints.disable(added.id, "again", NOW + 2)
    disabled = endpoints.get(added.id).disabled
    assert disabled is not None
    assert (disabled.reason, disabled.at) == ("HTTP 410", NOW + 1)
    assert not endpoints.get(added.id).wants("completed", "")
    assert endpoints.enable(added.id).disabled is None
    assert endpoints.get(added.id).wants("completed", "")


def test_remove_and_unknown_ids(endpoints: Endpoints):
    """remove deletes the endpoint; an id that names none is UnknownEndpoint for get, remove,
    rotate, disable and enable alike."""
    sealer = Sealer.of(KEY)
    added = endpoints.add(sealer, URL, Secret.generate(), NOW)
    assert endpoints.remove(added.id) == added
    assert endpoints.list() == []
    calls: list[Callable[[], object]] = [
        lambda: endpoints.get(added.id),
        lambda: endpoints.remove(added.id),
        lambda: endpoints.rotate(sealer, added.id, Secret.generate(), NOW),
        lambda: endpoints.disable(added.id, "x", NOW),
        lambda: endpoints.enable(added.id),
    ]
    for call in calls:
        with pytest.raises(UnknownEndpoint, match=added.id):
            call()


@pytest.mark.parametrize(
    ("url", "allow_private", "error", "says"),
    [
        ("ftp://hooks.example.com/", False, MalformedEndpoint, "https://"),
        ("https://user:pw@hooks.example.com/", False, MalformedEndpoint, "user or password"),
        ("https:///path", False, MalformedEndpoint, "host"),
        ("http://hooks.example.com/", False, MalformedEndpoint, "--allow-private"),
        ("https://127.0.0.1:8080/", False, RefusedAddress, "loopback"),
        ("https://169.254.169.254/", False, RefusedAddress, "link-local"),
        ("https://[::ffff:10.0.0.1]/", False, RefusedAddress, "private"),
        ("https://hooks.example.com/#x", False, MalformedEndpoint, "fragment"),
        ("https://hooks.example.com:99999/", False, MalformedEndpoint, "not a URL"),
        ("https://hooks.example.com:0/", False, MalformedEndpoint, "port is 1 to 65535"),
    ],
)
def test_urls_that_cannot_be_added(
    endpoints: Endpoints, url: str, allow_private: bool, error: type[Exception], says: str
):
    """A URL deliveries may not go to is refused at add, saying why; nothing is stored."""
    with pytest.raises(error, match=says):
        endpoints.add(Sealer.of(KEY), url, Secret.generate(), NOW, allow_private=allow_private)
    assert endpoints.list() == []


def test_private_and_plain_http_urls_need_allow_private(endpoints: Endpoints):
    """With allow_private, a loopback address over plain HTTP is added."""
    added = endpoints.add(
        Sealer.of(KEY), "http://127.0.0.1:8080/hook", Secret.generate(), NOW, allow_private=True
    )
    assert endpoints.get(added.id).allow_private


def test_unknown_event_types_are_refused(endpoints: Endpoints):
    """An event type that is not a result event's is refused, naming it."""
    with pytest.raises(MalformedEndpoint, match="finished"):
        endpoints.add(Sealer.of(KEY), URL, Secret.generate(), NOW, events=["finished"])
