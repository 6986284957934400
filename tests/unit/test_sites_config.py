"""PALLYCON_SITES: the sites file and directory, the default site's rules, and errors that name
the source, the site and the field but never a secret."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from pallycon.errors import InvalidRequest
from pallycon.signing import SiteCredentials
from pallycon_config import ConfigError, Settings, Site, Sites, UnknownSite, load_settings
from pallycon_config.rules import env_name
from pallycon_config.show import ENVIRONMENT, origins

#: No PALLYCON_* from the developer's shell, and no .env from the checkout.
pytestmark = pytest.mark.usefixtures("isolated_settings")

ROOT = Path(__file__).resolve().parents[2]

BRND_ACCESS = "brnd-access-key-0123456789abcdef"
BRND_SITE = "brnd-site-key-0123456789abcdef01"
BRND_TOKEN = "brnd-callback-token-0123456789ab"
NEWS_ACCESS = "news-access-key-0123456789abcdef"
NEWS_SITE = "news-site-key-0123456789abcdef01"
TUTO_ACCESS = "tuto-access-key-0123456789abcdef"
TUTO_SITE = "tuto-site-key-0123456789abcdef01"
TUTO_TOKEN = "tuto-callback-token-0123456789ab"
SECRETS = [
    BRND_ACCESS,
    BRND_SITE,
    BRND_TOKEN,
    NEWS_ACCESS,
    NEWS_SITE,
    TUTO_ACCESS,
    TUTO_SITE,
    TUTO_TOKEN,
]

#: Two sites, one with its secrets in files (relative to the TOML file), one inline.
TOML = f"""
[BRND]
access_key_file = "brnd/access_key"
site_key_file = "brnd/site_key"
region = "RG011"
api_rate = 5
api_burst = 3
callback_token_file = "brnd/callback_token"

[NEWS]
access_key = "{NEWS_ACCESS}"
site_key = "{NEWS_SITE}"
region = "RG004"
"""

#: The same two sites as a directory (what a Kubernetes Secret per site gives).
DIRECTORY = {
    "BRND/access_key": BRND_ACCESS + "\n",
    "BRND/site_key": BRND_SITE + "\r\n",
    "BRND/region": "RG011\n",
    "BRND/api_rate": "5\n",
    "BRND/api_burst": "3",
    "BRND/callback_token": BRND_TOKEN,
    "BRND/..data/ignored": "Kubernetes' own files start with two dots",
    "NEWS/access_key": NEWS_ACCESS,
    "NEWS/site_key": NEWS_SITE,
    "NEWS/region": "RG004",
    ".hidden/anything": "ignored",
}


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="")
    return root


def sites_file(tmp_path: Path, text: str = TOML) -> Path:
    write(
        tmp_path,
        {
            "brnd/access_key": BRND_ACCESS + "\n",
            "brnd/site_key": BRND_SITE + "\n",
            "brnd/callback_token": BRND_TOKEN + "\n",
        },
    )
    return write(tmp_path, {"sites.toml": text}) / "sites.toml"


def sites_dir(tmp_path: Path, files: dict[str, str] = DIRECTORY) -> Path:
    return write(tmp_path / "sites", files)


def settings(**fields: Any) -> Settings:
    """Settings of ``fields`` alone (the environment is clean): API rate and burst 20."""
    return Settings(**fields)


def tuto(**fields: Any) -> Settings:
    """The default site TUTO made of the settings, as a single-site deployment has it."""
    return settings(
        site_id="TUTO", access_key=TUTO_ACCESS, site_key=TUTO_SITE, region="RG013", **fields
    )


def error_of(loaded: Settings) -> str:
    with pytest.raises(ConfigError) as caught:
        loaded.sites()
    message = str(caught.value)
    assert "\n" not in message
    for secret in SECRETS:
        assert secret not in message
    return message


EXPECTED = {
    "BRND": Site(
        "BRND", SecretStr(BRND_ACCESS), SecretStr(BRND_SITE), "RG011", 5.0, 3, SecretStr(BRND_TOKEN)
    ),
    "NEWS": Site("NEWS", SecretStr(NEWS_ACCESS), SecretStr(NEWS_SITE), "RG004", 20.0, 20, None),
}


# --- Good files and directories ---------------------------------------------------------------


@pytest.mark.parametrize("form", ["file", "directory"])
def test_a_file_and_a_directory_give_the_same_sites(tmp_path: Path, form: str):
    """Both forms read each field (secrets from files, one trailing newline removed, dot
    entries ignored); the API rate and burst default to the settings'."""
    path = sites_file(tmp_path) if form == "file" else sites_dir(tmp_path)
    sites = settings(sites_path=path).sites()
    assert sites == Sites(None, EXPECTED)
    assert sites.ids() == ["BRND", "NEWS"]
    assert sites.get("NEWS").api_rate == 20.0
    assert sites.get("BRND").credentials() == SiteCredentials(
        "BRND", SecretStr(BRND_ACCESS), SecretStr(BRND_SITE)
    )


def test_the_sites_file_comes_from_pallycon_sites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """PALLYCON_SITES sets sites_path (shown by config show, handed to children as an absolute
    path); empty, it names no sites."""
    monkeypatch.setenv("PALLYCON_SITES", "sites")
    assert env_name("sites_path") == "PALLYCON_SITES"
    loaded = load_settings()
    assert loaded.sites_path == Path("sites")
    assert loaded.environment()["PALLYCON_SITES"] == str(tmp_path / "sites")
    assert origins(Settings)["sites_path"] == ENVIRONMENT
    monkeypatch.setenv("PALLYCON_SITES", "")
    assert load_settings().sites_path is None
    assert load_settings(sites_path=Path("/x")).sites_path == Path("/x")


def test_sites_are_loaded_once_per_settings(tmp_path: Path):
    """sites() is read once; a copy with another PALLYCON_SITES reads its own."""
    loaded = settings(sites_path=sites_file(tmp_path))
    first = loaded.sites()
    assert loaded.sites() is first
    other = loaded.model_copy(update={"sites_path": sites_dir(tmp_path, {"NEWS/x": ""})})
    assert "site NEWS: x: unknown file" in error_of(other)
    assert loaded.sites() is first


# --- Errors: the source, the site, the field --------------------------------------------------

SITE = f"""[BRND]
access_key = "{BRND_ACCESS}"
site_key = "{BRND_SITE}"
region = "RG011"
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            SITE.replace(BRND_SITE, "twelve-bytes"),
            "site BRND: site_key: must be 32 bytes (AES-256), got 12",
        ),
        (SITE.replace(BRND_ACCESS, "  "), "site BRND: access_key: must not be blank"),
        (
            SITE.replace("RG011", "seoul"),
            "site BRND: region: not a known region code; use one of RG004",
        ),
        (SITE + "api_rate = 0\n", "site BRND: api_rate: must be a number greater than 0"),
        (SITE + "api_rate = nan\n", "site BRND: api_rate: must be a number greater than 0"),
        (SITE + 'api_rate = "10"\n', "site BRND: api_rate: must be a number"),
        (SITE + "api_burst = 0\n", "site BRND: api_burst: must be at least 1"),
        (SITE + "api_burst = 1.5\n", "site BRND: api_burst: must be an integer"),
        (SITE + "api_burst = true\n", "site BRND: api_burst: must be an integer"),
        (SITE + 'callback_token = "short"\n', "site BRND: callback_token: must be at least 16"),
        (SITE + "region_code = 1\n", "site BRND: region_code: unknown key (known: access_key,"),
        (SITE + "[BRND.extra]\n", "site BRND: extra: unknown key"),
        (SITE.replace('region = "RG011"\n', ""), "site BRND: region: missing"),
        (SITE.replace(f'site_key = "{BRND_SITE}"', ""), "site BRND: site_key: missing"),
        (SITE + 'region = "RG004"\n', "not valid TOML: Cannot overwrite a value"),
        (SITE.replace('"RG011"', "11"), "site BRND: region: must be a string"),
        (SITE.replace(f'"{BRND_SITE}"', "32"), "site BRND: site_key: must be a string"),
        (
            SITE + 'site_key_file = "brnd/site_key"\n',
            "site BRND: site_key and site_key_file are both set; set only one of them",
        ),
        (
            SITE.replace(f'site_key = "{BRND_SITE}"', 'site_key_file = "absent"'),
            "site BRND: site_key_file: {root}/absent cannot be read: No such file or directory",
        ),
        (
            SITE.replace(f'site_key = "{BRND_SITE}"', 'site_key_file = "empty"'),
            "site BRND: site_key_file: {root}/empty is empty",
        ),
        (
            SITE.replace(f'site_key = "{BRND_SITE}"', 'site_key_file = "brnd"'),
            "site BRND: site_key_file: {root}/brnd is not a regular file",
        ),
        (SITE.replace("[BRND]", "[B-RND]"), "site 'B-RND': site id must be letters and digits"),
        (
            SITE + SITE.replace("[BRND]", "[brnd]"),
            "site brnd: the same id as site BRND but for case",
        ),
        ('region = "RG011"\n', "site region: not a table; write each site as [region]"),
        (SITE + "[BRND]\n", "not valid TOML: Cannot declare ('BRND',) twice"),
    ],
)
def test_file_errors_name_the_source_the_site_and_the_field(
    tmp_path: Path, text: str, expected: str
):
    path = sites_file(tmp_path, text)
    (tmp_path / "empty").write_text("\n")
    message = error_of(settings(sites_path=path))
    assert message.startswith(f"PALLYCON_SITES {path}: ")
    assert expected.format(root=tmp_path) in message


def good_dir(changes: dict[str, str | None]) -> dict[str, str]:
    """The site BRND as a directory, with files changed (``None``: removed)."""
    files: dict[str, str | None] = {
        "BRND/access_key": BRND_ACCESS,
        "BRND/site_key": BRND_SITE,
        "BRND/region": "RG011",
    }
    files.update(changes)
    return {name: text for name, text in files.items() if text is not None}


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            good_dir({"BRND/site_key": BRND_SITE + "\n\n"}),
            "site BRND: site_key: must be 32 bytes (AES-256), got 33",
        ),
        (good_dir({"BRND/site_key": None}), "site BRND: site_key: missing"),
        (
            good_dir({"BRND/sitekey": BRND_SITE}),
            "site BRND: sitekey: unknown file (known: access_key,",
        ),
        (good_dir({"BRND/site_key_file": "x"}), "site BRND: site_key_file: unknown file"),
        (good_dir({"BRND/api_rate": "fast"}), "site BRND: api_rate: must be a number"),
        (
            good_dir({"BRND/api_rate": "-1"}),
            "site BRND: api_rate: must be a number greater than 0",
        ),
        (good_dir({"BRND/api_burst": "2.5"}), "site BRND: api_burst: must be an integer"),
        (good_dir({"BRND/region": ""}), "site BRND: region: {root}/BRND/region is empty"),
        (good_dir({"BRND/region": "RG011\n\n"}), "site BRND: region: not a known region code"),
        (good_dir({"README": "one directory per site"}), "site README: not a directory"),
        (good_dir({"lost+found/x": ""}), "site 'lost+found': site id must be letters"),
    ],
)
def test_directory_errors_name_the_source_the_site_and_the_field(
    tmp_path: Path, files: dict[str, str], expected: str
):
    path = sites_dir(tmp_path, files)
    message = error_of(settings(sites_path=path))
    assert message.startswith(f"PALLYCON_SITES {path}: ")
    assert expected.format(root=path) in message


def test_a_missing_or_unreadable_source_is_named(tmp_path: Path):
    absent = tmp_path / "absent.toml"
    assert error_of(settings(sites_path=absent)) == (
        f"PALLYCON_SITES {absent}: cannot be used: No such file or directory"
    )
    binary = write(tmp_path, {"binary.toml": ""}) / "binary.toml"
    binary.write_bytes(b"\xff\xfe[BRND]")
    assert error_of(settings(sites_path=binary)) == f"PALLYCON_SITES {binary}: not UTF-8 text"


# --- The default site ---------------------------------------------------------------------------


def test_the_default_site_made_of_the_settings_is_todays_single_site():
    """PALLYCON_SITE_ID with both keys: the one site, from the settings; named "" in records."""
    sites = tuto(api_rate=7.0, callback_token=TUTO_TOKEN).sites()
    assert sites.default == "TUTO"
    assert sites.get("") == Site(
        "TUTO",
        SecretStr(TUTO_ACCESS),
        SecretStr(TUTO_SITE),
        "RG013",
        7.0,
        20,
        SecretStr(TUTO_TOKEN),
    )
    assert sites.get("TUTO") is sites.get("")
    assert (sites.named(""), sites.named("TUTO")) == ("", "")


def test_the_default_site_beside_a_sites_file(tmp_path: Path):
    """The settings' site and the file's sites together; a named site keeps its id."""
    sites = tuto(sites_path=sites_file(tmp_path)).sites()
    assert sites.ids() == ["BRND", "NEWS", "TUTO"]
    assert sites.get("").site_id == "TUTO"
    assert sites.get("BRND") == EXPECTED["BRND"]
    assert (sites.named("BRND"), sites.named("TUTO"), sites.named("")) == ("BRND", "", "")


def test_the_default_site_taken_from_the_sites_file(tmp_path: Path):
    """PALLYCON_SITE_ID alone names a site of the file; PALLYCON_CALLBACK_TOKEN is its token
    when the file gives none."""
    path = sites_file(tmp_path)
    sites = settings(site_id="BRND", sites_path=path, region="RG011").sites()
    assert (sites.default, sites.get("")) == ("BRND", EXPECTED["BRND"])
    assert (sites.named("BRND"), sites.named("NEWS")) == ("", "NEWS")
    news = settings(site_id="NEWS", sites_path=path, callback_token=TUTO_TOKEN).sites().get("")
    assert news.callback_token == SecretStr(TUTO_TOKEN)
    assert news.region == "RG004"


def test_without_a_default_site_requests_must_name_one(tmp_path: Path):
    sites = settings(sites_path=sites_file(tmp_path)).sites()
    assert sites.default is None
    with pytest.raises(
        UnknownSite, match=r"no site named and no default site \(PALLYCON_SITE_ID\)"
    ):
        sites.get("")
    with pytest.raises(UnknownSite):
        sites.named("")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {
                "site_id": "BRND",
                "access_key": TUTO_ACCESS,
                "site_key": TUTO_SITE,
                "region": "RG011",
            },
            "PALLYCON_SITES {path}: site BRND: it is the default site, whose keys "
            "PALLYCON_ACCESS_KEY and PALLYCON_SITE_KEY are set: keep it in one place",
        ),
        (
            {
                "site_id": "brnd",
                "access_key": TUTO_ACCESS,
                "site_key": TUTO_SITE,
                "region": "RG011",
            },
            "PALLYCON_SITES {path}: site BRND: it is the default site",
        ),
        (
            {"site_id": "TUTO"},
            "PALLYCON_SITES {path}: no site TUTO, the default site (PALLYCON_SITE_ID); add it, "
            "or set PALLYCON_ACCESS_KEY and PALLYCON_SITE_KEY",
        ),
        (
            {"site_id": "BRND", "region": "RG004"},
            "PALLYCON_SITES {path}: site BRND: region: differs from PALLYCON_REGION",
        ),
        (
            {"site_id": "BRND", "callback_token": TUTO_TOKEN},
            "PALLYCON_SITES {path}: site BRND: callback_token: differs from "
            "PALLYCON_CALLBACK_TOKEN",
        ),
        (
            {"access_key": TUTO_ACCESS, "site_key": TUTO_SITE},
            "missing setting: PALLYCON_SITE_ID",
        ),
        (
            {"site_id": "TUTO", "access_key": TUTO_ACCESS, "region": "RG011"},
            "missing setting: PALLYCON_SITE_KEY",
        ),
        (
            {"site_id": "TUTO", "access_key": TUTO_ACCESS, "site_key": TUTO_SITE},
            "missing setting: PALLYCON_REGION",
        ),
    ],
)
def test_the_default_site_rules(tmp_path: Path, fields: dict[str, str], expected: str):
    """Keys in the settings and the default site in the file too, a default site absent
    from the file, settings that disagree with it, and incomplete keys are refused."""
    path = sites_file(tmp_path)
    assert error_of(settings(sites_path=path, **fields)).startswith(expected.format(path=path))


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {},
            "no site: set PALLYCON_SITE_ID, PALLYCON_ACCESS_KEY and PALLYCON_SITE_KEY, or PALLYCON_SITES",
        ),
        (
            {"site_id": "TUTO"},
            "missing setting: PALLYCON_ACCESS_KEY, PALLYCON_SITE_KEY (or site TUTO in PALLYCON_SITES)",
        ),
        ({"site_key": TUTO_SITE}, "missing setting: PALLYCON_SITE_ID, PALLYCON_ACCESS_KEY"),
    ],
)
def test_without_a_sites_file_the_settings_must_make_a_site(fields: dict[str, str], expected: str):
    assert error_of(settings(**fields)).startswith(expected)


def test_an_empty_sites_file_beside_the_default_site_is_fine(tmp_path: Path):
    """A deployment may set PALLYCON_SITES before it adds a site to it."""
    empty = tmp_path / "empty"
    empty.mkdir()
    assert tuto(sites_path=empty).sites().ids() == ["TUTO"]
    assert tuto(sites_path=sites_file(tmp_path, "")).sites().ids() == ["TUTO"]


# --- Looking sites up, and secrets kept wrapped ---------------------------------------------


def test_an_unknown_site_is_named_with_the_known_ones(tmp_path: Path):
    sites = tuto(sites_path=sites_file(tmp_path)).sites()
    with pytest.raises(UnknownSite) as caught:
        sites.get("NOPE")
    assert caught.value.reason == "unknown site 'NOPE' (sites: BRND, NEWS, TUTO)"
    assert str(caught.value) == f"site_id: {caught.value.reason}"
    assert isinstance(caught.value, InvalidRequest)  # about a request, not the settings
    assert not isinstance(caught.value, ConfigError)
    assert caught.value.site_id == "NOPE"
    assert str(copy.copy(caught.value)) == str(caught.value)
    with pytest.raises(UnknownSite, match=r"unknown site 'brnd' "):
        sites.named("brnd")  # ids are exact
    with pytest.raises(UnknownSite, match=r"unknown site 'xxxxxxxxxx.*\.\.\.' "):
        sites.get("x" * 1000)


def test_sites_are_read_only_and_their_secrets_stay_wrapped(tmp_path: Path):
    sites = tuto(sites_path=sites_file(tmp_path), callback_token=TUTO_TOKEN).sites()
    shown = repr(sites) + str(sites) + repr(list(sites.by_id.values()))
    for secret in SECRETS:
        assert secret not in shown
    assert "BRND" in shown
    with pytest.raises(TypeError):
        sites.by_id["X"] = sites.get("")  # type: ignore[index]
    with pytest.raises(ValueError, match="the default site X is not among the sites"):
        Sites("X", {})


# --- The documented formats ----------------------------------------------------------------


def documented_toml() -> list[tuple[str, str]]:
    doc = (ROOT / "docs" / "CONFIGURATION.md").read_text().split("\n## Several sites\n", 1)[1]
    blocks = re.findall(r"^```toml\n(.*?)^```", doc, flags=re.DOTALL | re.MULTILINE)
    assert len(blocks) == 1
    return [
        ("examples/sites.toml", (ROOT / "examples" / "sites.toml").read_text()),
        ("docs/CONFIGURATION.md", blocks[0]),
    ]


@pytest.mark.parametrize(("where", "text"), documented_toml(), ids=lambda value: value[:20])
def test_the_documented_sites_files_load(tmp_path: Path, where: str, text: str):
    """examples/sites.toml and the docs' example are valid, once their secret files exist."""
    named = re.findall(r'_file = "/run/secrets/([^"]+)"', text)
    assert named, where
    for name in named:
        secret = BRND_SITE if name.endswith("site_key") else BRND_TOKEN
        write(tmp_path / "secrets", {name: secret + "\n"})
    path = sites_file(tmp_path, text.replace("/run/secrets/", f"{tmp_path}/secrets/"))
    sites = settings(sites_path=path).sites()
    assert sites.ids() == sorted({name.split("/")[0].upper() for name in named})
    assert all(site.site_key == SecretStr(BRND_SITE) for site in sites.by_id.values())


# --- The callback receiver: tokens only --------------------------------------------------------


@pytest.mark.parametrize("form", ["toml", "directory"])
def test_the_receiver_reads_the_callback_tokens_only(tmp_path: Path, form: str):
    """The receiver signs nothing: no key file need be there (a Kubernetes receiver mounts the
    tokens only), and the default site's token is PALLYCON_CALLBACK_TOKEN."""
    from pallycon_config import load_callback_tokens

    if form == "toml":
        path = tmp_path / "sites.toml"
        path.write_text(
            '[BRND]\naccess_key_file = "absent/access_key"\nsite_key_file = "absent/site_key"\n'
            f'region = "RG011"\ncallback_token = "{BRND_TOKEN}"\n\n'
            '[NEWS]\naccess_key_file = "absent/a"\nsite_key_file = "absent/s"\nregion = "RG004"\n'
        )
    else:
        path = write(
            tmp_path / "sites", {"BRND/callback_token": BRND_TOKEN + "\n", "NEWS/region": "RG004"}
        )
    tokens = load_callback_tokens(
        settings(site_id="TUTO", callback_token=TUTO_TOKEN, sites_path=path)
    )
    assert {site: t.get_secret_value() for site, t in tokens.items()} == {
        "BRND": BRND_TOKEN,
        "TUTO": TUTO_TOKEN,
    }


def test_the_receiver_refuses_a_bad_token_naming_the_site(tmp_path: Path):
    from pallycon_config import load_callback_tokens

    path = tmp_path / "sites.toml"
    path.write_text('[BRND]\ncallback_token = "short"\n')
    with pytest.raises(ConfigError) as caught:
        load_callback_tokens(settings(sites_path=path))
    message = str(caught.value)
    assert message.startswith(f"PALLYCON_SITES {path}: site BRND: callback_token: ")
    assert "short" not in message.replace("shorter", "")
