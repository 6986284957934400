"""``pallycon-pack ... --site``, as a user runs it, against an emulator serving two sites.

The default site (TUTO) comes from the settings, the second (BRND) from a sites file, in
another region. Each site has its own storages and job ids (both start at 1001): a command
given ``--site BRND`` sees only BRND's, one without it only the default site's, as before.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pallycon.signing import SiteCredentials
from pallycon_producers.api import Producer
from support.env import clean_env, site_env
from support.processes import EmulatorProcess, cli, start_emulator
from support.queue import eventually, make_settings, register_storage, wait_all
from support.redis_server import RedisServer
from support.samples import REGION, SAMPLE_SITE, body_for

pytestmark = pytest.mark.integration

#: What a missing setting adds when the command runs where there is no .env.
NO_DOTENV = " (no .env in this directory: settings come from the environment and ./.env)"

BRAND = SiteCredentials.of(
    "BRND", "BrandAccessKey-0123456789abcdefg", "0123456789abcdef0123456789abcdef"
)
BRAND_REGION = "RG013"  # not the default site's (RG011): --site brings its own
AWS = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "aws-secret-value"}
TIMESTAMP = "2022-03-30T08:29:57Z"


def write_sites_file(directory: Path) -> Path:
    """A sites file naming BRND, its site key in a file beside it."""
    path = directory / "sites.toml"
    (directory / "brnd.key").write_text(BRAND.site_key.get_secret_value() + "\n")
    path.write_text(
        f"[{BRAND.site_id}]\n"
        f'access_key = "{BRAND.access_key.get_secret_value()}"\n'
        'site_key_file = "brnd.key"\n'
        f'region = "{BRAND_REGION}"\n'
    )
    return path


@pytest.fixture(scope="module")
def two_site_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """An emulator serving the default site and BRND (1 s jobs)."""
    site_arg = ":".join(
        (BRAND.site_id, BRAND.access_key.get_secret_value(), BRAND.site_key.get_secret_value())
    )
    root = tmp_path_factory.mktemp("emulator-sites")
    emulator = start_emulator(
        "--job-seconds", "1", "--site", site_arg, env=site_env(), cwd=root
    )  # fmt: skip
    yield emulator
    emulator.stop()


@pytest.fixture
def sites_file(tmp_path: Path) -> Path:
    return write_sites_file(tmp_path)


@pytest.fixture
def env(two_site_emulator: EmulatorProcess, sites_file: Path) -> dict[str, str]:
    """The default site in the settings, BRND in PALLYCON_SITES."""
    sites = site_env(PALLYCON_API_URL=two_site_emulator.url, PALLYCON_SITES=str(sites_file))
    return {**sites, **AWS}


def _ok(result) -> str:
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()
    return str(result.stdout.decode())


def _refused(result) -> str:
    """The one line of a command refused with exit 2."""
    assert result.returncode == 2, result.stderr.decode() + result.stdout.decode()
    return str(result.stderr.decode())


# --- The direct commands ----------------------------------------------------------------------


def test_direct_commands_call_the_api_as_the_site_given(env, tmp_path: Path):
    """storage and jobs commands with --site BRND see only BRND's storages and jobs, in its
    region unless --region says otherwise; without --site, only the default site's."""

    def run(*args: str) -> str:
        return _ok(cli(*args, env=env, cwd=tmp_path))

    brand_store = run("storage", "register", "--site", "BRND", "--name", "brnd-store",
                      "--bucket", "brnd-bucket").strip()  # fmt: skip
    default_store = run(
        "storage", "register", "--name", "tuto-store", "--bucket", "tuto-bucket"
    ).strip()

    def names(*args: str) -> list[str]:
        listed = json.loads(run("storage", "list", "--json", *args))
        return sorted(s["storage_name"] for s in listed["data"])

    assert "brnd-store" in names("--site", "BRND")  # BRND's region, RG013
    assert "tuto-store" not in names("--site", "BRND")
    assert "brnd-store" not in names("--site", "BRND", "--region", REGION)  # --region wins
    assert "brnd-store" not in names()
    run("storage", "update", brand_store, "--site", "BRND", "--name", "brnd-renamed")
    assert "brnd-renamed" in names("--site", "BRND")
    assert "tuto-store" in names()  # the default site's storage of that id is untouched

    for site, store, content in (("BRND", brand_store, "cli-b"), (None, default_store, "cli-a")):
        path = tmp_path / f"{content}.json"
        path.write_text(json.dumps(body_for(store, content)))
        given = ["--site", site] if site else []
        job_id = run("jobs", "register", str(path), *given).strip()
        assert job_id.isdigit()
        if site:
            brand_job = job_id

    def contents(*args: str) -> list[str]:
        listed = json.loads(run("jobs", "list", "--json", "--page-unit", "100", *args))
        return sorted(j["content_id"] for j in listed["data"] if j["content_id"].startswith("cli-"))

    assert contents("--site", "BRND") == ["cli-b"]
    assert contents() == ["cli-a"]
    watched = run("jobs", "watch", brand_job, "--site", "BRND", "--interval", "0.2")
    assert watched.splitlines()[-1] == f"job {brand_job}: WM030 Packaging complete"


def test_sign_with_site_uses_that_sites_id_and_keys(env, tmp_path: Path):
    signed = _ok(cli("sign", "--site", "BRND", "--timestamp", TIMESTAMP, env=env, cwd=tmp_path,
                     stdin=b"{}"))  # fmt: skip
    by_hand = _ok(cli("sign", "--timestamp", TIMESTAMP, "--site-id", "BRND",
                      "--access-key", BRAND.access_key.get_secret_value(),
                      "--site-key", BRAND.site_key.get_secret_value(),
                      env=clean_env(), cwd=tmp_path, stdin=b"{}"))  # fmt: skip
    default = _ok(cli("sign", "--timestamp", TIMESTAMP, env=env, cwd=tmp_path, stdin=b"{}"))
    assert signed == by_hand != default
    no_region = {k: v for k, v in env.items() if k != "PALLYCON_REGION"}  # sign needs none
    named_default = cli("sign", "--site", SAMPLE_SITE.site_id, "--timestamp", TIMESTAMP,
                        env=no_region, cwd=tmp_path, stdin=b"{}")  # fmt: skip
    assert _ok(named_default) == default


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["jobs", "list", "--site", "NOPE"], "--site: unknown site 'NOPE' (sites: BRND, TUTO)"),
        (["storage", "register", "--site", "NOPE", "--name", "n", "--bucket", "b"],
         "--site: unknown site 'NOPE' (sites: BRND, TUTO)"),
        (["jobs", "watch", "1001", "--site", ""], "--site: give a site id (sites: BRND, TUTO)"),
        (["storage", "list", "--site", "BRND", "--region", "RG999"],
         "--region: not a known region code; use one of RG004 (Oregon), RG011 (Seoul), "
         "RG013 (Singapore)"),
        (["sign", "--site", "BRND", "--site-key-file", "key", "--access-key", "k"],
         "--site and --access-key, --site-key-file: --site signs with that site's own id and "
         "keys; give one or the other"),
    ],
)  # fmt: skip
def test_a_site_that_is_not_there_is_one_line_and_exit_2(env, tmp_path: Path, args, message):
    assert _refused(cli(*args, env=env, cwd=tmp_path, stdin=b"{}")) == f"Error: {message}\n"


def test_without_a_default_site_site_is_all_it_takes(
    two_site_emulator: EmulatorProcess, sites_file: Path, tmp_path: Path
):
    """Only PALLYCON_SITES: --site BRND works (its region too); without --site the
    messages are those of a default site left unset, as before."""
    env = clean_env(PALLYCON_API_URL=two_site_emulator.url, PALLYCON_SITES=str(sites_file), **AWS)
    listed = json.loads(_ok(cli("jobs", "list", "--site", "BRND", "--json", env=env,
                                cwd=tmp_path)))  # fmt: skip
    assert "total_count" in listed
    assert _refused(cli("jobs", "list", env=env, cwd=tmp_path)) == (
        "Error: no region: give --region or set PALLYCON_REGION (a code such as RG011)\n"
    )
    assert _refused(cli("jobs", "list", "--region", REGION, env=env, cwd=tmp_path)) == (
        "Error: missing setting: PALLYCON_SITE_ID, PALLYCON_ACCESS_KEY, PALLYCON_SITE_KEY "
        f"(see .env.example){NO_DOTENV}\n"
    )


def test_a_default_site_kept_in_the_sites_file_is_the_default_of_direct_commands(
    two_site_emulator: EmulatorProcess, sites_file: Path, tmp_path: Path
):
    """PALLYCON_SITE_ID alone names the default site, whose keys and region are in
    PALLYCON_SITES: the direct commands act as it without --site, as with it."""
    env = clean_env(
        PALLYCON_API_URL=two_site_emulator.url,
        PALLYCON_SITES=str(sites_file),
        PALLYCON_SITE_ID=BRAND.site_id,
        **AWS,
    )
    without = json.loads(_ok(cli("jobs", "list", "--json", env=env, cwd=tmp_path)))
    named = json.loads(_ok(cli("jobs", "list", "--site", "BRND", "--json", env=env, cwd=tmp_path)))
    assert without == named


def test_help_says_what_site_does():
    from click.testing import CliRunner

    from pallycon_pack.cli.main import main

    runner = CliRunner()
    for command in (["sign"], ["storage", "register"], ["storage", "update"], ["storage", "list"],
                    ["jobs", "register"], ["jobs", "list"], ["jobs", "watch"], ["submit"]):  # fmt: skip
        text = " ".join(runner.invoke(main, [*command, "--help"]).output.split())
        assert "--site SITE_ID" in text, command
        assert "PALLYCON_SITES" in text, command


# --- The queue --------------------------------------------------------------------------------


@pytest.fixture
def fleet(two_site_emulator, sites_file, redis_server: RedisServer, worker_factory):
    """A worker serving both sites; the CLI's environment and a producer of the same settings."""
    settings = make_settings(redis_server.url, two_site_emulator.url, sites_path=sites_file)
    worker_factory(settings)
    producer = Producer.from_settings(settings)
    eventually(producer.sites, lambda sites: sites == ["BRND", "TUTO"])
    return clean_env(settings.environment()), producer


def test_submit_site_and_a_batch_mixing_sites_complete(fleet, two_site_emulator, tmp_path):
    env, producer = fleet
    brand_store = register_storage(two_site_emulator.url, BRAND)
    default_store = register_storage(two_site_emulator.url, SAMPLE_SITE)
    job = tmp_path / "job.json"
    job.write_text(json.dumps(body_for(brand_store, "q-one")))
    waited = cli("submit", str(job), "--site", "BRND", "--request-id", "q-one", "--wait",
                 env=env, cwd=tmp_path)  # fmt: skip
    assert _ok(waited).splitlines()[0] == "q-one"
    shown = _ok(cli("status", "q-one", env=env, cwd=tmp_path)).splitlines()
    assert "site_id         BRND" in shown
    assert "state           completed" in shown

    lines = [
        {"body": body_for(brand_store, "q-b1"), "request_id": "q-b1", "site_id": "BRND"},
        {"body": body_for(default_store, "q-a1"), "request_id": "q-a1"},
        {"body": body_for(brand_store, "q-b2"), "request_id": "q-b2", "site_id": "BRND"},
        {"body": body_for(default_store, "q-a2"), "request_id": "q-a2", "site_id": None},
    ]
    batch = tmp_path / "mixed.jsonl"
    batch.write_text("".join(json.dumps(line) + "\n" for line in lines))
    ids = _ok(cli("submit", "--batch", str(batch), env=env, cwd=tmp_path)).split()
    assert ids == ["q-b1", "q-a1", "q-b2", "q-a2"]
    records = wait_all(producer, ids)
    assert {rid: (r.state.value, r.site_id) for rid, r in records.items()} == {
        "q-b1": ("completed", "BRND"),
        "q-a1": ("completed", ""),
        "q-b2": ("completed", "BRND"),
        "q-a2": ("completed", ""),
    }
    assert {records[rid].content_id for rid in ids} == {"q-b1", "q-a1", "q-b2", "q-a2"}


def test_a_batch_naming_a_site_no_worker_serves_records_nothing(fleet, tmp_path):
    env, producer = fleet
    body = body_for("ST000001", "q-bad")
    lines = [
        json.dumps({"body": body, "request_id": "q-fine"}),
        json.dumps({"body": body, "request_id": "q-nope", "site_id": "NOPE"}),
        json.dumps({"body": body, "request_id": "q-int", "site_id": 5}),
        json.dumps({"body": body, "request_id": "q-shape", "site_id": "no/pe"}),
    ]
    batch = tmp_path / "bad.jsonl"
    batch.write_text("\n".join(lines) + "\n")
    result = cli("submit", "--batch", str(batch), env=env, cwd=tmp_path)
    errors = _refused(result).splitlines()
    assert errors[:3] == [
        "line 2: site_id: unknown site 'NOPE' (sites served: BRND, TUTO)",
        "line 3: site_id: must be a string (a site id such as TUTO)",
        "line 4: site_id: must be letters and digits only, e.g. TUTO",
    ]
    assert errors[-1] == f"Error: 3 bad line(s) in {batch}; nothing was recorded"
    assert producer.get("q-fine") is None

    one = tmp_path / "one.json"
    one.write_text(json.dumps(body))
    single = cli("submit", str(one), "--site", "NOPE", "--request-id", "q-single", env=env,
                 cwd=tmp_path)  # fmt: skip
    assert "site_id: unknown site 'NOPE' (sites served: BRND, TUTO)" in _refused(single)
    assert producer.get("q-single") is None
    both = cli("submit", "--batch", str(batch), "--site", "BRND", env=env, cwd=tmp_path)
    assert "--batch takes no FILE, --request-id, --metadata, --site or --wait" in _refused(both)


def test_a_batch_reusing_an_id_of_another_site_is_a_bad_line(fleet, tmp_path):
    """The same id and body for another site is another request: refused, not resubmitted."""
    env, producer = fleet
    body = body_for("ST000001", "q-twice")
    producer.submit(body, "q-twice", site_id="BRND")
    batch = tmp_path / "again.jsonl"
    batch.write_text(
        json.dumps({"body": body, "request_id": "q-twice"}) + "\n"
        + json.dumps({"body": body, "request_id": "q-dup", "site_id": "BRND"}) + "\n"
        + json.dumps({"body": body, "request_id": "q-dup"}) + "\n"
    )  # fmt: skip
    errors = _refused(cli("submit", "--batch", str(batch), env=env, cwd=tmp_path)).splitlines()
    assert sorted(errors[:2]) == [  # Redis is asked at the end, so its line comes last
        "line 1: request_id 'q-twice' is already used for site BRND",
        "line 3: request_id also on line 2 with another site",
    ]
    assert producer.get("q-dup") is None
