"""The pure core of signed webhooks: secrets, signatures (checked by the specification's own
library), the retry schedule, what a response means and which addresses are refused."""

from __future__ import annotations

import base64
import ipaddress
import json
import random
from datetime import UTC, datetime

import pytest
import standardwebhooks

from pallycon_store.webhooks import addresses, outcome, payload, schedule, signing
from pallycon_store.webhooks.errors import MalformedEndpoint, MalformedSecret, RefusedAddress
from pallycon_store.webhooks.outcome import Verdict

# The example of the Standard Webhooks specification's reference tests (standard-webhooks
# libraries/python): secret, id, timestamp, payload and the signature they compute.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

NOW = 1_800_000_000.0


def test_signature_matches_the_specifications_example():
    """The signature of the specification's example message is the one it publishes."""
    secret = signing.Secret.parse(SPEC_SECRET)
    assert signing.signature(secret, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_the_reference_library_verifies_every_signature_of_a_rotation():
    """Headers signed with two secrets verify with either secret in `standardwebhooks`."""
    old, new = signing.Secret.generate(), signing.Secret.generate()
    body = payload.of_event({"type": "completed", "ts": "2026-01-01T00:00:00.000Z", "x": "é"})
    now = int(datetime.now(UTC).timestamp())
    headers = signing.headers("req-1:7", now, body, [old, new])
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        parsed = standardwebhooks.Webhook(secret.text()).verify(body, headers)
        assert parsed["type"] == "request.completed"
        assert parsed["data"]["x"] == "é"


def test_the_reference_library_refuses_a_changed_body():
    """A body changed after signing fails verification in `standardwebhooks`."""
    secret = signing.Secret.generate()
    now = int(datetime.now(UTC).timestamp())
    headers = signing.headers("req-1:7", now, b'{"a":1}', [secret])
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret.text()).verify(b'{"a":2}', headers)


def test_headers_need_a_secret():
    """Signing with no secret is refused rather than sending an unsigned delivery."""
    with pytest.raises(MalformedSecret):
        signing.headers("id", 1, b"{}", [])


def test_a_generated_secret_reads_back():
    """A generated secret is 32 random bytes, written whsec_ + base64, and parses back."""
    secret = signing.Secret.generate(lambda n: bytes(range(n)))
    assert secret.key == bytes(range(32))
    assert secret.text() == "whsec_" + base64.b64encode(bytes(range(32))).decode()
    assert signing.Secret.parse(secret.text()) == secret
    assert secret.text() not in repr(secret)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "starts with 'whsec_'"),
        ("whsec_not base64!!", "followed by base64"),
        ("whsec_" + base64.b64encode(b"x" * 23).decode(), "(this one 23)"),
        ("whsec_" + base64.b64encode(b"x" * 65).decode(), "(this one 65)"),
        ("whsec_", "(this one 0)"),
    ],
)
def test_malformed_secrets_are_refused_without_quoting_them(text, message):
    """A secret without the prefix, not base64, or of the wrong size is refused, unquoted."""
    with pytest.raises(MalformedSecret, match=message) as caught:
        signing.Secret.parse(text)
    assert text.removeprefix("whsec_") not in str(caught.value) or not text.removeprefix("whsec_")


def test_a_secret_with_a_trailing_newline_parses():
    """A secret read from a file keeps its newline; parsing ignores surrounding whitespace."""
    assert signing.Secret.parse(SPEC_SECRET + "\n") == signing.Secret.parse(SPEC_SECRET)


@pytest.mark.parametrize(
    ("attempts", "draw", "retry_after", "expected"),
    [
        (1, 0.5, None, 5.0),
        (2, 0.5, None, 300.0),
        (3, 0.5, None, 1800.0),
        (4, 0.5, None, 7200.0),
        (5, 0.5, None, 18000.0),
        (6, 0.5, None, 36000.0),
        (11, 0.5, None, 36000.0),
        (12, 0.5, None, None),
        (1, 0.0, None, 4.0),
        (2, 1.0, None, 360.0),
        (1, 0.5, 120.0, 120.0),
        (2, 0.5, 120.0, 300.0),
        (1, 0.5, 10 * 86400.0, 36000.0),
        (12, 0.5, 60.0, None),
    ],
)
def test_retry_schedule(attempts, draw, retry_after, expected):
    """The delay after each attempt, its jitter, Retry-After as a bounded floor, the end."""
    delay = schedule.next_delay(attempts, lambda: draw, retry_after)
    assert delay == (pytest.approx(expected) if expected is not None else None)


def test_the_schedule_spans_about_three_days():
    """Twelve attempts, the last about three days after the first."""
    assert schedule.ATTEMPTS == 12
    assert 2.5 * 86400 < schedule.total_span() < 3.5 * 86400


def test_jitter_stays_within_its_bounds():
    """Whatever the random source draws, a delay stays within ±20 % of its step."""
    draw = random.Random(7)
    for attempts, step in enumerate(schedule.DELAYS, start=1):
        for _ in range(50):
            delay = schedule.next_delay(attempts, draw.random)
            assert delay is not None
            assert 0.8 * step <= delay <= 1.2 * step


def test_the_schedule_starts_after_an_attempt():
    """Asking for a delay before any attempt is a mistake, not a zero."""
    with pytest.raises(ValueError, match="after an attempt"):
        schedule.next_delay(0, random.random)


@pytest.mark.parametrize(
    ("status", "retry_after", "verdict", "after"),
    [
        (200, None, Verdict.DELIVERED, None),
        (204, None, Verdict.DELIVERED, None),
        (299, None, Verdict.DELIVERED, None),
        (301, None, Verdict.RETRY, None),
        (302, None, Verdict.RETRY, None),
        (308, None, Verdict.RETRY, None),
        (400, None, Verdict.RETRY, None),
        (404, None, Verdict.RETRY, None),
        (410, None, Verdict.DISABLE, None),
        (410, "60", Verdict.DISABLE, None),
        (429, "120", Verdict.RETRY, 120.0),
        (503, "30", Verdict.RETRY, 30.0),
        (503, "Fri, 15 Jan 2027 09:00:00 GMT", Verdict.RETRY, 3_600.0),
        (503, "Wed, 01 Jan 2020 00:00:00 GMT", Verdict.RETRY, 0.0),
        (503, "soon", Verdict.RETRY, None),
        (503, "-5", Verdict.RETRY, None),
        (500, "30", Verdict.RETRY, None),
        (429, None, Verdict.RETRY, None),
    ],
)
def test_outcome_of_a_response(status, retry_after, verdict, after):
    """Only 2xx delivers; 410 disables; redirects fail; Retry-After read on 429 and 503."""
    result = outcome.classify(status, retry_after, NOW)
    assert result.verdict is verdict
    assert result.reason == f"HTTP {status}"
    assert result.retry_after == (pytest.approx(after) if after is not None else None)


def test_the_http_date_case_is_the_date_it_claims():
    """The HTTP-date in the table above is one hour after NOW (the table's arithmetic)."""
    date = datetime(2027, 1, 15, 9, 0, 0, tzinfo=UTC).timestamp()
    assert date - NOW == pytest.approx(3_600)


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("93.184.215.14", None),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", None),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 (an address judged, not bound)
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not globally routable"),
        ("192.0.2.1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:93.184.215.14", None),
        ("2002:7f00:1::", "loopback"),
    ],
)
def test_refused_addresses(address, why):
    """Loopback, private, link-local, unspecified, multicast, reserved, and IPv4 in IPv6."""
    assert addresses.refusal(ipaddress.ip_address(address)) == why


def test_a_host_is_refused_if_any_address_is():
    """One refused address among a host's addresses refuses the host, naming it."""
    with pytest.raises(RefusedAddress, match=r"example\.test resolves to 10\.0\.0\.1, a private"):
        addresses.allowed("example.test", ["93.184.215.14", "10.0.0.1"], allow_private=False)


def test_allow_private_lets_every_address_through():
    """An endpoint added with --allow-private may be reached on loopback."""
    assert addresses.allowed("localhost", ["127.0.0.1", "::1"], allow_private=True) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]


def test_a_host_without_addresses_is_refused():
    """A host that resolved to nothing is refused, not silently skipped."""
    with pytest.raises(RefusedAddress, match="no address"):
        addresses.allowed("nowhere.test", [], allow_private=True)


def test_events_filter():
    """Known event types are kept, none means the outcomes, an unknown one is refused."""
    assert payload.parse_events(["completed", " failed "]) == {"completed", "failed"}
    assert payload.parse_events([]) == payload.DEFAULT_EVENTS
    with pytest.raises(MalformedEndpoint, match="unknown event type finished; known: accepted"):
        payload.parse_events(["finished"])


def test_a_body_wraps_the_event():
    """A body is the event in the specification's envelope, compact JSON."""
    event = {"event_id": "r:3", "type": "failed", "ts": "2026-01-01T00:00:00.000+00:00"}
    body = payload.of_event(event)
    assert json.loads(body) == {"type": "request.failed", "timestamp": event["ts"], "data": event}
    assert b" " not in body
