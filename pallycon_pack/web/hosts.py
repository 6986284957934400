"""Which names a server answers to: loopback addresses, and the Host header check that keeps a
server listening on this machine only from being reached by DNS rebinding."""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a listen address or a Host header's name) is this machine only."""
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name of a Host header, without its port (``[::1]:9840`` -> ``::1``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header[1:]
    if header.count(":") == 1:
        return header.split(":", 1)[0]
    return header


def host_allowed(header: str, bound: str) -> bool:
    """Whether a server listening on loopback address ``bound`` answers a request whose Host
    header is ``header``: a loopback name or address, or ``bound`` itself, with or without a
    port; any other name may be a rebound DNS name of a foreign page."""
    name = host_name(header)
    return bool(name) and (is_loopback(name) or name == host_name(bound))
