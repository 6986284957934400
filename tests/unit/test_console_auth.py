"""The console's token check and session cookie (pure)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from pallycon_pack.errors import EXIT_INVALID, Failure
from pallycon_pack.web.console.auth import (
    SESSION_SECONDS,
    check_token,
    session_valid,
    session_value,
    token_weakness,
)

STRONG = "3f9c1a7e5b2d8046"


@pytest.mark.parametrize(
    ("secret", "weakness"),
    [
        (" " * 20, "has whitespace in it"),
        ("\t" * 20, "has whitespace in it"),
        (f" {STRONG}", "has whitespace in it"),
        (f"{STRONG}\n", "has whitespace in it"),
        ("a" * 16, "is too simple (1 different characters): use random ones"),
        ("ab" * 16, "is too simple (2 different characters): use random ones"),
        ("abcde" * 4, "is too simple (5 different characters): use random ones"),
        ("short", "is too short: use at least 16 random characters"),
        (STRONG[:15], "is too short: use at least 16 random characters"),
        (STRONG, None),
        ("abcdef" * 3, None),
        ("Zx9-_Qw2.Lm4~Rt8Yu", None),
    ],
)
def test_token_weakness(secret: str, weakness: str | None):
    """Whitespace, under 16 characters or under 6 different ones: no secret; random ones pass."""
    assert token_weakness(secret) == weakness


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1", "console.internal"])  # noqa: S104
@pytest.mark.parametrize("secret", [" " * 20, "a" * 16, "0123012301230123"])
def test_check_token_refuses_a_weak_token_in_one_line(host: str, secret: str):
    """A token that is no secret is refused on any address: one line naming the setting, exit
    code 2 (bad settings)."""
    with pytest.raises(Failure) as refused:
        check_token(host, SecretStr(secret))
    assert refused.value.exit_code == EXIT_INVALID
    assert refused.value.message.startswith("PALLYCON_CONSOLE_TOKEN ")
    assert "\n" not in refused.value.message
    assert secret not in refused.value.message


def test_check_token_accepts_a_random_token_anywhere():
    """A random token is the console's token, on loopback or off it."""
    assert check_token("0.0.0.0", SecretStr(STRONG)) == STRONG  # noqa: S104
    assert check_token("127.0.0.1", None) is None


@pytest.mark.parametrize(
    ("age", "valid"),
    [(0, True), (SESSION_SECONDS - 1, True), (SESSION_SECONDS, False), (-30, True), (-120, False)],
)
def test_a_session_lasts_its_lifetime(age: int, valid: bool):
    """A cookie is good from its issue (a minute's skew allowed) for SESSION_SECONDS."""
    issued = 1_700_000_000
    assert session_valid(STRONG, session_value(STRONG, issued), issued + age) is valid


@pytest.mark.parametrize(
    "value",
    ["", STRONG, "1700000000", "1700000000.", "x.y", "1700000000.00", "-1.abc", "9" * 40 + ".a"],
)
def test_a_forged_session_is_refused(value: str):
    """Anything but a value the token signed (the raw token included) is no session."""
    assert not session_valid(STRONG, value, 1_700_000_000)


def test_a_session_is_not_the_token_and_another_token_cannot_use_it():
    """The cookie never holds the token; a session of one token is none of another's."""
    value = session_value(STRONG, 1_700_000_000)
    assert STRONG not in value
    assert not session_valid("another-token-0123456789", value, 1_700_000_000)
