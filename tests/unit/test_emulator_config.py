"""The emulator's per-site callback URLs: --site-callback and PALLYCON_EMULATOR_CALLBACK_URLS
are validated with one line naming the option and the site, never echoing the URL (its path
carries the receiver's token), and the URLs are shown masked."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from pallycon.signing import SiteCredentials
from pallycon_config import ConfigError
from pallycon_config.show import masked
from pallycon_emulator.config import (
    EmulatorConfig,
    callback_url_problem,
    load_emulator_settings,
    masked_callback_url,
)
from pallycon_pack.cli.servers.commands import emulator
from support.samples import SAMPLE_SITE

TOKEN = "secret-token-0123456789abcdef"
SITE2 = SiteCredentials.of("SITE2", "other-access-key", "o" * 32)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"http://127.0.0.1:8700/callback/{TOKEN}", "http://127.0.0.1:8700/callback/***"),
        (f"https://h/callback/SITE2/{TOKEN}", "https://h/callback/***"),
        (f"http://u:pw@h:1/callback/{TOKEN}?t={TOKEN}#x", "http://u:***@h:1/callback/***"),
        (f"http://h/hooks/{TOKEN}", "http://h/***"),
        ("http://h", "http://h"),
    ],
)
def test_a_callback_url_is_shown_with_its_path_masked(url: str, shown: str):
    assert masked_callback_url(url) == shown


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"ftp://h/callback/{TOKEN}", "must be an http:// or https:// URL with a host"),
        (f"http:///callback/{TOKEN}", "must be an http:// or https:// URL with a host"),
        (f"/callback/{TOKEN}", "must be an http:// or https:// URL with a host"),
        (f"http://h:99999/callback/{TOKEN}", "is not a valid URL"),
        (f"http://[::1/callback/{TOKEN}", "is not a valid URL"),
        (f"https://h:8700/callback/{TOKEN}", None),
    ],
)
def test_a_callback_url_must_be_http_with_a_host(url: str, problem: str | None):
    assert callback_url_problem(url) == problem


def test_the_variable_holds_site_id_url_entries_shown_masked(isolated_settings, monkeypatch):
    """Entries separated by spaces; the start line and config show see them masked."""
    value = f"A=http://h:1/callback/A/{TOKEN}  B=https://h:2/callback/B/{TOKEN}"
    monkeypatch.setenv("PALLYCON_EMULATOR_CALLBACK_URLS", value)
    settings = load_emulator_settings()
    assert {site: url.get_secret_value() for site, url in settings.callback_urls.items()} == {
        "A": f"http://h:1/callback/A/{TOKEN}",
        "B": f"https://h:2/callback/B/{TOKEN}",
    }
    shown = json.dumps(masked(settings), default=str)
    assert TOKEN not in shown
    assert TOKEN not in repr(settings)
    assert '"callback_urls": {"A": "http://h:1/callback/***", "B": "https://h:2/callback/***"}' in (
        shown
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (f"A=ftp://h/callback/{TOKEN}", "site A: the URL must be an http:// or https:// URL"),
        (f"A=http://h/{TOKEN} A=http://h/x", "site A is given twice"),
        (f"A=http://h/{TOKEN} {TOKEN}", "entry 2: expected SITE_ID=URL"),
    ],
)
def test_a_bad_variable_is_one_line_naming_it(isolated_settings, monkeypatch, value, message):
    monkeypatch.setenv("PALLYCON_EMULATOR_CALLBACK_URLS", value)
    with pytest.raises(ConfigError) as caught:
        load_emulator_settings()
    assert f"PALLYCON_EMULATOR_CALLBACK_URLS: {message}" in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_a_jobs_callback_goes_to_its_sites_url_else_the_common_one():
    config = EmulatorConfig(
        sites=(SAMPLE_SITE, SITE2),
        callback_url="http://h/callback/common",
        callback_urls={"SITE2": f"http://h/callback/SITE2/{TOKEN}"},
    )
    assert config.callback_url_of("SITE2") == f"http://h/callback/SITE2/{TOKEN}"
    assert config.callback_url_of("TUTO") == "http://h/callback/common"
    assert EmulatorConfig(sites=(SAMPLE_SITE,)).callback_url_of("TUTO") is None
    assert TOKEN not in repr(config)


@pytest.mark.parametrize(
    ("urls", "message"),
    [
        ({"NOPE": "http://h/x"}, "callback_urls: site NOPE is not served (sites: TUTO, SITE2)"),
        ({"SITE2": "mailto:x@h"}, "callback_urls: site SITE2: the URL must be an http://"),
    ],
)
def test_the_config_refuses_an_unserved_site_or_a_bad_url(urls, message):
    with pytest.raises(ValueError, match=r"^callback_urls: ") as caught:
        EmulatorConfig(sites=(SAMPLE_SITE, SITE2), callback_urls=urls)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--site-callback", f"DEMO=ftp://h/callback/{TOKEN}"], "--site-callback DEMO: the URL "),
        (["--site-callback", f"DEMO:http://h/{TOKEN}"], "--site-callback: expected SITE_ID=URL"),
        (
            ["--site-callback", "DEMO=http://h/x", "--site-callback", f"=http://h/{TOKEN}"],
            "--site-callback (number 2): expected SITE_ID=URL",
        ),
        (
            ["--site-callback", f"DEMO=http://h/{TOKEN}", "--site-callback", "DEMO=http://h/y"],
            "--site-callback: site DEMO is given twice",
        ),
        (
            ["--site-callback", f"NOPE=http://h/callback/NOPE/{TOKEN}"],
            "--site-callback: site NOPE is not served (sites: DEMO)",
        ),
    ],
    ids=["scheme", "shape", "number", "twice", "not-served"],
)
def test_a_bad_site_callback_flag_is_one_line_naming_it(isolated_settings, args, message):
    """Exit 2 before serving anything; the message never holds the URL."""
    result = CliRunner().invoke(emulator, args)
    assert result.exit_code == 2, result.output
    assert f"Error: {message}" in result.output
    assert TOKEN not in result.output


def test_the_variable_may_name_only_a_served_site(isolated_settings, monkeypatch):
    monkeypatch.setenv("PALLYCON_EMULATOR_CALLBACK_URLS", f"SITE9=http://h/callback/{TOKEN}")
    result = CliRunner().invoke(emulator, [])
    assert result.exit_code == 2, result.output
    assert "Error: PALLYCON_EMULATOR_CALLBACK_URLS: site SITE9 is not served (sites: DEMO)" in (
        result.output
    )
    assert TOKEN not in result.output


def test_the_help_documents_the_option():
    text = CliRunner().invoke(emulator, ["--help"], terminal_width=200).output
    assert "--site-callback SITE_ID=URL" in text
    assert "PALLYCON_EMULATOR_CALLBACK_URLS" in text


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (f"Invalid URL 'http://h:1/callback/S2/{TOKEN}'", "Invalid URL 'http://h:1/callback/***'"),
        (f"redirect to /callback/S2/{TOKEN} refused", "redirect to /*** refused"),
        (f"see http://other/callback/{TOKEN}", "see http://other/callback/***"),
    ],
)
def test_an_undelivered_callbacks_reason_is_logged_without_its_token(error: str, shown: str):
    from pallycon_emulator.app import _without

    assert _without(error, f"http://h:1/callback/S2/{TOKEN}") == shown
