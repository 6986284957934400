"""The signer and its inverse, pinned by vectors computed outside this code."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pallycon.errors import EnvelopeError
from pallycon.signing import (
    Envelope,
    SiteCredentials,
    decode_envelope,
    decrypt,
    encrypt,
    format_timestamp,
    open_envelope,
    parse_api_json,
    sign,
)
from support.samples import (
    SAMPLE_APIDATA,
    SAMPLE_DATA,
    SAMPLE_HASH,
    SAMPLE_JSON,
    SAMPLE_SITE,
    SAMPLE_TIME,
)

# Computed with `openssl enc -aes-256-cbc -K .. -iv .. -base64 -A` and `sha256sum | xxd -r -p |
# base64` over 55 UTF-8 bytes (24 characters fewer): padding must be counted in bytes.
UNICODE_JSON = '{"job_name":"한국어 테스트","content_id":"café"}'.encode()
UNICODE_TIME = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
UNICODE_DATA = (
    "+rsW7hmXPZV3ePbbnofW17NRskWMkdcQW8YN/2J2kmmt+rztowOTKLYb2nedubqjZwM9nGbFM+vsq3N8EqWNsg=="
)
UNICODE_HASH = "WW1Cn6UGe7Dbjo96MdQ6mxMpLJwVEnKTp/s3HYDw1Yc="


def test_matches_pallycons_published_sample_byte_for_byte():
    """sign() reproduces the pallycon-apidata value PallyCon's own sample publishes."""
    envelope = sign(SAMPLE_JSON, SAMPLE_SITE, SAMPLE_TIME)
    assert (envelope.data, envelope.timestamp, envelope.hash) == (
        SAMPLE_DATA,
        "2022-03-30T08:29:57Z",
        SAMPLE_HASH,
    )
    assert envelope.encode() == SAMPLE_APIDATA


def test_matches_openssl_vector_for_non_ascii_json():
    """Multi-byte UTF-8 is padded by bytes, as openssl does."""
    envelope = sign(UNICODE_JSON, SAMPLE_SITE, UNICODE_TIME)
    assert envelope.data == UNICODE_DATA
    assert envelope.hash == UNICODE_HASH


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
@pytest.mark.parametrize("payload", [b"{}", b'{"a":"' + b"x" * 15 + b'"}', UNICODE_JSON])
def test_encrypt_agrees_with_openssl_now(payload: bytes):
    """For any payload, data equals what the openssl command line computes at test time."""
    key = SAMPLE_SITE.site_key.get_secret_value().encode().hex()
    result = subprocess.run(
        ["openssl", "enc", "-aes-256-cbc", "-K", key, "-iv", b"0123456789abcdef".hex(),
         "-base64", "-A"],
        input=payload, capture_output=True, check=True,
    )  # fmt: skip
    assert encrypt(payload, SAMPLE_SITE.aes_key()) == result.stdout.decode().strip()


def test_api_json_is_encrypted_exactly_as_given():
    """Whitespace and key order are part of what gets signed: no re-serialisation."""
    compact = sign(b'{"region":"RG011","storage_type":"S3"}', SAMPLE_SITE, SAMPLE_TIME)
    spaced = sign(SAMPLE_JSON, SAMPLE_SITE, SAMPLE_TIME)
    assert compact.data != spaced.data


def test_timestamp_is_utc_whatever_the_input_zone():
    """An aware datetime in another zone is written in UTC; a naive one is taken as UTC."""
    seoul = SAMPLE_TIME.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Seoul"))
    assert format_timestamp(seoul) == "2022-03-30T08:29:57Z"
    assert format_timestamp(SAMPLE_TIME.replace(tzinfo=None)) == "2022-03-30T08:29:57Z"


@given(st.binary(max_size=2048))
def test_round_trip_any_bytes(payload: bytes):
    """decrypt(encrypt(x)) == x for every byte string."""
    key = SAMPLE_SITE.aes_key()
    assert decrypt(encrypt(payload, key), key) == payload


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=50), max_size=8))
def test_round_trip_through_the_envelope(obj: dict[str, str]):
    """A signed JSON object opens back to the same object."""
    api_json = json.dumps(obj, ensure_ascii=False).encode()
    apidata = sign(api_json, SAMPLE_SITE, SAMPLE_TIME).encode()
    opened = open_envelope(decode_envelope(apidata), SAMPLE_SITE)
    assert parse_api_json(opened) == obj


def test_plus_turned_into_space_by_a_query_parser_is_restored():
    """A server that received the value unencoded still opens it."""
    assert "+" in SAMPLE_APIDATA or "+" in SAMPLE_DATA
    mangled = SAMPLE_APIDATA.replace("+", " ")
    envelope = decode_envelope(mangled)
    assert envelope.data == SAMPLE_DATA
    assert open_envelope(envelope, SAMPLE_SITE) == SAMPLE_JSON


def test_envelope_is_parsed_as_json_not_compared_as_text():
    """Other spacing, key order and an escaped slash (as the Java sample writes) still open."""
    text = json.dumps(
        {"hash": SAMPLE_HASH, "timestamp": "2022-03-30T08:29:57Z", "data": SAMPLE_DATA},
        separators=(",", ":"),
    ).replace("/", "\\/")
    apidata = base64.b64encode(text.encode()).decode()
    assert open_envelope(decode_envelope(apidata), SAMPLE_SITE) == SAMPLE_JSON


def _b64(obj: object) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()


@pytest.mark.parametrize(
    ("apidata", "code"),
    [
        pytest.param("not base64 at all!", "A7008", id="not-base64"),
        pytest.param(base64.b64encode(b"not json").decode(), "A7008", id="not-json"),
        pytest.param(_b64(["a", "list"]), "A7008", id="not-an-object"),
        pytest.param(_b64({"data": "x", "timestamp": "t"}), "A7008", id="no-hash"),
        pytest.param(_b64({"data": 1, "timestamp": "t", "hash": "h"}), "A7008", id="data-number"),
    ],
)
def test_malformed_envelopes_are_a7008(apidata: str, code: str):
    """What is not a base64 JSON envelope with three strings is an API data parsing error."""
    with pytest.raises(EnvelopeError) as caught:
        decode_envelope(apidata)
    assert caught.value.code == code


def _tampered(**changes: str) -> Envelope:
    envelope = sign(SAMPLE_JSON, SAMPLE_SITE, SAMPLE_TIME)
    return Envelope(**{**envelope.__dict__, **changes})


@pytest.mark.parametrize(
    ("envelope", "site", "code"),
    [
        pytest.param(_tampered(timestamp="2022-03-30 08:29:57"), SAMPLE_SITE, "A1002", id="ts"),
        pytest.param(_tampered(timestamp="2022-13-30T08:29:57Z"), SAMPLE_SITE, "A1002", id="mon"),
        pytest.param(_tampered(hash=SAMPLE_HASH[::-1]), SAMPLE_SITE, "A1007", id="hash"),
        pytest.param(
            sign(SAMPLE_JSON, SAMPLE_SITE, SAMPLE_TIME),
            SiteCredentials.of("TUTO", "another-access-key", "lU5D8s3PWoLls3PWFWkClULlFWk5D8oC"),
            "A1007",
            id="wrong-access-key",
        ),
        pytest.param(
            sign(SAMPLE_JSON, SAMPLE_SITE, SAMPLE_TIME),
            SiteCredentials.of("TUTO", "LT2FVJDp2Xr018zf4Di6lzvNOv3DKP20", "x" * 32),
            "A1006",
            id="wrong-site-key",
        ),
    ],
)
def test_verification_failures_carry_the_service_codes(envelope, site, code):
    """Timestamp format A1002, hash A1007, decryption A1006, checked in that order."""
    with pytest.raises(EnvelopeError) as caught:
        open_envelope(envelope, site)
    assert caught.value.code == code


def test_data_that_is_not_whole_blocks_is_a1006():
    """Truncated ciphertext (with a matching hash) fails decryption, not parsing."""
    from pallycon.signing import compute_hash

    data = SAMPLE_DATA[:-8]
    envelope = Envelope(
        data, "2022-03-30T08:29:57Z", compute_hash(SAMPLE_SITE, data, "2022-03-30T08:29:57Z")
    )
    with pytest.raises(EnvelopeError) as caught:
        open_envelope(envelope, SAMPLE_SITE)
    assert caught.value.code == "A1006"


def test_clock_skew_beyond_the_limit_is_a1002():
    """With a skew limit, an old timestamp is refused; within it, accepted."""
    envelope = sign(SAMPLE_JSON, SAMPLE_SITE, SAMPLE_TIME)
    later = SAMPLE_TIME + timedelta(seconds=301)
    with pytest.raises(EnvelopeError) as caught:
        open_envelope(envelope, SAMPLE_SITE, now=later, max_skew_seconds=300)
    assert caught.value.code == "A1002"
    opened = open_envelope(envelope, SAMPLE_SITE, now=later, max_skew_seconds=302)
    assert opened == SAMPLE_JSON


@pytest.mark.parametrize("body", [b"\xff\xfe", b"not json", b"[1, 2]"])
def test_decrypted_data_that_is_not_a_json_object_is_a7008(body: bytes):
    """Once decrypted, anything but a UTF-8 JSON object is a parsing error."""
    with pytest.raises(EnvelopeError) as caught:
        parse_api_json(body)
    assert caught.value.code == "A7008"


def test_credentials_never_show_their_secrets():
    """repr() and str() of credentials hold neither key."""
    text = repr(SAMPLE_SITE) + str(SAMPLE_SITE)
    assert "LT2FVJDp" not in text
    assert "lU5D8s3P" not in text
    assert "TUTO" in text
