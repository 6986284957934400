"""The client against the real emulator over HTTP: every API, code and fault. The shared
emulator is a process; those started with other flags (``emulator_factory``) are served by a
thread of this process, from the same flags."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from pallycon.client import ClientOptions, PallyConClient
from pallycon.codes import parse_status, status_sequence
from pallycon.errors import ApiError, OutcomeUnknown, RateLimited, ServerError
from pallycon.models import (
    JobInfo,
    JobListRequest,
    JobRegisterRequest,
    StorageListRequest,
    StorageUpdateRequest,
    validate_request,
)
from pallycon.signing import Envelope, SiteCredentials, sign
from support.env import site_env
from support.processes import EmulatorProcess
from support.samples import REGION, SAMPLE_SITE, job_body, storage_request
from support.sink import CallbackSink, running_sink

pytestmark = pytest.mark.integration


def new_job(client: PallyConClient, **changes: Any) -> tuple[JobRegisterRequest, str]:
    """Register storages and a job; return the request and its job id."""
    storage_id = client.register_storage(storage_request()).storage_id
    body = job_body(**changes)
    body["storage"]["input"]["storage_id"] = storage_id
    body["storage"]["output"]["storage_id"] = storage_id
    request = validate_request(JobRegisterRequest, body)
    job_id = client.register_job(request).job_id
    assert job_id
    return request, job_id


def find_job(client: PallyConClient, job_id: str) -> JobInfo:
    query = JobListRequest(region=REGION, search_keyword=job_id, search_keyword_type="jobId")
    found = [job for job in client.list_jobs(query).data if job.job_id == job_id]
    assert len(found) == 1, found
    return found[0]


def wait_until_done(client: PallyConClient, job_id: str, timeout: float = 20.0) -> list[str]:
    """Poll until the job ends; every status seen, in order."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = find_job(client, job_id)
        if not seen or seen[-1] != job.status:
            seen.append(job.status)
        if parse_status(job.status).terminal:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still running after {timeout} s: {seen}")


def raw_get(url: str, path: str, query: str) -> dict[str, Any]:
    """A hand-made request, bypassing the client's encoding."""
    response = httpx.get(f"{url}{path}?{query}", timeout=5)
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


# --- Every API --------------------------------------------------------------------------------


def test_storage_register_update_and_list(client: PallyConClient):
    """A storage is registered, renamed, and listed with its dates; the secret stays hidden."""
    storage_id = client.register_storage(storage_request("first")).storage_id
    assert storage_id
    updated = client.update_storage(
        StorageUpdateRequest(storage_id=storage_id, storage_name="renamed", description="d")
    )
    assert updated.storage_id == storage_id
    listing = client.list_storages(
        StorageListRequest(
            region=REGION, search_keyword=storage_id, search_keyword_type="storageId"
        )
    )
    assert listing.total_count == 1
    storage = listing.data[0]
    assert (storage.storage_name, storage.description, storage.aws_bucket) == (
        "renamed",
        "d",
        "my-bucket",
    )
    assert storage.reg_date is not None
    assert storage.password is not None
    assert storage.password.get_secret_value() == "aws-secret-value"
    assert "aws-secret-value" not in repr(listing)


def test_job_register_and_list_until_packaging_complete(client: PallyConClient):
    """A registered job moves through the guide's sequence, in order, to WM030."""
    request, job_id = new_job(client, protect_type=["watermark", "drm"])
    seen = wait_until_done(client, job_id)
    sequence = status_sequence(drm=True)
    assert seen[-1] == "WM030"
    assert [sequence.index(code) for code in seen] == sorted(sequence.index(c) for c in seen)
    job = find_job(client, job_id)
    assert (job.content_id, job.drm, job.dash, job.hls) == (request.content_id, True, True, True)
    assert job.storage is not None
    assert job.storage.input is not None
    assert job.storage.input.contents_path == ["in/episode-1.mp4"]
    assert job.reg_date is not None
    assert job.start_date is not None
    assert job.update_date is not None


def test_job_list_search_options_and_paging(client: PallyConClient):
    """Keyword, format and status searches, paging and total_count work over the wire."""
    marker = f"paging-{time.monotonic_ns()}"
    ids = [
        new_job(client, content_id=f"{marker}-{n}", streaming_format=["hls"])[1] for n in range(5)
    ]
    base = {"region": REGION, "search_keyword": marker, "search_keyword_type": "cid"}
    first = client.list_jobs(validate_request(JobListRequest, {**base, "page_unit": 2}))
    assert first.total_count == 5
    assert len(first.data) == 2
    walked = [
        job.job_id
        for job in client.iter_jobs(validate_request(JobListRequest, {**base, "page_unit": 2}))
    ]
    assert sorted(walked) == sorted(ids)
    dash_only = client.list_jobs(
        validate_request(JobListRequest, {**base, "search_condition": "dash"})
    )
    assert dash_only.total_count == 0
    zoned = client.list_jobs(validate_request(JobListRequest, {**base, "time_zone": "09:00"}))
    assert zoned.time_zone == "09:00"
    assert zoned.data[0].reg_date is not None


def test_a_failing_input_ends_in_wm999_with_wm900013(client: PallyConClient):
    """Without a data dir, a contents path named missing*.mp4 fails as PallyCon would."""
    body = job_body()
    body["storage"]["input"]["contents_path"] = ["videos/missing.mp4"]
    storage_id = client.register_storage(storage_request()).storage_id
    body["storage"]["input"]["storage_id"] = body["storage"]["output"]["storage_id"] = storage_id
    job_id = client.register_job(validate_request(JobRegisterRequest, body)).job_id
    assert job_id
    seen = wait_until_done(client, job_id)
    assert seen[-1] == "WM999"
    assert "WM022100" not in seen
    assert find_job(client, job_id).error_code == "WM900013"


def test_callback_is_posted_when_a_job_ends(client: PallyConClient, callback_sink: CallbackSink):
    """The guide's callback body arrives at the configured URL, success and failure alike."""
    _, good = new_job(client)
    body = callback_sink.wait_for(lambda b: str(b["job_id"]) == good)
    assert body["error_code"] == "0000"
    assert body["input_contents_path"] == ["in/episode-1.mp4"]
    assert body["output_path"] == "out"


# --- Every error code -------------------------------------------------------------------------


def _expect_code(code: str, call: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call()
    assert caught.value.code == code, caught.value
    return caught.value


def test_unknown_site_is_a1003(emulator: EmulatorProcess):
    """A site the service does not know."""
    stranger = SiteCredentials.of("NOPE", "key", "k" * 32)
    with PallyConClient(stranger, ClientOptions(base_url=emulator.url)) as client:
        _expect_code("A1003", lambda: client.list_jobs(JobListRequest(region=REGION)))


@pytest.mark.parametrize(
    "query",
    ["", "pallycon-apidata=", "pallycon-apidata=%%%", "pallycon-apidata=bm90IGpzb24="],
    ids=["absent", "empty", "not-base64", "not-json"],
)
def test_envelope_that_is_not_base64_json_is_a7008(emulator: EmulatorProcess, query: str):
    """No value, or one that is not base64 JSON."""
    assert raw_get(emulator.url, "/api/v2/pack/TUTO", query)["error_code"] == "A7008"


def _send(emulator: EmulatorProcess, envelope: Envelope, path: str = "/api/v2/pack/TUTO") -> str:
    from urllib.parse import quote

    body = raw_get(emulator.url, path, f"pallycon-apidata={quote(envelope.encode(), safe='')}")
    return str(body["error_code"])


LIST_JSON = b'{"region":"RG011"}'
NOW = datetime.now(UTC)


@pytest.mark.parametrize(
    ("envelope", "code"),
    [
        (Envelope(**{**sign(LIST_JSON, SAMPLE_SITE, NOW).__dict__, "timestamp": "yesterday"}), "A1002"),
        (Envelope(**{**sign(LIST_JSON, SAMPLE_SITE, NOW).__dict__, "hash": "AAAA"}), "A1007"),
        (sign(LIST_JSON, SiteCredentials.of("TUTO", "LT2FVJDp2Xr018zf4Di6lzvNOv3DKP20", "w" * 32), NOW), "A1006"),
        (sign(b"[1,2,3]", SAMPLE_SITE, NOW), "A7008"),
        (sign(b"{}", SAMPLE_SITE, NOW), "A1000"),
        (sign(LIST_JSON, SAMPLE_SITE, NOW), "0000"),
    ],
    ids=["timestamp", "hash", "site-key", "json-not-object", "missing-region", "valid"],
)  # fmt: skip
def test_verification_codes_over_the_wire(emulator: EmulatorProcess, envelope: Envelope, code: str):
    """Timestamp A1002, hash A1007, decryption A1006, parsing A7008, fields A1000."""
    assert _send(emulator, envelope) == code


def test_other_api_version_is_a7009(emulator: EmulatorProcess):
    """Only v2 exists."""
    assert _send(emulator, sign(LIST_JSON, SAMPLE_SITE, NOW), "/api/v1/pack/TUTO") == "A7009"


def test_invalid_fields_are_a1000_naming_the_field(client: PallyConClient):
    """An unknown storage id, or a body breaking a rule, names the field in the message."""
    body = job_body()
    request = validate_request(JobRegisterRequest, body)
    error = _expect_code("A1000", lambda: client.register_job(request))
    assert "storage.input.storage_id" in error.message
    raw = b'{"job_name":"j","content_id":"c","streaming_format":["dash"],"protect_type":["drm"]}'
    answer = client.send_raw("POST", "pack", raw)
    assert answer["error_code"] == "A1000"
    assert "storage" in answer["error_message"]
    assert "protect_type" in answer["error_message"]
    update = StorageUpdateRequest(storage_id="ST999999", storage_name="x")
    assert "storage_id" in _expect_code("A1000", lambda: client.update_storage(update)).message


def test_clock_skew_is_a1002_when_the_emulator_checks_it(emulator_factory):
    """With --max-skew-seconds, a request signed an hour ago is refused."""
    strict = emulator_factory("--max-skew-seconds", "60")
    past = lambda: datetime.now(UTC) - timedelta(hours=1)  # noqa: E731
    options = ClientOptions(base_url=strict.url)
    with PallyConClient(SAMPLE_SITE, options, clock=past) as client:
        _expect_code("A1002", lambda: client.list_jobs(JobListRequest(region=REGION)))
    with PallyConClient(SAMPLE_SITE, options) as client:
        assert client.list_jobs(JobListRequest(region=REGION)).error_code == "0000"


# --- Transports -------------------------------------------------------------------------------


def test_unencoded_query_value_is_accepted(emulator: EmulatorProcess):
    """A value sent as PallyCon's samples send it (not percent-encoded) works."""
    value = sign(LIST_JSON, SAMPLE_SITE, NOW).encode()
    assert value.endswith("=")
    assert (
        raw_get(emulator.url, "/api/v2/pack/TUTO", f"pallycon-apidata={value}")["error_code"]
        == "0000"
    )


def test_a_plus_read_as_a_space_is_restored(emulator: EmulatorProcess):
    """An unencoded '+' that the query parser turns into a space still verifies.

    An ASCII envelope only base64-encodes to '+' around a '>' or '~', so this envelope
    carries an extra key (ignored, as any unknown envelope key is) to produce one.
    """
    envelope = sign(LIST_JSON, SAMPLE_SITE, NOW)
    for pad in range(3):
        text = json.dumps({**envelope.__dict__, "note": "x" * pad + ">>>"})
        value = base64.b64encode(text.encode()).decode()
        if "+" in value:
            break
    assert "+" in value
    assert (
        raw_get(emulator.url, "/api/v2/pack/TUTO", f"pallycon-apidata={value}")["error_code"]
        == "0000"
    )


def test_form_body_is_accepted(emulator: EmulatorProcess):
    """The client's form mode and the emulator's form parsing agree, for every method."""
    options = ClientOptions(base_url=emulator.url, apidata_in="form")
    with PallyConClient(SAMPLE_SITE, options) as client:
        request, job_id = new_job(client)
        assert find_job(client, job_id).content_id == request.content_id


def test_the_other_protection_key_spelling_is_accepted(emulator: EmulatorProcess):
    """protection_type (the table's spelling) registers a DRM job just as protect_type does."""
    from pallycon.models import WireOptions

    options = ClientOptions(
        base_url=emulator.url, wire=WireOptions(protection_key="protection_type")
    )
    with PallyConClient(SAMPLE_SITE, options) as client:
        _, job_id = new_job(client, protect_type=["watermark", "drm"])
        assert find_job(client, job_id).drm is True


# --- Emulator modes ---------------------------------------------------------------------------


def test_status_as_words(emulator_factory):
    """--status-style word reports ready/process/success instead of WM codes."""
    wordy = emulator_factory("--status-style", "word", "--job-seconds", "0.5")
    with PallyConClient(SAMPLE_SITE, ClientOptions(base_url=wordy.url)) as client:
        _, job_id = new_job(client)
        seen = wait_until_done(client, job_id)
    assert seen[-1] == "success"
    assert set(seen) <= {"ready", "process", "success"}


def test_data_dir_reads_inputs_and_writes_the_output_layout(emulator_factory, tmp_path: Path):
    """Storages are folders; a present input packages to <path>/<cid>/<0|1>/<fmt>/manifest."""
    data = tmp_path / "data"
    (data / "my-bucket" / "in").mkdir(parents=True)
    (data / "my-bucket" / "in" / "episode-1.mp4").write_bytes(b"\x00" * 128)
    (data / "my-bucket" / "in" / "empty.mp4").write_bytes(b"")
    server = emulator_factory("--data-dir", str(data), "--job-seconds", "0.5")
    bad_inputs = {"empty": "in/empty.mp4", "absent": "in/nothing.mp4", "escape": "../../etc/passwd"}
    with PallyConClient(SAMPLE_SITE, ClientOptions(base_url=server.url)) as client:
        _, good = new_job(client)
        results = {}
        for name, path in bad_inputs.items():
            body = job_body(content_id=name)
            body["storage"]["input"]["contents_path"] = [path]
            storage_id = client.register_storage(storage_request()).storage_id
            body["storage"]["input"]["storage_id"] = body["storage"]["output"]["storage_id"] = (
                storage_id
            )
            job_id = client.register_job(validate_request(JobRegisterRequest, body)).job_id
            assert job_id
            results[name] = wait_until_done(client, job_id)[-1]
        assert wait_until_done(client, good)[-1] == "WM030"
    assert results == {"empty": "WM999", "absent": "WM999", "escape": "WM999"}
    root = data / "my-bucket" / "out" / "episode-1"
    deadline = time.monotonic() + 5
    while not (root / "1" / "hls" / "master.m3u8").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    manifests = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert manifests == [
        "0/dash/stream.mpd",
        "0/hls/master.m3u8",
        "1/dash/stream.mpd",
        "1/hls/master.m3u8",
    ]
    assert not (data / "my-bucket" / "out" / "empty").exists()


def test_several_sites_are_kept_apart(emulator_factory):
    """--site adds a site with its own credentials and its own jobs."""
    other = SiteCredentials.of("SITE2", "other-access-key", "o" * 32)
    server = emulator_factory("--site", "SITE2:other-access-key:" + "o" * 32)
    with PallyConClient(other, ClientOptions(base_url=server.url)) as client:
        new_job(client)
        assert client.list_jobs(JobListRequest(region=REGION)).total_count == 1
    with PallyConClient(SAMPLE_SITE, ClientOptions(base_url=server.url)) as client:
        assert client.list_jobs(JobListRequest(region=REGION)).total_count == 0


def _job_of(client: PallyConClient, name: str) -> str:
    """A storage and a job named ``name`` (its content ID and output path too): the job ID."""
    storage_id = client.register_storage(storage_request(name)).storage_id
    body = job_body(content_id=name, job_name=name)
    body["storage"]["input"]["storage_id"] = body["storage"]["output"]["storage_id"] = storage_id
    body["storage"]["output"]["path"] = f"out-{name}"
    job_id = client.register_job(validate_request(JobRegisterRequest, body)).job_id
    assert job_id
    return job_id


SITE2 = SiteCredentials.of("SITE2", "other-access-key", "o" * 32)
SITE3 = SiteCredentials.of("SITE3", "third-access-key", "t" * 32)
TOKENS = {"TUTO": "token-of-tuto-4f1c2e", "SITE2": "token-of-site2-9a7b3d", "SITE3": "tok-3-c5e8"}


def test_each_sites_job_1001_calls_back_its_own_sites_url(tmp_path: Path):
    """Three sites, each with a job 1001: each callback reaches its own site's URL (SITE2's from
    PALLYCON_EMULATOR_CALLBACK_URLS, SITE3's from --site-callback, TUTO's the common
    --callback-url); lists, storages and stats are per site; no token reaches the log."""
    sites_file = tmp_path / "sites.txt"
    sites_file.write_text(
        "".join(
            f"{s.site_id}:{s.access_key.get_secret_value()}:{s.site_key.get_secret_value()}\n"
            for s in (SITE2, SITE3)
        )
    )
    with running_sink() as tuto, running_sink() as site2, running_sink() as site3:
        sinks = {"TUTO": tuto, "SITE2": site2, "SITE3": site3}
        # The receiver's paths: /callback/<token> for the default site, else /callback/<site>/<token>
        urls = {site: f"{sink.url}/{site}/{TOKENS[site]}" for site, sink in sinks.items()}
        urls["TUTO"] = f"{tuto.url}/{TOKENS['TUTO']}"
        env = site_env(PALLYCON_EMULATOR_CALLBACK_URLS=f"SITE2={urls['SITE2']}")
        log = tmp_path / "emulator.log"
        with log.open("w") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "pallycon_pack", "emulator", "--port", "0",
                 "--job-seconds", "0.5", "--sites-file", str(sites_file),
                 "--site-callback", f"SITE3={urls['SITE3']}", "--callback-url", urls["TUTO"]],
                stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=tmp_path,
            )  # fmt: skip
        try:
            assert process.stdout is not None
            match = re.search(r"listening on (http://\S+) ", process.stdout.readline())
            assert match, log.read_text()
            url = match.group(1)
            ids = {}
            for each in (SAMPLE_SITE, SITE2, SITE3):
                with PallyConClient(each, ClientOptions(base_url=url)) as client:
                    ids[each.site_id] = _job_of(client, each.site_id)
            assert set(ids.values()) == {"1001"}
            for site, sink in sinks.items():
                body = sink.wait_for(lambda b: b["job_id"] == 1001)
                assert body["output_path"] == f"out-{site}"
            for each in (SAMPLE_SITE, SITE2, SITE3):
                with PallyConClient(each, ClientOptions(base_url=url)) as client:
                    jobs = client.list_jobs(JobListRequest(region=REGION)).data
                    storages = client.list_storages(StorageListRequest(region=REGION)).data
                assert [(j.job_id, j.content_id) for j in jobs] == [("1001", each.site_id)]
                assert [s.storage_name for s in storages] == [each.site_id]
            stats = httpx.get(f"{url}/_emulator/stats", timeout=5).json()
        finally:
            process.terminate()
            process.wait(10)
            if process.stdout is not None:
                process.stdout.close()
    assert {site: len(sink.bodies) for site, sink in sinks.items()} == dict.fromkeys(sinks, 1)
    assert stats["counts"]["POST pack"] == stats["counts"]["callbacks 200"] == 3
    assert stats["jobs"] == dict.fromkeys(sinks, 1)
    for site in sinks:
        counts = stats["sites"][site]
        assert (counts["POST storage"], counts["POST pack"], counts["GET pack"]) == (1, 1, 1)
        assert (counts["jobs finished"], counts["callbacks 200"]) == (1, 1)
    text = log.read_text()
    assert not [token for token in TOKENS.values() if token in text]
    start = json.loads(next(line for line in text.splitlines() if '"msg": "start"' in line))
    assert start["settings"]["PALLYCON_EMULATOR_CALLBACK_URLS"] == {
        site: re.sub(r"/callback/.*", "/callback/***", urls[site]) for site in ("SITE2", "SITE3")
    }


def test_stats_count_faults_and_errors_per_site(emulator_factory):
    """A site's faults and errors are counted for it alone; an unknown site for none."""
    server = emulator_factory("--site", "SITE2:other-access-key:" + "o" * 32)
    server.set_faults(rate_limit_rate=1.0)
    with (
        PallyConClient(SITE2, ClientOptions(base_url=server.url)) as client,
        pytest.raises(RateLimited),
    ):
        client.list_jobs(JobListRequest(region=REGION))
    server.set_faults()
    with PallyConClient(SAMPLE_SITE, ClientOptions(base_url=server.url)) as client:
        _expect_code("A1000", lambda: client.update_storage(StorageUpdateRequest(
            storage_id="ST999999", storage_name="x")))  # fmt: skip
    stranger = SiteCredentials.of("NOPE", "key", "k" * 32)
    with PallyConClient(stranger, ClientOptions(base_url=server.url)) as client:
        _expect_code("A1003", lambda: client.list_jobs(JobListRequest(region=REGION)))
    stats = server.control("stats")
    assert stats["sites"] == {
        "SITE2": {"fault 429": 1},
        "TUTO": {"PUT storage": 1, "error A1000": 1},
    }
    assert stats["counts"] == {
        "fault 429": 1, "PUT storage": 1, "error A1000": 1, "GET pack": 1, "error A1003": 1
    }  # fmt: skip


# --- Faults -----------------------------------------------------------------------------------


def test_injected_server_errors(emulator: EmulatorProcess, client: PallyConClient):
    """error_rate 1 answers every API call 5xx; the client raises ServerError."""
    emulator.set_faults(error_rate=1.0, error_statuses=[503])
    with pytest.raises(ServerError) as caught:
        client.list_jobs(JobListRequest(region=REGION))
    assert caught.value.status_code == 503
    emulator.set_faults()
    assert client.list_jobs(JobListRequest(region=REGION)).error_code == "0000"


def test_injected_rate_limit_carries_retry_after(emulator: EmulatorProcess, client: PallyConClient):
    """rate_limit_rate 1 answers 429 with the configured Retry-After."""
    emulator.set_faults(rate_limit_rate=1.0, retry_after=2)
    with pytest.raises(RateLimited) as caught:
        client.list_jobs(JobListRequest(region=REGION))
    assert caught.value.retry_after == 2.0


def test_injected_latency_becomes_an_unknown_outcome(emulator: EmulatorProcess):
    """Latency beyond the client's read timeout is OutcomeUnknown (the request was sent)."""
    emulator.set_faults(latency=1.0)
    options = ClientOptions(base_url=emulator.url, read_timeout=0.3)
    with PallyConClient(SAMPLE_SITE, options) as client, pytest.raises(OutcomeUnknown):
        client.list_jobs(JobListRequest(region=REGION))


def test_accept_then_drop_registers_the_job_but_answers_nothing(
    emulator: EmulatorProcess, client: PallyConClient
):
    """drop_rate 1: the POST raises OutcomeUnknown, yet exactly one job now exists."""
    storage_id = client.register_storage(storage_request()).storage_id
    body = job_body(content_id=f"dropped-{time.monotonic_ns()}")
    body["storage"]["input"]["storage_id"] = body["storage"]["output"]["storage_id"] = storage_id
    request = validate_request(JobRegisterRequest, body)
    before = emulator.control("stats")["counts"].get("fault drop", 0)
    emulator.set_faults(drop_rate=1.0)
    with pytest.raises(OutcomeUnknown):
        client.register_job(request)
    emulator.set_faults()
    assert emulator.control("stats")["counts"]["fault drop"] == before + 1
    query = JobListRequest(
        region=REGION, search_keyword=request.content_id, search_keyword_type="cid"
    )
    assert client.list_jobs(query).total_count == 1


def test_fault_configuration_is_validated(emulator: EmulatorProcess):
    """A bad fault configuration is refused with a 400, and the old one kept."""
    response = httpx.put(f"{emulator.url}/_emulator/faults", json={"error_rate": 2}, timeout=5)
    assert response.status_code == 400
    assert "error_rate" in response.json()["error"]
    assert emulator.control("faults")["error_rate"] == 0.0


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("non_json", "MalformedResponse"),
        ("truncated", "OutcomeUnknown"),
        ("missing_fields", "MalformedResponse"),
        ("wrong_types", "MalformedResponse"),
        ("huge", "ResponseTooLarge"),
        ("unknown_code", "ApiError"),
    ],
)
def test_hostile_responses_become_one_clear_error_each(emulator: EmulatorProcess, mode, expected):
    """Every hostile answer is one error of the tree, never a crash or a hang."""
    from pallycon.errors import CallError

    emulator.set_faults(hostile_rate=1.0, hostile_modes=[mode])
    options = ClientOptions(base_url=emulator.url)
    with PallyConClient(SAMPLE_SITE, options) as client, pytest.raises(CallError) as caught:
        client.list_jobs(JobListRequest(region=REGION))
    assert type(caught.value).__name__ == expected
    if mode == "huge":
        assert "larger than" in str(caught.value)
    if mode == "unknown_code":
        assert caught.value.retryable is False
