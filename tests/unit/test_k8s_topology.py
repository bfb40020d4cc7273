"""The production topology the k8s overlays declare (issue #19): every service replicated
and replaced one pod at a time, a disruption budget for each, clients that see every
replica, a namespace that denies all traffic but what each service needs, and Kafka
that lets each service's principal do only what the catalog gives it.
(The schemas are `make deploy-check`'s job.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from civitas import catalog
from civitas.chassis.kafka_access import grants, principal, strimzi_acls
from civitas.chassis.settings import kafka_security
from civitas.eventkit.kafka.security import KafkaSecurity
from tests.support.manifests import (
    OVERLAYS,
    configured,
    host,
    image_var_dir,
    of_kind,
    overlay_named,
    service_deployments,
)
from tests.support.network_policy import (
    Pod,
    kafka_broker,
    pod_of,
    reachable,
    selects,
    strimzi_policies,
)

SPECS = catalog.SERVICES
DATABASE_PORTS = {"postgres": 5432, "kurrentdb": 2113}
each_overlay = pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


@each_overlay
def test_every_service_runs_two_replicas_replaced_one_pod_at_a_time(overlay: Path) -> None:
    for deployment in service_deployments(overlay):
        spec = deployment["spec"]
        pod = spec["template"]["spec"]
        (spread,) = [
            c
            for c in pod["topologySpreadConstraints"]
            if c["topologyKey"] == "kubernetes.io/hostname"
        ]

        assert spec["replicas"] >= 2, deployment["metadata"]["name"]
        assert spec["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        }
        assert selects(spread["labelSelector"], pod_labels(deployment))
        assert spread["maxSkew"] == 1


def test_in_production_two_replicas_of_a_service_never_share_a_node() -> None:
    for deployment in service_deployments(overlay_named("prod")):
        pod = deployment["spec"]["template"]["spec"]
        hosts = [
            c
            for c in pod["topologySpreadConstraints"]
            if c["topologyKey"] == "kubernetes.io/hostname"
        ]

        assert [c["whenUnsatisfiable"] for c in hosts] == ["DoNotSchedule"]


@each_overlay
def test_a_disruption_budget_lets_one_replica_of_each_service_go_at_a_time(
    overlay: Path,
) -> None:
    budgets = of_kind(overlay, "PodDisruptionBudget")
    for deployment in service_deployments(overlay):
        (budget,) = [b for b in budgets if selects(b["spec"]["selector"], pod_labels(deployment))]
        allowed = budget["spec"].get("maxUnavailable")
        kept = budget["spec"].get("minAvailable")

        assert allowed == 1 or kept == deployment["spec"]["replicas"] - 1


@each_overlay
def test_a_service_name_resolves_to_every_replica_and_peers_are_called_by_it(
    overlay: Path,
) -> None:
    (namespace,) = {d["metadata"]["namespace"] for d in service_deployments(overlay)}
    services = {s["metadata"]["name"]: s for s in of_kind(overlay, "Service")}
    for deployment in service_deployments(overlay):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        settings = configured(overlay, container)
        for spec in SPECS:
            name = host(spec.name)

            assert services[name]["spec"]["clusterIP"] == "None"
            assert settings[f"CIVITAS_{spec.name.upper()}_ADDRESS"] == (
                f"dns:///{name}.{namespace}.svc.cluster.local:{spec.grpc_port}"
            )


@each_overlay
def test_readiness_follows_grpc_health_and_liveness_does_not(overlay: Path) -> None:
    for deployment in service_deployments(overlay):
        spec = catalog.spec(deployment["metadata"]["name"].replace("-", "_"))
        (container,) = deployment["spec"]["template"]["spec"]["containers"]

        # the whole server, which says NOT_SERVING while leased work keeps failing
        assert container["readinessProbe"]["grpc"] == {"port": spec.grpc_port}
        # a replica out of rotation for that is not restarted for it
        assert container["livenessProbe"]["tcpSocket"] == {"port": spec.grpc_port}


@each_overlay
def test_replicas_that_take_over_anchoring_share_what_it_remembers(overlay: Path) -> None:
    claims = {c["metadata"]["name"]: c for c in of_kind(overlay, "PersistentVolumeClaim")}
    shared = ["ReadWriteOnce"] if overlay.name.startswith("dev") else ["ReadWriteMany"]
    for spec in SPECS:
        if not spec.keeps_events:
            continue
        (deployment,) = [
            d for d in service_deployments(overlay) if d["metadata"]["name"] == host(spec.name)
        ]
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        (mount,) = [
            m for m in container["volumeMounts"] if m["mountPath"] == image_var_dir(spec.name)
        ]
        (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
        claim = claims[volume["persistentVolumeClaim"]["claimName"]]

        assert claim["spec"]["accessModes"] == shared  # dev: one node
        # set once: at every start it would open the anchor key to the group
        assert pod["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"


@each_overlay
def test_the_kafka_listener_takes_only_authenticated_clients_under_acls(overlay: Path) -> None:
    (kafka,) = of_kind(overlay, "Kafka")
    listeners = kafka["spec"]["kafka"]["listeners"]

    assert [(lis["tls"], lis["authentication"]["type"]) for lis in listeners] == [
        (True, "scram-sha-512")
    ]
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    assert "superUsers" not in kafka["spec"]["kafka"]["authorization"]
    assert "userOperator" in kafka["spec"]["entityOperator"]


@each_overlay
def test_each_service_is_a_kafka_user_with_the_acls_kafka_access_grants(overlay: Path) -> None:
    (kafka,) = of_kind(overlay, "Kafka")
    users = {u["metadata"]["name"]: u for u in of_kind(overlay, "KafkaUser")}
    (namespace,) = {
        configured(overlay, d["spec"]["template"]["spec"]["containers"][0])[
            "CIVITAS_KAFKA_NAMESPACE"
        ]
        for d in service_deployments(overlay)
    }

    assert sorted(users) == sorted(principal(spec.name) for spec in SPECS)
    for spec in SPECS:
        user = users[principal(spec.name)]

        assert user["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert user["spec"]["authorization"] == {
            "type": "simple",
            "acls": strimzi_acls(grants(spec.name, namespace)),
        }


@each_overlay
def test_the_settings_a_pod_gets_sign_it_in_as_its_kafka_user(
    overlay: Path, tmp_path: Path
) -> None:
    password = tmp_path / "password"  # what the Secret's volume holds in the pod
    password.write_text("from-strimzi\n")
    for deployment in service_deployments(overlay):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e["value"] for e in container["env"]}
        service = deployment["metadata"]["name"].replace("-", "_")
        given = {**configured(overlay, container), **env}

        security = kafka_security(service, {**given, "CIVITAS_KAFKA_PASSWORD_FILE": str(password)})

        assert security == KafkaSecurity(
            "SASL_SSL",
            "SCRAM-SHA-512",
            principal(service),
            "from-strimzi",
            env["CIVITAS_KAFKA_CA_FILE"],
        )


def cluster_policies(overlay: Path) -> list[dict[str, Any]]:
    (kafka,) = of_kind(overlay, "Kafka")
    return of_kind(overlay, "NetworkPolicy") + strimzi_policies(kafka)


def pods_of_services(overlay: Path) -> dict[str, Pod]:
    return {d["metadata"]["name"]: pod_of(d) for d in service_deployments(overlay)}


@each_overlay
def test_the_namespace_denies_every_connection_it_does_not_allow(overlay: Path) -> None:
    policies = cluster_policies(overlay)
    (namespace,) = {p.namespace for p in pods_of_services(overlay).values()}
    stranger = Pod(namespace, {"app": "debug"})
    (deny,) = [p for p in policies if p["metadata"]["name"] == "default-deny"]

    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    for spec in SPECS:
        service = pods_of_services(overlay)[host(spec.name)]
        for port in (spec.grpc_port, spec.metrics_port):
            assert not reachable(policies, stranger, service, port)
        assert not reachable(policies, service, Pod("elsewhere", {"app": "web"}), 443)
    (kafka,) = of_kind(overlay, "Kafka")
    assert not reachable(policies, stranger, kafka_broker(kafka), 9093)


@each_overlay
def test_a_service_calls_only_the_peers_the_catalog_names(overlay: Path) -> None:
    policies = cluster_policies(overlay)
    pods = pods_of_services(overlay)
    for caller in SPECS:
        for called in SPECS:
            if called is caller:
                continue
            allowed = reachable(
                policies, pods[host(caller.name)], pods[host(called.name)], called.grpc_port
            )

            assert allowed == (called.name in caller.peers), (caller.name, called.name)


@each_overlay
def test_a_service_reaches_dns_kafka_and_its_database_and_is_scraped(overlay: Path) -> None:
    policies = cluster_policies(overlay)
    (kafka,) = of_kind(overlay, "Kafka")
    (tls,) = kafka["spec"]["kafka"]["listeners"]
    dns = Pod("kube-system", {"k8s-app": "kube-dns"})
    prometheus = Pod("monitoring", {"app.kubernetes.io/name": "prometheus"})
    databases = [  # postgres, and kurrentdb where the overlay has it
        (pod_of(s), DATABASE_PORTS[s["metadata"]["name"]])
        for s in of_kind(overlay, "StatefulSet")
        if s["metadata"]["name"] in DATABASE_PORTS
    ]
    for spec in SPECS:
        service = pods_of_services(overlay)[host(spec.name)]

        assert reachable(policies, service, dns, 53)
        assert reachable(policies, service, kafka_broker(kafka), tls["port"])
        assert reachable(policies, prometheus, service, spec.metrics_port)
        assert not reachable(policies, prometheus, service, spec.grpc_port)
        for database, port in databases:
            assert reachable(policies, service, database, port)


def test_with_tracing_on_spans_reach_the_collector_and_tempo() -> None:
    overlay = overlay_named("dev-tracing")
    policies = cluster_policies(overlay)
    collector, tempo = (
        pod_of(w)
        for w in (*of_kind(overlay, "Deployment"), *of_kind(overlay, "StatefulSet"))
        if w["metadata"]["name"] in ("otel-collector", "tempo")
    )
    grafana = Pod("monitoring", {"app.kubernetes.io/name": "grafana"})

    for service in pods_of_services(overlay).values():
        assert reachable(policies, service, collector, 4317)
        assert not reachable(policies, service, tempo, 4317)
    assert reachable(policies, collector, tempo, 4317)
    assert reachable(policies, grafana, tempo, 3200)


def test_a_client_pod_calls_every_service_and_the_console_admits_an_ingress() -> None:
    overlay = overlay_named("dev")
    policies = cluster_policies(overlay)
    pods = pods_of_services(overlay)
    (demo,) = of_kind(overlay, "CronJob")
    labels = demo["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    client = Pod(demo["metadata"]["namespace"], labels)
    ingress = Pod("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
    insights = catalog.spec("insights")

    for spec in SPECS:
        assert reachable(policies, client, pods[host(spec.name)], spec.grpc_port)
    assert insights.http_port is not None
    assert reachable(policies, ingress, pods["insights"], insights.http_port)
    assert not reachable(policies, ingress, pods["insights"], insights.grpc_port)


def test_the_in_cluster_postgresql_takes_only_the_services() -> None:
    overlay = overlay_named("dev")
    policies = cluster_policies(overlay)
    (postgres,) = [pod_of(s) for s in of_kind(overlay, "StatefulSet")]
    (kafka,) = of_kind(overlay, "Kafka")

    assert not reachable(policies, kafka_broker(kafka), postgres, 5432)
    assert not reachable(policies, Pod(postgres.namespace, {"app": "debug"}), postgres, 5432)
