"""pallycon-pack with its secrets only in files: a Kubernetes-style secrets directory and
Docker-style ``_FILE`` variables. A real process signs PallyCon's published sample; ``config
show`` (in this process, :func:`support.cli.run_cli`) says where each secret came from; no
secret is printed anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.cli import run_cli
from support.env import clean_env
from support.processes import cli
from support.samples import SAMPLE_APIDATA, SAMPLE_JSON, SAMPLE_SITE

pytestmark = pytest.mark.integration

ACCESS_KEY = SAMPLE_SITE.access_key.get_secret_value()
SITE_KEY = SAMPLE_SITE.site_key.get_secret_value()
TOKEN = "callback-token-kept-in-a-file-0123"
REDIS_PASSWORD = "redis-password-kept-in-a-file"


def _secrets_in_files(tmp_path: Path) -> dict[str, str]:
    """An environment whose secrets are all files: the site keys in a secrets directory (as a
    Kubernetes Secret volume mounts them), the others through _FILE (as Docker does)."""
    directory = tmp_path / "etc-secrets"
    directory.mkdir()
    (directory / "PALLYCON_ACCESS_KEY").write_text(ACCESS_KEY + "\n")
    (directory / "PALLYCON_SITE_KEY").write_text(SITE_KEY + "\n")
    run = tmp_path / "run-secrets"
    run.mkdir()
    (run / "callback_token").write_text(TOKEN + "\n")
    (run / "redis_password").write_text(REDIS_PASSWORD)
    return clean_env(
        PALLYCON_SITE_ID=SAMPLE_SITE.site_id,
        PALLYCON_SECRETS_DIR=str(directory),
        PALLYCON_CALLBACK_TOKEN_FILE=str(run / "callback_token"),
        PALLYCON_REDIS_PASSWORD_FILE=str(run / "redis_password"),
    )


def _no_secret_in(*texts: bytes) -> None:
    for text in texts:
        for secret in (ACCESS_KEY, SITE_KEY, TOKEN, REDIS_PASSWORD):
            assert secret.encode() not in text


def test_sign_and_config_show_with_secrets_only_in_files(tmp_path: Path):
    env = _secrets_in_files(tmp_path)
    signed = cli("sign", "--timestamp", "2022-03-30T08:29:57Z",
                 env=env, cwd=tmp_path, stdin=SAMPLE_JSON)  # fmt: skip
    assert signed.returncode == 0, signed.stderr.decode()
    assert signed.stdout.decode() == SAMPLE_APIDATA + "\n"  # the published value
    _no_secret_in(signed.stdout, signed.stderr)

    shown = run_cli("config", "show", "--json", env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr.decode()
    _no_secret_in(shown.stdout, shown.stderr)
    rows = {row["variable"]: row for row in json.loads(shown.stdout)["settings"]}
    directory, run = tmp_path / "etc-secrets", tmp_path / "run-secrets"
    assert rows["PALLYCON_SITE_KEY"] == {
        "variable": "PALLYCON_SITE_KEY",
        "value": "***",
        "source": f"file {directory / 'PALLYCON_SITE_KEY'} (PALLYCON_SECRETS_DIR)",
    }
    assert rows["PALLYCON_CALLBACK_TOKEN"]["source"] == f"file {run / 'callback_token'}"
    assert rows["PALLYCON_REDIS_PASSWORD"]["value"] == "***"
    assert rows["PALLYCON_REDIS_SENTINEL_PASSWORD"]["value"] is None


def test_an_ambiguous_or_broken_secret_stops_the_process_naming_it(tmp_path: Path):
    env = _secrets_in_files(tmp_path)
    both = run_cli("config", "show", env={**env, "PALLYCON_CALLBACK_TOKEN": TOKEN}, cwd=tmp_path)
    assert both.returncode != 0
    assert (
        "PALLYCON_CALLBACK_TOKEN and PALLYCON_CALLBACK_TOKEN_FILE are both set"
        in both.stderr.decode()
    )
    _no_secret_in(both.stdout, both.stderr)
    (tmp_path / "etc-secrets" / "PALLYCON_SITE_KEY").write_text(SITE_KEY[:-1] + "\n")
    short = run_cli("config", "show", env=env, cwd=tmp_path)
    assert short.returncode != 0
    assert "PALLYCON_SITE_KEY (from file " in short.stderr.decode()
    assert "must be 32 bytes (AES-256), got 31" in short.stderr.decode()
    _no_secret_in(short.stdout, short.stderr)
    assert SITE_KEY[:-1].encode() not in short.stderr
