"""docker-compose.yml, the Dockerfile and .dockerignore agree with the compose spec and the code.

No Docker engine runs here, so the files are parsed: the compose file is validated against the
compose spec's JSON schema (the copy check-jsonschema vendors), then checked against the real
CLI (each command and health check parses with the click commands), the settings classes, the
servers' routes, the examples it must serve, and the .env that the README has users copy.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import jsonschema  # type: ignore[import-untyped]  # no types-jsonschema among the dev dependencies
import pytest
import yaml

import pallycon_emulator.app
import pallycon_pack.web.callbacks
import pallycon_pack.web.http_api.app
from pallycon_config import ENV_PREFIX, Settings, env_name
from pallycon_config.secrets import FILE_SUFFIX, secret_fields
from pallycon_config.settings import HARD_TIME_LIMIT_SHARE
from pallycon_pack.cli.fleet.commands import parse_checks
from pallycon_pack.web.http_api.settings import HttpSettings
from support.deployment import (
    EMULATOR_SETTINGS,
    HTTP_SETTINGS,
    INTERPOLATION,
    MAIN_SETTINGS,
    ROOT,
    SETTINGS,
    interpolate,
    parse,
    read_env_file,
)

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
DOCKERFILE = (ROOT / "Dockerfile").read_text()
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
#: The services that run the pallycon-pack image (the others, Redis, run images of their own).
OURS = {name: s for name, s in SERVICES.items() if str(s.get("image", "")).startswith("pallycon")}

#: The settings each subcommand run as a service reads (the emulator: its own and the site's).
READS = {
    "worker": MAIN_SETTINGS,
    "callbacks": MAIN_SETTINGS,
    "emulator": MAIN_SETTINGS | EMULATOR_SETTINGS,
    "http": MAIN_SETTINGS | HTTP_SETTINGS,
}
#: The secret settings (every SecretStr field), by variable.
SECRETS = {env_name(name) for name in secret_fields(Settings)}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
#: The paths the build context must never hold: secrets, the local environment, bulky output.
NEVER_IN_CONTEXT = [
    ".env",
    ".venv",
    ".git",
    "build",
    "dist",
    "secrets",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
]


def environment(service: dict[str, Any]) -> dict[str, str]:
    value = service.get("environment") or {}
    assert isinstance(value, dict), "write environment: as a mapping (NAME: value)"
    return {str(k): str(v) for k, v in value.items()}


def health_command(name: str) -> list[str]:
    test = SERVICES[name]["healthcheck"]["test"]
    assert isinstance(test, list), f"service {name}: write its health check as a CMD list"
    assert test[0] == "CMD", f"service {name}: health check must be CMD (the image has no curl)"
    return [str(word) for word in test[1:]]


def published(name: str, env: dict[str, str]) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) of each port the service publishes."""
    found = []
    for entry in SERVICES[name].get("ports", []):
        text = interpolate(str(entry), env)
        address, host_port, container_port = text.rsplit(":", 2)
        found.append((address, int(host_port), int(container_port)))
    return found


# --- The compose file -----------------------------------------------------------------------


@functools.cache
def compose_validator() -> Any:
    """A validator of the compose spec's schema (the copy check-jsonschema vendors: offline)."""
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(vendored.read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def schema_errors(document: dict[str, Any]) -> list[str]:
    """What the compose spec's schema finds wrong in ``document``."""
    errors = sorted(compose_validator().iter_errors(document), key=lambda e: list(e.path))
    return [f"{'/'.join(map(str, e.path)) or '(top)'}: {e.message}" for e in errors]


def test_compose_file_is_valid_against_the_compose_spec():
    """docker-compose.yml validates against the compose spec's schema (vendored, offline)."""
    errors = schema_errors(COMPOSE)
    assert not errors, "docker-compose.yml: " + "; ".join(errors)


def test_one_image_built_once_runs_every_pallycon_pack_service():
    """Exactly one service builds the image (with pull_policy build); every other service of
    ours runs that same image and never tries to pull it from a registry."""
    builders = [name for name, s in SERVICES.items() if "build" in s]
    assert builders == ["worker"], f"services with build: {builders}; want the worker alone"
    image = SERVICES["worker"]["image"]
    assert set(OURS) == {"emulator", "worker", "callbacks", "http"}, f"our services: {sorted(OURS)}"
    for name, service in OURS.items():
        assert service["image"] == image, f"service {name} runs {service['image']}, not {image}"
        want = "build" if name == "worker" else "never"
        assert service.get("pull_policy") == want, f"service {name}: pull_policy is not {want}"
        assert service.get("init") is True, f"service {name}: no init (PID 1 reaping, signals)"


@pytest.mark.parametrize("name", sorted(OURS))
def test_each_command_is_a_real_subcommand_whose_options_parse(name: str):
    """Each service's command and health check (when it runs pallycon-pack) parse with the
    real click commands: subcommand, option names and value types."""
    parse([str(word) for word in SERVICES[name]["command"]], f"service {name}")
    check = health_command(name)
    if check[0] == "pallycon-pack":
        parse(check[1:], f"service {name}, health check")


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_restarts_and_has_a_health_check(name: str):
    """Each service restarts by itself and reports its health."""
    service = SERVICES[name]
    assert service.get("restart") in {"always", "unless-stopped", "on-failure"}, (
        f"service {name}: no restart policy"
    )
    assert service.get("healthcheck", {}).get("test"), f"service {name}: no health check"


def test_the_worker_is_judged_by_pallycon_pack_health():
    """The worker's health check is `pallycon-pack health` on Redis, the API and this
    container's own workers: a wrong API URL or credentials make it unhealthy, not a silent
    retry loop."""
    check = parse(health_command("worker")[1:], "service worker, health check")
    try:
        chosen = parse_checks(check["checks"])
    except click.BadParameter as exc:
        pytest.fail(f"service worker, health check: {exc.format_message()}")
    assert chosen == ["redis", "api", "workers"], f"service worker checks {chosen}"
    assert check["this_host"], "service worker: its health check judges other workers too"
    limit = check["timeout"] * 3  # the checks run one after another, each bounded
    docker_timeout = SERVICES["worker"]["healthcheck"]["timeout"]
    assert int(docker_timeout.rstrip("s")) > limit, "the probe's timeout is below its checks'"


def test_the_servers_health_checks_probe_their_own_health_routes():
    """The emulator's, the receiver's and the HTTP API's checks fetch a health route that the
    server has, on the port its command listens on (the image has Python, no curl)."""
    routes = {
        "emulator": Path(pallycon_emulator.app.__file__).read_text(),
        "callbacks": Path(pallycon_pack.web.callbacks.__file__).read_text(),
        "http": Path(pallycon_pack.web.http_api.app.__file__).read_text(),
    }
    for name, source in routes.items():
        check = " ".join(health_command(name))
        match = re.search(r"http://127\.0\.0\.1:(\d+)(/[\w/]+)", check)
        assert match, f"service {name}: its health check fetches no local URL"
        port = parse(SERVICES[name]["command"], f"service {name}")["port"]
        assert int(match.group(1)) == port, f"service {name}: health check port is not {port}"
        assert f'Route("{match.group(2)}"' in source, f"service {name}: no route {match.group(2)}"


def test_depends_on_waits_for_conditions_that_can_be_met():
    """Every dependency names a condition; a service waited for as healthy has a health check;
    only a dependency in a profile may be optional."""
    for name, service in SERVICES.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"service {name}: depends_on without conditions"
        for other, rule in depends.items():
            assert other in SERVICES, f"service {name} depends on unknown {other}"
            assert "condition" in rule, f"service {name}: depends_on {other} has no condition"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[other], f"{other} has no health check"
            if rule.get("required") is False:
                assert SERVICES[other].get("profiles"), f"{name}: {other} is always there"
    assert SERVICES["worker"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert SERVICES["callbacks"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert SERVICES["http"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_the_emulator_is_in_a_profile_and_nothing_else_is():
    """`docker compose up` runs without the emulator; `--profile emulator` adds it."""
    profiled = {name: s["profiles"] for name, s in SERVICES.items() if "profiles" in s}
    assert profiled == {"emulator": ["emulator"]}


def test_every_variable_set_is_a_setting_and_every_interpolated_one_is_known():
    """Every PALLYCON_* a container is given is a real setting; every ${...} the file reads is
    either a setting or one of the STACK_* variables docs/OPERATIONS.md describes."""
    for name, service in OURS.items():
        for variable in environment(service):
            assert variable in SETTINGS, f"service {name}: {variable} is not a setting"
    operations = (ROOT / "docs" / "OPERATIONS.md").read_text()
    section = operations.split("## Docker Compose", 1)[1].split("\n## ", 1)[0]
    for variable in set(INTERPOLATION.findall(COMPOSE_TEXT)):
        name = variable[0]
        if name.startswith(ENV_PREFIX):
            assert name in SETTINGS, f"docker-compose.yml reads {name}, which is not a setting"
        else:
            assert name.startswith("STACK_"), f"docker-compose.yml reads {name}: name it STACK_*"
            assert f"`{name}`" in section, f"{name} is not in docs/OPERATIONS.md#docker-compose"


@pytest.mark.parametrize("uncomment", [False, True], ids=["as-copied", "every-line-on"])
def test_the_walkthrough_env_never_points_a_container_at_itself(uncomment: bool):
    """With the .env the README has users copy (and with every commented line of it turned on),
    no setting a container's process reads is a loopback address of another service: the worker
    talks to the emulator and Redis by their service names. Loopback stays only in listen
    addresses (*_HOST), which the servers' --host flags replace."""
    env = read_env_file((ROOT / ".env.example").read_text(), uncomment=uncomment)
    if not uncomment:
        assert urlsplit(env["PALLYCON_API_URL"]).hostname in LOOPBACK, (
            "premise: .env.example's PALLYCON_API_URL is for commands run on this machine"
        )
    for name, service in OURS.items():
        effective = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
        effective |= {k: interpolate(v, env) for k, v in environment(service).items()}
        reads = READS[str(service["command"][0])]
        for variable, value in effective.items():
            if variable not in reads:
                continue
            host = urlsplit(value).hostname if "://" in value else None
            if host in LOOPBACK:
                pytest.fail(f"service {name}: {variable}={value} is the container itself")
            if value in LOOPBACK:
                assert variable.endswith("_HOST"), f"service {name}: {variable}={value}"
    worker = {k: interpolate(v, env) for k, v in environment(SERVICES["worker"]).items()}
    if "STACK_API_URL" not in env:
        assert worker["PALLYCON_API_URL"] == "http://emulator:8600"
    if "STACK_REDIS_URL" not in env:
        assert urlsplit(worker["PALLYCON_REDIS_URL"]).hostname == "redis"


def test_stack_api_url_reaches_the_workers():
    """STACK_API_URL in .env is what the workers use: the switch to the real PallyCon."""
    env = {"STACK_API_URL": "https://api.pallycon.com", "PALLYCON_API_URL": "http://127.0.0.1:8600"}
    for name, service in OURS.items():
        url = interpolate(environment(service)["PALLYCON_API_URL"], env)
        assert url == "https://api.pallycon.com", f"service {name}: {url}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_published_ports_match_the_commands_and_stay_on_this_machine(name: str):
    """Each published port is the port the service's command listens on, and by default it is
    published on 127.0.0.1 only (Redis has no password; the others sit behind a proxy)."""
    ports = published(name, {})
    if name == "worker":
        assert not ports, "the worker listens on nothing"
        return
    assert len(ports) == 1, f"service {name}: publish exactly one port"
    address, host_port, container_port = ports[0]
    assert address == "127.0.0.1", f"service {name}: published on {address!r} by default"
    listens = 6379 if name == "redis" else parse(SERVICES[name]["command"], name)["port"]
    assert container_port == listens, f"service {name}: publishes {container_port}, not {listens}"
    assert host_port == container_port, f"service {name}: the README's port is {container_port}"
    if name in OURS:
        assert parse(SERVICES[name]["command"], name)["host"] == "0.0.0.0"  # noqa: S104


def test_the_http_api_serves_on_its_settings_port_and_is_judged_ready_by_redis():
    """The HTTP API listens (and is published) on PALLYCON_HTTP_PORT's default, the port
    docs/HTTP.md's examples use; its health check is the readiness route, which answers 503
    while Redis does not."""
    port = HttpSettings.model_fields["port"].default
    assert parse(SERVICES["http"]["command"], "service http")["port"] == port
    assert published("http", {}) == [("127.0.0.1", port, port)]
    assert f"http://127.0.0.1:{port}/health/ready" in " ".join(health_command("http"))
    assert "STACK_HTTP_PUBLISH" in str(SERVICES["http"]["ports"][0])


def test_redis_is_durable_and_published_for_the_walkthrough():
    """Redis keeps its data (AOF) and never evicts; `docker compose up redis` gives the
    walk-through's localhost:6379, which is where the settings look by default."""
    command = " ".join(SERVICES["redis"]["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert published("redis", {}) == [("127.0.0.1", 6379, 6379)]
    default = urlsplit(Settings.model_fields["redis_url"].default)
    assert (default.hostname, default.port) == ("localhost", 6379)


def test_a_stop_lets_the_workers_running_steps_finish():
    """The worker's stop grace period outlasts Celery's hard task time limit at the default
    visibility timeout, so `docker compose stop` is a warm shutdown."""
    grace = SERVICES["worker"]["stop_grace_period"]
    match = re.fullmatch(r"(\d+)(s|m)", grace)
    assert match, f"stop_grace_period {grace!r}: write it as Ns or Nm"
    seconds = int(match.group(1)) * (60 if match.group(2) == "m" else 1)
    hard_limit = HARD_TIME_LIMIT_SHARE * Settings.model_fields["visibility_timeout"].default
    assert seconds > hard_limit


# --- The emulator's seeded data ---------------------------------------------------------------


def _example_inputs() -> list[str]:
    lines = (ROOT / "examples" / "backfill.jsonl").read_text().splitlines()
    bodies = [json.loads((ROOT / "examples" / "job.json").read_text())]
    bodies += [json.loads(line)["body"] for line in lines if line.strip()]
    return [path for body in bodies for path in body["storage"]["input"]["contents_path"]]


def test_the_emulators_data_directory_is_seeded_with_every_example_input():
    """Under compose the emulator reads a data directory: the image seeds it (the volume starts
    as a copy) with every input examples/ names, in the bucket the README registers."""
    data_dir = environment(SERVICES["emulator"])["PALLYCON_EMULATOR_DATA_DIR"]
    assert f"emulator-data:{data_dir}" in SERVICES["emulator"]["volumes"]
    seed = re.search(rf"^COPY (\S+) {re.escape(data_dir)}/?$", DOCKERFILE, flags=re.MULTILINE)
    assert seed, f"the Dockerfile seeds nothing into {data_dir}"
    readme = (ROOT / "README.md").read_text()
    buckets = set(re.findall(r"pallycon-pack storage register .*--bucket (\S+)", readme))
    assert buckets, "the README registers no storage"
    inputs = _example_inputs()
    assert len(inputs) >= 3
    for bucket in buckets:
        for path in inputs:
            seeded = ROOT / seed.group(1) / bucket / path
            assert seeded.is_file(), f"{seeded.relative_to(ROOT)} is missing"
            assert seeded.stat().st_size > 0, f"{seeded.relative_to(ROOT)} is empty"


# --- The Dockerfile and .dockerignore ---------------------------------------------------------


def test_the_dockerfile_copies_every_shipped_package_and_runs_the_cli():
    """The image holds every top-level package the wheel ships, and its entry point is the
    pallycon-pack command."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    folders = {package.split("/")[0] for package in packages}  # config/pallycon_config: config
    copied = set(re.findall(r"^COPY (\S+) \./\1/?$", DOCKERFILE, flags=re.MULTILINE))
    assert folders <= copied, f"the Dockerfile misses {folders - copied}"
    assert re.search(r'^ENTRYPOINT \["pallycon-pack"\]$', DOCKERFILE, flags=re.MULTILINE)
    assert "uv sync --frozen --no-dev" in DOCKERFILE


def test_the_dockerfile_pins_uv():
    """uv is installed at one exact version, so every build resolves uv.lock the same way."""
    installs = re.findall(r"pip install[^\n]*?\buv\b(\S*)", DOCKERFILE)
    assert installs, "the Dockerfile does not install uv with pip"
    for version in installs:
        assert re.fullmatch(r"==\d+\.\d+\.\d+", version), f"uv is not pinned: uv{version}"


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore ``patterns`` exclude ``path`` (relative to the context), with the
    last matching pattern winning as Docker's do (``!`` re-includes)."""
    verdict = False
    parts = path.split("/")
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern.lstrip("!").strip("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(prefix, body) for prefix in prefixes):
            verdict = not negated
    return verdict


def test_the_build_context_leaves_out_secrets_and_bulk_but_not_what_the_image_copies():
    """.dockerignore keeps secrets (.env, secrets/), the local environment, caches, build
    output and history out of the build context, and none of what the Dockerfile copies."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for path in NEVER_IN_CONTEXT:
        assert _ignored(path, patterns), f".dockerignore does not exclude {path}"
        assert _ignored(f"{path}/inner", patterns) or path == ".env", f"{path}/ leaks"
    sources = re.findall(r"^COPY (.+) \S+$", DOCKERFILE, flags=re.MULTILINE)
    for source in (word for line in sources for word in line.split()):
        assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which is missing"
        assert not _ignored(source, patterns), f".dockerignore excludes {source}, copied"


# --- The override files of examples/ ----------------------------------------------------------

#: The override files docs/OPERATIONS.md and docs/CONFIGURATION.md give.
OVERRIDES = sorted((ROOT / "examples").glob("compose-*.override.yml"))
#: Lists compose merges (by target or as a set) rather than replaces, as far as these files
#: use them; any other list (a command) is replaced whole.
_MERGED_LISTS = {"volumes", "secrets", "ports"}


def merge(base: Any, override: Any, key: str = "") -> Any:
    """``override`` merged into ``base`` as `docker compose -f base -f override` does for the
    keys these files use: mappings merged key by key, volumes and secrets added, the rest
    (a command) replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for name, value in override.items():
            merged[name] = merge(base[name], value, name) if name in base else value
        return merged
    if isinstance(base, list) and isinstance(override, list) and key in _MERGED_LISTS:
        return base + [item for item in override if item not in base]
    return override


def load_override(path: Path) -> dict[str, Any]:
    override: dict[str, Any] = yaml.safe_load(path.read_text())
    return override


def mount_targets(service: dict[str, Any]) -> dict[str, str]:
    """Where each file the service mounts appears in the container -> its source on the host
    (bind mounts, and compose secrets at /run/secrets/<name>)."""
    targets = {}
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):  # the long form
            targets[entry["target"]] = entry["source"]
            continue
        source, target, *_ = str(entry).split(":")
        targets[target] = source
    for name in service.get("secrets", []):
        targets[f"/run/secrets/{name}"] = f"secret {name}"
    return targets


def test_the_override_files_are_found():
    names = {path.name for path in OVERRIDES}
    assert names == {"compose-sites.override.yml", "compose-secrets.override.yml"}
    for doc in ("docs/OPERATIONS.md", "docs/CONFIGURATION.md"):
        text = (ROOT / doc).read_text()
        assert any(f"examples/{name}" in text for name in names), f"{doc} names none"


@pytest.mark.parametrize("path", OVERRIDES, ids=lambda p: p.name)
def test_each_override_merged_with_the_compose_file_is_valid_and_keeps_its_commands(path: Path):
    """Merged with docker-compose.yml the file validates against the compose spec; it changes
    only services that exist; a command it gives keeps the main file's (nothing dropped, such
    as the worker's --concurrency) and parses; every variable is a setting."""
    override = load_override(path)
    merged = merge(COMPOSE, override)
    errors = schema_errors(merged)
    assert not errors, f"{path.name} over docker-compose.yml: " + "; ".join(errors)
    for name, service in override["services"].items():
        assert name in SERVICES, f"{path.name}: no service {name} in docker-compose.yml"
        if "command" in service:
            base = [str(word) for word in SERVICES[name]["command"]]
            command = [str(word) for word in service["command"]]
            assert command[: len(base)] == base, f"{path.name}: {name}'s command drops {base}"
            parse(command, f"{path.name}, service {name}")
        for variable in environment(service):
            assert variable in SETTINGS, f"{path.name}: {name}: {variable} is not a setting"
        assert "healthcheck" not in service, f"{path.name}: {name}: keep the main health check"


@pytest.mark.parametrize("path", OVERRIDES, ids=lambda p: p.name)
def test_each_file_an_override_names_is_mounted_from_an_ignored_secrets_directory(path: Path):
    """Every path a setting or an option of the override names in a container is mounted
    there, from secrets/ (ignored by git and by the Docker build context) or as a compose
    secret whose file is there."""
    override = load_override(path)
    merged = merge(COMPOSE, override)
    gitignore = (ROOT / ".gitignore").read_text().splitlines()
    dockerignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    named = 0
    for name in override["services"]:
        service = merged["services"][name]
        mounted = mount_targets(service)
        paths = [v for k, v in environment(service).items() if k.endswith("_FILE")]
        paths += [v for k, v in environment(service).items() if k == "PALLYCON_SITES"]
        command = [str(word) for word in service["command"]]
        if "--sites-file" in command:
            paths.append(command[command.index("--sites-file") + 1])
        for wanted in paths:
            named += 1
            assert wanted in mounted, f"{path.name}: {name}: {wanted} is not mounted"
        for source in mount_targets(override["services"][name]).values():  # those it adds
            if source.startswith("secret "):
                source = merged["secrets"][source.removeprefix("secret ")]["file"]
            assert source.startswith("./secrets/"), f"{path.name}: {name} mounts {source}"
            assert _ignored(source.removeprefix("./"), dockerignore), f"{source} is in the context"
            assert "secrets/" in gitignore, "secrets/ is not in .gitignore"
    assert named >= 3


@pytest.mark.parametrize("path", OVERRIDES, ids=lambda p: p.name)
def test_a_file_an_override_mounts_must_exist(path: Path):
    """Written out long with ``create_host_path: false``: the short form makes an empty
    directory where the file is missing, and the service starts without it (a sites file
    that is a directory: no other site served, and no error)."""
    for name, service in load_override(path)["services"].items():
        for entry in service.get("volumes", []):
            assert isinstance(entry, dict), f"{path.name}: {name}: {entry} in the short form"
            if entry["type"] == "bind":
                assert entry["bind"]["create_host_path"] is False, f"{path.name}: {name}"


def test_the_sites_override_gives_both_readers_the_sites_and_the_emulator_their_callbacks():
    """PALLYCON_SITES reaches the worker and the receiver (not .env, which every container
    reads), the same file in both; the emulator POSTs each site's callbacks to the receiver's
    per-site path on its port."""
    [path] = [p for p in OVERRIDES if p.name == "compose-sites.override.yml"]
    merged = merge(COMPOSE, load_override(path))
    services = merged["services"]
    sites = {name: environment(services[name]).get("PALLYCON_SITES") for name in services}
    assert sites["worker"]
    assert sites["worker"] == sites["callbacks"]
    assert not sites["redis"]
    assert not sites["emulator"]
    assert mount_targets(services["worker"]) == mount_targets(services["callbacks"])
    port = parse(services["callbacks"]["command"], "service callbacks")["port"]
    urls = environment(services["emulator"])["PALLYCON_EMULATOR_CALLBACK_URLS"].split()
    assert urls
    for entry in urls:
        site, url = entry.split("=", 1)
        parts = urlsplit(url)
        assert (parts.hostname, parts.port) == ("callbacks", port), entry
        assert re.fullmatch(rf"/callback/{site}/[^/]{{16,}}", parts.path), entry
    env = read_env_file((ROOT / ".env.example").read_text(), uncomment=True)
    assert "PALLYCON_SITES" in env  # premise: .env.example shows it, for commands run here


def test_the_secrets_override_gives_each_service_the_secrets_it_needs_as_files():
    """The worker gets the site's keys and the webhook key (it signs both), the receiver its
    callback token, each as a file and never as a variable; no other service is touched (the
    HTTP API, the emulator: none of these is theirs)."""
    [path] = [p for p in OVERRIDES if p.name == "compose-secrets.override.yml"]
    override = load_override(path)
    wanted = {
        "worker": {
            "PALLYCON_SITE_KEY_FILE",
            "PALLYCON_ACCESS_KEY_FILE",
            "PALLYCON_WEBHOOK_KEY_FILE",
        },
        "callbacks": {"PALLYCON_CALLBACK_TOKEN_FILE"},
    }
    assert set(override["services"]) == set(wanted)
    for name, variables in wanted.items():
        env = environment(override["services"][name])
        assert set(env) == variables, name
        assert not {v.removesuffix("_FILE") for v in variables} & set(env)


@pytest.mark.parametrize("path", [ROOT / "docker-compose.yml", *OVERRIDES], ids=lambda p: p.name)
def test_no_secret_is_written_in_a_compose_file(path: Path):
    """No service is given a secret's value in the file: a secret reaches a container from
    .env (env_file) or as a file mounted in the container (PALLYCON_<NAME>_FILE, a path under
    /run); a value names a secret only as ``${...}`` of .env."""
    document = yaml.safe_load(path.read_text())
    assert {"PALLYCON_SITE_KEY", "PALLYCON_WEBHOOK_KEY"} <= SECRETS  # premise
    for name, service in document["services"].items():
        for variable, value in environment(service).items():
            assert variable not in SECRETS, f"{path.name}: {name} sets {variable} in the file"
            if variable.removesuffix(FILE_SUFFIX) in SECRETS:
                assert value.startswith("/run/"), f"{path.name}: {name}: {variable}={value}"
            for secret in SECRETS & set(re.findall(r"PALLYCON_\w+", value)):
                assert f"${{{secret}" in value, f"{path.name}: {name}: {variable} names {secret}"
