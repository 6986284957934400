"""The Kubernetes manifests under deploy/kubernetes/: valid against the Kubernetes schemas
(kubernetes-validate, strict, offline), the custom resources (KEDA, the Prometheus Operator) with
the fields their operators require, and every setting, command, port, list name and metric in
them checked against the code that will run them."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from pydantic import SecretStr

import pallycon_pack.web.callbacks
from pallycon_config import Settings
from pallycon_config.rules import ENV_PREFIX, SITES_VARIABLE, check_webhook_key, env_name
from pallycon_config.secrets import secret_fields
from pallycon_config.settings import parse_sentinels
from pallycon_config.sites import FIELDS, REQUIRED, load_callback_tokens, read_sites
from pallycon_pack.cli.fleet.commands import parse_checks
from pallycon_pack.cli.servers.run import celery_worker_argv
from pallycon_pack.web.callbacks import MAX_BODY_BYTES
from pallycon_pack.web.exporter import api_metrics, counter_metrics, fleet_metrics
from pallycon_pack.web.http_api.contract import OPENAPI
from pallycon_pack.web.http_api.settings import ENV_PREFIX as HTTP_PREFIX
from pallycon_pack.web.http_api.settings import HttpSettings
from pallycon_store.api_calls import ApiCalls
from pallycon_store.fleet import Intake, Schedule, Snapshot
from pallycon_store.keys import Keys
from support.deployment import HTTP_SETTINGS, ROOT, parse, promql_metrics

KUBE = ROOT / "deploy" / "kubernetes"
#: The oldest Kubernetes release still widely run that the manifests target, and the newest the
#: validator knows.
VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
#: Kinds defined by operators (CRDs): kubernetes-validate has no schema for them.
CUSTOM = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor"}
#: Files not in the kustomization: the Secret (created from files, never overwritten by an
#: apply) and the resources that need an operator installed first.
NOT_KUSTOMIZED = {"secret.yaml", "scaledobject.yaml", "servicemonitor.yaml"}
#: Secrets as files (config/): a directory holding one file per secret, named like its variable.
SECRETS_DIR_VAR = f"{ENV_PREFIX}SECRETS_DIR"
#: The secret settings, by variable (config/secrets.py: every SecretStr field).
SECRET_SETTINGS = {env_name(name) for name in secret_fields(Settings)}
#: The Redis passwords: every container mounts them when the Secret holds them (optional).
REDIS_SECRETS = {env_name(name) for name in secret_fields(Settings) if name.startswith("redis_")}
#: The other secrets each component needs: the pod does not start without them.
NEEDS = {
    "worker": {"PALLYCON_SITE_KEY", "PALLYCON_ACCESS_KEY"},
    "callbacks": {"PALLYCON_CALLBACK_TOKEN"},
    "metrics": set(),
    "http": set(),  # its tokens are in Redis, hashed; the sites are those workers announce
}
#: The webhook key, which opens the endpoints' secrets: the workers sign the deliveries, and an
#: operator's ``webhooks add`` runs in a worker pod. Mounted when the Secret holds it (a fleet
#: without webhook endpoints runs without one), into them alone.
WEBHOOK_KEY = env_name("webhook_key")
#: The secrets each component mounts when the Secret holds them.
OPTIONAL = {
    "worker": REDIS_SECRETS | {WEBHOOK_KEY},
    "callbacks": REDIS_SECRETS,
    "metrics": REDIS_SECRETS,
    "http": REDIS_SECRETS,
}
#: The several-sites Component (docs/OPERATIONS.md, "Several sites").
SITES = KUBE / "sites"
IMAGE = "pallycon-pack"
PROGRAM = "pallycon-pack"


def documents() -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(KUBE.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        found.extend((path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc)
    return found


DOCS = documents()


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in DOCS if doc["kind"] == kind]


def named(kind: str, name: str) -> dict[str, Any]:
    [doc] = [doc for doc in of_kind(kind) if doc["metadata"]["name"] == name]
    return doc


def config_map() -> dict[str, str]:
    [doc] = of_kind("ConfigMap")
    data: dict[str, str] = doc["data"]
    return data


def containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(Deployment, container) for every container of every Deployment."""
    for deployment in of_kind("Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            yield deployment, container


def container(component: str) -> dict[str, Any]:
    [found] = [
        c
        for d, c in containers()
        if d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return found


def argv(container: dict[str, Any]) -> list[str]:
    """The container's command line (the image's entrypoint is pallycon-pack)."""
    return [*container.get("command", [PROGRAM]), *container.get("args", [])]


def probe_commands(container: dict[str, Any]) -> list[list[str]]:
    return [
        probe["exec"]["command"]
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
        if "exec" in (probe := container.get(kind, {}))
    ]


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


# --- Schemas --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_every_builtin_manifest_is_valid_for_kubernetes(version: str):
    kinds = set()
    for filename, doc in DOCS:
        if doc["kind"] in CUSTOM:
            continue
        kinds.add(doc["kind"])
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{filename}: {doc['kind']} {doc['metadata']['name']}: {exc.message}")
    wanted = {"Namespace", "ConfigMap", "Secret", "Deployment", "Service", "Ingress"}
    assert wanted | {"PodDisruptionBudget"} == kinds


def test_the_validator_refuses_an_unknown_field_and_a_wrong_type():
    worker = copy.deepcopy(named("Deployment", "pallycon-pack-worker"))
    worker["spec"]["template"]["spec"]["terminationGracePeriod"] = 300
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, VERSIONS[0], strict=True)
    worker = copy.deepcopy(named("Deployment", "pallycon-pack-worker"))
    worker["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, VERSIONS[0], strict=True)


_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}},
}
#: What KEDA (keda.sh/v1alpha1) and the Prometheus Operator (monitoring.coreos.com/v1) require
#: of the fields used here, from their CRDs and scaler docs: unknown fields are refused.
SCHEMAS: dict[str, dict[str, Any]] = {
    "TriggerAuthentication": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["secretTargetRef"],
                "properties": {
                    "secretTargetRef": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["parameter", "name", "key"],
                            "properties": {
                                # The parameters KEDA's redis scalers take from a Secret.
                                "parameter": {
                                    "enum": [
                                        "username",
                                        "password",
                                        "sentinelUsername",
                                        "sentinelPassword",
                                        "tls",
                                        "ca",
                                        "cert",
                                        "key",
                                        "keyPassword",
                                    ]
                                },
                                "name": {"type": "string"},
                                "key": {"type": "string"},
                            },
                        },
                    }
                },
            },
        },
    },
    "ScaledObject": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["scaleTargetRef", "triggers"],
                "properties": {
                    "scaleTargetRef": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "kind": {"type": "string"},
                            "apiVersion": {"type": "string"},
                        },
                    },
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "pollingInterval": {"type": "integer", "minimum": 1},
                    "cooldownPeriod": {"type": "integer", "minimum": 0},
                    "advanced": {"type": "object"},
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["type", "metadata"],
                            "properties": {
                                "type": {"enum": ["redis", "redis-sentinel", "prometheus"]},
                                "metadata": _STRING_MAP,
                                "authenticationRef": {
                                    "type": "object",
                                    "required": ["name"],
                                    "properties": {"name": {"type": "string"}},
                                },
                                "name": {"type": "string"},
                            },
                            "allOf": [
                                {
                                    "if": {"properties": {"type": {"const": "redis"}}},
                                    "then": {
                                        "properties": {
                                            "metadata": {
                                                "required": ["address", "listName", "listLength"]
                                            }
                                        }
                                    },
                                },
                                {
                                    "if": {"properties": {"type": {"const": "redis-sentinel"}}},
                                    "then": {
                                        "properties": {
                                            "metadata": {
                                                "required": [
                                                    "addresses",
                                                    "sentinelMaster",
                                                    "listName",
                                                    "listLength",
                                                ]
                                            }
                                        }
                                    },
                                },
                                {
                                    "if": {"properties": {"type": {"const": "prometheus"}}},
                                    "then": {
                                        "properties": {
                                            "metadata": {
                                                "required": ["serverAddress", "query", "threshold"]
                                            }
                                        }
                                    },
                                },
                            ],
                        },
                    },
                },
            },
        },
    },
    "ServiceMonitor": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["selector", "endpoints"],
                "properties": {
                    "selector": {
                        "type": "object",
                        "required": ["matchLabels"],
                        "properties": {"matchLabels": _STRING_MAP},
                    },
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["port"],
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string"},
                                "interval": {"type": "string", "pattern": r"^\d+[smh]$"},
                                "scrapeTimeout": {"type": "string", "pattern": r"^\d+[smh]$"},
                            },
                        },
                    },
                },
            },
        },
    },
}


def test_the_custom_resources_have_what_their_operators_require():
    seen = set()
    for filename, doc in DOCS:
        if doc["kind"] in CUSTOM:
            seen.add(doc["kind"])
            try:
                jsonschema.validate(doc, SCHEMAS[doc["kind"]])
            except jsonschema.ValidationError as exc:
                pytest.fail(f"{filename}: {doc['kind']}: {exc.message}")
    assert seen == CUSTOM
    broken = copy.deepcopy(named("ScaledObject", "pallycon-pack-worker"))
    del broken["spec"]["triggers"][0]["metadata"]["listName"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMAS["ScaledObject"])


def test_the_kustomization_applies_every_manifest_but_the_secret_and_the_operators_ones():
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    files = {path.name for path in KUBE.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files - NOT_KUSTOMIZED
    [namespace] = of_kind("Namespace")
    assert kustomization["namespace"] == namespace["metadata"]["name"]
    for _, doc in DOCS:  # the files kept out of it name the namespace themselves
        assert (
            doc["metadata"].get("namespace", namespace["metadata"]["name"])
            == (namespace["metadata"]["name"])
        )
    assert [image["name"] for image in kustomization["images"]] == [IMAGE]


# --- Against the code -----------------------------------------------------------------------


def test_every_variable_is_a_real_setting_and_the_config_map_values_are_valid():
    settings = {env_name(name) for name in Settings.model_fields}
    http = HTTP_SETTINGS
    used = set(config_map())
    for _, c in containers():
        used |= {env["name"] for env in c.get("env", [])}
    assert {name for name in used if name.startswith(ENV_PREFIX)} == used
    assert used - settings - http == {SECRETS_DIR_VAR}
    own = {name for name in config_map() if name in http}
    values = {name.removeprefix(ENV_PREFIX).lower(): v for name, v in config_map().items()}
    # Each raises on a bad value (the environment not read).
    Settings.model_validate(
        {k: v for k, v in values.items() if f"{ENV_PREFIX}{k.upper()}" in settings}
    )
    HttpSettings.model_validate({n.removeprefix(HTTP_PREFIX).lower(): config_map()[n] for n in own})


def mounted_at(
    deployment: dict[str, Any], c: dict[str, Any], path: str, *, read_only: bool = True
) -> dict[str, Any]:
    """The volume ``c`` mounts at ``path``, read-only (or writable)."""
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    [mount] = [m for m in c["volumeMounts"] if m["mountPath"] == path]
    assert bool(mount.get("readOnly")) is read_only, (c["name"], path)
    volume: dict[str, Any] = volumes[mount["name"]]
    return volume


def test_secrets_are_mounted_files_never_environment_variables():
    [secret] = of_kind("Secret")
    keys = set(secret["stringData"])
    assert keys <= SECRET_SETTINGS
    assert {
        "PALLYCON_SITE_KEY",
        "PALLYCON_ACCESS_KEY",
        "PALLYCON_CALLBACK_TOKEN",
        WEBHOOK_KEY,
    } < keys
    assert "PALLYCON_REDIS_SENTINEL_PASSWORD" in REDIS_SECRETS  # premise: found by its field
    assert not set(config_map()) & SECRET_SETTINGS
    seen = set()
    mounted: set[str] = set()
    for deployment, c in containers():
        component = deployment["spec"]["template"]["metadata"]["labels"][
            "app.kubernetes.io/component"
        ]
        seen.add(component)
        assert "envFrom" not in c or all("secretRef" not in e for e in c["envFrom"])
        envs = {env["name"]: env for env in c.get("env", [])}
        assert all("valueFrom" not in env for env in envs.values()), c["name"]
        volume = mounted_at(deployment, c, envs[SECRETS_DIR_VAR]["value"])
        required: set[str] = set()
        optional: set[str] = set()
        for source in volume["projected"]["sources"]:
            assert source["secret"]["name"] == secret["metadata"]["name"]
            for item in source["secret"]["items"]:
                assert item["key"] in SECRET_SETTINGS, item["key"]
                assert item["path"] == item["key"]  # the file is named like its variable
                (optional if source["secret"].get("optional") else required).add(item["key"])
        # Only what it needs; what it cannot start without must be in the Secret; the Redis
        # passwords (all of them, the sentinels' too) whenever the Secret has them, and the
        # webhook key for the workers alone.
        assert required == NEEDS[component], component
        assert required <= keys
        assert optional == OPTIONAL[component], component
        mounted |= required | optional
    assert seen == set(NEEDS)
    assert keys <= mounted, f"the Secret holds keys no container mounts: {keys - mounted}"


def test_the_example_secret_holds_placeholders_only():
    """No secret in clear in the manifests: the example Secret's values are placeholders, and
    the webhook key's is one the setting refuses (applied by mistake, it opens nothing)."""
    [secret] = of_kind("Secret")
    for key, value in secret["stringData"].items():
        assert "change-me" in value.lower(), f"secret.yaml: {key} is not a placeholder"
    with pytest.raises(ValueError, match="at least 32 characters"):
        check_webhook_key(SecretStr(secret["stringData"][WEBHOOK_KEY]))


def test_every_command_is_a_real_subcommand_whose_options_parse():
    commands = []
    for _, c in containers():
        assert c["image"] == IMAGE
        commands += [argv(c), *probe_commands(c)]
    assert len(commands) >= 6
    for command in commands:
        assert command[0] == PROGRAM, command
        params = parse(command[1:], "deploy/kubernetes")
        if command[1] == "health":
            parse_checks(params["checks"])
        if command[1] == "worker":  # the options going to Celery are ones it is allowed
            celery = celery_worker_argv(4, "INFO", "node", params["celery_args"])
            assert celery[0] == "worker"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f'ENTRYPOINT ["{PROGRAM}"]' in dockerfile


def test_a_bad_option_does_not_parse():
    with pytest.raises(AssertionError, match="--prot"):
        parse(["metrics", "--prot", "9840"], "a test")


def _service_ports(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {port["name"]: port for port in service["spec"]["ports"]}


def _pod_ports(service: dict[str, Any]) -> dict[str | int, int]:
    """The container ports (by name and number) of the pods the Service selects."""
    selector = service["spec"]["selector"]
    found: dict[str | int, int] = {}
    for deployment, c in containers():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        if selector.items() <= labels.items():
            for port in c.get("ports", []):
                found[port["name"]] = found[port["containerPort"]] = port["containerPort"]
    return found


def test_ports_agree_between_processes_containers_probes_services_and_scrapes():
    for _, c in containers():
        numbers = {port["name"]: port["containerPort"] for port in c.get("ports", [])}
        args = argv(c)
        if "--port" in args:
            assert {int(option(args, "--port"))} == set(numbers.values()), c["name"]
            assert option(args, "--host") == "0.0.0.0"  # noqa: S104  # a container listens on all
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            probe = c.get(kind, {})
            for handler in ("httpGet", "tcpSocket"):
                if handler in probe:
                    assert probe[handler]["port"] in numbers, (c["name"], kind)
    assert (
        int(option(argv(container("metrics")), "--port"))
        == Settings.model_fields["metrics_port"].default
    )

    for service in of_kind("Service"):
        pods = _pod_ports(service)
        assert pods, f"Service {service['metadata']['name']} selects no container port"
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in pods

    [monitor] = of_kind("ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    [scraped] = [
        s for s in of_kind("Service") if selector.items() <= s["metadata"]["labels"].items()
    ]
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in _service_ports(scraped)
        assert endpoint["path"] == "/metrics"

    ingress = named("Ingress", "pallycon-pack-callbacks")
    callbacks = container("callbacks")
    assert re.search(r"/callback/", Path(pallycon_pack.web.callbacks.__file__).read_text())
    for rule in ingress["spec"]["rules"]:
        assert rule["host"] in ingress["spec"]["tls"][0]["hosts"]
        [path] = rule["http"]["paths"]
        assert (path["path"], path["pathType"]) == ("/callback/", "Prefix")
        backend = path["backend"]["service"]
        service = named("Service", backend["name"])
        assert backend["port"]["name"] in _service_ports(service)
        assert _pod_ports(service) == {
            p["name"]: p["containerPort"] for p in callbacks["ports"]
        } | {p["containerPort"]: p["containerPort"] for p in callbacks["ports"]}
    size = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert size == f"{MAX_BODY_BYTES // 1024}k"
    paths = {callbacks[k]["httpGet"]["path"] for k in ("livenessProbe", "readinessProbe")}
    assert paths == {"/health/live", "/health/ready"}


#: nginx's size units (``proxy-body-size``).
_NGINX_UNITS = {"": 1, "k": 1024, "m": 1024 * 1024, "g": 1024**3}


def _nginx_size(value: str) -> int:
    match = re.fullmatch(r"(\d+)([kmg]?)", value.lower())
    assert match, f"{value!r} is not an nginx size"
    return int(match.group(1)) * _NGINX_UNITS[match.group(2)]


def test_the_http_api_listens_where_its_probes_service_and_ingress_look():
    """The HTTP API's Deployment listens on its setting's port; its probes fetch health routes
    its contract has (the liveness one without Redis, the readiness one with it); its Ingress
    serves over TLS every route of the contract but the health ones, to its Service's port,
    and lets through the largest body the server takes."""
    http = container("http")
    assert int(option(argv(http), "--port")) == HttpSettings.model_fields["port"].default
    routes = set(OPENAPI["paths"])
    # Live: takes connections (a full replica answers every request 503, probes too: an HTTP
    # liveness probe would let anyone have it restarted); ready: /health/ready answers.
    assert http["livenessProbe"]["tcpSocket"]["port"] == "http"
    assert http["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert "/health/ready" in routes

    ingress = named("Ingress", "pallycon-pack-http")
    [tls] = ingress["spec"]["tls"]
    exposed: set[str] = set()
    for rule in ingress["spec"]["rules"]:
        assert rule["host"] in tls["hosts"]
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == "pallycon-pack-http"
            assert backend["port"]["name"] in _service_ports(named("Service", backend["name"]))
            prefix = path["pathType"] == "Prefix"
            exposed |= {
                route
                for route in routes
                if route == path["path"] or (prefix and route.startswith(path["path"]))
            }
    assert exposed == {route for route in routes if not route.startswith("/health/")}
    size = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    largest = int(
        config_map().get(
            f"{HTTP_PREFIX}MAX_BODY_BYTES", HttpSettings.model_fields["max_body_bytes"].default
        )
    )
    assert _nginx_size(size) >= largest, f"the Ingress refuses bodies the API takes ({size})"


def test_the_grace_period_outlasts_the_task_time_limit():
    worker = named("Deployment", "pallycon-pack-worker")
    timeout = int(
        config_map().get(
            "PALLYCON_VISIBILITY_TIMEOUT", Settings.model_fields["visibility_timeout"].default
        )
    )
    limit = Settings.model_construct(visibility_timeout=timeout).task_time_limit
    assert limit == 240
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > limit


def test_worker_probes_are_per_pod_and_outlast_a_redis_outage_of_a_minute():
    worker = container("worker")
    assert option(argv(worker), "--hostname").endswith("@%h")  # what --this-host matches
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = worker[kind]
        command = probe["exec"]["command"]
        assert "--this-host" in command, kind
        checks = parse_checks(option(command, "--check"))
        # Each check is bounded by --timeout; the Redis check runs before the others.
        bound = float(option(command, "--timeout")) * (1 + len(set(checks) - {"redis"}))
        assert probe["timeoutSeconds"] > bound + 2, kind
    liveness = worker["livenessProbe"]
    assert parse_checks(option(liveness["exec"]["command"], "--check")) == ["workers"]
    # Consecutive failures before a restart span (threshold - 1) periods at least.
    assert (liveness["failureThreshold"] - 1) * liveness["periodSeconds"] >= 90
    startup = worker["startupProbe"]
    assert startup["failureThreshold"] * startup["periodSeconds"] >= 60


def check_redis_triggers(
    triggers: list[dict[str, Any]], auth: dict[str, Any], settings: dict[str, str]
) -> None:
    """KEDA's redis triggers read the project's queues in the Redis that ``settings`` (the
    ConfigMap's variables) name, logging in as its processes do: the same user, TLS for
    rediss://, the sentinels and primary name with Sentinel."""
    keys = Keys(settings.get("PALLYCON_KEY_PREFIX", "pp"))
    url = urlsplit(settings["PALLYCON_REDIS_URL"])
    sentinels = settings.get("PALLYCON_REDIS_SENTINELS", "")
    assert {t["metadata"]["listName"] for t in triggers} == {keys.submit_queue, keys.poll_queue}
    for trigger in triggers:
        meta = trigger["metadata"]
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
        assert int(meta["listLength"]) > 0
        assert meta["databaseIndex"] == (url.path.strip("/") or "0")
        # Without it KEDA logs in as the default user: WRONGPASS for an ACL user's password.
        assert meta.get("username") == url.username, "the triggers' username is not the URL's"
        assert (meta.get("enableTLS") == "true") == (url.scheme == "rediss"), url.scheme
        if sentinels:
            assert trigger["type"] == "redis-sentinel"
            addresses = ",".join(f"{h}:{p}" for h, p in parse_sentinels(meta["addresses"]))
            assert parse_sentinels(addresses) == parse_sentinels(sentinels)
            master = settings.get(
                "PALLYCON_REDIS_MASTER_NAME", Settings.model_fields["redis_master_name"].default
            )
            assert meta["sentinelMaster"] == master
        else:
            assert trigger["type"] == "redis"
            assert meta["address"] == f"{url.hostname}:{url.port or 6379}"
    refs = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    [secret] = of_kind("Secret")
    assert refs["password"]["key"] == "PALLYCON_REDIS_PASSWORD" in secret["stringData"]
    if "sentinelPassword" in refs:
        assert refs["sentinelPassword"]["key"] == "PALLYCON_REDIS_SENTINEL_PASSWORD"
    for ref in refs.values():
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in SECRET_SETTINGS


def test_keda_watches_the_real_queues_of_the_configured_redis():
    [scaled] = of_kind("ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "pallycon-pack-worker"
    redis_triggers = [t for t in scaled["spec"]["triggers"] if t["type"].startswith("redis")]
    [auth] = of_kind("TriggerAuthentication")
    assert urlsplit(config_map()["PALLYCON_REDIS_URL"]).username  # premise: an ACL user
    check_redis_triggers(redis_triggers, auth, config_map())
    workers = named("Deployment", "pallycon-pack-worker")
    minimum = scaled["spec"]["minReplicaCount"]
    assert 1 <= minimum <= workers["spec"].get("replicas", minimum)


def test_keda_is_refused_a_trigger_without_the_urls_user_or_tls():
    [scaled] = of_kind("ScaledObject")
    [auth] = of_kind("TriggerAuthentication")
    triggers = [t for t in scaled["spec"]["triggers"] if t["type"] == "redis"]
    anonymous = copy.deepcopy(triggers)
    for trigger in anonymous:
        del trigger["metadata"]["username"]
    with pytest.raises(AssertionError, match="username"):
        check_redis_triggers(anonymous, auth, config_map())
    tls = config_map() | {
        "PALLYCON_REDIS_URL": config_map()["PALLYCON_REDIS_URL"].replace("redis://", "rediss://")
    }
    with pytest.raises(AssertionError, match="rediss"):
        check_redis_triggers(triggers, auth, tls)


def sentinel_variant() -> dict[str, Any]:
    """The commented Sentinel variant at the end of scaledobject.yaml, parsed."""
    text = (KUBE / "scaledobject.yaml").read_text().split("# sentinel-variant:\n", 1)[1]
    lines = [line.removeprefix("#  ") for line in text.splitlines()]
    variant: dict[str, Any] = yaml.safe_load("\n".join(lines))
    return variant


def test_the_sentinel_variant_of_keda_matches_a_sentinel_configuration():
    variant = sentinel_variant()
    [scaled] = of_kind("ScaledObject")
    [auth] = of_kind("TriggerAuthentication")
    with_variant = copy.deepcopy(scaled)
    with_variant["spec"]["triggers"] = [
        *variant["triggers"],
        *(t for t in scaled["spec"]["triggers"] if not t["type"].startswith("redis")),
    ]
    jsonschema.validate(with_variant, SCHEMAS["ScaledObject"])
    sentinel_auth = copy.deepcopy(auth)
    sentinel_auth["spec"]["secretTargetRef"] = variant["secretTargetRef"]
    jsonschema.validate(sentinel_auth, SCHEMAS["TriggerAuthentication"])
    addresses = variant["triggers"][0]["metadata"]["addresses"]
    settings = config_map() | {"PALLYCON_REDIS_SENTINELS": addresses}
    Settings.model_validate(
        {name.removeprefix(ENV_PREFIX).lower(): v for name, v in settings.items()}
    )
    check_redis_triggers(variant["triggers"], sentinel_auth, settings)
    assert {ref["parameter"] for ref in variant["secretTargetRef"]} >= {"sentinelPassword"}
    # The plain redis triggers do not pass for a Sentinel configuration.
    with pytest.raises(AssertionError):
        check_redis_triggers(
            [t for t in scaled["spec"]["triggers"] if t["type"] == "redis"], auth, settings
        )


def test_workers_receivers_and_http_apis_have_a_disruption_budget_each():
    budgets = of_kind("PodDisruptionBudget")
    for name in ("pallycon-pack-worker", "pallycon-pack-callbacks", "pallycon-pack-http"):
        deployment = named("Deployment", name)
        pods = deployment["spec"]["template"]["metadata"]["labels"]
        [budget] = [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= pods.items()
        ]
        assert budget["spec"]["maxUnavailable"] < deployment["spec"].get("replicas", 2), name
    others = [d for d in of_kind("Deployment") if d["metadata"]["name"].endswith("metrics")]
    for deployment in others:  # a budget selects its component's pods alone
        pods = deployment["spec"]["template"]["metadata"]["labels"]
        assert not [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= pods.items()
        ]


def test_every_pod_has_a_writable_tmp_and_a_read_only_root():
    for deployment, c in containers():
        assert c["securityContext"]["readOnlyRootFilesystem"] is True, c["name"]
        assert "emptyDir" in mounted_at(deployment, c, "/tmp", read_only=False), c["name"]  # noqa: S108


# --- Several sites: the kustomize Component ---------------------------------------------------


def json_patch(doc: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    """``doc`` with the RFC 6902 ``add`` operations applied (what the Component's patches use;
    any other operation is refused here, so that the test keeps up with the patches)."""
    patched = copy.deepcopy(doc)
    for operation in operations:
        assert operation["op"] == "add", operation
        *parents, last = operation["path"].lstrip("/").split("/")
        node: Any = patched
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node.insert(len(node) if last == "-" else int(last), operation["value"])
        else:
            node[last] = operation["value"]
    return patched


def with_sites() -> dict[str, dict[str, Any]]:
    """The Deployments the Component patches, by name, patched."""
    component = yaml.safe_load((SITES / "kustomization.yaml").read_text())
    assert component["apiVersion"] == "kustomize.config.k8s.io/v1alpha1"
    assert component["kind"] == "Component"
    patched = {}
    for patch in component["patches"]:
        target = patch["target"]
        assert target["kind"] == "Deployment"
        operations = yaml.safe_load((SITES / patch["path"]).read_text())
        patched[target["name"]] = json_patch(named("Deployment", target["name"]), operations)
    assert set(patched) == {"pallycon-pack-worker", "pallycon-pack-callbacks"}
    return patched


def site_files(deployment: dict[str, Any]) -> tuple[str, dict[str, set[str]]]:
    """The directory PALLYCON_SITES names in the container, and the files mounted there:
    site id -> field names (optional ones included)."""
    [c] = deployment["spec"]["template"]["spec"]["containers"]
    envs = {env["name"]: env["value"] for env in c["env"]}
    path = envs[SITES_VARIABLE]
    volume = mounted_at(deployment, c, path)
    files: dict[str, set[str]] = {}
    for source in volume["projected"]["sources"]:
        assert source["secret"]["name"].startswith("pallycon-site-")
        for item in source["secret"]["items"]:
            site, field = item["path"].split("/")
            assert item["key"] == field  # each Secret's keys are the fields' names
            assert source["secret"]["name"] == f"pallycon-site-{site.lower()}"
            files.setdefault(site, set()).add(field)
    return path, files


@pytest.mark.parametrize("version", VERSIONS)
def test_the_sites_component_gives_valid_deployments(version: str):
    for name, deployment in with_sites().items():
        try:
            kubernetes_validate.validate(deployment, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"sites/: Deployment {name}: {exc.message}")


def test_the_sites_component_mounts_what_config_sites_reads_and_no_more(tmp_path):
    patched = with_sites()
    worker_path, worker = site_files(patched["pallycon-pack-worker"])
    receiver_path, receiver = site_files(patched["pallycon-pack-callbacks"])
    assert worker_path == receiver_path
    assert SITES_VARIABLE not in config_map()  # set in those containers, not for every one
    assert set(receiver) <= set(worker)
    for site, fields in worker.items():
        assert set(REQUIRED) <= fields <= set(FIELDS) - {"callback_token"}, site
    for fields in receiver.values():
        assert fields == {"callback_token"}  # the receiver holds no site key

    # The layout as the kubelet writes it, read by the code that will read it.
    values = {
        "access_key": "access-key-0123456789",
        "site_key": "0123456789abcdef0123456789abcdef",
        "region": "RG011",
        "api_rate": "5",
        "api_burst": "5",
        "callback_token": "callback-token-0123456789",
    }
    for role, files in (("worker", worker), ("callbacks", receiver)):
        for site, fields in files.items():
            (tmp_path / role / site).mkdir(parents=True)
            for field in fields:
                (tmp_path / role / site / field).write_text(values[field] + "\n")
    defaults = Settings.model_construct()  # the defaults, no environment read
    sites = read_sites(tmp_path / "worker", defaults)
    assert set(sites) == set(worker)
    assert all(site.api_rate == 5 for site in sites.values())
    receiving = Settings.model_construct(sites_path=tmp_path / "callbacks")
    assert receiving.site_id is None
    assert set(load_callback_tokens(receiving)) == set(receiver)


def exposed_families() -> dict[str, set[tuple[tuple[str, str], ...]]]:
    """Every family the exporter's pure parts expose, with the label sets of its samples."""
    empty = Schedule(depth=0, overdue=0, oldest_due=None)
    snapshot = Snapshot(
        now=0.0,
        queues={"submit": 0, "poll": 0},
        schedules={"submit": empty, "poll": empty},
        intake=Intake(length=0, pending=0, lag=0, group=True),
    )
    families: dict[str, set[tuple[tuple[str, str], ...]]] = {}
    for family in [*fleet_metrics(snapshot), *api_metrics(ApiCalls()), *counter_metrics({})]:
        for sample in family.samples:
            families.setdefault(family.name, set()).add(tuple(sorted(sample.labels.items())))
    return families


def test_the_prometheus_trigger_reads_metrics_the_exporter_exposes():
    import promql_parser

    families = exposed_families()
    [scaled] = of_kind("ScaledObject")
    [trigger] = [t for t in scaled["spec"]["triggers"] if t["type"] == "prometheus"]
    query = trigger["metadata"]["query"]
    names = promql_metrics(query)
    assert names == {"pallycon_pack_schedule_overdue"}
    assert names <= set(families)

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            wanted = {(m.name, m.value) for m in node.matchers.matchers}
            assert any(wanted <= set(labels) for labels in families[node.name]), wanted
        return True

    promql_parser.walk(promql_parser.parse(query), visit)
    assert float(trigger["metadata"]["threshold"]) > 0
