"""``pallycon-pack`` as a user runs it, against the emulator process: the direct API commands
(sign, storage, jobs), the emulator and the demo. What a command prints and how it exits is
checked in this process (:func:`support.cli.run_cli`); one ``sign``, the emulator and the demo
run in processes of their own, as a user starts them."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import redis

from pallycon.limits import MAX_FORM_API_JSON_BYTES
from pallycon_pack.cli.inputs import MAX_INPUT_BYTES
from pallycon_pack.cli.queue.batch import MAX_LINE_BYTES
from support.cli import run_cli
from support.env import clean_env, site_env
from support.processes import PALLYCON_PACK, EmulatorProcess, cli, start_emulator
from support.redis_server import RedisServer
from support.samples import SAMPLE_APIDATA, SAMPLE_DATA, SAMPLE_HASH, SAMPLE_JSON, job_body

pytestmark = pytest.mark.integration

AWS_SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


@pytest.fixture
def env(emulator: EmulatorProcess) -> dict[str, str]:
    """Settings pointing the CLI at the shared emulator, plus AWS keys for storages."""
    return site_env(
        PALLYCON_API_URL=emulator.url,
        AWS_ACCESS_KEY_ID="AKIAEXAMPLE",
        AWS_SECRET_ACCESS_KEY=AWS_SECRET,
    )


def _ok(result) -> str:
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()
    return str(result.stdout.decode())


# --- sign -------------------------------------------------------------------------------------


def test_sign_matches_pallycons_published_sample(tmp_path: Path):
    """sign with --timestamp and the sample's credentials prints the published value (in its
    own process: the api family's smoke)."""
    args = ["sign", "--timestamp", "2022-03-30T08:29:57Z", "--site-id", "TUTO",
            "--access-key", "LT2FVJDp2Xr018zf4Di6lzvNOv3DKP20",
            "--site-key", "lU5D8s3PWoLls3PWFWkClULlFWk5D8oC"]  # fmt: skip
    result = cli(*args, env=clean_env(), cwd=tmp_path, stdin=SAMPLE_JSON)
    assert _ok(result) == SAMPLE_APIDATA + "\n"
    parts = _ok(run_cli(*args, "--show-parts", env=clean_env(), cwd=tmp_path, stdin=SAMPLE_JSON))
    assert parts.splitlines() == [
        f"data: {SAMPLE_DATA}",
        "timestamp: 2022-03-30T08:29:57Z",
        f"hash: {SAMPLE_HASH}",
        f"pallycon-apidata: {SAMPLE_APIDATA}",
    ]


def test_sign_reads_credentials_from_the_environment(tmp_path: Path):
    """Without flags, sign uses the PALLYCON_* settings."""
    result = run_cli("sign", "--timestamp", "2022-03-30T08:29:57Z", env=site_env(), cwd=tmp_path,
                 stdin=SAMPLE_JSON)  # fmt: skip
    assert _ok(result).strip() == SAMPLE_APIDATA


@pytest.mark.parametrize(
    ("args", "env_extra", "message"),
    [
        (["--timestamp", "2022-03-30"], {}, "--timestamp"),
        ([], {"PALLYCON_SITE_KEY": "short"}, "PALLYCON_SITE_KEY"),
    ],
)
def test_sign_refuses_bad_input_with_exit_2(tmp_path: Path, args, env_extra, message):
    """A bad timestamp or setting is a clear message and exit code 2, never a traceback."""
    result = run_cli("sign", *args, env=site_env(**env_extra), cwd=tmp_path, stdin=b"{}")
    assert result.returncode == 2
    assert message in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


def test_missing_credentials_name_the_variables(tmp_path: Path):
    """With nothing configured, the error says which variables to set."""
    result = run_cli("sign", env=clean_env(), cwd=tmp_path, stdin=b"{}")
    assert result.returncode == 2
    assert "PALLYCON_SITE_ID" in result.stderr.decode()


# --- settings ---------------------------------------------------------------------------------

MISSPELT = (
    "warning: PALLYCON_REDSI_URL, set in the environment, is not a setting: it is ignored; "
    "did you mean PALLYCON_REDIS_URL?",
    "warning: PALLYCON_POLL_INTERVALL, set in .env, is not a setting: it is ignored; "
    "did you mean PALLYCON_POLL_INTERVAL?",
)


def test_a_misspelt_setting_is_told_once_with_the_nearest_one(tmp_path: Path):
    """A PALLYCON_* name that is no setting, in the environment or .env: one warning line each
    on stderr, naming the setting nearest to it; the command goes on (in its own process)."""
    (tmp_path / ".env").write_text("PALLYCON_POLL_INTERVALL=5\n")
    env = site_env(PALLYCON_REDSI_URL="redis://elsewhere:6379/0")
    result = cli("sign", "--timestamp", "2022-03-30T08:29:57Z", env=env, cwd=tmp_path,
                 stdin=SAMPLE_JSON)  # fmt: skip
    assert _ok(result).strip() == SAMPLE_APIDATA
    assert result.stderr.decode().splitlines() == list(MISSPELT)


def test_config_show_shows_every_setting_and_the_misspelt_ones(tmp_path: Path):
    """config show: the console's, the exporter's and the HTTP API's settings too (the token
    and the webhook key masked), an empty setting as (unset), and each misspelt name once among
    the warnings."""
    (tmp_path / ".env").write_text("PALLYCON_POLL_INTERVALL=5\n")
    env = clean_env(
        PALLYCON_REDSI_URL="redis://elsewhere:6379/0",
        PALLYCON_CONSOLE_TOKEN="a-console-token-never-shown",
        PALLYCON_METRICS_PORT="9841",
        PALLYCON_HTTP_RATE="50",
        PALLYCON_WEBHOOK_KEY="a-webhook-key-never-shown-0123456789",
    )
    result = run_cli("config", "show", env=env, cwd=tmp_path)
    rows = {line.split()[0]: line.split()[1:] for line in _ok(result).splitlines()}
    assert rows["PALLYCON_CONSOLE_TOKEN"] == ["***", "[environment]"]
    assert rows["PALLYCON_CONSOLE_HOST"] == ["127.0.0.1", "[default]"]
    assert rows["PALLYCON_CONSOLE_PORT"] == ["8780", "[default]"]
    assert rows["PALLYCON_METRICS_PORT"] == ["9841", "[environment]"]
    assert rows["PALLYCON_METRICS_HOST"] == ["127.0.0.1", "[default]"]
    assert rows["PALLYCON_HTTP_PORT"] == ["8800", "[default]"]
    assert rows["PALLYCON_HTTP_RATE"] == ["50.0", "[environment]"]
    assert rows["PALLYCON_HTTP_HOST"] == ["127.0.0.1", "[default]"]
    assert rows["PALLYCON_HTTP_MAX_BODY_BYTES"] == ["4194304", "[default]"]
    assert rows["PALLYCON_HTTP_BURST"] == ["100", "[default]"]
    assert rows["PALLYCON_WEBHOOK_KEY"] == ["***", "[environment]"]
    assert rows["PALLYCON_REDIS_SENTINELS"] == ["(unset)", "[default]"]
    for secret in ("a-console-token-never-shown", "a-webhook-key-never-shown"):
        assert secret not in result.stdout.decode() + result.stderr.decode()
    assert result.stderr.decode().splitlines() == list(MISSPELT)
    shown = json.loads(_ok(run_cli("config", "show", "--json", env=env, cwd=tmp_path)))
    assert shown["warnings"] == [line.removeprefix("warning: ") for line in MISSPELT]


def test_config_show_tells_a_misspelt_name_when_the_settings_are_invalid(tmp_path: Path):
    """config show with an invalid setting: the misspelt name is still told, before the error
    (it may be why the settings are wrong)."""
    (tmp_path / ".env").write_text("PALLYCON_POLL_INTERVALL=5\n")
    env = clean_env(PALLYCON_REDSI_URL="redis://elsewhere:6379/0", PALLYCON_POLL_INTERVAL="abc")
    result = run_cli("config", "show", env=env, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.decode().splitlines()
    assert lines[:2] == list(MISSPELT)
    assert "PALLYCON_POLL_INTERVAL" in "\n".join(lines[2:])


# --- inputs past the API's limit ---------------------------------------------------------------

TOO_LARGE = f"larger than {MAX_INPUT_BYTES} bytes, more than any request the API takes"


@pytest.mark.parametrize(
    ("args", "where"),
    [
        (["submit", "-"], "standard input"),
        (["jobs", "register", "-"], "standard input"),
        (["sign"], "standard input"),
        (["sign", "--input", "-"], "standard input"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_an_endless_pipe_is_refused_at_the_limit(tmp_path: Path, args: list[str], where: str):
    """A pipe from /dev/zero: the command reads one byte past the limit and says so in one
    line, exit 2 (it would otherwise read until memory runs out; the timeout only stops a
    failing test)."""
    with open("/dev/zero", "rb") as zeros:
        result = subprocess.run(
            [*PALLYCON_PACK, *args],
            stdin=zeros,
            capture_output=True,
            env=site_env(),
            cwd=tmp_path,
            timeout=30,
            check=False,
        )
    assert result.returncode == 2, result.stderr.decode()
    assert result.stderr.decode() == f"Error: {where}: {TOO_LARGE}\n"
    assert result.stdout == b""


@pytest.mark.parametrize(
    ("args", "where"),
    [
        (["submit", "big.json"], "big.json"),
        (["jobs", "register", "big.json"], "big.json"),
        (["sign", "--input", "big.json"], "--input: big.json"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_a_file_past_the_limit_is_refused_without_reading_it_whole(
    tmp_path: Path, args: list[str], where: str
):
    """A 64 MiB file (sparse: NUL bytes): one line naming it and the limit, exit 2, never
    "not JSON" after reading it all."""
    with open(tmp_path / "big.json", "wb") as big:
        big.truncate(64 * 1024 * 1024)
    result = run_cli(*args, env=site_env(), cwd=tmp_path)
    assert result.returncode == 2, result.stderr.decode()
    assert result.stderr.decode() == f"Error: {where}: {TOO_LARGE}\n"


@pytest.mark.parametrize(
    "given", [b"", b"not json", b"\0" * 100, b'{"a": 1'], ids=["empty", "text", "nul", "cut"]
)
def test_sign_requires_json(tmp_path: Path, given: bytes):
    """sign signs JSON only: anything else is one line naming the input, exit 2."""
    result = run_cli("sign", env=site_env(), cwd=tmp_path, stdin=given)
    assert result.returncode == 2, result.stderr.decode()
    said = result.stderr.decode()
    assert said.startswith("Error: standard input is not JSON: "), said
    assert said.count("\n") == 1
    assert result.stdout == b""


@pytest.mark.parametrize("given", [b"[1, 2]", b'"text"', b"3"], ids=["array", "string", "number"])
def test_sign_requires_a_json_object(tmp_path: Path, given: bytes):
    """sign signs an object only (the API's JSON is one): an array, a string or a number is
    one line saying what it is, exit 2."""
    result = run_cli("sign", env=site_env(), cwd=tmp_path, stdin=given)
    assert result.returncode == 2, result.stderr.decode()
    said = result.stderr.decode()
    assert said.startswith("Error: standard input is not a JSON object (the API takes one): ")
    assert said.count("\n") == 1


def test_an_input_at_the_limit_is_read(tmp_path: Path):
    """The limit is the batch's line limit, twice the largest API JSON, so that an indented
    request is not refused for its spaces: a JSON file of exactly that size is read."""
    assert MAX_INPUT_BYTES == 2 * MAX_FORM_API_JSON_BYTES == MAX_LINE_BYTES
    (tmp_path / "wide.json").write_bytes(b"{}" + b" " * (MAX_INPUT_BYTES - 2))
    result = run_cli("sign", "--input", "wide.json", env=site_env(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()


# --- storage ----------------------------------------------------------------------------------


def test_storage_register_update_and_list(env, tmp_path: Path):
    """A storage registered, renamed and listed; the AWS secret only with --show-secrets."""
    storage_id = _ok(run_cli("storage", "register", "--name", "cli-store", "--bucket", "cli-bucket",
                         env=env, cwd=tmp_path)).strip()  # fmt: skip
    assert storage_id.startswith("ST")
    _ok(run_cli("storage", "update", storage_id, "--name", "cli-renamed", env=env, cwd=tmp_path))
    listing = ["storage", "list", "--keyword", storage_id, "--keyword-type", "storageId"]
    table = _ok(run_cli(*listing, env=env, cwd=tmp_path))
    assert "cli-renamed" in table
    assert AWS_SECRET not in table
    data = json.loads(_ok(run_cli(*listing, "--json", env=env, cwd=tmp_path)))
    assert data["total_count"] == 1
    assert data["data"][0]["storage_name"] == "cli-renamed"
    assert "password" not in data["data"][0]
    shown = json.loads(_ok(run_cli(*listing, "--json", "--show-secrets", env=env, cwd=tmp_path)))
    assert shown["data"][0]["password"] == AWS_SECRET


def test_storage_register_without_a_secret_and_no_terminal_fails_cleanly(env, tmp_path: Path):
    """No AWS secret and nothing on stdin to prompt: exit 2, one line naming the variable and
    the file option, nothing printed, nothing registered."""
    del env["AWS_SECRET_ACCESS_KEY"]
    name = f"no-secret-{time.monotonic_ns()}"
    result = run_cli("storage", "register", "--name", name, "--bucket", "cli-bucket", env=env,
                     cwd=tmp_path, stdin=b"")  # fmt: skip
    assert (result.returncode, result.stdout, result.stderr.decode()) == (
        2,
        b"",
        "Error: no AWS secret access key: set AWS_SECRET_ACCESS_KEY or give "
        "--aws-secret-access-key-file PATH ('-' = standard input)\n",
    )
    listing = ["storage", "list", "--keyword", name, "--json"]
    assert json.loads(_ok(run_cli(*listing, env=env, cwd=tmp_path)))["total_count"] == 0


@pytest.mark.parametrize(
    ("args", "drop", "message"),
    [
        (["storage", "register", "--name", "n", "--bucket", "b"], "AWS_ACCESS_KEY_ID",
         "no AWS access key id: give --aws-access-key-id or set AWS_ACCESS_KEY_ID"),
        (["jobs", "list"], "PALLYCON_REGION",
         "no region: give --region or set PALLYCON_REGION (a code such as RG011)"),
        (["storage", "update", "ST000001", "--region", "RG004"], None,
         "storage update: a storage's region cannot be changed (the API takes only --name and "
         "--description); register a new storage with --storage-region"),
        (["storage", "update", "ST000001"], None,
         "storage update: give --name, --description or both"),
    ],
)  # fmt: skip
def test_what_a_user_left_out_is_one_line_naming_where_it_can_come_from(
    env, tmp_path: Path, args, drop, message
):
    """An option the environment can stand in for: the error names both; exit 2."""
    env.pop(drop, None)
    result = run_cli(*args, env=env, cwd=tmp_path)
    assert (result.returncode, result.stderr.decode()) == (2, f"Error: {message}\n")


def test_help_shows_every_summary_whole_and_every_option_explained():
    """The top-level list cuts no summary short; the options that the environment can replace
    say so, and jobs list --status says what each state means."""
    from click.testing import CliRunner

    from pallycon_pack.cli.main import COMMANDS, main

    runner = CliRunner()
    listing = runner.invoke(main, ["--help"], terminal_width=80).output
    bare = "".join(listing.split())  # wrapping may break a line at a hyphen
    for name, entry in COMMANDS.items():
        assert "".join(f"{name} {entry.summary}".split()) in bare, listing
    assert "..." not in listing.partition("Queue:")[2]
    jobs_list = " ".join(runner.invoke(main, ["jobs", "list", "--help"]).output.split())
    assert "--status [ready|success|failed|complete|working|process|stop] Jobs in this" in jobs_list
    assert "required unless PALLYCON_REGION is set" in jobs_list
    register = " ".join(runner.invoke(main, ["storage", "register", "--help"]).output.split())
    assert "AWS access key id; required unless AWS_ACCESS_KEY_ID is set." in register
    update = " ".join(runner.invoke(main, ["storage", "update", "--help"]).output.split())
    assert "A storage's region (and bucket and AWS keys) cannot be changed" in update


# --- jobs -------------------------------------------------------------------------------------


def _job_file(tmp_path: Path, env, **changes) -> Path:
    storage_id = _ok(run_cli("storage", "register", "--name", "s", "--bucket", "cli-bucket",
                         env=env, cwd=tmp_path)).strip()  # fmt: skip
    body = job_body(**changes)
    body["storage"]["input"]["storage_id"] = body["storage"]["output"]["storage_id"] = storage_id
    path = tmp_path / f"job-{changes.get('content_id', 'x')}.json"
    path.write_text(json.dumps(body))
    return path


def test_register_a_job_and_watch_it_reach_wm030(env, tmp_path: Path):
    """The README's walk-through: register a job from a file, watch it to WM030, exit 0."""
    job_file = _job_file(tmp_path, env, content_id="cli-watch")
    job_id = _ok(run_cli("jobs", "register", str(job_file), env=env, cwd=tmp_path)).strip()
    assert job_id.isdigit()
    watched = _ok(run_cli("jobs", "watch", job_id, "--interval", "0.2", env=env, cwd=tmp_path))
    lines = watched.splitlines()
    assert lines[0].startswith(f"job {job_id}: WM0")
    assert lines[-1] == f"job {job_id}: WM030 Packaging complete"
    listed = json.loads(_ok(run_cli("jobs", "list", "--keyword", "cli-watch", "--keyword-type", "cid",
                                "--status", "success", "--json", env=env, cwd=tmp_path)))  # fmt: skip
    assert [job["job_id"] for job in listed["data"]] == [job_id]


def test_watching_a_failing_job_exits_1_with_the_packaging_error(env, tmp_path: Path):
    """A job that ends WM999 makes watch exit 1 and print WM900013's meaning."""
    job_file = _job_file(tmp_path, env, content_id="cli-fail")
    body = json.loads(job_file.read_text())
    body["storage"]["input"]["contents_path"] = ["missing.mp4"]
    job_file.write_text(json.dumps(body))
    job_id = _ok(run_cli("jobs", "register", str(job_file), env=env, cwd=tmp_path)).strip()
    result = run_cli("jobs", "watch", job_id, "--interval", "0.2", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "WM999" in result.stderr.decode()
    assert "WM900013" in result.stderr.decode()


def test_an_invalid_job_file_exits_2_naming_the_fields_and_registers_nothing(
    env, tmp_path: Path, emulator: EmulatorProcess
):
    """Validation happens before any call: exit 2, each bad field named, no POST sent."""
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(job_body(content_id="c" * 201, protect_type=["drm"])))
    before = emulator.control("stats")["counts"].get("POST pack", 0)
    result = run_cli("jobs", "register", str(path), env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "content_id" in result.stderr.decode()
    assert "protect_type" in result.stderr.decode()
    assert emulator.control("stats")["counts"].get("POST pack", 0) == before
    path.write_text("{not json")
    result = run_cli("jobs", "register", str(path), env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "not JSON" in result.stderr.decode()


def test_api_errors_exit_1_with_code_and_message(env, tmp_path: Path):
    """An API error (here A1000, unknown storage) is one line with its code, exit 1."""
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job_body()))
    result = run_cli("jobs", "register", str(path), env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "A1000" in result.stderr.decode()
    assert "storage.input.storage_id" in result.stderr.decode()


def test_jobs_list_all_pages_and_table(env, tmp_path: Path):
    """--all-pages walks the pages; the table shows status meanings."""
    job_file = _job_file(tmp_path, env, content_id="cli-pages")
    for _ in range(3):
        _ok(run_cli("jobs", "register", str(job_file), env=env, cwd=tmp_path))
    args = ["jobs", "list", "--keyword", "cli-pages", "--keyword-type", "cid", "--page-unit", "1"]
    everything = json.loads(_ok(run_cli(*args, "--all-pages", "--json", env=env, cwd=tmp_path)))
    assert everything["total_count"] == 3
    assert len(everything["data"]) == 3
    table = _ok(run_cli(*args, env=env, cwd=tmp_path))
    assert "1 of 3 jobs" in table


# --- emulator and demo ------------------------------------------------------------------------


def test_the_emulator_serves_the_demo_site_when_nothing_is_configured(tmp_path: Path):
    """A new user can start the emulator with no settings at all (in its own process: the
    emulator command's smoke)."""
    server = start_emulator(env=clean_env(), cwd=tmp_path)
    try:
        result = run_cli("sign", env=clean_env(), cwd=tmp_path, stdin=b"{}")  # still unconfigured
        assert result.returncode == 2
        assert server.control("health") == {"status": "ok"}
    finally:
        server.stop()


def test_the_demo_runs_end_to_end_and_deletes_its_keys_from_a_shared_redis(
    tmp_path: Path, redis_server: RedisServer
):
    """`pallycon-pack demo` in its own process: emulator, worker, callbacks, requests that
    complete and requests that fail on purpose. On the Redis at PALLYCON_REDIS_URL its keys
    carry their own prefix and are all gone at the end, other keys untouched; its worker log
    stays where it says."""
    client = redis.Redis.from_url(redis_server.url)
    client.set("pp:not-the-demos", "kept")
    env = clean_env(PALLYCON_REDIS_URL=redis_server.url)
    result = cli("demo", "--jobs", "2", "--job-seconds", "1", env=env, cwd=tmp_path, timeout=180)
    out = _ok(result)
    assert "all 3 requests ended as expected: 1 completed, 2 failed on purpose" in out
    assert "WM900013" in out
    assert "invalid_request" in out
    assert "(configured, keys demo-" in out
    prefix = re.search(r"deleted the demo's \d+ keys \((demo-[0-9a-f]+):\*\)", out)
    assert prefix is not None, out
    assert client.keys(f"*{prefix[1]}*") == []
    assert [m for m in client.zrange("_kombu.binding_deadlines", 0, -1) if b"demo-" in m] == []
    assert client.get("pp:not-the-demos") == b"kept"
    log = tmp_path / "build" / "demo-logs" / prefix[1] / "worker.log"
    assert f"worker log: {log}" in out
    assert b"ready" in log.read_bytes()


def test_the_demo_starts_a_private_redis_when_none_answers(
    tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, isolated_settings
):
    """On a bare machine (nothing answers at PALLYCON_REDIS_URL) the demo runs on a Redis of its
    own, gone with the run; a Redis that answers is used instead."""
    from pallycon_pack.demo.redis_server import answers
    from pallycon_pack.demo.run import _redis

    monkeypatch.setenv("PALLYCON_REDIS_URL", "redis://127.0.0.1:1/0")  # nothing answers there
    with _redis(tmp_path / "redis") as private:
        assert private is not None
        assert answers(private)
    assert not answers(private)
    monkeypatch.setenv("PALLYCON_REDIS_URL", redis_server.url)
    with _redis(tmp_path / "unused") as configured:
        assert configured is None
