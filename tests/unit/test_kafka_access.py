"""Each service's Kafka principal, its ACLs from the catalog, and its client settings."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from civitas import catalog
from civitas.chassis.kafka_access import grants, platform_grants, principal, strimzi_acls
from civitas.chassis.settings import ServiceSettings, kafka_security
from civitas.eventkit.kafka.security import PLAINTEXT, KafkaSecurity

SECRET = {"CIVITAS_AUTH_SECRET": "s" * 32}


def written(service: str) -> set[str]:
    return {g.name for g in grants(service, "ns") if "Write" in g.operations}


def test_a_principal_is_civitas_and_the_service_with_dashes() -> None:
    assert principal("party_orgs") == "civitas-party-orgs"
    assert list(platform_grants("ns")) == [principal(name) for name in catalog.names()]


def test_a_service_writes_only_its_own_topics_and_its_dead_letters() -> None:
    assert written("cases") == {
        "ns.cases.events.v1",
        "ns.cases.anchors.v1",
        "ns.dlq.cases.funding_outcomes",
    }
    assert written("insights") == {f"ns.dlq.{p.name}" for p in catalog.spec("insights").projections}


def test_every_consumer_reads_its_sources_topic_through_its_own_group() -> None:
    for spec in catalog.SERVICES:
        granted = {(g.resource, g.name): g.operations for g in grants(spec.name, "ns")}
        for manager in spec.process_managers:
            assert "Read" in granted["group", f"ns.{manager.name}"]
            assert "Read" in granted["topic", f"ns.{manager.source}.events.v1"]
    assert not any(g.resource == "cluster" for g in grants("funds", "ns"))


def test_the_acls_print_as_a_strimzi_kafka_users_acls() -> None:
    (first, *_) = strimzi_acls(grants("cases", "ns"))
    assert first == {
        "resource": {"type": "topic", "name": "ns.cases.events.v1", "patternType": "literal"},
        "operations": ["Write", "Read", "Create", "Describe", "DescribeConfigs"],
        "host": "*",
    }


def test_plaintext_is_the_default_and_a_service_authenticates_as_its_own_principal(
    tmp_path: Path,
) -> None:
    assert ServiceSettings.from_env("cases", SECRET).kafka_security == PLAINTEXT
    (tmp_path / "password").write_text("s3cret\n")
    env = {
        **SECRET,
        "CIVITAS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "CIVITAS_KAFKA_PASSWORD_FILE": str(tmp_path / "password"),
    }
    security = ServiceSettings.from_env("party_orgs", env).kafka_security
    assert security == KafkaSecurity(
        "SASL_PLAINTEXT", "SCRAM-SHA-512", "civitas-party-orgs", "s3cret"
    )
    assert "s3cret" not in repr(security) + repr(ServiceSettings.from_env("cases", env))
    assert security.aiokafka()["sasl_plain_username"] == "civitas-party-orgs"
    own = {**env, "CIVITAS_CASES_KAFKA_USERNAME": "cases-blue"}
    assert kafka_security("cases", own).username == "cases-blue"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CIVITAS_KAFKA_SECURITY_PROTOCOL": "SSL"}, "security protocol is one of"),
        ({"CIVITAS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs a username and a password"),
        (
            {
                "CIVITAS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "CIVITAS_KAFKA_PASSWORD": "p",
                "CIVITAS_KAFKA_SASL_MECHANISM": "GSSAPI",
            },
            "SASL mechanism is one of",
        ),
        (
            {
                "CIVITAS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "CIVITAS_KAFKA_PASSWORD_FILE": "/nonexistent/kafka-password",
            },
            "CIVITAS_KAFKA_PASSWORD_FILE /nonexistent/kafka-password cannot be read",
        ),
    ],
)
def test_bad_kafka_security_settings_are_refused_naming_what_to_set(
    env: dict[str, str], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        ServiceSettings.from_env("cases", {**SECRET, **env})


def test_sasl_ssl_gives_every_client_library_tls_with_the_ca_file() -> None:
    security = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "civitas-cases", "pw", ca_file=None)

    assert isinstance(security.aiokafka()["ssl_context"], ssl.SSLContext)
    assert security.kafka_python()["security_protocol"] == "SASL_SSL"
    broker = security.faststream()
    assert broker is not None
    assert broker.use_ssl
    assert PLAINTEXT.aiokafka() == PLAINTEXT.kafka_python() == {}
    assert PLAINTEXT.faststream() is None
