"""The HTTP API's pure parts: its OpenAPI document is valid OpenAPI 3.1 and names every kind of
problem; the cursor, the token's scope, the fields errors name, the tokens' form and the order of
a page."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from openapi_spec_validator import validate

from pallycon.errors import FieldError
from pallycon_config import SiteBook
from pallycon_pack.web.http_api import access, paging
from pallycon_pack.web.http_api.app import has_body
from pallycon_pack.web.http_api.contract import OPENAPI
from pallycon_pack.web.http_api.problems import TYPE_PREFIX, TYPES, Problem, body_field
from pallycon_pack.web.http_api.service import _on_line, idempotency_key
from pallycon_producers.lines import Line
from pallycon_store.events import State
from pallycon_store.overview import _position
from pallycon_store.tokens import ApiToken, TokenError, check_name, new_token, token_hash


def test_the_contract_is_valid_openapi_3_1():
    """openapi-spec-validator finds nothing wrong; it is plain JSON, as served."""
    assert OPENAPI["openapi"] == "3.1.0"
    validate(json.loads(json.dumps(OPENAPI)))


def test_every_problem_kind_is_in_the_contract():
    problem = OPENAPI["components"]["schemas"]["Problem"]["properties"]
    assert problem["type"]["enum"] == [TYPE_PREFIX + kind for kind in TYPES]
    body = Problem("conflict", "taken").body()
    assert body == {
        "type": "urn:pallycon-pack:problem:conflict",
        "title": "Conflict",
        "status": 409,
        "detail": "taken",
        "errors": [],
    }


@pytest.mark.parametrize(
    ("position"),
    [(1796528366.0169418, "b1"), (0.0, "a"), (1e-7, "x:y.z-1"), (1796528366.5, "é")],
)
def test_a_cursor_gives_back_its_position_exactly(position: tuple[float, str]):
    assert paging.decode(paging.encode(position)) == position


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not-a-cursor",
        "W10",
        "WzEsMl0",
        "WyJ4IiwieCJd",
        "WzEuMGUzMDAwLCJhIl0",
        "WzEsImEiLDNd",
        base64.urlsafe_b64encode(b"[" + b"9" * 400 + b',"x"]').decode(),
        "W3RydWUsIngiXQ",
    ],
)
def test_a_cursor_this_server_did_not_give_is_refused(cursor: str):
    """Not base64, not JSON, not [number, text] (an empty list, [1, 2], ["x", "x"], an
    infinite number, three items, a whole number too large for a float, true)."""
    with pytest.raises(paging.BadCursor):
        paging.decode(cursor)


BOOK = SiteBook("TUTO", ("OTHER", "THIRD", "TUTO"))


def token(*sites: str, read_only: bool = False) -> ApiToken:
    return ApiToken("t", sites, read_only, 0.0)


@pytest.mark.parametrize(
    ("sites", "record_site", "seen"),
    [
        ((), "", True),
        ((), "OTHER", True),
        (("TUTO",), "", True),  # the default site's requests carry "" ...
        (("TUTO",), "TUTO", True),  # ... or its id
        (("TUTO",), "OTHER", False),
        (("OTHER",), "", False),
        (("OTHER",), "OTHER", True),
        (("OTHER", "THIRD"), "THIRD", True),
        (("GONE",), "GONE", True),  # a site no longer announced keeps its requests
    ],
)
def test_what_a_token_sees(sites: tuple[str, ...], record_site: str, seen: bool):
    forms = access.site_forms(token(*sites), BOOK)
    assert access.may_see(record_site, forms) is seen
    refusal = access.scope_refusal(token(*sites), forms, record_site)
    assert (refusal is None) is seen


@pytest.mark.parametrize(
    ("sites", "found", "hidden"),
    [
        ((), {"a": "OTHER", "b": ""}, set()),  # every site: a 409 for each
        (("OTHER",), {"a": "OTHER"}, set()),
        (("OTHER",), {"a": "OTHER", "b": "", "c": "THIRD"}, {"b", "c"}),
        (("TUTO",), {"a": "", "b": "TUTO", "c": "OTHER"}, {"c"}),
        (("OTHER",), {"gone": None}, {"gone"}),  # no record now: nothing to tell
    ],
)
def test_which_taken_ids_a_token_is_told_are_unavailable(
    sites: tuple[str, ...], found: dict[str, str | None], hidden: set[str]
):
    forms = access.site_forms(token(*sites), BOOK)
    assert access.hidden_ids(found, forms) == hidden


@pytest.mark.parametrize(
    ("sites", "wanted", "read", "allowed"),
    [
        ((), None, None, True),
        ((), "OTHER", {"OTHER"}, True),
        ((), "", {"", "TUTO"}, True),
        (("OTHER",), None, {"OTHER"}, True),
        (("OTHER",), "OTHER", {"OTHER"}, True),
        (("OTHER",), "", {"", "TUTO"}, False),
        (("TUTO", "OTHER"), "", {"", "TUTO"}, True),
    ],
)
def test_which_sites_a_list_reads(
    sites: tuple[str, ...], wanted: str | None, read: set[str] | None, allowed: bool
):
    forms = access.site_forms(token(*sites), BOOK)
    assert access.forms_of_filter(wanted, BOOK, forms) == (
        None if read is None else frozenset(read),
        allowed,
    )


@pytest.mark.parametrize(
    ("header", "found"),
    [
        (None, None),
        ("", None),
        ("Bearer pph_abc", "pph_abc"),
        ("bearer   pph_abc  ", "pph_abc"),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer", None),
        ("Bearer ", None),
    ],
)
def test_the_bearer_token_of_a_header(header: str | None, found: str | None):
    assert access.bearer_token(header) == found


@pytest.mark.parametrize(
    ("field", "named"),
    [
        ("job_name", "body.job_name"),
        ("storage.input.storage_id", "body.storage.input.storage_id"),
        ("streaming_format[0]", "body.streaming_format[0]"),
        ("body", "body"),
        ("site_id", "site_id"),
        ("metadata", "metadata"),
        ("request_id", "request_id"),
        ("priority", "priority"),
    ],
)
def test_the_job_bodys_fields_are_named_under_body(field: str, named: str):
    assert body_field(field) == named


def test_a_token_is_random_prefixed_and_kept_as_its_sha256():
    made = new_token(lambda n: bytes(range(n)))
    assert made == "pph_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
    assert token_hash(made) == hashlib.sha256(made.encode()).hexdigest()
    assert new_token() != new_token()


@pytest.mark.parametrize("name", ["cms", "CMS-2", "a.b_c-d", "x" * 64])
def test_a_token_name(name: str):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "-cms", "a b", "a/b", "x" * 65, "é"])
def test_a_token_name_that_cannot_be_used(name: str):
    with pytest.raises(TokenError, match="token name"):
        check_name(name)


def test_a_page_orders_by_time_then_id_as_redis_does():
    """Newest first; on the same time, ids descending byte by byte (abc before ab)."""
    entries = [("ab", 5.0), ("abc", 5.0), ("b", 5.0), ("z", 4.0), ("a", 6.0)]
    ordered = sorted(entries, key=lambda e: _position((e[0], e[1], State.ACCEPTED)))
    assert [rid for rid, _ in ordered] == ["a", "b", "abc", "ab", "z"]


def test_a_batchs_admission_errors_name_their_lines():
    """``[index].field`` of the admission: the item's line, and the other item's line where
    the message names it."""
    lines = [Line(3, {}, "a", None), Line(5, {}, "a", None)]
    twice = _on_line(FieldError("[1].request_id", "also given at [0] with a different body"), lines)
    assert twice.to_dict() == {
        "line": 5,
        "field": "request_id",
        "message": "also given at line 3 with a different body",
    }
    missing = _on_line(FieldError("[0].storage.input", "Field required"), lines)
    assert missing.to_dict() == {
        "line": 3,
        "field": "body.storage.input",
        "message": "Field required",
    }
    alone = _on_line(FieldError("job_name", "Field required"), lines[:1])
    assert alone.to_dict() == {"line": 3, "field": "body.job_name", "message": "Field required"}


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("movie-1", "movie-1"),
        ('"8e03978e-40d5-43e8-bc93-6894a57f9324"', "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        (' "movie-1" ', "movie-1"),
        ('"movie-1', '"movie-1'),  # not a string: left for the check to refuse
        ('"a"b"', '"a"b"'),
        ('"a\\b"', '"a\\b"'),
        ('"', '"'),
        ('""', ""),
    ],
)
def test_an_idempotency_key_bare_or_quoted(header: str, key: str):
    assert idempotency_key(header) == key


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({}, False),
        ({"content-length": "0"}, False),
        ({"content-length": "2"}, True),
        ({"content-type": "application/json"}, True),
        ({"transfer-encoding": "chunked"}, True),  # no type, no length: a body all the same
    ],
)
def test_whether_a_request_has_a_body(headers: dict[str, str], body: bool):
    assert has_body(headers) is body
