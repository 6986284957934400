"""The image's environment runs the stack: built as the Dockerfile builds it, run as
docker-compose.yml runs it, used as docs/OPERATIONS.md's "Docker Compose" tells a user to.

No Docker engine runs here, but what goes wrong in an image is mostly its Python environment:
the one ``uv sync --no-dev`` installs, without the dev tools that the tests' environment has
(pytest brought ``packaging``, which kombu's Redis transport imports: a worker that started in
every test died at start in the image). So the environment is built from this checkout with
the Dockerfile's own ``uv sync`` commands and uv settings, into a temporary directory, and its
own ``bin/pallycon-pack`` runs each service of the compose file that runs the image (the
emulator, the worker, the callback receiver, the HTTP API), with the compose file's commands, environment
(``.env`` copied from ``.env.example``, then each service's ``environment:``) and health
checks, from a directory that holds no code, against a real Redis (run from the tests' own
environment: in compose Redis is an image of its own). Then the user's steps of
docs/OPERATIONS.md (``docker compose exec worker pallycon-pack ...``) run against it.

What differs, for speed or because no engine runs: the servers listen on free ports of
127.0.0.1 (their compose addresses, ``emulator:8600``, are translated), the emulator's ``/data``
volume is a copy of what the image seeds it with, the job takes 1 s and polls are short
(:data:`SPEED_UPS`, in .env), and the interpreter is the tests' own (the image's is its base
image's Python).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from support.deployment import interpolate, read_env_file
from support.env import installed_env
from support.processes import ServerProcess, WorkerProcess, cli
from support.redis_server import RedisServer, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
OPERATIONS = (ROOT / "docs" / "OPERATIONS.md").read_text()

#: The Dockerfile's uv settings not applied here: the environment is this test's, and compiling
#: bytecode makes the image's processes start faster but costs seconds of CPU here.
NOT_APPLIED = {"UV_PROJECT_ENVIRONMENT", "UV_COMPILE_BYTECODE"}
#: Only for speed, in .env (the compose services read it whole): a 1 s job, short polls.
SPEED_UPS = {
    "PALLYCON_EMULATOR_JOB_SECONDS": "1",
    "PALLYCON_POLL_INTERVAL": "0.5",
    "PALLYCON_POLL_BUSY_INTERVAL": "0.5",
    "PALLYCON_POLL_GRID": "0.1",
    "PALLYCON_SWEEP_INTERVAL": "0.2",
}
#: The services of ours that listen (the emulator, the receiver, the HTTP API); the worker does not.
SERVERS = sorted(
    name
    for name, service in SERVICES.items()
    if str(service.get("image", "")).startswith("pallycon") and service.get("ports")
)
#: The AWS secret the user types at `storage register`'s prompt.
AWS_SECRET = "example-secret"


# --- The Dockerfile ---------------------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """The Dockerfile's instructions, (INSTRUCTION, arguments), continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def uv_syncs(text: str) -> list[list[str]]:
    """The flags of each ``RUN uv sync ...``, in order."""
    syncs = []
    for keyword, rest in instructions(text):
        if keyword == "RUN" and "uv sync" in rest:
            words = shlex.split(rest)
            plain = words[:2] == ["uv", "sync"] and not {"&&", "||", ";", "|"} & set(words)
            assert plain, f"Dockerfile: RUN {rest}: not a plain `uv sync FLAGS` (this test runs it)"
            syncs.append(words[2:])
    assert syncs, "the Dockerfile runs no `uv sync`: how does it build the image's environment?"
    return syncs


def env_instructions(text: str) -> dict[str, str]:
    """The Dockerfile's ``ENV NAME=value ...`` settings."""
    values = {}
    for keyword, rest in instructions(text):
        if keyword == "ENV":
            for word in shlex.split(rest):
                name, _, value = word.partition("=")
                values[name] = value
    return values


def copies(text: str) -> dict[str, str]:
    """``COPY SOURCE DEST`` of the build context: DEST -> SOURCE."""
    return {
        words[-1]: words[0]
        for keyword, rest in instructions(text)
        if keyword == "COPY" and len(words := shlex.split(rest)) == 2
    }


@dataclass(frozen=True)
class Image:
    venv: Path
    build_seconds: float

    @property
    def program(self) -> list[str]:
        return [str(self.venv / "bin" / "pallycon-pack")]


def build(venv: Path) -> Image:
    """The image's environment in ``venv``: the Dockerfile's ``uv sync`` commands in order,
    with its uv settings, from this checkout."""
    uv = os.environ.get("UV") or shutil.which("uv")
    assert uv, "uv not found (neither the UV variable `uv run` sets nor PATH): it builds the image"
    dockerfile = env_instructions(DOCKERFILE)
    settings = {k: v for k, v in dockerfile.items() if k.startswith("UV_") and k not in NOT_APPLIED}
    env = installed_env(venv, settings, UV_PROJECT_ENVIRONMENT=str(venv), UV_PYTHON=sys.executable)
    started = time.monotonic()
    for flags in uv_syncs(DOCKERFILE):
        done = subprocess.run(
            [uv, "sync", "--quiet", *flags], cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"uv sync {' '.join(flags)} failed:\n{done.stderr[-3000:]}"
    return Image(venv, time.monotonic() - started)


# --- The compose stack, from that environment -----------------------------------------------


def _container_port(name: str) -> int:
    """The port the service listens on in its container (the last part of ``ports:``)."""
    return int(str(SERVICES[name]["ports"][0]).rsplit(":", 1)[1])


@dataclass
class Stack:
    """The compose services of the image, run from :class:`Image`'s environment."""

    image: Image
    root: Path
    redis: RedisServer
    dotenv: dict[str, str]
    #: A compose service's address (``emulator:8600``) -> where it listens here.
    addresses: dict[str, str] = field(default_factory=dict)
    #: A volume's mount point in its container (``/data``) -> its directory here.
    mounts: dict[str, Path] = field(default_factory=dict)
    servers: dict[str, ServerProcess] = field(default_factory=dict)
    worker: WorkerProcess | None = None

    def translate(self, value: str) -> str:
        """A value of the compose file, its service addresses and mount points made ours."""
        if value in self.mounts:
            return str(self.mounts[value])
        for address, here in self.addresses.items():
            value = value.replace(f"//{address}", f"//{here}")
        names = "|".join(map(re.escape, SERVICES))
        left = re.search(rf"//({names}):\d+", value)
        assert left is None, f"{value}: names the service {left.group(1)}, which is not run here"
        return value

    def env(self, name: str, **extra: str) -> dict[str, str]:
        """A service's environment: the image's ENV, .env (env_file), then its
        ``environment:`` (compose interpolates it with .env), translated."""
        image = {k: v for k, v in env_instructions(DOCKERFILE).items() if not k.startswith("UV_")}
        image.pop("PATH", None)  # installed_env puts the environment's bin first, as it does
        values = SERVICES[name].get("environment") or {}
        own = {k: self.translate(interpolate(str(v), self.dotenv)) for k, v in values.items()}
        return installed_env(self.image.venv, image, self.dotenv, own, **extra)

    def seed(self, name: str, scratch: Path) -> None:
        """The service's volumes, as the image seeds them (its ``COPY`` to the mount point)."""
        seeded = copies(DOCKERFILE)
        for volume in SERVICES[name].get("volumes", []):
            source, target = str(volume).split(":")[:2]
            directory = scratch / source
            if target in seeded:
                shutil.copytree(ROOT / seeded[target], directory)
            else:
                directory.mkdir(parents=True)
            self.mounts[target] = directory

    def command(self, name: str) -> list[str]:
        command = [str(word) for word in SERVICES[name]["command"]]
        assert SERVICES[name]["image"].startswith("pallycon-pack"), f"{name}: not our image"
        return command

    def reserve(self, name: str, here: str) -> None:
        """Where the service listens here: every container gets every address (compose's
        names resolve when used), so all are known before any starts."""
        self.addresses[f"{name}:{_container_port(name)}"] = here

    def start_server(self, name: str) -> ServerProcess:
        """A server of the compose file, on its reserved port of 127.0.0.1 (the last --host
        and --port win)."""
        self.seed(name, self.root / "volumes")
        host, port = self.addresses[f"{name}:{_container_port(name)}"].split(":")
        args = [*self.command(name), "--host", host, "--port", port]
        server = ServerProcess.start(
            *args, env=self.env(name), cwd=self.root, program=self.image.program
        )
        self.servers[name] = server
        return server

    def start_worker(self, name: str) -> WorkerProcess:
        args = [*self.image.program, *self.command(name)]
        log = self.root / f"{name}.log"
        self.worker = WorkerProcess(args, self.env(name), log).start()
        try:
            self.worker.wait_ready(timeout=60)
        except RuntimeError as exc:
            failure = str(exc)
        else:
            return self.worker
        last = failure.strip().splitlines()[-1]  # why, first; then its output
        pytest.fail(
            f"{name} did not start from the image's environment: {last}\n\n{failure}", pytrace=False
        )

    def health_command(self, name: str) -> list[str]:
        """The service's compose health check, addressed to where it listens here."""
        test = [str(word) for word in SERVICES[name]["healthcheck"]["test"]]
        assert test[0] == "CMD", f"{name}: the health check is not a CMD list"
        if name not in self.servers:
            return test[1:]
        here = urlsplit(self.servers[name].url).netloc
        return [w.replace(f"127.0.0.1:{_container_port(name)}", here) for w in test[1:]]

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        for server in self.servers.values():
            server.stop()


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    return build(tmp_path_factory.mktemp("image") / "venv")


@pytest.fixture
def stack(image: Image, tmp_path: Path) -> Iterator[Stack]:
    """Redis, then the services in the order of their depends_on: the servers (each after
    Redis alone), the worker."""
    root = tmp_path
    dotenv = {**read_env_file((ROOT / ".env.example").read_text(), uncomment=False), **SPEED_UPS}
    with RedisServer(root / "redis") as redis_server:
        running = Stack(image, root, redis_server, dotenv)
        running.reserve("redis", urlsplit(redis_server.url).netloc)
        for name in SERVERS:
            running.reserve(name, f"127.0.0.1:{free_port()}")
        try:
            # The servers depend on Redis alone: they start side by side (each waits for its
            # "listening" line), then the worker, which compose starts after the emulator.
            with ThreadPoolExecutor(len(SERVERS)) as pool:
                list(pool.map(running.start_server, SERVERS))
            running.start_worker("worker")
            yield running
        finally:
            running.stop()


def _output(result: subprocess.CompletedProcess[bytes]) -> str:
    return (result.stdout + result.stderr).decode(errors="replace")


# --- The tests --------------------------------------------------------------------------------


def test_the_environment_is_the_images_alone(image: Image, tmp_path: Path, figure):
    """Its pallycon-pack is its own installed copy (not this checkout's code), without the dev
    tools. (How long the build took is a figure, not a limit: a few seconds on uv's cache.)"""
    figure("image environment build", seconds=round(image.build_seconds, 1))
    python = str(image.venv / "bin" / "python")
    probe = (
        "import importlib.util as u, pallycon_pack as p; print(p.__file__, u.find_spec('pytest'))"
    )
    done = subprocess.run(
        [python, "-c", probe], cwd=tmp_path, env=installed_env(image.venv),
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    where, pytest_spec = done.stdout.split()
    assert Path(where).is_relative_to(image.venv), where
    assert pytest_spec == "None", "the image's environment has the dev tools"


def test_every_module_of_the_product_imports_in_the_environment(image: Image, tmp_path: Path):
    """What a module imports as it loads is installed: each package the wheel ships (the
    demo's extra aside: its own test is below)."""
    shipped = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    # A package's path in the checkout (config/pallycon_config): its name is the last part.
    product = [p.rsplit("/", 1)[-1] for p in shipped["targets"]["wheel"]["packages"]]
    probe = (
        "import importlib, pkgutil, sys\n"
        "failed = []\n"
        "for top in sys.argv[1:]:\n"
        "    package = importlib.import_module(top)\n"
        "    for found in pkgutil.walk_packages(package.__path__, top + '.'):\n"
        "        if found.name.endswith('.__main__'):\n"
        "            continue\n"
        "        try:\n"
        "            importlib.import_module(found.name)\n"
        "        except ImportError as exc:\n"
        "            failed.append(f'{found.name}: {exc}')\n"
        "print('\\n'.join(failed))\n"
    )
    done = subprocess.run(
        [str(image.venv / "bin" / "python"), "-c", probe, *product], cwd=tmp_path,
        env=installed_env(image.venv), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"not importable in the image:\n{done.stdout}"


def test_the_compose_stack_runs_from_the_environment(stack: Stack):
    """Every service of ours started from the environment (else the fixture fails with its
    output) and passes its compose health check; the user's steps complete a job; the
    exporter and the console serve. One test: the stack starts once (some seconds of CPU)."""
    _health_checks_pass(stack)
    _the_walkthrough_completes_a_job(stack)
    _the_exporter_and_the_console_serve(stack)


def _health_checks_pass(stack: Stack) -> None:
    """Each compose service that runs the image passes its own health check (the worker's:
    pallycon-pack health --check redis,api,workers --this-host), retried as compose retries
    it while the service starts."""
    ours = [n for n, s in SERVICES.items() if str(s.get("image", "")).startswith("pallycon")]
    assert sorted(ours) == sorted([*stack.servers, "worker"])
    for name in ours:
        check = stack.health_command(name)
        deadline = time.monotonic() + 30
        while True:
            done = subprocess.run(
                check, env=stack.env(name), cwd=stack.root, capture_output=True, timeout=30,
                check=False,
            )  # fmt: skip
            if done.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert done.returncode == 0, f"{name}: {shlex.join(check)}:\n{_output(done)}"


def _user_steps() -> list[tuple[str, list[str], str | None]]:
    """docs/OPERATIONS.md's ``docker compose exec SERVICE pallycon-pack ...`` lines: (service,
    arguments, the file on standard input)."""
    section = OPERATIONS.split("## Docker Compose", 1)[1].split("\n## ", 1)[0]
    line = re.compile(r"^\$ docker compose exec (?:-T )?(\w+) pallycon-pack (.+?)(?: < (\S+))?$")
    matches = [line.match(text) for text in section.splitlines()]
    return [(m.group(1), shlex.split(m.group(2)), m.group(3)) for m in matches if m]


def _the_walkthrough_completes_a_job(stack: Stack) -> None:
    """The user's steps of docs/OPERATIONS.md, in order, each in its service's environment:
    health, storage register, submit --wait of examples/job.json (completed), requests show,
    tokens add in the HTTP API's; then the outputs are in the emulator's volume, and the HTTP
    API's service answers the request's record to that token."""
    steps = _user_steps()
    commands = [" ".join(args[:2]) for _, args, _ in steps]
    wanted = {"health", "storage register", "submit -", "requests show", "tokens add"}
    assert wanted <= set(commands), commands
    token = None
    for service, args, stdin in steps:
        if args[0] == "submit":
            args = [*args, "--timeout", "45"]  # a hung job fails here, with its progress shown
        env = stack.env(service, AWS_SECRET_ACCESS_KEY=AWS_SECRET)  # as typed at the prompt
        data = (ROOT / stdin).read_bytes() if stdin else None
        done = cli(
            *args, env=env, cwd=stack.root, stdin=data, timeout=60, program=stack.image.program
        )
        assert done.returncode == 0, f"pallycon-pack {shlex.join(args)}:\n{_output(done)}"
        if args[:2] == ["storage", "register"]:
            assert done.stdout.decode().strip() == "ST000001", _output(done)
        if args[0] == "requests":
            shown = done.stdout.decode()
            assert re.search(r"^state +completed$", shown, re.MULTILINE), shown
        if args[:2] == ["tokens", "add"]:
            token = done.stdout.decode().strip()
    packaged = stack.mounts["/data"] / "my-bucket" / "packaged"
    assert any(path.is_file() for path in packaged.rglob("*")), f"no outputs in {packaged}"
    answer = httpx.get(
        f"{stack.servers['http'].url}/v1/requests/movie-1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["record"]["state"] == "completed"


def _the_exporter_and_the_console_serve(stack: Stack) -> None:
    """The exporter (a Kubernetes Deployment of the image) and the console start and answer."""
    env = stack.env("worker")  # the settings any container of ours has
    for command, path in (("metrics", "/metrics"), ("console", "/api/summary")):
        server = ServerProcess.start(
            command, "--port", "0", env=env, cwd=stack.root, program=stack.image.program
        )
        try:
            response = httpx.get(f"{server.url}{path}", timeout=10)
        finally:
            server.stop()
        assert response.status_code == 200, f"{command}: {response.status_code} {response.text}"
        if command == "metrics":
            assert re.search(r"^pallycon_pack_up 1\.0$", response.text, re.MULTILINE)
        else:
            assert isinstance(response.json(), dict)


def test_the_demo_says_in_one_line_that_the_image_lacks_its_extra(image: Image, tmp_path: Path):
    """`pallycon-pack demo` needs the `demo` extra, which the image leaves out: one line naming
    what is missing and how to get it, exit 2, no traceback."""
    done = cli("demo", env=installed_env(image.venv), cwd=tmp_path, program=image.program)
    err = done.stderr.decode()
    assert done.returncode == 2, _output(done)
    assert err.count("\n") == 1, err
    assert "the demo needs its extra dependencies" in err
    assert "pallycon-pack[demo]" in err
