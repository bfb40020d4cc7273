"""Whether the NetworkPolicies of a rendered overlay let one pod open a connection to
another, by the rules of networking.k8s.io/v1: a connection needs the source's egress
and the destination's ingress allowed; a pod that no policy of a direction selects is
open in that direction, one that some policy selects gets only what such a policy's
rules allow.

Strimzi makes the ingress policies of its Kafka pods itself, from each listener's
``networkPolicyPeers``: :func:`strimzi_policies` stands in for them. An ``ipBlock``
is taken to match every address, pods' included (what a wide CIDR does on most
network plugins), so an answer errs towards "reachable"."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Resource = dict[str, Any]


@dataclass(frozen=True)
class Pod:
    """A pod, as policies see it: its namespace and labels."""

    namespace: str
    labels: dict[str, str] = field(default_factory=dict)


def selects(selector: Resource, labels: dict[str, str]) -> bool:
    """Whether a label selector (``matchLabels`` only; an empty one selects all) matches."""
    assert not selector.get("matchExpressions"), "matchExpressions: not modelled here"
    wanted = selector.get("matchLabels", {})
    return all(labels.get(key) == value for key, value in wanted.items())


def _peer_matches(peer: Resource, pod: Pod, namespace: str) -> bool:
    if "ipBlock" in peer:
        return True
    namespaces = peer.get("namespaceSelector")
    if namespaces is None:
        in_namespace = pod.namespace == namespace
    else:
        in_namespace = selects(namespaces, {"kubernetes.io/metadata.name": pod.namespace})
    return in_namespace and selects(peer.get("podSelector", {}), pod.labels)


def _rule_allows(rule: Resource, peers_key: str, other: Pod, port: int, namespace: str) -> bool:
    ports = rule.get("ports")
    if ports is not None and not any(p.get("port") == port for p in ports):
        return False
    peers = rule.get(peers_key)
    return peers is None or any(_peer_matches(peer, other, namespace) for peer in peers)


def _allowed(policies: Iterable[Resource], pod: Pod, other: Pod, port: int, direction: str) -> bool:
    """Whether ``pod``'s policies of ``direction`` (Ingress, Egress) let ``other`` through."""
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    applying = [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and selects(p["spec"]["podSelector"], pod.labels)
        and direction in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not applying:
        return True
    return any(
        _rule_allows(rule, peers_key, other, port, pod.namespace)
        for policy in applying
        for rule in policy["spec"].get(rules_key) or []
    )


def reachable(policies: list[Resource], source: Pod, target: Pod, port: int) -> bool:
    """Whether ``source`` may open a connection to ``target``'s ``port``."""
    return _allowed(policies, source, target, port, "Egress") and _allowed(
        policies, target, source, port, "Ingress"
    )


def strimzi_policies(kafka: Resource) -> list[Resource]:
    """The ingress policies Strimzi makes for a Kafka cluster's listeners: each listener
    port open to its ``networkPolicyPeers`` (to everyone without them)."""
    rules = []
    for listener in kafka["spec"]["kafka"]["listeners"]:
        rule: Resource = {"ports": [{"port": listener["port"]}]}
        if listener.get("networkPolicyPeers"):
            rule["from"] = listener["networkPolicyPeers"]
        rules.append(rule)
    name, namespace = kafka["metadata"]["name"], kafka["metadata"]["namespace"]
    return [
        {
            "metadata": {"name": f"{name}-network-policy-kafka", "namespace": namespace},
            "spec": {
                "podSelector": {"matchLabels": {"strimzi.io/name": f"{name}-kafka"}},
                "policyTypes": ["Ingress"],
                "ingress": rules,
            },
        }
    ]


def kafka_broker(kafka: Resource) -> Pod:
    """A broker pod of a Strimzi cluster, with the labels Strimzi gives it."""
    name = kafka["metadata"]["name"]
    labels = {
        "strimzi.io/cluster": name,
        "strimzi.io/kind": "Kafka",
        "strimzi.io/name": f"{name}-kafka",
        "strimzi.io/broker-role": "true",
    }
    return Pod(kafka["metadata"]["namespace"], labels)


def pod_of(workload: Resource) -> Pod:
    """A pod a Deployment or StatefulSet makes."""
    labels = workload["spec"]["template"]["metadata"]["labels"]
    return Pod(workload["metadata"]["namespace"], dict(labels))
