"""The deployment files say what a reader relies on: each service's image runs it alone
and not as root, compose wires every service to Kafka and PostgreSQL, and every
Deployment of every overlay is hardened and probed over gRPC health.
(Their schemas are `make deploy-check`'s job.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from civitas import catalog
from civitas.chassis.kafka_access import kafka_groups
from civitas.chassis.settings import PORTS
from civitas.chassis.topics import anchors_spec, events_spec
from civitas.eventkit.kafka.topics import dead_letter_spec
from tests.support.manifests import (
    OVERLAYS,
    ROOT,
    configured,
    host,
    image_var_dir,
    load_yaml,
    of_kind,
    overlay_named,
    service_deployments,
)

DOCKER = ROOT / "deploy" / "docker"
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
SERVICES = sorted(PORTS)


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    """The instructions after the last FROM, as (INSTRUCTION, arguments)."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    lines = [line.strip() for line in text.splitlines()]
    instructions = [tuple(line.split(None, 1)) for line in lines if line and line[0] != "#"]
    last_from = max(i for i, (word, *_) in enumerate(instructions) if word.upper() == "FROM")
    return [(word.upper(), rest[0] if rest else "") for word, *rest in instructions[last_from:]]


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_image_runs_only_that_service_and_not_as_root(service: str) -> None:
    stage = final_stage(DOCKER / f"{service}.Dockerfile")
    users = [args for word, args in stage if word == "USER"]
    runs = [(word, args) for word, args in stage if word in ("ENTRYPOINT", "CMD")]
    exposed = {int(p) for word, args in stage if word == "EXPOSE" for p in args.split()}

    assert users
    assert users[-1].split(":")[0] not in ("", "0", "root")
    assert [(word, json.loads(args)) for word, args in runs] == [
        ("ENTRYPOINT", ["python", "-m", f"civitas.{service}"])
    ]
    assert set(PORTS[service]) <= exposed


def test_the_service_dockerfiles_differ_only_in_the_service_name_and_ports() -> None:
    def template(service: str) -> str:
        text = (DOCKER / f"{service}.Dockerfile").read_text()
        text = re.sub(r"^# The .*\n", "", text, count=1, flags=re.M)  # what it runs, in words
        for port in PORTS[service]:
            text = text.replace(str(port), "<port>")
        return text.replace(service, "<service>").replace(" 8080", "")

    assert len({template(service) for service in SERVICES}) == 1


def test_the_images_install_the_wheel_built_from_pyproject() -> None:
    text = (DOCKER / "cases.Dockerfile").read_text()

    assert "COPY pyproject.toml README.md ./" in text
    assert "pip wheel --no-cache-dir --wheel-dir /wheels ." in text
    assert "pip install --no-index --find-links=/wheels civitas" in text


def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE.read_text())[0]


def interpolated(value: str) -> str:
    """A compose value with ``${NAME:-default}`` as it is when NAME is unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))


@pytest.mark.parametrize("service", SERVICES)
def test_compose_runs_each_service_on_kafka_and_postgresql(service: str) -> None:
    services = compose()["services"]
    spec = services[host(service)]
    env = {name: interpolated(value) for name, value in spec["environment"].items()}
    kafka_host, kafka_port = env["CIVITAS_KAFKA_BOOTSTRAP"].split(":")
    urls = [urlsplit(env[f"CIVITAS_{name}_URL"]) for name in ("EVENTSTORE", "READ_MODEL", "VAULT")]

    assert spec["build"]["dockerfile"] == f"deploy/docker/{service}.Dockerfile"
    assert services[kafka_host]["image"].startswith("apache/kafka:")
    assert kafka_port == "9092"
    assert {url.scheme for url in urls} == {"postgresql"}
    assert {url.hostname for url in urls} == {"postgres"}
    assert services["postgres"]["image"].startswith("postgres:")
    assert [url.query for url in urls if "schema=" in url.query] == []  # each its own schema
    assert env["CIVITAS_HOST"] == "0.0.0.0"
    assert len(env["CIVITAS_AUTH_SECRET"]) >= 32
    assert {peer: env[f"CIVITAS_{peer.upper()}_ADDRESS"] for peer in SERVICES} == {
        peer: f"{host(peer)}:{PORTS[peer][0]}" for peer in SERVICES
    }
    assert spec["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert spec["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert spec["read_only"] is True
    assert spec["cap_drop"] == ["ALL"]


@pytest.mark.parametrize("service", catalog.event_keepers())
def test_compose_keeps_what_anchoring_remembers_in_a_named_volume(service: str) -> None:
    volumes = [v.split(" ")[0] for v in compose()["services"][host(service)]["volumes"]]
    (named,) = [v.split(":")[0] for v in volumes if v.split(":")[1] == image_var_dir(service)]

    assert named in compose()["volumes"]  # survives the container; the root is read-only


def test_compose_prometheus_scrapes_every_service_under_its_name_with_the_shipped_rules() -> None:
    shipped = load_yaml((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())[0]
    config = load_yaml((ROOT / "deploy" / "prometheus" / "compose.yml").read_text())[0]
    prometheus = compose()["services"]["prometheus"]
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }

    assert targets == {service: [f"{host(service)}:{PORTS[service][1]}"] for service in SERVICES}
    assert [job["job_name"] for job in config["scrape_configs"]] == [
        job["job_name"] for job in shipped["scrape_configs"]
    ]
    assert config["rule_files"] == shipped["rule_files"]
    assert "./prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/compose.yml" in prometheus["command"]


def test_there_are_dev_and_prod_overlays() -> None:
    assert {"dev", "prod"} <= {overlay.name for overlay in OVERLAYS}


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_every_deployment_is_hardened_bounded_and_probed_on_its_grpc_port(overlay: Path) -> None:
    deployments = service_deployments(overlay)
    assert sorted(d["metadata"]["name"] for d in deployments) == sorted(map(host, SERVICES))
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        security = {**pod.get("securityContext", {}), **container["securityContext"]}
        grpc_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "grpc")
        resources = container["resources"]

        assert security["runAsNonRoot"] is True, deployment["metadata"]["name"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert set(resources["requests"]) >= {"cpu", "memory"}
        assert set(resources["limits"]) >= {"cpu", "memory"}
        assert container["readinessProbe"]["grpc"]["port"] == grpc_port
        assert container["livenessProbe"]["tcpSocket"]["port"] == grpc_port


def mounted(pod: dict[str, Any], container: dict[str, Any], path: str) -> tuple[str, str]:
    """The Secret and key a file path of the container comes from."""
    directory, _, file = path.rpartition("/")
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    (item,) = [i for i in volume["secret"]["items"] if i["path"] == file]
    return volume["secret"]["secretName"], item["key"]


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_every_service_signs_in_to_the_strimzi_cluster_as_its_own_user_over_tls(
    overlay: Path,
) -> None:
    (kafka,) = of_kind(overlay, "Kafka")
    cluster = kafka["metadata"]["name"]
    (tls,) = [listener for listener in kafka["spec"]["kafka"]["listeners"] if listener["tls"]]
    for deployment in service_deployments(overlay):
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        settings = configured(overlay, container)
        env = {e["name"]: e["value"] for e in container["env"]}
        secrets = [s["secretRef"]["name"] for s in container["envFrom"] if "secretRef" in s]

        assert settings["CIVITAS_KAFKA_BOOTSTRAP"] == f"{cluster}-kafka-bootstrap:{tls['port']}"
        assert settings["CIVITAS_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert settings["CIVITAS_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert env["CIVITAS_KAFKA_USERNAME"] == f"civitas-{deployment['metadata']['name']}"
        assert mounted(pod, container, env["CIVITAS_KAFKA_PASSWORD_FILE"]) == (
            env["CIVITAS_KAFKA_USERNAME"],  # the Secret Strimzi makes for the KafkaUser
            "password",
        )
        assert mounted(pod, container, env["CIVITAS_KAFKA_CA_FILE"]) == (
            f"{cluster}-cluster-ca-cert",
            "ca.crt",
        )
        assert settings["CIVITAS_HOST"] == "0.0.0.0"
        assert secrets  # the token secret and the PostgreSQL URLs


def test_the_dev_overlay_gives_each_service_postgresql_urls_without_a_schema() -> None:
    import base64

    overlay = overlay_named("dev")
    (secret,) = [
        s for s in of_kind(overlay, "Secret") if s["metadata"]["name"].startswith("civitas-secrets")
    ]
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    urls = [urlsplit(data[f"CIVITAS_{n}_URL"]) for n in ("EVENTSTORE", "READ_MODEL", "VAULT")]

    assert {url.scheme for url in urls} == {"postgresql"}
    assert {url.hostname for url in urls} == {"postgres"}
    assert all("schema=" not in url.query for url in urls)
    assert [s["metadata"]["name"] for s in of_kind(overlay, "StatefulSet")] == ["postgres"]


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_prometheus_scrapes_each_service_under_its_own_name(overlay: Path) -> None:
    services = {s["metadata"]["name"]: s for s in of_kind(overlay, "Service")}
    for monitor in of_kind(overlay, "ServiceMonitor"):
        name = monitor["metadata"]["name"]
        labels = services[name]["metadata"]["labels"]

        assert labels[monitor["spec"]["jobLabel"]] == name.replace("-", "_")
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
        assert "metrics" in [port["name"] for port in services[name]["spec"]["ports"]]
    assert len(of_kind(overlay, "ServiceMonitor")) == len(SERVICES)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_the_prometheus_rules_are_those_of_deploy_prometheus(overlay: Path) -> None:
    rule_files = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
    shipped = {f"civitas-{f.stem}": load_yaml(f.read_text())[0] for f in rule_files}

    assert {r["metadata"]["name"]: r["spec"] for r in of_kind(overlay, "PrometheusRule")} == (
        shipped
    )


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_there_is_a_kafka_topic_for_every_events_topic_in_the_contract(overlay: Path) -> None:
    contract = (ROOT / "docs" / "asyncapi.json").read_text()
    published = set(re.findall(r'"(civitas\.[a-z_]+\.events\.v1)"', contract))
    topics = {
        t["spec"]["topicName"]: t["spec"]
        for t in of_kind(overlay, "KafkaTopic")
        if t["spec"]["topicName"].endswith(".events.v1")
    }
    declared = [events_spec(service, "civitas") for service in catalog.event_keepers()]

    assert set(topics) == published
    assert {
        (name, spec["partitions"], int(spec["config"]["retention.ms"]))
        for name, spec in topics.items()
    } == {(topic.name, topic.partitions, topic.retention_ms) for topic in declared}


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_every_topic_a_service_makes_is_a_kafka_topic_as_declared(overlay: Path) -> None:
    made = [anchors_spec(service, "civitas") for service in catalog.event_keepers()]
    made += [dead_letter_spec(g, "civitas") for s in catalog.SERVICES for g in kafka_groups(s)]
    topics = {t["spec"]["topicName"]: t["spec"] for t in of_kind(overlay, "KafkaTopic")}
    replicas = {spec["replicas"] for spec in topics.values()}

    for topic in made:
        spec = topics[topic.name]
        declared = (topic.partitions, topic.retention_ms)
        assert (spec["partitions"], int(spec["config"]["retention.ms"])) == declared
    assert len(replicas) == 1  # the overlay replicates them as it does the events


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_the_dashboards_are_in_a_configmap_for_grafana(overlay: Path) -> None:
    dashboards = sorted(p.name for p in (ROOT / "deploy" / "grafana" / "dashboards").glob("*"))
    (configmap,) = [
        c for c in of_kind(overlay, "ConfigMap") if c["metadata"]["name"] == "civitas-dashboards"
    ]

    assert sorted(configmap["data"]) == dashboards
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_compose_tracing_is_wired_but_optional() -> None:
    services = compose()["services"]
    collector = load_yaml((ROOT / "deploy" / "tracing" / "collector.yml").read_text())[0]
    datasources = load_yaml(
        (ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "tempo.yml").read_text()
    )[0]["datasources"]

    assert services["otel-collector"]["profiles"] == ["tracing"]
    assert services["tempo"]["profiles"] == ["tracing"]
    for service in SERVICES:  # off unless the operator sets the endpoint
        endpoint = services[host(service)]["environment"]["CIVITAS_OTLP_ENDPOINT"]
        assert interpolated(endpoint) == ""
    assert collector["exporters"]["otlp/tempo"]["endpoint"] == "tempo:4317"
    assert [(d["type"], d["url"]) for d in datasources] == [("tempo", "$TEMPO_URL")]
    assert services["grafana"]["environment"]["TEMPO_URL"] == "http://tempo:3200"


def test_the_dev_tracing_overlay_sends_every_services_spans_to_its_collector() -> None:
    overlay = overlay_named("dev-tracing")
    configs = {c["metadata"]["name"]: c.get("data", {}) for c in of_kind(overlay, "ConfigMap")}
    for deployment in service_deployments(overlay):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        settings = configured(overlay, container)

        assert settings["CIVITAS_OTLP_ENDPOINT"] == "http://otel-collector:4317"
    assert {s["metadata"]["name"] for s in of_kind(overlay, "Service")} >= {
        "otel-collector",
        "tempo",
    }
    assert configs["civitas-tempo-datasource"]["tempo-datasource.yaml"].count("type: tempo") == 1
