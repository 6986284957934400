"""Secrets from files: PALLYCON_<NAME>_FILE, PALLYCON_SECRETS_DIR, their precedence and errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from pallycon_config import ConfigError, Settings, load_settings
from pallycon_config.rules import env_name
from pallycon_config.secrets import MAX_SECRET_BYTES, is_secret, secret_fields, strip_newline
from pallycon_config.settings import read_settings
from pallycon_config.show import COMMAND_LINE, DOTENV, ENVIRONMENT, describe, origins
from pallycon_pack.web.console.auth import ConsoleSettings

#: No PALLYCON_* from the developer's shell, and no .env from the checkout.
pytestmark = pytest.mark.usefixtures("isolated_settings")

SITE_KEY = "lU5D8s3PWoLls3PWFWkClULlFWk5D8oC"
OTHER_KEY = "0123456789abcdef0123456789abcdef"
TOKEN = "a-callback-token-from-a-file-0123"


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def _error(**overrides: str | None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(**overrides)
    return str(caught.value)


def test_every_secret_setting_is_found():
    assert secret_fields(Settings) == [
        "access_key",
        "site_key",
        "redis_password",
        "redis_sentinel_password",
        "callback_token",
        "webhook_key",
    ]
    assert secret_fields(ConsoleSettings) == ["token"]
    assert is_secret(SecretStr)
    assert is_secret(SecretStr | None)
    assert not is_secret(str | None)
    assert not is_secret(int)


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("key\n", "key"),
        ("key\r\n", "key"),
        ("key", "key"),
        ("key\n\n", "key\n"),  # only one newline is the file's ending
        (" key \t", " key \t"),  # other whitespace is the secret's
        ("\nkey", "\nkey"),
    ],
)
def test_one_trailing_newline_is_stripped(written: str, read: str):
    assert strip_newline(written) == read


def test_each_secret_reads_its_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Every SecretStr setting honours PALLYCON_<NAME>_FILE; echo's newline is dropped."""
    values = {
        "access_key": "an access key with spaces ",
        "site_key": SITE_KEY,
        "redis_password": "redis-password",
        "redis_sentinel_password": "sentinel-password",
        "callback_token": TOKEN,
        "webhook_key": "a-webhook-key-from-a-file-of-32-chars",
    }
    for field, value in values.items():
        path = _write(tmp_path / "run" / field, value + "\n")
        monkeypatch.setenv(env_name(field) + "_FILE", str(path))
    settings = load_settings()
    for field, value in values.items():
        secret = getattr(settings, field)
        assert isinstance(secret, SecretStr)
        assert secret.get_secret_value() == value
        assert settings.secret_files[field].path == tmp_path / "run" / field


def test_a_short_webhook_key_is_refused_giving_its_length_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    """PALLYCON_WEBHOOK_KEY under 32 characters, or with whitespace, stops what needs it (not
    the settings' load: other commands go on) naming the variable and the file, never the
    value; a missing one is one line naming the variable."""
    path = _write(tmp_path / "webhook_key", "too-short-a-key\n")
    monkeypatch.setenv("PALLYCON_WEBHOOK_KEY_FILE", str(path))
    settings = load_settings()
    with pytest.raises(ConfigError) as refused:
        settings.require_webhook_key()
    message = str(refused.value)
    assert "PALLYCON_WEBHOOK_KEY (from file" in message
    assert "at least 32 characters, got 15" in message
    assert "too-short-a-key" not in message
    _write(path, " " * 40)
    with pytest.raises(ConfigError, match="must not contain whitespace"):
        load_settings().require_webhook_key()
    monkeypatch.delenv("PALLYCON_WEBHOOK_KEY_FILE")
    with pytest.raises(ConfigError, match=r"^missing setting: PALLYCON_WEBHOOK_KEY "):
        load_settings().require_webhook_key()


def test_the_secrets_directory_names_files_like_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    """One file per secret, named exactly like its variable; absent ones stay unset; files
    for settings that are not secrets are not read."""
    directory = tmp_path / "secrets"
    _write(directory / "PALLYCON_SITE_KEY", SITE_KEY + "\n")
    _write(directory / "PALLYCON_CONSOLE_TOKEN", TOKEN)
    _write(directory / "PALLYCON_SITE_ID", "NOTREAD")
    monkeypatch.setenv("PALLYCON_SECRETS_DIR", str(directory))
    settings = load_settings()
    assert settings.site_key is not None
    assert settings.site_key.get_secret_value() == SITE_KEY
    assert settings.access_key is None
    assert settings.site_id is None
    console = read_settings(ConsoleSettings, lambda field: f"PALLYCON_CONSOLE_{field.upper()}", {})
    assert console.token is not None
    assert console.token.get_secret_value() == TOKEN


def test_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Flag > variable > _FILE > secrets directory > .env."""
    directory = tmp_path / "secrets"
    for name in ("PALLYCON_SITE_KEY", "PALLYCON_ACCESS_KEY", "PALLYCON_CALLBACK_TOKEN"):
        _write(directory / name, "from-the-secrets-directory-00000\n")
    _write(directory / "PALLYCON_REDIS_PASSWORD", "from-the-secrets-directory\n")
    monkeypatch.setenv("PALLYCON_SECRETS_DIR", str(directory))
    _write(tmp_path / "token", "from-the-token-file-0123456789\n")
    monkeypatch.setenv("PALLYCON_CALLBACK_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("PALLYCON_ACCESS_KEY", "from-the-environment")
    _write(tmp_path / ".env", "PALLYCON_REDIS_PASSWORD=from-dotenv\nPALLYCON_SITE_ID=DOTENV\n")
    settings = load_settings(site_key=OTHER_KEY)

    def value(field: str) -> str:
        secret = getattr(settings, field)
        assert isinstance(secret, SecretStr)
        return secret.get_secret_value()

    assert value("site_key") == OTHER_KEY  # the flag beats the secrets directory
    assert value("access_key") == "from-the-environment"  # the variable beats the directory
    assert value("callback_token") == "from-the-token-file-0123456789"  # _FILE beats it
    assert value("redis_password") == "from-the-secrets-directory"  # the directory beats .env
    assert set(settings.secret_files) == {"callback_token", "redis_password"}
    found = origins(Settings, {"site_key": OTHER_KEY})
    assert found["site_key"] == COMMAND_LINE
    assert found["access_key"] == ENVIRONMENT
    assert found["callback_token"] == f"file {tmp_path / 'token'}"
    assert found["redis_password"] == (
        f"file {directory / 'PALLYCON_REDIS_PASSWORD'} (PALLYCON_SECRETS_DIR)"
    )
    assert found["site_id"] == DOTENV
    rows = {row.variable: row for row in describe(settings, env_name, {"site_key": OTHER_KEY})}
    assert (rows["PALLYCON_CALLBACK_TOKEN"].value, rows["PALLYCON_CALLBACK_TOKEN"].source) == (
        "***",
        f"file {tmp_path / 'token'}",
    )
    assert "from-the" not in repr(rows)


def test_a_variable_and_its_file_together_are_ambiguous(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.setenv("PALLYCON_SITE_KEY", SITE_KEY)
    monkeypatch.setenv("PALLYCON_SITE_KEY_FILE", str(_write(tmp_path / "key", OTHER_KEY)))
    message = _error()
    assert "PALLYCON_SITE_KEY and PALLYCON_SITE_KEY_FILE are both set" in message
    assert SITE_KEY not in message
    assert OTHER_KEY not in message


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (None, "cannot be read: No such file or directory"),
        ("", "is empty"),
        ("\n", "is empty"),
        (b"\xff\xfe-not-utf-8", "is not UTF-8 text"),
        (b"s" * (MAX_SECRET_BYTES + 1), f"is larger than {MAX_SECRET_BYTES} bytes"),
    ],
)
def test_an_unusable_file_names_variable_and_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str | bytes | None, said: str
):
    path = tmp_path / "access_key"
    if content is not None:
        _write(path, content)
    monkeypatch.setenv("PALLYCON_ACCESS_KEY_FILE", str(path))
    message = _error()
    assert f"PALLYCON_ACCESS_KEY_FILE: {path} {said}" in message
    assert "ssss" not in message
    assert "not-utf-8" not in message


def test_a_directory_or_an_unreadable_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.setenv("PALLYCON_SITE_KEY_FILE", str(tmp_path))
    assert f"PALLYCON_SITE_KEY_FILE: {tmp_path} is not a regular file" in _error()
    monkeypatch.setenv("PALLYCON_SITE_KEY_FILE", "")
    assert "PALLYCON_SITE_KEY_FILE is empty; set it to a file's path" in _error()


def test_an_unreadable_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    locked = _write(tmp_path / "locked", SITE_KEY)
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running as root: every file is readable")
        monkeypatch.setenv("PALLYCON_SITE_KEY_FILE", str(locked))
        assert f"PALLYCON_SITE_KEY_FILE: {locked} cannot be read: Permission denied" in _error()
    finally:
        locked.chmod(0o600)


def test_an_unusable_secrets_directory_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("PALLYCON_SECRETS_DIR", str(tmp_path / "absent"))
    assert f"PALLYCON_SECRETS_DIR: cannot use {tmp_path / 'absent'}: No such file" in _error()
    monkeypatch.setenv("PALLYCON_SECRETS_DIR", str(_write(tmp_path / "plain", "x")))
    assert f"PALLYCON_SECRETS_DIR: {tmp_path / 'plain'} is not a directory" in _error()
    directory = tmp_path / "secrets"
    (directory / "PALLYCON_SITE_KEY").mkdir(parents=True)
    monkeypatch.setenv("PALLYCON_SECRETS_DIR", str(directory))
    message = _error()
    assert f"PALLYCON_SECRETS_DIR: {directory / 'PALLYCON_SITE_KEY'}" in message
    assert "is not a regular file" in message


def test_secret_files_named_in_dotenv_are_refused(tmp_path: Path):
    """.env is not read for _FILE or the secrets directory: said, not silently ignored."""
    _write(tmp_path / ".env", "pallycon_site_key_file=/x\nPALLYCON_SECRETS_DIR=/y\n")
    message = _error()
    assert "PALLYCON_SECRETS_DIR, PALLYCON_SITE_KEY_FILE in .env: secret files are named" in message


def test_validators_apply_to_file_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A 31-byte site key from a file is refused like one from a variable, naming the file."""
    path = _write(tmp_path / "site_key", SITE_KEY[:-1] + "\n")
    monkeypatch.setenv("PALLYCON_SITE_KEY_FILE", str(path))
    message = _error()
    assert f"PALLYCON_SITE_KEY (from file {path}): must be 32 bytes (AES-256), got 31" in message
    assert SITE_KEY[:-1] not in message
    _write(path, "short-token\n")
    monkeypatch.delenv("PALLYCON_SITE_KEY_FILE")
    monkeypatch.setenv("PALLYCON_CALLBACK_TOKEN_FILE", str(path))
    assert "PALLYCON_CALLBACK_TOKEN (from file" in _error()


def test_children_get_the_file_not_the_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """environment() passes a secret read from a file on as _FILE; others as before."""
    directory = tmp_path / "secrets"
    _write(directory / "PALLYCON_SITE_KEY", SITE_KEY + "\n")
    monkeypatch.setenv("PALLYCON_SECRETS_DIR", str(directory))
    token_file = _write(tmp_path / "token", TOKEN + "\n")
    monkeypatch.setenv("PALLYCON_CALLBACK_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("PALLYCON_ACCESS_KEY", "an-access-key-in-a-variable")
    env = load_settings().environment()
    assert env["PALLYCON_SITE_KEY_FILE"] == str(directory / "PALLYCON_SITE_KEY")
    assert env["PALLYCON_CALLBACK_TOKEN_FILE"] == str(token_file)
    assert env["PALLYCON_ACCESS_KEY"] == "an-access-key-in-a-variable"
    assert "PALLYCON_SITE_KEY" not in env
    assert "PALLYCON_CALLBACK_TOKEN" not in env
    assert SITE_KEY not in env.values()
    assert TOKEN not in env.values()
    # A copy with another value hands that value on, not the file.
    copy = load_settings().model_copy(update={"callback_token": SecretStr(TOKEN + "-copy")})
    assert copy.environment()["PALLYCON_CALLBACK_TOKEN"] == TOKEN + "-copy"
    assert "PALLYCON_CALLBACK_TOKEN_FILE" not in copy.environment()
    assert "PALLYCON_SITE_KEY_FILE" in copy.environment()
    # A child given exactly that environment reads the same settings.
    for name in list(os.environ):
        if name.startswith("PALLYCON_"):
            monkeypatch.delenv(name)
    child = read_settings(Settings, env_name, {}, environ=env)
    assert child.site_key is not None
    assert child.site_key.get_secret_value() == SITE_KEY
    # A flag's value is handed on as a variable, as before.
    assert load_settings(site_key=OTHER_KEY).environment()["PALLYCON_SITE_KEY"] == OTHER_KEY


def test_a_file_for_a_setting_that_is_no_secret_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    """PALLYCON_REGION_FILE would be ignored, the region left unset: said instead."""
    monkeypatch.setenv("PALLYCON_REGION_FILE", str(_write(tmp_path / "region", "RG011")))
    message = _error()
    assert "PALLYCON_REGION_FILE: only secrets are read from files (" in message
    assert "PALLYCON_SITE_KEY" in message
    assert message.endswith("set PALLYCON_REGION itself")


def test_a_secret_missing_from_the_secrets_directory_says_how_files_are_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    directory = tmp_path / "secrets"
    _write(directory / "PALLYCON_SITE_KEY", SITE_KEY)
    _write(directory / "access_key", "misnamed")  # not read: named unlike the variable
    monkeypatch.setenv("PALLYCON_SECRETS_DIR", str(directory))
    settings = load_settings(site_id="TUTO")
    with pytest.raises(ConfigError) as caught:
        settings.credentials()
    assert str(caught.value) == (
        "missing setting: PALLYCON_ACCESS_KEY (see .env.example; in PALLYCON_SECRETS_DIR, "
        "a file named exactly like the variable)"
    )
