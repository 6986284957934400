"""Site references (pallycon_config.site_ref): every spelling of a site against books with and
without a default site, and before any site is known; the one unknown-site error."""

from __future__ import annotations

import copy
import pickle
from dataclasses import dataclass, replace

import pytest

from pallycon.errors import FieldError, InvalidRequest
from pallycon_config.site_ref import DEFAULT_LABEL, SiteBook, UnknownSite, parse_site_id

#: A fleet whose default site is TUTO, serving BRND too.
WITH_DEFAULT = SiteBook("TUTO", ("BRND", "TUTO"))
#: A fleet with no default site (no PALLYCON_SITE_ID): every request names its site.
NO_DEFAULT = SiteBook(None, ("BRND", "TUTO"))
#: Before any worker has announced a site.
EMPTY = SiteBook(None, (), served=True)

BOOKS = {"with-default": WITH_DEFAULT, "no-default": NO_DEFAULT, "empty": EMPTY}


@dataclass(frozen=True)
class Unknown:
    """The expected UnknownSite: the reason text."""

    reason: str


NOPE = "unknown site 'NOPE' (sites: BRND, TUTO)"
NO_NAME = "no site named and no default site (PALLYCON_SITE_ID) (sites: BRND, TUTO)"
NONE_YET = "none announced yet"

# spelling -> {book: what stored() gives}
STORED: dict[str | None, dict[str, str | Unknown]] = {
    None: {"with-default": "", "no-default": Unknown(NO_NAME), "empty": ""},
    "": {"with-default": "", "no-default": Unknown(NO_NAME), "empty": ""},
    "TUTO": {
        "with-default": "",
        "no-default": "TUTO",
        "empty": Unknown(f"unknown site 'TUTO' (sites served: {NONE_YET})"),
    },
    "BRND": {
        "with-default": "BRND",
        "no-default": "BRND",
        "empty": Unknown(f"unknown site 'BRND' (sites served: {NONE_YET})"),
    },
    "NOPE": {
        "with-default": Unknown(NOPE),
        "no-default": Unknown(NOPE),
        "empty": Unknown(f"unknown site 'NOPE' (sites served: {NONE_YET})"),
    },
    "tuto": {  # ids are exact
        "with-default": Unknown("unknown site 'tuto' (sites: BRND, TUTO)"),
        "no-default": Unknown("unknown site 'tuto' (sites: BRND, TUTO)"),
        "empty": Unknown(f"unknown site 'tuto' (sites served: {NONE_YET})"),
    },
    "no/pe": {  # a book checks no shape (parse_site_id does): it is just unknown
        "with-default": Unknown("unknown site 'no/pe' (sites: BRND, TUTO)"),
        "no-default": Unknown("unknown site 'no/pe' (sites: BRND, TUTO)"),
        "empty": Unknown(f"unknown site 'no/pe' (sites served: {NONE_YET})"),
    },
    DEFAULT_LABEL: {  # a reader's label, not a request's site
        "with-default": Unknown("unknown site 'default' (sites: BRND, TUTO)"),
        "no-default": Unknown("unknown site 'default' (sites: BRND, TUTO)"),
        "empty": Unknown(f"unknown site 'default' (sites served: {NONE_YET})"),
    },
}

CASES = [(given, book) for given, by_book in STORED.items() for book in by_book]


def _outcome(call: object, given: str | None) -> str | Unknown | None:
    try:
        return call(given)  # type: ignore[operator, no-any-return]
    except UnknownSite as exc:
        return Unknown(exc.reason)


@pytest.mark.parametrize(("given", "book"), CASES)
def test_stored_turns_every_spelling_into_the_records_form(given: str | None, book: str):
    """ "" for the default site by None, "" or its id; another known id as it is; UnknownSite
    otherwise, naming the known sites; with no site known yet, None and "" pass unchecked."""
    assert _outcome(BOOKS[book].stored, given) == STORED[given][book]


@pytest.mark.parametrize(("given", "book"), CASES)
def test_resolve_gives_the_id_the_spelling_names(given: str | None, book: str):
    """The default's id for None and ""; what stored() refuses, resolve() refuses alike (and
    None or "" where no site is known: there is no id to give)."""
    expected = STORED[given][book]
    if isinstance(expected, str):
        expected = expected or BOOKS[book].default or ""
    if book == "empty" and not given:
        expected = Unknown(f"no site named, and no default site (sites served: {NONE_YET})")
    assert _outcome(BOOKS[book].resolve, given) == expected


@pytest.mark.parametrize(
    ("book", "given", "expected"),
    [
        ("with-default", None, None),
        ("with-default", "", None),
        ("with-default", "TUTO", ""),
        ("with-default", "BRND", "BRND"),
        ("with-default", DEFAULT_LABEL, Unknown("unknown site 'default' (sites served: TUTO, BRND)")),
        ("with-default", "NOPE", Unknown("unknown site 'NOPE' (sites served: TUTO, BRND)")),
        ("no-default", DEFAULT_LABEL, ""),
        ("no-default", "TUTO", "TUTO"),
        ("no-default", "BRND", "BRND"),
        ("no-default", "NOPE", Unknown("unknown site 'NOPE' (sites served: default, BRND, TUTO)")),
        ("empty", DEFAULT_LABEL, ""),
        ("empty", "BRND", Unknown("unknown site 'BRND' (sites served: default)")),
    ],
)  # fmt: skip
def test_filter_takes_a_readers_label(book: str, given: str | None, expected: object):
    """None or "" for every site, "" for the default site by its label (its id, or 'default'
    when it has none), a known id as it is; UnknownSite naming the labels otherwise."""
    assert _outcome(BOOKS[book].filter, given) == expected


@pytest.mark.parametrize(
    ("book", "labels", "default_label", "default_forms"),
    [
        ("with-default", ["TUTO", "BRND"], "TUTO", ("", "TUTO")),
        ("no-default", ["default", "BRND", "TUTO"], "default", ("",)),
        ("empty", ["default"], "default", ("",)),
    ],
)
def test_labels_and_stored_forms(
    book: str, labels: list[str], default_label: str, default_forms: tuple[str, ...]
):
    """Readers name the default site by its id or 'default'; a record of the default site may
    carry "" or its id (it named the site by id before it became the default)."""
    sites = BOOKS[book]
    assert sites.labels() == labels
    assert sites.label("") == default_label
    assert sites.label("BRND") == "BRND"
    assert sites.stored_forms("") == default_forms
    assert sites.stored_forms("BRND") == ("BRND",)
    assert sites.is_default("")
    assert not sites.is_default("BRND")
    assert sites.is_default("TUTO") == (book == "with-default")
    if sites.default:
        assert sites.stored_forms(sites.default) == default_forms


def test_the_served_wording_is_admissions():
    """Worded for the sites the workers serve: the texts the intake and the Python API have
    always stored."""
    served = replace(WITH_DEFAULT, served=True)
    assert _outcome(served.stored, "NOPE") == Unknown(
        "unknown site 'NOPE' (sites served: BRND, TUTO)"
    )
    assert _outcome(replace(NO_DEFAULT, served=True).stored, None) == Unknown(
        "no site named, and no default site (sites served: BRND, TUTO)"
    )
    assert _outcome(SiteBook(None, ()).resolve, None) == Unknown(
        "no site named and no default site (PALLYCON_SITE_ID) (sites: none)"
    )


def test_a_long_unknown_id_is_cut_in_the_message():
    """At most 40 characters of an unknown id are repeated, with '...' when cut."""
    with pytest.raises(UnknownSite) as caught:
        WITH_DEFAULT.stored("x" * 1000)
    assert caught.value.reason == f"unknown site '{'x' * 40}...' (sites: BRND, TUTO)"
    assert caught.value.site_id == "x" * 1000
    assert _outcome(WITH_DEFAULT.stored, "x" * 40) == Unknown(
        f"unknown site '{'x' * 40}' (sites: BRND, TUTO)"
    )


def test_unknown_site_is_a_request_error_naming_site_id():
    """One InvalidRequest naming the field site_id; copied and pickled with its arguments."""
    error = UnknownSite("NOPE", ["BRND"], served=True)
    assert isinstance(error, InvalidRequest)
    assert error.errors == [FieldError("site_id", "unknown site 'NOPE' (sites served: BRND)")]
    assert str(error) == "site_id: unknown site 'NOPE' (sites served: BRND)"
    for again in (copy.copy(error), pickle.loads(pickle.dumps(error))):  # noqa: S301 (ours)
        assert isinstance(again, UnknownSite)
        assert (again.site_id, again.known, again.served) == ("NOPE", ("BRND",), True)
        assert again.errors == error.errors


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, ""),
        ("", ""),
        ("TUTO", "TUTO"),
        ("NOPE", "NOPE"),
        (5, "site_id: must be a string: a PallyCon site id, e.g. TUTO"),
        ("no/pe", "site_id: must be letters and digits only, e.g. TUTO"),
        ("x" * 33, "site_id: must be letters and digits only, e.g. TUTO"),
    ],
)
def test_parse_site_id_checks_the_shape_only(given: object, expected: str):
    """ "" for none; an id of the right shape as it is (known or not); InvalidRequest naming
    site_id for another shape or type."""
    if expected.startswith("site_id: "):
        with pytest.raises(InvalidRequest) as caught:
            parse_site_id(given)
        assert str(caught.value) == expected
    else:
        assert parse_site_id(given) == expected
