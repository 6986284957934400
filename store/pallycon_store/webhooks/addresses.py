"""Which addresses a webhook delivery may connect to (against SSRF). Pure: resolving the host
is the caller's, which then connects to an address this module allowed.

Refused unless the endpoint allows private addresses: loopback, private, link-local,
unspecified, multicast, reserved and any other address that is not globally routable
(carrier-grade NAT, documentation ranges, ...), IPv4 addresses written in IPv6 (mapped,
6to4, Teredo) judged as the IPv4 address they carry. A host is refused if any address it
resolves to is refused (an attacker's DNS can answer one good and one bad address).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import SplitResult, urlsplit, urlunsplit

from pallycon_store.webhooks.errors import MalformedEndpoint, RefusedAddress

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: The longest endpoint URL accepted, in characters.
MAX_URL_LENGTH = 2048


def embedded(address: Address) -> Address:
    """The IPv4 address an IPv6 address carries (IPv4-mapped, 6to4, Teredo), else itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address.teredo is not None:
            return address.teredo[1]
    return address


def refusal(address: Address) -> str | None:
    """Why a delivery may not connect to ``address`` (``"loopback"``, ``"private"``, ...);
    ``None`` if it may."""
    inner = embedded(address)
    for kind, refused in (
        ("unspecified", inner.is_unspecified),
        ("loopback", inner.is_loopback),
        ("link-local", inner.is_link_local),
        ("multicast", inner.is_multicast),
        ("reserved", inner.is_reserved),
        ("private", inner.is_private),
        ("not globally routable", not inner.is_global),
    ):
        if refused:
            return kind
    return None


def allowed(host: str, resolved: Sequence[str], allow_private: bool) -> list[Address]:
    """The addresses ``host`` resolved to (``resolved``, textual), each one a delivery may
    connect to; a :class:`RefusedAddress` naming the host and the first refused address if
    any is refused (and ``allow_private`` is not set) or if there are none."""
    if not resolved:
        raise RefusedAddress(f"{host} resolves to no address")
    addresses = [ipaddress.ip_address(text.split("%", 1)[0]) for text in resolved]
    if allow_private:
        return addresses
    for address in addresses:
        why = refusal(address)
        if why is not None:
            raise RefusedAddress(
                f"{host} resolves to {address}, a {why} address: deliveries to it are refused "
                f"({READD})"
            )
    return addresses


#: How an endpoint comes to allow private addresses (the flag is set only as it is added).
READD = (
    "to allow it, remove the endpoint and add it again with --allow-private: a new secret, "
    "unless you pass the same --secret-file"
)


def literal(host: str) -> Address | None:
    """The address ``host`` is written as (``127.0.0.1``, ``::1``), or ``None`` for a name."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def _split(url: str) -> SplitResult:
    """``url``'s parts, its port (if any) 1 to 65535; a :class:`MalformedEndpoint` if not."""
    try:
        parts = urlsplit(url)
        if parts.port == 0:  # reading it checks that it is a number up to 65535
            raise ValueError("a port is 1 to 65535")
    except ValueError as exc:
        raise MalformedEndpoint(f"not a URL: {exc}") from None
    return parts


def check_url(url: str, allow_private: bool) -> str:
    """``url`` if deliveries may be sent to it, else a :class:`MalformedEndpoint` or
    :class:`RefusedAddress` saying why: ``http`` or ``https`` with a host, no user or password,
    no fragment, at most :data:`MAX_URL_LENGTH` characters; ``https`` unless ``allow_private``
    (plain HTTP only to a receiver inside the network); a host written as an address is
    judged at once (:func:`refusal`), a name when it is resolved, at each delivery."""
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise MalformedEndpoint(f"an endpoint URL has at most {MAX_URL_LENGTH} characters")
    parts = _split(url)
    if parts.scheme not in ("http", "https"):
        raise MalformedEndpoint("an endpoint URL starts with https:// (or http://)")
    if parts.username is not None or parts.password is not None:
        raise MalformedEndpoint("an endpoint URL holds no user or password (user@host)")
    host = parts.hostname
    if not host:
        raise MalformedEndpoint("an endpoint URL names a host")
    if parts.fragment:
        raise MalformedEndpoint("an endpoint URL has no #fragment")
    address = literal(host)
    if address is not None and not allow_private:
        why = refusal(address)
        if why is not None:
            raise RefusedAddress(
                f"{host} is a {why} address: deliveries to it are refused "
                "(add the endpoint with --allow-private to allow it)"
            )
    if parts.scheme != "https" and not allow_private:
        raise MalformedEndpoint(
            "an endpoint URL starts with https:// (plain http:// only with --allow-private, "
            "for a receiver inside your network)"
        )
    return url


def pinned(url: str, address: Address) -> str:
    """``url`` with its host replaced by ``address`` (the one checked): the connection goes
    there, whatever the name resolves to next (the caller sends the original ``Host`` and,
    for https, the name for TLS)."""
    parts = urlsplit(url)
    host = f"[{address}]" if address.version == 6 else str(address)
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return urlunsplit(parts._replace(netloc=netloc))
