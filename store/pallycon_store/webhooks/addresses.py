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

from pallycon_store.webhooks.errors import RefusedAddress

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


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
                "(add the endpoint with --allow-private to allow it)"
            )
    return addresses
