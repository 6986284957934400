"""Where the callback receiver of this machine is, as its settings place it
(``PALLYCON_CALLBACK_HOST``, ``PALLYCON_CALLBACK_PORT``, ``PALLYCON_CALLBACK_TOKEN``): the base
URL that ``health --check callbacks`` reads and the default site's callback URL that
``emulator --callback-receiver`` posts to. Pure.
"""

from __future__ import annotations

from urllib.parse import quote

#: Listen addresses that mean "every interface": the receiver is reached on loopback.
WILDCARDS = ("", "0.0.0.0", "::", "[::]")  # noqa: S104  # read, never bound


def local_base(host: str, port: int) -> str:
    """``http://HOST:PORT`` of a receiver listening on ``host``:``port`` of this machine (a
    wildcard address is reached on 127.0.0.1; an IPv6 address in brackets)."""
    if host in WILDCARDS:
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def callback_url(base: str, token: str) -> str:
    """The default site's callback URL at the receiver ``base`` (``http://host:port``, any path
    before ``/callback/`` kept): ``<base>/callback/<token>``, the token percent-encoded."""
    return f"{base.rstrip('/')}/callback/{quote(token, safe='')}"
