"""The worker's start-up check of its Redis user's permissions: what the server's answers mean,
and the one line that says what is missing."""

from __future__ import annotations

import pytest
from redis.exceptions import NoPermissionError, ResponseError

from pallycon_pack.cli.servers.permissions import (
    Command,
    Refusals,
    message,
    refusals,
    user_of,
    worker_commands,
)
from pallycon_store.keys import Keys

BRPOP = Command("BRPOP", ("pp.submit", "1"))
LPUSH = Command("LPUSH", ("pp.submit", "x"))
PUBLISH = Command("PUBLISH", ("pp:results:wake", "x"))
XINFO = Command("XINFO GROUPS", ("pp:intake",))
NO_BRPOP = NoPermissionError("User u has no permissions to run the 'brpop' command")
NO_XINFO = NoPermissionError("User u has no permissions to run the 'xinfo|groups' command")
NO_KEY = NoPermissionError("No permissions to access a key")
NO_CHANNEL = NoPermissionError("No permissions to access a channel")


@pytest.mark.parametrize(
    ("asked", "answers", "expected"),
    [
        ([BRPOP, LPUSH], ["QUEUED", "QUEUED"], Refusals()),
        ([BRPOP, LPUSH], [NO_BRPOP, "QUEUED"], Refusals(commands=("BRPOP",))),
        ([BRPOP, BRPOP], [NO_BRPOP, NO_BRPOP], Refusals(commands=("BRPOP",))),
        ([XINFO], [NO_XINFO], Refusals(commands=("XINFO GROUPS",))),
        ([BRPOP, LPUSH], [NO_KEY, NO_KEY], Refusals(keys=("pp.submit",))),
        ([PUBLISH], [NO_CHANNEL], Refusals(channels=("pp:results:wake",))),
        ([BRPOP], [ResponseError("unknown command 'BRPOP'")], Refusals()),
        ([BRPOP], [ResponseError("Command not allowed inside a transaction")], Refusals()),
    ],
    ids=["all queued", "one refused", "once each", "a subcommand", "a key", "a channel",
         "unknown to an older server", "not taken in a transaction"],
)  # fmt: skip
def test_only_a_noperm_answer_is_a_refusal(asked, answers, expected):
    """NOPERM names a command, a key or a channel; any other answer is no refusal."""
    assert refusals(asked, answers) == expected
    assert bool(refusals(asked, answers)) == bool(expected)


def test_the_one_line_names_what_is_missing_and_where_it_is_explained():
    """Commands, then keys, then channels, each list once; the docs' section last."""
    refused = Refusals(commands=("BRPOP", "EVALSHA"), keys=("pp.submit",), channels=("c",))
    assert message("pallycon", refused) == (
        "Redis user 'pallycon' may not run: BRPOP, EVALSHA; may not use keys like: pp.submit; "
        "may not use channels like: c (the worker needs them; see "
        "docs/CONFIGURATION.md#acl-users)"
    )
    assert message("u", Refusals(commands=("BRPOP",))) == (
        "Redis user 'u' may not run: BRPOP (the worker needs them; see "
        "docs/CONFIGURATION.md#acl-users)"
    )


@pytest.mark.parametrize(
    ("url", "user"),
    [
        ("redis://pallycon@redis:6379/0", "pallycon"),
        ("redis://pallycon:secret@redis:6379/0", "pallycon"),
        ("redis://:secret@redis:6379/0", "default"),
        ("redis://redis:6379/0", "default"),
        ("rediss://us%40er@redis:6380/0", "us@er"),
    ],
)
def test_the_user_is_the_urls_or_default(url, user):
    """The user a URL logs in as: its user name, else Redis's ``default``."""
    assert user_of(url) == user


def test_the_commands_are_asked_on_the_deployments_keys():
    """Queues and keys under the prefix, so that a user limited to some keys is asked on them."""
    lines = [command.line() for command in worker_commands(Keys("acme"))]
    assert ["BRPOP", "acme.submit", "1"] in lines
    assert ["BRPOP", "acme.poll", "1"] in lines
    assert ["XGROUP", "CREATE", "acme:intake", "x", "$", "MKSTREAM"] in lines
    assert not any("pp" in word.split(":")[0].split(".") for line in lines for word in line)
