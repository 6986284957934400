"""What a new user's walk-through leans on, as pure rules: where this machine's callback receiver
is and the callback URL the emulator posts to, the start-up warnings of a callback URL without a
token and of an empty data directory, the one line ``health --wait`` shows while it waits, and
the demo's summary fitting a terminal of 80 or 120 columns."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from rich.console import Console

from pallycon_config import Settings
from pallycon_emulator.config import DEMO_SITE, EmulatorConfig, without_token
from pallycon_pack.cli.fleet.commands import parse_checks
from pallycon_pack.cli.servers.run import receiver_callback_url
from pallycon_pack.demo.run import Row, summary_table
from pallycon_pack.errors import EXIT_INVALID, Failure
from pallycon_pack.health import Check, waiting
from pallycon_pack.receiver import callback_url, local_base

TOKEN = "walk-token-0123456789abcdef"


@pytest.mark.parametrize(
    ("host", "port", "base"),
    [
        ("127.0.0.1", 8700, "http://127.0.0.1:8700"),
        ("0.0.0.0", 8701, "http://127.0.0.1:8701"),  # noqa: S104  # a listen address, read
        ("::", 8700, "http://127.0.0.1:8700"),
        ("", 8700, "http://127.0.0.1:8700"),
        ("10.0.0.5", 9000, "http://10.0.0.5:9000"),
        ("::1", 8700, "http://[::1]:8700"),
    ],
)
def test_the_local_receiver_is_reached_where_it_listens(host: str, port: int, base: str):
    """A receiver on a wildcard address is reached on loopback; a named address as it is."""
    assert local_base(host, port) == base


def test_the_callback_url_ends_with_the_token_encoded():
    """The default site's path, the token percent-encoded, a trailing slash of the base dropped."""
    assert callback_url("http://h:1/", TOKEN) == f"http://h:1/callback/{TOKEN}"
    assert callback_url("https://h/proxy", "a/b c") == "https://h/proxy/callback/a%2Fb%20c"


def _settings(**values: Any) -> Settings:
    defaults: dict[str, Any] = {
        "callback_host": "127.0.0.1",
        "callback_port": 8700,
        "callback_token": None,
    }
    return Settings.model_construct(**{**defaults, **values})


def test_callback_receiver_takes_the_token_of_the_settings():
    """``--callback-receiver`` alone posts to this machine's receiver, with a URL to that one."""
    settings = _settings(callback_token=SecretStr(TOKEN), callback_port=8799)
    assert receiver_callback_url(settings, None, "") == f"http://127.0.0.1:8799/callback/{TOKEN}"
    assert receiver_callback_url(settings, None, "http://rx:80") == f"http://rx:80/callback/{TOKEN}"


@pytest.mark.parametrize(
    ("settings", "url", "base", "says"),
    [
        (_settings(), None, "", "PALLYCON_CALLBACK_TOKEN is not set"),
        (_settings(callback_token=SecretStr(TOKEN)), "http://h/callback/x", "", "give one"),
        (_settings(callback_token=SecretStr(TOKEN)), None, "ftp://h", "http:// or https://"),
    ],
)
def test_callback_receiver_refuses_in_one_line(
    settings: Settings, url: str | None, base: str, says: str
):
    """No token, --callback-url beside it, or a base that is no http URL: exit 2, one line."""
    with pytest.raises(Failure) as caught:
        receiver_callback_url(settings, url, base)
    assert caught.value.exit_code == EXIT_INVALID
    assert says in str(caught.value)
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "missing"),
    [
        ("http://127.0.0.1:8700/callback/", True),  # `.../callback/$UNSET` in a shell
        ("http://127.0.0.1:8700/callback", True),
        ("http://127.0.0.1:8700/callback/SITE2/", True),
        ("http://127.0.0.1:8700", True),
        ("http://127.0.0.1:8700/", True),
        (f"http://127.0.0.1:8700/callback/{TOKEN}", False),
        (f"http://127.0.0.1:8700/callback/SITE2/{TOKEN}", False),
        (f"https://proxy/hooks/{TOKEN}", False),
    ],
)
def test_a_callback_url_without_a_token_is_seen(url: str, missing: bool):
    """The URL a shell makes of an unset token variable, and kin, have no token."""
    assert without_token(url) is missing


def test_the_emulator_warns_of_a_tokenless_callback_url_and_an_empty_data_dir(tmp_path: Path):
    """One warning each, naming neither a token nor a path after the host; none when all is
    well."""
    config = EmulatorConfig(
        sites=(DEMO_SITE,),
        callback_url="http://u:pw@127.0.0.1:8700/callback/",
        data_dir=tmp_path,
    )
    first, second = config.warnings()
    assert first.startswith("the callback URL (http://u:***@127.0.0.1:8700) ends without a token")
    assert "pw" not in first
    assert second.startswith(f"the data directory {tmp_path} is empty")
    assert "examples/emulator-data" in second
    (tmp_path / "my-bucket").mkdir()
    good = EmulatorConfig(
        sites=(DEMO_SITE,),
        callback_url=f"http://127.0.0.1:8700/callback/{TOKEN}",
        callback_urls={"DEMO": f"http://127.0.0.1:8700/callback/DEMO/{TOKEN}"},
        data_dir=tmp_path,
    )
    assert good.warnings() == []
    assert EmulatorConfig(sites=(DEMO_SITE,)).warnings() == []
    site_only = EmulatorConfig(
        sites=(DEMO_SITE,), callback_urls={"DEMO": "http://127.0.0.1:8700/callback/DEMO/"}
    )
    assert [w[:32] for w in site_only.warnings()] == ["site DEMO's callback URL (http:/"]


def test_health_wait_says_which_checks_it_waits_for():
    """The line names the failing checks and the first one's reason; its key changes only when
    the set of failing checks does."""
    results = [
        Check("redis", True, "reachable"),
        Check("api", False, "RequestNotSent: ConnectError"),
        Check("workers", False, "no worker answering (0 of 0 loops)"),
    ]
    names, line = waiting(results)
    assert names == ("api", "workers")
    assert line == "waiting for api, workers (api: RequestNotSent: ConnectError)"
    later = [results[0], Check("api", True, "ok"), Check("workers", False, "newest 3s old")]
    assert waiting(later)[0] == ("workers",)


def test_the_callbacks_check_is_known_but_run_only_when_named():
    """``--check callbacks`` is accepted; the default checks stay the fleet's."""
    assert parse_checks("redis,callbacks") == ["redis", "callbacks"]
    from pallycon_pack.health import CHECKS

    assert "callbacks" not in CHECKS


ROWS = [
    *(Row(f"demo-050685-{n}", f"100{n}", "completed", "WM030", 4, True) for n in range(1, 6)),
    Row(
        "demo-050685-6",
        "1006",
        "failed",
        "WM900013: Download failed.(File does not exist or size is 0kb.)",
        0,
        True,
    ),
    Row(
        "demo-050685-invalid",
        "",
        "failed",
        "invalid_request: storage: Field required; content_id: String should have at most 200 "
        "characters",
        0,
        False,
    ),
]


@pytest.mark.parametrize("width", [80, 100, 120])
def test_the_demo_summary_fits_the_terminal_with_its_key_columns_whole(width: int):
    """Every line within the width; request ids, jobs, states and verdicts whole on their row;
    the error wrapped, not cut."""
    out = io.StringIO()
    Console(file=out, width=width, highlight=False, soft_wrap=True).print(summary_table(ROWS))
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= width
    assert "…" not in out.getvalue()
    for row in ROWS:
        found = [line for line in lines if f" {row.request_id} " in line]
        assert len(found) == 1, (row.request_id, out.getvalue())
        cells = [cell.strip() for cell in found[0].split("│")]
        assert cells[1:4] == [row.request_id, row.job, row.state]
        assert cells[-2] == ("yes" if row.ok else "NO")
    flat = " ".join(line.split("│")[4].strip() for line in lines if line.count("│") > 4)
    assert "size is 0kb.)" in flat
    assert "at most 200 characters" in flat
