"""Secrets reach the CLI from the environment, a file or standard input, never from its argv.

Every command line is visible to every user of the machine (ps, /proc/<pid>/cmdline). What a
live command line holds, and the terminal prompt, are checked on the real CLI in its own
process; the cases that check only what a command prints and how it exits run it in this
process (:func:`support.cli.run_cli`). The emulator is a process where a call is made.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pallycon.signing import SiteCredentials
from support.cli import run_cli
from support.env import site_env
from support.processes import EmulatorProcess, ServerProcess, start_emulator
from support.samples import SAMPLE_APIDATA, SAMPLE_JSON, SAMPLE_SITE

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc"),
]

AWS_SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYFILEKEY01"
ACCESS_KEY = SAMPLE_SITE.access_key.get_secret_value()
SITE_KEY = SAMPLE_SITE.site_key.get_secret_value()
# A site served only from a sites file: its keys must never show in the emulator's argv.
EXTRA = SiteCredentials.of(
    "FILESITE", "file-site-access-key-0123456789", "file-site-key-0123456789abcdefgh"
)
EXTRA_ACCESS = EXTRA.access_key.get_secret_value()
EXTRA_KEY = EXTRA.site_key.get_secret_value()
SITES_TEXT = f"# extra sites\n\n  {EXTRA.site_id}:{EXTRA_ACCESS}:{EXTRA_KEY}  \r\n# end\n"


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pallycon_pack", *args]


def _cmdline(pid: int) -> bytes:
    """The argv of a live process, as every user of the machine can read it."""
    deadline = time.monotonic() + 10
    while True:  # empty for an instant while the new program is being set up
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if cmdline or time.monotonic() > deadline:
            return cmdline
        time.sleep(0.01)


def _assert_hidden(cmdline: bytes, *secrets: str) -> None:
    """``cmdline`` is a live pallycon-pack's, and holds none of ``secrets``."""
    assert b"pallycon_pack" in cmdline, cmdline  # the process really was running
    for secret in secrets:
        assert secret.encode() not in cmdline


def _run_feeding_stdin(args: list[str], data: bytes, *, env: dict[str, str], cwd: Path):
    """Run the CLI; read its /proc cmdline while it waits for ``data`` on standard input."""
    process = subprocess.Popen(_command(*args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env, cwd=cwd)  # fmt: skip
    cmdline = _cmdline(process.pid)  # still running: it waits for its standard input
    stdout, stderr = process.communicate(data, timeout=60)
    return cmdline, subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _ok(result) -> str:
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()
    return str(result.stdout.decode())


@pytest.fixture
def env(emulator: EmulatorProcess) -> dict[str, str]:
    """The shared emulator's site, an AWS key id and no AWS secret in the environment."""
    return site_env(PALLYCON_API_URL=emulator.url, AWS_ACCESS_KEY_ID="AKIAEXAMPLE")


def _stored_secret(storage_id: str, env: dict[str, str], cwd: Path) -> str:
    listing = ["storage", "list", "--keyword", storage_id, "--keyword-type", "storageId"]
    data = json.loads(_ok(run_cli(*listing, "--json", "--show-secrets", env=env, cwd=cwd)))
    return str(data["data"][0]["password"])


# --- storage register -------------------------------------------------------------------------


@pytest.mark.parametrize("ending", ["", "\n", "\r\n"])
def test_storage_register_takes_the_aws_secret_from_a_file(env, tmp_path: Path, ending: str):
    """The file's secret is registered, one trailing newline removed; it beats the env."""
    secret_file = tmp_path / "aws-secret"
    secret_file.write_bytes(f"{AWS_SECRET}{ending}".encode())
    env = {**env, "AWS_SECRET_ACCESS_KEY": "a-different-secret-from-the-environment"}
    args = ["storage", "register", "--name", "file-store", "--bucket", "secret-bucket",
            "--aws-secret-access-key-file", str(secret_file)]  # fmt: skip
    assert AWS_SECRET not in " ".join(args)
    storage_id = _ok(run_cli(*args, env=env, cwd=tmp_path)).strip()
    assert _stored_secret(storage_id, env, tmp_path) == AWS_SECRET


def test_storage_register_takes_the_aws_secret_on_stdin_and_keeps_it_out_of_ps(env, tmp_path):
    """'-' reads standard input; the running process's cmdline never holds the secret."""
    args = ["storage", "register", "--name", "stdin-store", "--bucket", "secret-bucket",
            "--aws-secret-access-key-file", "-"]  # fmt: skip
    cmdline, result = _run_feeding_stdin(args, f"{AWS_SECRET}\n".encode(), env=env, cwd=tmp_path)
    _assert_hidden(cmdline, AWS_SECRET)
    storage_id = _ok(result).strip()
    assert _stored_secret(storage_id, env, tmp_path) == AWS_SECRET


def test_storage_register_prompts_on_a_terminal_without_echo(env, tmp_path: Path):
    """With no file, flag or variable, a terminal gets a hidden prompt (as before)."""
    leader, follower = pty.openpty()
    try:
        # A new session has no controlling terminal, so the prompt reads the pty on stdin.
        process = subprocess.Popen(
            _command("storage", "register", "--name", "typed-store", "--bucket", "secret-bucket"),
            stdin=follower, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            cwd=tmp_path, start_new_session=True,
        )  # fmt: skip
        assert process.stderr is not None
        prompt = b""
        deadline = time.monotonic() + 30
        while b"AWS secret access key" not in prompt and time.monotonic() < deadline:
            if select.select([process.stderr], [], [], 1)[0]:
                prompt += os.read(process.stderr.fileno(), 1024)
        assert b"AWS secret access key" in prompt, prompt  # shown once echo is off
        os.write(leader, f"{AWS_SECRET}\n".encode())
        stdout, stderr = process.communicate(timeout=60)
        echoed = os.read(leader, 4096) if select.select([leader], [], [], 0.5)[0] else b""
    finally:
        os.close(leader)
        os.close(follower)
    assert process.returncode == 0, stderr.decode()
    assert AWS_SECRET.encode() not in echoed + prompt + stdout + stderr
    assert _stored_secret(stdout.decode().strip(), env, tmp_path) == AWS_SECRET


# --- sign -------------------------------------------------------------------------------------


def test_sign_with_key_files_matches_pallycons_published_sample(tmp_path: Path):
    """Key files (LF and CRLF endings) sign the sample exactly as the published vector."""
    (tmp_path / "access").write_bytes(f"{ACCESS_KEY}\n".encode())
    (tmp_path / "site").write_bytes(f"{SITE_KEY}\r\n".encode())
    args = ["sign", "--timestamp", "2022-03-30T08:29:57Z", "--site-id", "TUTO",
            "--access-key-file", "access", "--site-key-file", "site"]  # fmt: skip
    assert not {ACCESS_KEY, SITE_KEY} & set(args)
    env = site_env(PALLYCON_ACCESS_KEY="x" * 32, PALLYCON_SITE_KEY="y" * 32)  # the files win
    result = run_cli(*args, env=env, cwd=tmp_path, stdin=SAMPLE_JSON)
    assert _ok(result) == SAMPLE_APIDATA + "\n"


def test_sign_reads_a_key_on_stdin_when_the_json_comes_from_input(tmp_path: Path):
    """--input FILE frees standard input for a key; the live cmdline holds neither key."""
    (tmp_path / "body.json").write_bytes(SAMPLE_JSON)
    (tmp_path / "access").write_text(ACCESS_KEY)
    args = ["sign", "--timestamp", "2022-03-30T08:29:57Z", "--site-id", "TUTO",
            "--input", "body.json", "--access-key-file", "access", "--site-key-file", "-"]  # fmt: skip
    cmdline, result = _run_feeding_stdin(
        args, f"{SITE_KEY}\n".encode(), env=site_env(), cwd=tmp_path
    )
    _assert_hidden(cmdline, ACCESS_KEY, SITE_KEY)
    assert _ok(result) == SAMPLE_APIDATA + "\n"


# --- emulator --sites-file --------------------------------------------------------------------


def _drain(stream: Any) -> None:
    for _ in stream:
        pass


def _start_with_sites_on_stdin(text: str, cwd: Path) -> EmulatorProcess:
    """``emulator --port 0 --sites-file -`` fed ``text``; waits until it listens."""
    process = subprocess.Popen(_command("emulator", "--port", "0", "--sites-file", "-"),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=site_env(), cwd=cwd)  # fmt: skip
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(text)
    process.stdin.close()
    seen = []
    for line in process.stdout:
        seen.append(line)
        if "listening on " in line:
            url = line.split("listening on ", 1)[1].split()[0]
            drain = threading.Thread(target=_drain, args=(process.stdout,), daemon=True)
            drain.start()
            return ServerProcess(url, process, drain)
    process.wait(10)
    raise AssertionError("the emulator did not start:\n" + "".join(seen))


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_emulator_serves_the_sites_in_a_sites_file_keeping_them_out_of_ps(tmp_path, source):
    """The extra site answers signed calls; the running emulator's cmdline has no key."""
    if source == "file":
        (tmp_path / "sites").write_text(SITES_TEXT)
        server = start_emulator("--sites-file", "sites", env=site_env(), cwd=tmp_path)
    else:
        server = _start_with_sites_on_stdin(SITES_TEXT, tmp_path)
    try:
        _assert_hidden(_cmdline(server.process.pid), EXTRA_ACCESS, EXTRA_KEY)
        for site in (EXTRA, SAMPLE_SITE):  # the file's site, and the configured one still
            env = site_env(site, PALLYCON_API_URL=server.url)
            listed = json.loads(_ok(run_cli("storage", "list", "--json", env=env, cwd=tmp_path)))
            assert listed["total_count"] == 0
        wrong = SiteCredentials.of(EXTRA.site_id, "not-the-access-key", EXTRA_KEY)
        refused = run_cli("storage", "list", env=site_env(wrong, PALLYCON_API_URL=server.url),
                          cwd=tmp_path)  # fmt: skip
        assert refused.returncode == 1  # the emulator really checks the file's keys
        assert "A1007: hash does not match (is the access key this site's?)" in (
            refused.stderr.decode()
        )
        assert server.control("health") == {"status": "ok"}
    finally:
        server.stop()


# --- error paths: exit 2, one line, the option named, the secret never shown ------------------

STORE = ["storage", "register", "--name", "n", "--bucket", "secret-bucket"]
SIGN = ["sign", "--site-id", "TUTO"]
EMULATE = ["emulator", "--port", "0"]
SHORT_KEY = "short-secret-site-key"
ERRORS = {
    # name: (args, files to write, stdin, what the one line must say)
    "store: missing file": (
        [*STORE, "--aws-secret-access-key-file", "absent"], {}, b"",
        ["--aws-secret-access-key-file", "absent", "No such file"],
    ),
    "store: empty file": (
        [*STORE, "--aws-secret-access-key-file", "empty"], {"empty": ""}, b"",
        ["--aws-secret-access-key-file", "empty is empty"],
    ),
    "store: a newline only": (
        [*STORE, "--aws-secret-access-key-file", "nl"], {"nl": "\n"}, b"",
        ["--aws-secret-access-key-file", "is empty"],
    ),
    "store: two lines": (
        [*STORE, "--aws-secret-access-key-file", "two"], {"two": f"{AWS_SECRET}\n\n"}, b"",
        ["--aws-secret-access-key-file", "more than one line"],
    ),
    "store: empty stdin": (
        [*STORE, "--aws-secret-access-key-file", "-"], {}, b"",
        ["--aws-secret-access-key-file", "standard input is empty"],
    ),
    "store: a directory": (
        [*STORE, "--aws-secret-access-key-file", "."], {}, b"",
        ["--aws-secret-access-key-file", "cannot read"],
    ),
    "store: two sources": (
        [*STORE, "--aws-secret-access-key", AWS_SECRET, "--aws-secret-access-key-file", "s"],
        {"s": AWS_SECRET}, b"",
        ["--aws-secret-access-key and --aws-secret-access-key-file", "not both"],
    ),
    "sign: missing key file": (
        [*SIGN, "--site-key-file", "absent"], {}, b"{}",
        ["--site-key-file", "absent", "No such file"],
    ),
    "sign: empty key file": (
        [*SIGN, "--access-key-file", "empty"], {"empty": ""}, b"{}",
        ["--access-key-file", "is empty"],
    ),
    "sign: two sources": (
        [*SIGN, "--site-key", SITE_KEY, "--site-key-file", "k"], {"k": SITE_KEY}, b"{}",
        ["--site-key and --site-key-file", "not both"],
    ),
    "sign: a key and the JSON both on stdin": (
        [*SIGN, "--site-key-file", "-"], {}, SITE_KEY.encode(),
        ["--input and --site-key-file", "standard input"],
    ),
    "sign: site key of the wrong size": (
        [*SIGN, "--site-key-file", "k"], {"k": SHORT_KEY}, b"{}",
        ["--site-key-file", "must be 32 bytes"],
    ),
    "sign: missing --input": (
        [*SIGN, "--input", "absent.json"], {}, b"",
        ["--input", "absent.json", "No such file"],
    ),
    "emulator: malformed line": (
        [*EMULATE, "--sites-file", "sites"],
        {"sites": f"# ok\nGOOD:{ACCESS_KEY}:{'g' * 32}\n{EXTRA_ACCESS}{EXTRA_KEY}\n"}, b"",
        ["--sites-file sites", "line 3", "expected ID:ACCESS_KEY:SITE_KEY"],
    ),
    "emulator: short site key on stdin": (
        [*EMULATE, "--sites-file", "-"], {}, f"\nBAD:{EXTRA_ACCESS}:{SHORT_KEY}\n".encode(),
        ["--sites-file standard input", "line 2", "32 bytes"],
    ),
    "emulator: missing file": (
        [*EMULATE, "--sites-file", "absent"], {}, b"",
        ["--sites-file", "absent", "No such file"],
    ),
    "emulator: no site in the file": (
        [*EMULATE, "--sites-file", "sites"], {"sites": "# none yet\n\n"}, b"",
        ["--sites-file sites", "no site"],
    ),
    "emulator: a site given twice": (
        [*EMULATE, "--sites-file", "sites"], {"sites": f"TUTO:{EXTRA_ACCESS}:{EXTRA_KEY}\n"}, b"",
        ["site TUTO is given twice"],
    ),
    "emulator: bad --site": (
        [*EMULATE, "--site", f"{EXTRA_ACCESS}{EXTRA_KEY}"], {}, b"",
        ["--site", "expected ID:ACCESS_KEY:SITE_KEY"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", ERRORS.values(), ids=ERRORS.keys())
def test_a_bad_secret_source_is_one_line_exit_2_without_the_secret(tmp_path: Path, case):
    """Missing, empty, doubled or malformed: one line, exit 2, no traceback, no secret."""
    args, files, stdin, expected = case
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    # Nothing answers at this URL: every one of these must stop before any call.
    env = site_env(PALLYCON_API_URL="http://127.0.0.1:9", AWS_ACCESS_KEY_ID="AKIAEXAMPLE")
    result = run_cli(*args, env=env, cwd=tmp_path, stdin=stdin)
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert "Traceback" not in stderr
    for part in expected:
        assert part in stderr
    output = stderr + result.stdout.decode()
    for secret in (AWS_SECRET, ACCESS_KEY, SITE_KEY, SHORT_KEY, EXTRA_ACCESS, EXTRA_KEY):
        assert secret not in output
