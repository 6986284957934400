"""Where each setting came from, secrets masked, region codes checked, start-up warnings; and
the worker's Celery command line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pallycon_config import ConfigError, Settings, load_settings
from pallycon_config.rules import REGIONS, env_name
from pallycon_config.settings import PLACEHOLDER_TOKEN
from pallycon_config.show import (
    COMMAND_LINE,
    DEFAULT,
    DOTENV,
    ENVIRONMENT,
    describe,
    masked,
    origins,
)
from pallycon_config.show import warnings as start_warnings
from pallycon_emulator.config import EmulatorSettings, emulator_env_name, load_emulator_settings
from pallycon_pack.cli.servers.run import celery_worker_argv

#: No PALLYCON_* from the developer's shell, and no .env from the checkout.
pytestmark = pytest.mark.usefixtures("isolated_settings")


def test_each_source_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The command line beats the environment, which beats .env, which beats the default."""
    (tmp_path / ".env").write_text(
        "PALLYCON_SITE_ID=FROMDOTENV\nPALLYCON_REGION=RG004\nPALLYCON_API_RATE=5\n"
        "PALLYCON_EMULATOR_PORT=8601\n"
    )
    monkeypatch.setenv("PALLYCON_REGION", "RG013")
    monkeypatch.setenv("PALLYCON_API_RATE", "7")
    found = origins(Settings, {"api_rate": 9.0, "log_level": None})
    assert found["site_id"] == DOTENV
    assert found["region"] == ENVIRONMENT
    assert found["api_rate"] == COMMAND_LINE
    assert found["log_level"] == DEFAULT  # a None override is no override
    assert found["redis_url"] == DEFAULT
    assert set(found) == set(Settings.model_fields)
    assert origins(EmulatorSettings)["port"] == DOTENV
    assert origins(EmulatorSettings)["host"] == DEFAULT
    rows = {row.variable: row for row in describe(load_settings(api_rate=9.0), env_name)}
    assert (rows["PALLYCON_REGION"].value, rows["PALLYCON_REGION"].source) == ("RG013", ENVIRONMENT)
    assert rows["PALLYCON_SITE_ID"].value == "FROMDOTENV"
    emulator_rows = describe(load_emulator_settings(), emulator_env_name)
    assert [row.value for row in emulator_rows if row.variable == "PALLYCON_EMULATOR_PORT"] == [
        8601
    ]


def test_secrets_are_masked(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PALLYCON_ACCESS_KEY", "an-access-key-never-shown")
    monkeypatch.setenv("PALLYCON_CALLBACK_TOKEN", "a-token-never-shown-0123")
    monkeypatch.setenv("PALLYCON_WEBHOOK_KEY", "a-webhook-key-never-shown-0123456789")
    monkeypatch.setenv("PALLYCON_REDIS_URL", "redis://user:hunter2hunter2@redis:6380/1")
    monkeypatch.setenv(
        "PALLYCON_EMULATOR_CALLBACK_URL", "http://h:8700/callback/a-token-0123456789"
    )
    shown = masked(load_settings())
    assert shown["access_key"] == "***"
    assert shown["callback_token"] == "***"
    assert shown["webhook_key"] == "***"
    assert shown["site_key"] is None
    assert shown["redis_url"] == "redis://user:***@redis:6380/1"
    assert masked(load_emulator_settings())["callback_url"] == "http://h:8700/callback/***"
    text = repr(describe(load_settings(), env_name))
    assert "hunter2" not in text
    assert "never-shown" not in text


def test_the_placeholder_token_is_warned_of(monkeypatch: pytest.MonkeyPatch):
    assert start_warnings(load_settings()) == []
    monkeypatch.setenv("PALLYCON_CALLBACK_TOKEN", PLACEHOLDER_TOKEN)
    (warning,) = start_warnings(load_settings())
    assert warning.startswith("PALLYCON_CALLBACK_TOKEN is the placeholder of .env.example")
    assert PLACEHOLDER_TOKEN not in warning


@pytest.mark.parametrize("region", sorted(REGIONS))
def test_known_regions_are_accepted(region: str):
    assert load_settings(region=region).region == region


@pytest.mark.parametrize("region", ["RG999", "rg011", "RG01", "Seoul"])
def test_unknown_regions_are_refused_naming_the_valid_ones(
    monkeypatch: pytest.MonkeyPatch, region: str
):
    monkeypatch.setenv("PALLYCON_REGION", region)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    line = str(caught.value).splitlines()[1].strip()
    assert line == (
        "PALLYCON_REGION: not a known region code; use one of "
        "RG004 (Oregon), RG011 (Seoul), RG013 (Singapore)"
    )


@pytest.mark.parametrize(
    ("extra", "tail"),
    [
        ((), []),
        (("--", "-Q", "pp.submit"), ["-Q", "pp.submit"]),
        (("--uid", "1000", "--autoscale=8,2"), ["--uid", "1000", "--autoscale=8,2"]),
        (("--max-tasks-per-child", "100"), ["--max-tasks-per-child", "100"]),
    ],
)
def test_celery_options_follow_ours(extra: tuple[str, ...], tail: list[str]):
    """The user's options come last, so that one given again (e.g. --concurrency) wins."""
    argv = celery_worker_argv(3, "INFO", "node@host", extra)
    assert argv == [
        "worker",
        "--concurrency=3",
        "--loglevel=INFO",
        "--hostname=node@host",
        "--without-gossip",
        "--without-mingle",
        *tail,
    ]


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (
            ["--time-limit=900"],
            "--time-limit is not passed to Celery: set PALLYCON_VISIBILITY_TIMEOUT",
        ),
        (["--soft-time-limit", "60"], "--soft-time-limit"),
        (["-P", "threads"], "--pool threads: only prefork"),
        (["--pool=solo"], "--pool solo"),
        (["-Pgevent"], "--pool gevent"),
    ],
)
def test_the_worker_refuses_celery_options_that_undo_exactly_once(extra, named):
    """Time limits and pools decide when a lost registration may be registered again."""
    from pallycon_pack.errors import Failure

    with pytest.raises(Failure, match=re.escape(named)) as raised:
        celery_worker_argv(2, "INFO", "n@h", extra)
    assert raised.value.exit_code == 2
    assert celery_worker_argv(2, "INFO", "n@h", ["-P", "prefork"])[-2:] == ["-P", "prefork"]
