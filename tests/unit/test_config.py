"""Settings: names, validation messages that name the variable, secrets kept wrapped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pallycon_config import ConfigError, Settings, load_settings
from pallycon_emulator.config import EmulatorSettings, load_emulator_settings

#: No PALLYCON_* from the developer's shell, and no .env from the checkout.
pytestmark = pytest.mark.usefixtures("isolated_settings")

GOOD = {
    "PALLYCON_SITE_ID": "TUTO",
    "PALLYCON_ACCESS_KEY": "LT2FVJDp2Xr018zf4Di6lzvNOv3DKP20",
    "PALLYCON_SITE_KEY": "lU5D8s3PWoLls3PWFWkClULlFWk5D8oC",
}


def test_defaults_need_no_environment():
    """With nothing set, every default is usable and credentials are simply absent."""
    settings = load_settings()
    assert settings.api_url == "https://api.pallycon.com"
    assert settings.apidata_in == "query"
    assert settings.site_key is None


def test_credentials_come_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    """PALLYCON_SITE_ID / _ACCESS_KEY / _SITE_KEY make the credentials."""
    for name, value in GOOD.items():
        monkeypatch.setenv(name, value)
    credentials = load_settings().credentials()
    assert credentials.site_id == "TUTO"
    assert credentials.aes_key() == GOOD["PALLYCON_SITE_KEY"].encode()


def test_dotenv_file_is_read(tmp_path: Path):
    """A .env in the working directory is read like the environment."""
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in GOOD.items()))
    assert load_settings().site_id == "TUTO"


def test_missing_credentials_name_each_variable():
    """Asking for credentials that are not set names the variables to set."""
    with pytest.raises(
        ConfigError, match="PALLYCON_SITE_ID, PALLYCON_ACCESS_KEY, PALLYCON_SITE_KEY"
    ):
        load_settings().credentials()
    with pytest.raises(ConfigError, match="PALLYCON_REGION"):
        load_settings().require_region()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PALLYCON_SITE_KEY", "too-short", "must be 32 bytes"),
        ("PALLYCON_SITE_KEY", "é" * 32, "must be 32 bytes"),
        ("PALLYCON_ACCESS_KEY", "   ", "blank"),
        ("PALLYCON_SITE_ID", "TU TO", "letters and digits"),
        ("PALLYCON_REGION", "seoul", "region code"),
        ("PALLYCON_API_URL", "api.pallycon.com", "http"),
        ("PALLYCON_APIDATA_IN", "header", "query"),
        ("PALLYCON_READ_TIMEOUT", "0", "greater than 0"),
    ],
)
def test_invalid_settings_name_the_variable(monkeypatch, name, value, message):
    """Start-up stops with a message naming the variable and the rule, never the value."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    text = str(caught.value)
    assert name in text
    assert message in text
    if name == "PALLYCON_SITE_KEY":
        assert value not in text


def test_flags_override_the_environment(monkeypatch):
    """Keyword overrides win; None overrides are ignored."""
    monkeypatch.setenv("PALLYCON_REGION", "RG011")
    assert load_settings(region="RG004").region == "RG004"
    assert load_settings(region=None).region == "RG011"


def test_secrets_stay_wrapped():
    """repr() of the settings shows neither key."""
    fields: dict[str, Any] = {k.removeprefix("PALLYCON_").lower(): v for k, v in GOOD.items()}
    settings = Settings(**fields)
    assert GOOD["PALLYCON_SITE_KEY"] not in repr(settings)
    assert GOOD["PALLYCON_ACCESS_KEY"] not in repr(settings)


def test_the_emulators_settings_are_apart_from_the_workers(monkeypatch, tmp_path: Path):
    """PALLYCON_EMULATOR_* (environment or .env) set the emulator; a worker ignores them."""
    monkeypatch.setenv("PALLYCON_EMULATOR_PORT", "70000")
    (tmp_path / ".env").write_text("PALLYCON_EMULATOR_JOB_SECONDS=3\nPALLYCON_SITE_ID=TUTO\n")
    assert load_settings().site_id == "TUTO"
    assert not any(name.startswith("emulator") for name in Settings.model_fields)
    with pytest.raises(ConfigError) as caught:
        load_emulator_settings()
    assert "PALLYCON_EMULATOR_PORT" in str(caught.value)
    assert "less than or equal" in str(caught.value)
    settings = load_emulator_settings(port=0)
    assert (settings.port, settings.job_seconds, settings.host) == (0, 3.0, "127.0.0.1")


def test_the_emulators_defaults_need_no_environment():
    settings = EmulatorSettings()
    assert (settings.host, settings.port, settings.job_seconds) == ("127.0.0.1", 8600, 20.0)
    assert (settings.status_style, settings.max_page_unit) == ("code", 500)
    assert (settings.data_dir, settings.callback_url, settings.max_skew_seconds) == (None,) * 3


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PALLYCON_EMULATOR_PORT", "70000", "less than or equal"),
        ("PALLYCON_EMULATOR_STATUS_STYLE", "loud", "'code' or 'word'"),
        ("PALLYCON_EMULATOR_MAX_SKEW_SECONDS", "0", "greater than 0"),
    ],
)
def test_invalid_emulator_settings_name_the_variable(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_emulator_settings()
    assert name in str(caught.value)
    assert message in str(caught.value)


def test_every_settings_variable_is_named_by_one_rule():
    """``env_name`` (the rules the sites file shares, which know no settings class) names each
    field's variable as the settings class itself reads it, aliases included."""
    from pallycon_config.rules import env_name
    from pallycon_config.settings import variable_name

    for field in Settings.model_fields:
        assert env_name(field) == variable_name(Settings, field), field
