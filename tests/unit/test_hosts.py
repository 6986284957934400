"""Which Host headers a server on loopback answers (the DNS-rebinding guard)."""

from __future__ import annotations

import pytest

from pallycon_pack.web.hosts import host_allowed, host_name


@pytest.mark.parametrize(
    ("header", "bound", "allowed"),
    [
        ("localhost", "127.0.0.1", True),
        ("LOCALHOST:9840", "127.0.0.1", True),
        ("127.0.0.1:9840", "127.0.0.1", True),
        ("127.0.0.2", "127.0.0.1", True),  # 127/8 is this machine
        ("[::1]:9840", "127.0.0.1", True),
        ("[::1]", "::1", True),
        ("::1", "::1", True),
        ("metrics.internal", "metrics.internal", True),  # the bound name itself
        ("metrics.internal:9840", "metrics.internal", True),
        ("attacker.example", "127.0.0.1", False),
        ("attacker.example:9840", "127.0.0.1", False),
        ("localhost.attacker.example", "127.0.0.1", False),
        ("127.0.0.1.nip.io", "127.0.0.1", False),
        ("", "127.0.0.1", False),
        ("[", "127.0.0.1", False),
    ],
)
def test_host_allowed(header: str, bound: str, allowed: bool):
    """Loopback names and addresses and the bound host, with or without a port; nothing else."""
    assert host_allowed(header, bound) is allowed


@pytest.mark.parametrize(
    ("header", "name"),
    [("a.b:80", "a.b"), ("[::1]:80", "::1"), ("::1", "::1"), (" Host ", "host")],
)
def test_host_name(header: str, name: str):
    """A Host header's name, without its port or brackets."""
    assert host_name(header) == name
