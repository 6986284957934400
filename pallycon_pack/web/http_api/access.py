"""What a token may do: the decisions, pure (the token and the sites the workers announce in,
an answer out).

A token scoped to sites sees only the requests of those sites: another site's request is
answered 404 (as if it did not exist: no existence leak), a submission naming another site
403 naming ``site_id``, and one under the id of a request it may not see 422 (the id is
unavailable, not "used by another body": no existence leak either). A read-only token may
read, never write (403).
"""

from __future__ import annotations

from pallycon_config import SiteBook
from pallycon_store.tokens import ApiToken

#: The scheme of the Authorization header.
BEARER = "bearer"


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None without one."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != BEARER or not token:
        return None
    return token


def site_forms(token: ApiToken, book: SiteBook) -> frozenset[str] | None:
    """The ``site_id`` values (as records keep them) of the requests ``token`` may see; None:
    every site. The default site's requests carry "" or its id."""
    if not token.sites:
        return None
    forms: set[str] = set()
    for site in token.sites:
        forms.update(book.stored_forms(site) if book.is_default(site) else (site,))
    return frozenset(forms)


def may_see(record_site: str, forms: frozenset[str] | None) -> bool:
    """Whether a record whose ``site_id`` is ``record_site`` is visible through ``forms``."""
    return forms is None or record_site in forms


def scope_refusal(token: ApiToken, forms: frozenset[str] | None, stored_site: str) -> str | None:
    """Why ``token`` may not submit a request for the site stored as ``stored_site`` (None: it
    may)."""
    if may_see(stored_site, forms):
        return None
    return f"this token may submit for site(s) {', '.join(token.sites)} only"


def hidden_ids(sites_of: dict[str, str | None], forms: frozenset[str] | None) -> frozenset[str]:
    """Of request ids found taken, those whose request ``forms`` may not see: ``sites_of``
    maps each to its record's ``site_id`` (None: no record, gone meanwhile, so nothing to
    tell either). A submission under such an id is refused without a hint that it exists."""
    return frozenset(
        request_id
        for request_id, site in sites_of.items()
        if site is None or not may_see(site, forms)
    )


def forms_of_filter(
    wanted: str | None, book: SiteBook, forms: frozenset[str] | None
) -> tuple[frozenset[str] | None, bool]:
    """The sites a list reads: (the site_id values, whether ``token`` may read them). ``wanted``
    is the ``site`` parameter as :meth:`SiteBook.filter` gives it (None: every site the token
    sees)."""
    if wanted is None:
        return forms, True
    asked = frozenset(book.stored_forms(wanted))
    return asked, forms is None or asked <= forms
