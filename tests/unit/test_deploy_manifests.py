"""The Kubernetes manifests (deploy/k8s/) and docker-compose.yml: valid, and saying the same thing.

- every manifest document validates against the Kubernetes JSON schemas (strict: unknown
  fields fail), for a recent Kubernetes version shipped by ``kubernetes-validate``;
- every KazPost service in compose has a Deployment built from the same image target, with the
  same ``KAZPOST_*`` variable names and ports, and probes on the port its settings listen on;
- every ``KAZPOST_*`` name used in either place is a real setting (typos fail);
- compose: services wait for ``init``, no ``version:`` key, no literal passwords; it validates
  against the Compose Specification's JSON Schema (vendored, tests/unit/data/);
- security: every KazPost container authenticates to Kafka (SASL/SCRAM-SHA-512) and MongoDB as
  its own user, in compose and in Kubernetes alike; the Kafka users and ACLs (setup.sh) and the
  MongoDB roles (setup.js) grant each principal just its topics, group and collections.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel

from shared.settings import KafkaSettings
from shared.settings_doc import NESTED, env_vars, service_settings

yaml = pytest.importorskip("yaml")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
COMPOSE = ROOT / "docker-compose.yml"
K8S_VERSION = "1.33.0"
# The Compose Specification's JSON Schema, vendored unmodified (source and version: data/README.md).
COMPOSE_SCHEMA = Path(__file__).resolve().parent / "data" / "compose-spec.json"
COMPOSE_SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"

# compose service (= Dockerfile target = Deployment name): (port variable of its probes, consumer group?).
SERVICES = {
    "ingestion": ("KAZPOST_INGESTION_OPS_PORT", True),
    "storage": ("KAZPOST_STORAGE_OPS_PORT", True),
    "linking": ("KAZPOST_LINKING_OPS_PORT", True),
    "gateway": ("KAZPOST_GATEWAY_PORT", False),
    "narration": ("KAZPOST_NARRATION_OPS_PORT", True),
    "newsletter": ("KAZPOST_NEWSLETTER_OPS_PORT", True),
}
# Set in Kubernetes only, on purpose (compose rebuilds the linking index at start-up).
K8S_ONLY = {"linking": {"KAZPOST_LINKING_SNAPSHOT_PATH", "KAZPOST_LINKING_TEASER_DIR"}}
# Compose interpolation knobs that are not service settings.
COMPOSE_KNOBS = {"KAZPOST_IMAGE_TAG", "KAZPOST_PUBLIC_BASE_URL"}
KAZPOST_NAME = re.compile(r"\bKAZPOST_[A-Z0-9_]*[A-Z0-9]")


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def manifest_files() -> list[Path]:
    return sorted(K8S.glob("*.yaml"))


def documents() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in manifest_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                out.append((path.name, doc))
    return out


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in documents() if d["kind"] == kind}


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def valid_setting_names() -> set[str]:
    names = {var for model in (*NESTED, *service_settings()) for var, _, _ in env_vars(model)}
    # Per-service overrides of a nested block, e.g. KAZPOST_STORAGE_MONGO__DATABASE.
    for model in service_settings():
        prefix = model.model_config.get("env_prefix", "")
        for field_name, field in model.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                for sub in field.annotation.model_fields:
                    names.add(f"{prefix}{field_name}__{sub}".upper())
    return names


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, deployment["metadata"]["name"]
    return containers[0]


def k8s_env(deployment: dict[str, Any]) -> dict[str, str | None]:
    """Every variable a Deployment's container gets: its env plus the ConfigMaps/Secrets it loads."""
    c = container(deployment)
    configmaps, secrets = by_kind("ConfigMap"), by_kind("Secret")
    env: dict[str, str | None] = {}
    for source in c.get("envFrom", []):
        if "configMapRef" in source:
            env.update(configmaps[source["configMapRef"]["name"]]["data"])
        else:
            secret = secrets[source["secretRef"]["name"]]
            env.update(dict.fromkeys({**secret.get("stringData", {}), **secret.get("data", {})}))
    for item in c.get("env", []):
        env[item["name"]] = item.get("value")
    return env


def image_name(image: str) -> str:
    """Repository basename without registry or tag: registry/x/kazpost-storage:1.2 -> kazpost-storage."""
    return image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]


def probe_port(c: dict[str, Any], probe: dict[str, Any]) -> int:
    port = probe["httpGet"]["port"]
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in c["ports"] if p.get("name") == port)


# ---------------------------------------------------------------------------------------------
# Kubernetes schemas
# ---------------------------------------------------------------------------------------------

def test_manifests_exist() -> None:
    names = {p.name for p in manifest_files()}
    assert {"namespace.yaml", "configmap.yaml", "secret.example.yaml", "init-job.yaml",
            *(f"{s}.yaml" for s in SERVICES)} <= names


@pytest.mark.parametrize(
    "doc", [d for _, d in documents()], ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in documents()])
def test_manifest_matches_kubernetes_schema(doc: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{'.'.join(map(str, exc.path))}: {exc.message}")


def test_every_object_is_namespaced_in_kazpost() -> None:
    for name, doc in documents():
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "kazpost", f"{name}: {doc['kind']}"


# ---------------------------------------------------------------------------------------------
# Deployments: shape, and agreement with compose and the settings
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("service", SERVICES)
def test_deployment_matches_compose(service: str) -> None:
    port_var, _ = SERVICES[service]
    spec = compose()["services"][service]
    deployment = by_kind("Deployment")[service]
    c = container(deployment)

    # Same Dockerfile target, same image repository.
    assert spec["build"]["target"] == service
    assert image_name(spec["image"]) == image_name(c["image"]) == f"kazpost-{service}"

    # Same variable names; same ports.
    compose_env = {k: None if v is None else str(v) for k, v in spec["environment"].items()}
    env = k8s_env(deployment)
    assert set(env) - K8S_ONLY.get(service, set()) == set(compose_env)
    for name in compose_env:
        literal = compose_env[name] is not None and "${" not in compose_env[name]  # not the operator's
        if literal and (name.endswith("_PORT") or name.endswith("_HOST") or name.endswith("_LINKING_URL")
                        or name.endswith("_USERNAME")):
            assert env[name] == compose_env[name], name

    # Probes on the port the service listens on.
    port = int(env[port_var])
    assert port in {p["containerPort"] for p in c["ports"]}
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        if probe in c:
            assert probe_port(c, c[probe]) == port, probe


@pytest.mark.parametrize("service", SERVICES)
def test_deployment_hardening(service: str) -> None:
    deployment = by_kind("Deployment")[service]
    pod = deployment["spec"]["template"]["spec"]
    c = container(deployment)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    # The schema accepts any string as a quantity; "128Mb" or "0.5cpu" would only fail on apply.
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind]), kind
        assert re.fullmatch(r"\d+m|\d+(\.\d+)?", str(c["resources"][kind]["cpu"])), kind
        assert re.fullmatch(r"\d+(Ki|Mi|Gi)", str(c["resources"][kind]["memory"])), kind
    refs = {next(iter(source.values()))["name"] for source in c["envFrom"]}
    assert refs == {"kazpost-config", f"kazpost-{service}-secrets"}  # its own passwords only
    for name in (n for n, v in k8s_env(deployment).items() if re.fullmatch(r"KAZPOST_[A-Z]+_(OPS_)?HOST", n)):
        assert k8s_env(deployment)[name] == "0.0.0.0", name


@pytest.mark.parametrize("service", SERVICES)
def test_replicas_and_disruption_budget(service: str) -> None:
    _, consumer = SERVICES[service]
    deployment = by_kind("Deployment")[service]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    if consumer:  # replicas beyond the partition count would sit idle
        assert deployment["spec"]["replicas"] <= KafkaSettings().partitions
    pdb = by_kind("PodDisruptionBudget")[service]
    assert pdb["spec"].get("minAvailable") == 1 or pdb["spec"].get("maxUnavailable") == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_linking_snapshot_and_teasers_on_a_volume() -> None:
    deployment = by_kind("Deployment")["linking"]
    c = container(deployment)
    path = k8s_env(deployment)["KAZPOST_LINKING_SNAPSHOT_PATH"]
    assert path and path.startswith("/var/lib/kazpost/")
    assert k8s_env(deployment)["KAZPOST_LINKING_TEASER_DIR"] == "/var/lib/kazpost"  # not the 64 MiB /tmp
    assert "/var/lib/kazpost" in {m["mountPath"] for m in c["volumeMounts"]}


def test_services_route_to_the_right_ports() -> None:
    services, deployments = by_kind("Service"), by_kind("Deployment")
    assert set(services) == {"gateway", "linking"}
    expected = {"gateway": (80, 8080), "linking": (8093, 8093)}
    for name, (port, target) in expected.items():
        svc = services[name]
        assert svc["spec"].get("type", "ClusterIP") == "ClusterIP"
        c = container(deployments[name])
        assert svc["spec"]["selector"].items() <= deployments[name]["spec"]["template"]["metadata"]["labels"].items()
        (p,) = svc["spec"]["ports"]
        resolved = p["targetPort"] if isinstance(p["targetPort"], int) else next(
            cp["containerPort"] for cp in c["ports"] if cp.get("name") == p["targetPort"])
        assert (p["port"], resolved) == (port, target)
    # The gateway reaches linking's search API through that Service.
    gateway_env = k8s_env(deployments["gateway"])
    assert gateway_env["KAZPOST_GATEWAY_LINKING_URL"] == f"http://linking:{expected['linking'][0]}"


def test_init_job_runs_kazpost_init_like_compose() -> None:
    spec = compose()["services"]["init"]
    (job,) = by_kind("Job").values()
    c = container(job)
    assert spec["build"]["target"] == "cli"
    assert image_name(spec["image"]) == image_name(c["image"]) == "kazpost-cli"
    assert c.get("args") == spec["command"] == ["init"]
    assert "command" not in c  # keep the image's `kazpost` entrypoint
    assert set(k8s_env(job)) == set(spec["environment"])


def test_example_secret_holds_placeholders_only() -> None:
    for secret in by_kind("Secret").values():
        assert "data" not in secret  # base64 would hide what is in it
        for key, value in secret["stringData"].items():
            assert "CHANGE_ME" in value, key


def test_every_kazpost_name_is_a_real_setting() -> None:
    valid = valid_setting_names()
    unknown = {}
    for path in [*manifest_files(), K8S / "README.md"]:
        names = set(KAZPOST_NAME.findall(path.read_text())) - valid
        if names:
            unknown[path.name] = sorted(names)
    env_names = {n for s in compose()["services"].values() for n in (s.get("environment") or {})}
    interpolated = set(re.findall(r"\$\{(KAZPOST_[A-Z0-9_]+)", COMPOSE.read_text()))
    names = {n for n in env_names if n.startswith("KAZPOST_")} | (interpolated - COMPOSE_KNOBS)
    if names - valid:
        unknown[COMPOSE.name] = sorted(names - valid)
    assert not unknown


# ---------------------------------------------------------------------------------------------
# docker-compose.yml
# ---------------------------------------------------------------------------------------------

def compose_errors(doc: dict[str, Any]) -> list[jsonschema.ValidationError]:
    """Every way ``doc`` breaks the Compose Specification's schema."""
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    return list(cls(schema, format_checker=cls.FORMAT_CHECKER).iter_errors(doc))


def test_vendored_compose_schema_is_the_recorded_one() -> None:
    assert hashlib.sha256(COMPOSE_SCHEMA.read_bytes()).hexdigest() == COMPOSE_SCHEMA_SHA256
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    assert schema["title"] == "Compose Specification"
    cls = jsonschema.validators.validator_for(schema, default=None)
    assert cls is jsonschema.Draft202012Validator  # the draft it declares, known to jsonschema
    cls.check_schema(schema)


def test_compose_matches_the_compose_specification() -> None:
    errors = compose_errors(compose())
    assert not errors, [f"{'.'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}" for e in errors]


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return mutate


# A broken copy of docker-compose.yml, and the place the schema must point at.
BROKEN_COMPOSE = {
    "unknown top-level key": (_set(("servicess",), {}), ()),
    "ports not a list": (_set(("services", "gateway", "ports"), "8080:8080"), ("services", "gateway", "ports")),
    "port mapping of the wrong type": (_set(("services", "gateway", "ports"), [["8080", "8080"]]),
                                       ("services", "gateway", "ports", 0)),
    "unknown service key": (_set(("services", "storage", "depend_on"), ["init"]), ("services", "storage")),
    "unknown depends_on condition": (_set(("services", "gateway", "depends_on", "linking", "condition"), "service_done"),
                                     ("services", "gateway", "depends_on")),
    "environment not a list or mapping": (_set(("services", "linking", "environment"), "KAZPOST_LOG_LEVEL=INFO"),
                                          ("services", "linking", "environment")),
    "volumes not a mapping": (_set(("volumes",), ["kafka-data"]), ("volumes",)),
    "invalid service name": (lambda doc: doc["services"].update({"news letter": {"image": "x"}}), ("services",)),
}


@pytest.mark.parametrize("case", BROKEN_COMPOSE)
def test_compose_schema_rejects_a_broken_compose_file(case: str) -> None:
    mutate, where = BROKEN_COMPOSE[case]
    doc = copy.deepcopy(compose())
    mutate(doc)
    errors = compose_errors(doc)
    assert errors, f"{case}: accepted"
    assert any(tuple(e.absolute_path) == where for e in errors), (
        case, [(list(e.absolute_path), e.message) for e in errors])


def test_compose_has_no_version_key() -> None:
    assert "version" not in compose()


@pytest.mark.parametrize("service", [*SERVICES, "demo"])
def test_compose_services_wait_for_init(service: str) -> None:
    depends = compose()["services"][service]["depends_on"]
    assert depends["init"]["condition"] == "service_completed_successfully"


def test_compose_has_no_literal_passwords() -> None:
    reference = re.compile(r"^\$\{[^}]+\}$")
    for name, spec in compose()["services"].items():
        for key, value in (spec.get("environment") or {}).items():
            if value is None:  # no value: passed through from the environment
                continue
            value = str(value)
            if "PASSWORD" in key.upper() or key.upper().endswith("_SECRET"):
                assert reference.match(value), f"{name}: {key}"
            for quoted in re.findall(r'password="([^"]*)"', value):
                assert reference.match(quoted), f"{name}: {key}"
            # Credentials inside a URL (scheme://user:password@host) must be references too.
            for userinfo in re.findall(r"://([^/]*)@", value):
                rest = re.sub(r"\$\{[^}]*\}", "", userinfo)
                assert rest.partition(":")[2] == "", f"{name}: {key}"


# ---------------------------------------------------------------------------------------------
# security: every container its own principal; the grants match what each service does
# ---------------------------------------------------------------------------------------------

SETUP_SH = ROOT / "deploy" / "compose" / "kafka" / "setup.sh"
SETUP_JS = ROOT / "deploy" / "compose" / "mongo" / "setup.js"
# The services' own settings say what they consume (and as which group) and what they produce.
K = KafkaSettings()
KAFKA_GRANTS = {
    "ingestion": ("kazpost-ingestion", {K.topic_upstream}, {K.topic_ingested, K.topic_upstream_dlq}),
    "storage": ("kazpost-storage", {K.topic_ingested}, {K.topic_stored, K.topic_ingested_dlq}),
    "linking": ("kazpost-linking", {K.topic_stored}, {K.topic_linked, K.topic_stored_dlq}),
    "narration": ("kazpost-narration", {K.topic_stored}, {K.topic_narrated, K.topic_stored_dlq}),
    "newsletter": ("kazpost-newsletter", {K.topic_newsletter}, {K.topic_newsletter_dlq}),
    "gateway": (None, {K.topic_stored, K.topic_linked, K.topic_narrated}, {K.topic_newsletter}),
}
MONGO_USERS = {"storage", "linking", "narration", "newsletter", "gateway"}  # ingestion has no database


def kafka_setup() -> tuple[set[str], dict[str, tuple[str | None, set[str], set[str]]]]:
    """(users, principal -> (group, topics read, topics written)) as setup.sh grants them."""
    text = SETUP_SH.read_text()
    variables = dict(re.findall(r"\b([A-Z_]+)=([a-z][a-z.]+)\b", text))
    expand = lambda words: {variables[w.strip('"$')] for w in words.split()}  # noqa: E731
    users = set(re.findall(r"^user ([a-z-]+) ", text, re.M))
    grants: dict[str, tuple[str | None, set[str], set[str]]] = {}
    for principal, group, topics in re.findall(r"^consumes ([a-z-]+) (\S+) ([^#\n]+)", text, re.M):
        grants[principal] = (None if group == "-" else group, expand(topics), set())
    for principal, topics in re.findall(r'^produces ([a-z-]+) ([^#\n]+)', text, re.M):
        group, read, _ = grants.get(principal, (None, set(), set()))
        grants[principal] = (group, read, expand(topics))
    return users, grants


def test_every_container_authenticates_as_its_own_principal() -> None:
    services = compose()["services"]
    shared = services["ingestion"]["environment"]
    assert shared["KAZPOST_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert shared["KAZPOST_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert "@" not in shared["KAZPOST_MONGO_URL"]  # credentials are settings of their own
    deployments = by_kind("Deployment")
    (job,) = by_kind("Job").values()
    for name in [*SERVICES, "init"]:
        env = services[name]["environment"]
        user = "operator" if name == "init" else name
        assert env["KAZPOST_KAFKA_SASL_USERNAME"] == user, name
        k8s = k8s_env(job if name == "init" else deployments[name])
        assert k8s["KAZPOST_KAFKA_SASL_USERNAME"] == user and "KAZPOST_KAFKA_SASL_PASSWORD" in k8s, name
        if name in MONGO_USERS or name == "init":
            assert env["KAZPOST_MONGO_USERNAME"] == user and k8s["KAZPOST_MONGO_USERNAME"] == user, name
        else:
            assert "KAZPOST_MONGO_USERNAME" not in env and "KAZPOST_MONGO_USERNAME" not in k8s, name


def test_kafka_acls_grant_each_service_just_its_topics() -> None:
    users, grants = kafka_setup()
    assert {*KAFKA_GRANTS, "operator"} <= users
    for service, expected in KAFKA_GRANTS.items():
        assert grants[service] == expected, service
    # A consumer group in the ACLs is the one the service really uses.
    for service, (group, _, _) in KAFKA_GRANTS.items():
        if group is not None:
            settings = next(m for m in service_settings() if m.model_config["env_prefix"] == f"KAZPOST_{service.upper()}_")
            assert settings().group_id == group, service


def test_upstream_sources_may_only_write_the_upstream_topic() -> None:
    text = SETUP_SH.read_text()
    source_lines = [line.strip() for line in text.splitlines() if "source-" in line and line.strip().startswith("produces")]
    assert source_lines and all(line.endswith('"$UPSTREAM"') for line in source_lines)
    assert not re.search(r"consumes\s+\S*source", text)
    assert "allow.everyone.if.no.acl.found=false" in (SETUP_SH.parent / "server.properties").read_text()
    assert compose()["services"]["demo"]["environment"]["KAZPOST_KAFKA_SASL_USERNAME"] == "source-demo"


def test_mongo_roles_one_writer_per_collection_and_a_read_only_gateway() -> None:
    text = SETUP_JS.read_text()
    roles = {name: dict(re.findall(r'on\("([a-z_]+)", (READ|WRITE)\)', body))
             for name, body in re.findall(r"^  ([a-z]+): \[(.*)\],$", text, re.M)}
    assert set(roles) == MONGO_USERS
    writers: dict[str, list[str]] = {}
    for service, grants in roles.items():
        for collection, access in grants.items():
            if access == "WRITE":
                writers.setdefault(collection, []).append(service)
    assert all(len(w) == 1 for w in writers.values()), writers
    assert set(roles["gateway"].values()) == {"READ"}
    from shared.mongo import COLLECTIONS
    assert set(writers) <= set(COLLECTIONS)
