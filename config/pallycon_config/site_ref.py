"""Site references: how requests, records, keys and readers name a PallyCon site, and the one
place that turns any spelling into the stored one.

The stored form (a record's ``site_id``, ``Keys.job_field``, ``Keys.site_state_index``,
``Keys.rate_limit_of``, an event's ``site_id``) is :data:`DEFAULT` ("") for the default site and
the id for any other. A request names the default site by None, "" or its id; a reader by its id,
or :data:`DEFAULT_LABEL` when it has none. Which sites exist, and which one is the default, is a
:class:`SiteBook`: a worker's configuration (``Sites.book()``) or what the workers announce in
Redis (``pallycon_store.sites.book()``). Every layer turns a site reference into the stored form
here, and every unknown site is one error, :class:`UnknownSite`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from pallycon.errors import FieldError, InvalidRequest
from pallycon_config.rules import check_site_id, env_name

#: The stored form of the default site.
DEFAULT: Final = ""
#: What readers call the default site when it has no id (no ``PALLYCON_SITE_ID``).
DEFAULT_LABEL: Final = "default"
#: The most characters of an unknown site id repeated in a message.
SHOWN_ID_CHARS: Final = 40
#: The request field that names a site.
FIELD: Final = "site_id"


def parse_site_id(value: object) -> str:
    """The site a request names, shape-checked: "" for none (None or ""), else the id
    (``PALLYCON_SITE_ID``'s rule); InvalidRequest naming ``site_id`` otherwise. Whether a site of
    that id exists is :meth:`SiteBook.stored`'s to say."""
    if value is None or value == "":
        return DEFAULT
    try:
        if not isinstance(value, str):
            raise ValueError("must be a string: a PallyCon site id, e.g. TUTO")
        return check_site_id(value)
    except ValueError as exc:
        raise InvalidRequest([FieldError(FIELD, str(exc))]) from None


def _shown(site_id: str) -> str:
    """``site_id``, cut to :data:`SHOWN_ID_CHARS` (with "..." when cut)."""
    cut = len(site_id) > SHOWN_ID_CHARS
    return site_id[:SHOWN_ID_CHARS] + ("..." if cut else "")


class UnknownSite(InvalidRequest):
    """A site reference naming no known site, or naming none where there is no default site.

    A request-level error: ``errors == [FieldError("site_id", reason)]``, so ``str()`` is
    ``site_id: <reason>``. At admission its field error refuses the request beside any other
    (the Python API raises one ``InvalidRequest`` naming them all, the intake records the entry
    as ``invalid_request``). A worker that
    meets it for an accepted record fails the record with the failure code ``unknown_site``
    (``pallycon_store.failures.FailureCode.UNKNOWN_SITE``, which ``retry`` takes up), its
    :attr:`reason` in the record's message.

    ``served``: worded for the sites the workers serve (admission, readers) rather than those
    a worker is configured with; both wordings are kept as they are, being stored in records.
    """

    def __init__(self, site_id: str, known: Iterable[str], served: bool = False) -> None:
        self.site_id = site_id
        self.known = tuple(known)
        self.served = served
        self.reason = _reason(site_id, self.known, served)
        super().__init__([FieldError(FIELD, self.reason)])

    def __reduce__(self) -> tuple[type[UnknownSite], tuple[str, tuple[str, ...], bool]]:
        """Copied (or sent to another process) with its arguments, not its message."""
        return (type(self), (self.site_id, self.known, self.served))


def _reason(site_id: str, known: tuple[str, ...], served: bool) -> str:
    """:class:`UnknownSite`'s text, without the ``site_id: `` of its field."""
    if served:
        sites = ", ".join(known) if known else "none announced yet"
        if not site_id:
            return f"no site named, and no default site (sites served: {sites})"
        return f"unknown site {_shown(site_id)!r} (sites served: {sites})"
    sites = ", ".join(known) or "none"
    if not site_id:
        return f"no site named and no default site ({env_name('site_id')}) (sites: {sites})"
    return f"unknown site {_shown(site_id)!r} (sites: {sites})"


@dataclass(frozen=True)
class SiteBook:
    """The sites one resolution knows, and which is the default."""

    #: The default site's id; None: there is no default site.
    default: str | None
    #: Every known id, sorted, the default's among them.
    ids: tuple[str, ...]
    #: :class:`UnknownSite`'s wording (see there).
    served: bool = False

    def unknown(self, given: str) -> UnknownSite:
        """The error for ``given``, naming the known sites in this book's wording."""
        return UnknownSite(given, self.ids, self.served)

    def resolve(self, given: str | None) -> str:
        """The id of the site ``given`` names: the default's for None or "", a known id as it
        is; :class:`UnknownSite` otherwise (None or "" without a default site too)."""
        site = given or self.default
        if site is None or site not in self.ids:
            raise self.unknown(given or "")
        return site

    def stored(self, given: str | None) -> str:
        """``given`` as records and keys keep it: "" for the default site (None, "" or its
        id), another known id as it is; :class:`UnknownSite` otherwise. A book that knows no
        site at all (no worker has announced one yet) stores None and "" as "" unchecked: the
        worker that takes the request decides."""
        if not given and not self.ids:
            return DEFAULT
        site = self.resolve(given)
        return DEFAULT if site == self.default else site

    def is_default(self, site: str) -> bool:
        """Whether ``site`` (stored, or the default's id) is the default site."""
        return site == DEFAULT or site == self.default

    def stored_forms(self, site: str) -> tuple[str, ...]:
        """Every ``site_id`` a record of the stored ``site`` may carry: "" and the default's
        id for the default site (a record that named it by id before it became the default),
        the id alone otherwise."""
        if self.is_default(site):
            return (DEFAULT, self.default) if self.default else (DEFAULT,)
        return (site,)

    def label(self, stored: str) -> str:
        """A reader's name for a stored site: its id; for the default site, its id or
        :data:`DEFAULT_LABEL` when it has none."""
        return stored or self.default or DEFAULT_LABEL

    def labels(self) -> list[str]:
        """Every site by the name readers give it: the default site first, then the others."""
        return [self.label(DEFAULT), *(site for site in self.ids if not self.is_default(site))]

    def filter(self, label: str | None) -> str | None:
        """A reader's site (``--site``, the console's ``site=``) as the readers' queries take
        it: None for every site (None or ""), "" for the default site (by its label), a known
        id as it is; :class:`UnknownSite` naming :meth:`labels` otherwise."""
        if not label:
            return None
        if label == self.label(DEFAULT):
            return DEFAULT
        if label not in self.ids:
            raise UnknownSite(label, self.labels(), served=True)
        return label
