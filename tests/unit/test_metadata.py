"""Producer metadata (pallycon_store.admission.check_metadata) and the lines of submit --batch, as tables."""

from __future__ import annotations

import io

import pytest

from pallycon.errors import InvalidRequest
from pallycon_pack.cli.queue.batch import MAX_LINE_BYTES, lines, parse
from pallycon_store.admission import MAX_METADATA_BYTES, check_metadata, parse_metadata


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (None, ""),
        ({}, ""),
        ({"cms": {"id": 42, "tags": ["a", "é"]}}, '{"cms":{"id":42,"tags":["a","é"]}}'),
        ({"k": "x" * (MAX_METADATA_BYTES - 8)}, '{"k":"' + "x" * (MAX_METADATA_BYTES - 8) + '"}'),
    ],
)
def test_metadata_is_kept_as_compact_json(given, stored):
    assert check_metadata(given) == stored


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ([1], "metadata: must be a JSON object, not a list"),
        ("text", "metadata: must be a JSON object, not str"),
        ({"k": float("nan")}, "metadata: not JSON: Out of range float values"),
        ({"k": object()}, "metadata: not JSON: Object of type object"),
        ({"k": "x" * (MAX_METADATA_BYTES - 7)}, "metadata: 2049 bytes of compact JSON, over"),
        ({"k": "\ud800"}, "metadata: not valid Unicode"),  # JSON's lone surrogate
        ({"\udfff": 1}, "metadata: not valid Unicode"),
    ],
)
def test_bad_metadata_is_refused_naming_the_field(given, why):
    with pytest.raises(InvalidRequest) as caught:
        check_metadata(given)
    assert str(caught.value).startswith(why)


@pytest.mark.parametrize(
    ("text", "why"),
    [("{x", "metadata: not JSON"), ("[" * 100_000, "metadata: 100000 characters, over")],
)
def test_metadata_text_that_is_not_json_is_refused(text, why):
    with pytest.raises(InvalidRequest) as caught:
        parse_metadata(text)
    assert str(caught.value).startswith(why)


def test_batch_lines_name_each_bad_line_and_skip_blank_ones():
    data = b"\n".join(
        [b'{"body": {}}', b"", b"[]", b"\xff", b'{"body": 1, "request_id": 5}',
         b'{"body": 1, "x": 2}', b"x" * (MAX_LINE_BYTES + 10), b'{"body": 2, "metadata": {}}']
    )  # fmt: skip
    errors: list[tuple[int, str]] = []
    read = list(lines(io.BytesIO(data), lambda number, why: errors.append((number, why))))
    assert [(line.number, line.body) for line in read] == [(1, {}), (8, 2)]
    assert errors == [
        (
            3,
            'not a JSON object {"body": {...}, "request_id": ..., "metadata": ..., "site_id": ..., '
            '"priority": ...}',
        ),
        (4, "not valid UTF-8 (byte 0)"),
        (5, "request_id: must be a string"),
        (6, "unknown key(s) x (body, request_id, metadata, site_id, priority)"),
        (7, f"longer than {MAX_LINE_BYTES} bytes"),
    ]


@pytest.mark.parametrize(
    ("text", "site_id"),
    [
        ('{"body": {}, "site_id": "BRND"}', "BRND"),
        ('{"body": {}, "site_id": ""}', None),
        ('{"body": {}, "site_id": null}', None),
        ('{"body": {}}', None),
    ],
)
def test_a_batch_line_may_name_its_site(text, site_id):
    """site_id is optional; empty or null names none (the default site)."""
    assert parse(1, text).site_id == site_id


@pytest.mark.parametrize("value", ["5", "true", '["BRND"]', '{"id": "BRND"}'])
def test_a_batch_lines_site_must_be_a_string(value):
    with pytest.raises(ValueError, match=r"^site_id: must be a string \(a site id such as TUTO\)$"):
        parse(1, '{"body": {}, "site_id": ' + value + "}")


@pytest.mark.parametrize(
    ("text", "request_id"),
    [('{"body": {}, "request_id": "r-1"}', "r-1"), ('{"body": {}, "request_id": null}', None)],
)
def test_a_batch_lines_request_id_is_optional(text, request_id):
    """A request_id given is kept; none (or null) gets a new id when recorded."""
    assert parse(1, text).request_id == request_id


def test_a_batch_lines_empty_request_id_is_refused():
    """An empty request_id is a bad line, not a new id: a new id at each run would submit the
    request again each time the file is run."""
    with pytest.raises(ValueError, match=r"^request_id: empty; leave it out for a new id"):
        parse(1, '{"body": {}, "request_id": ""}')
