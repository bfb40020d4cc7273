"""No test writes to the default namespace: a session that used Kafka fails at its end
if a ``civitas.`` topic on the test broker grew, or a new one appeared, or a consumer
group named ``civitas.…`` committed offsets (a consumer left in the default namespace
reads the operator's topics, and moves its group on them).

The default namespace is an operator's: a test that published there once left another
store's events under the platform's own stream ids (#18). Tests use namespaces of
their own (``CIVITAS_KAFKA_NAMESPACE``, or a ``namespace=`` argument).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

DEFAULT_PREFIX = "civitas."
_BEFORE = pytest.StashKey[tuple[dict[str, int], dict[str, int]]]()


def default_namespace_sizes(bootstrap: str) -> dict[str, int]:
    """Messages ever written to each topic of the default namespace (end offsets summed)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        topics = sorted(t for t in consumer.topics() if t.startswith(DEFAULT_PREFIX))
        partitions = [
            TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()
        ]
        sizes = dict.fromkeys(topics, 0)
        for tp, end in consumer.end_offsets(partitions).items():
            sizes[tp.topic] += end
        return sizes
    finally:
        consumer.close()


def default_namespace_commits(bootstrap: str) -> dict[str, int]:
    """Offsets committed by each consumer group of the default namespace (summed)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        groups = sorted(
            g["group_id"] for g in admin.list_groups() if g["group_id"].startswith(DEFAULT_PREFIX)
        )
        offsets = admin.list_group_offsets(groups) if groups else {}
        return {g: sum(o.offset for o in offsets.get(g, {}).values()) for g in groups}
    finally:
        admin.close()


def writes_since(before: Mapping[str, int], after: Mapping[str, int]) -> list[str]:
    """What changed in the default namespace, one line per topic that grew or is new."""
    return [
        f"{topic}: {'a new topic, ' if topic not in before else ''}"
        f"+{size - before.get(topic, 0)} messages"
        for topic, size in sorted(after.items())
        if topic not in before or size > before[topic]
    ]


def commits_since(before: Mapping[str, int], after: Mapping[str, int]) -> list[str]:
    """The default namespace's consumer groups that committed, one line per group."""
    return [
        f"consumer group {group}: {'new, ' if group not in before else ''}"
        f"committed +{offset - before.get(group, 0)}"
        for group, offset in sorted(after.items())
        if group not in before or offset != before[group]
    ]


def uses_kafka(items: list[pytest.Item]) -> bool:
    return any(
        item.get_closest_marker("kafka") or "kafka_bootstrap" in getattr(item, "fixturenames", ())
        for item in items
    )


def record_before(
    session: pytest.Session, bootstrap: str, reachable: Callable[[str], bool]
) -> None:
    """At the end of collection: the sizes to compare with, when the session uses Kafka."""
    if uses_kafka(session.items) and reachable(bootstrap):
        session.stash[_BEFORE] = (
            default_namespace_sizes(bootstrap),
            default_namespace_commits(bootstrap),
        )


def fail_on_writes(session: pytest.Session, bootstrap: str) -> None:
    """At the end of the session: fail it, naming the topics and groups, if any test
    wrote or consumed there."""
    before = session.stash.get(_BEFORE, None)
    if before is None:
        return
    sizes, commits = before
    written = writes_since(sizes, default_namespace_sizes(bootstrap))
    written += commits_since(commits, default_namespace_commits(bootstrap))
    if written:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_sep("=", "tests wrote to the default namespace", red=True)
            reporter.write_line(
                f"a test must use a namespace of its own (CIVITAS_KAFKA_NAMESPACE, or "
                f"namespace=), never {DEFAULT_PREFIX}* on {bootstrap}:"
            )
            for line in written:
                reporter.write_line(f"  {line}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
