"""Before the platform starts on Kafka: are its topics its own, and as declared?

``civitas up`` asks this first, so that an operator reads one plain answer (what is
wrong, and the ways out) instead of a relay's traceback in one service's log. Each
relay checks the same again when it starts: a service started on its own is held to
it too.
"""

from __future__ import annotations

from collections.abc import Sequence

from civitas.eventkit import open_event_store
from civitas.eventkit.kafka.history import check_history, owner_of
from civitas.eventkit.kafka.security import KafkaSecurity
from civitas.eventkit.kafka.topics import check_topics

from .settings import Locations, kafka_security
from .topics import events_spec, platform_topics


async def check_kafka(
    bootstrap: str,
    namespace: str,
    keepers: Sequence[Locations],
    security: KafkaSecurity | None = None,
) -> None:
    """Raise :class:`~civitas.eventkit.kafka.topics.TopicMismatch` for a topic of the
    namespace that differs from its declaration, or
    :class:`~civitas.eventkit.kafka.history.ForeignHistory` for an events topic that
    holds another store's events than its service's. Creates nothing on Kafka (a
    service's store is made if it is missing, as the service would make it). It asks as
    ``security`` says, by default as the shared ``CIVITAS_KAFKA_*`` settings say: with
    ACLs, a principal that may describe and read every topic (an admin)."""
    security = kafka_security(None) if security is None else security
    await check_topics(bootstrap, platform_topics(namespace), security)
    for where in keepers:
        topic = events_spec(where.service, namespace).name
        store = await open_event_store(where.eventstore_url)
        try:
            owner = await owner_of(store, topic)
        finally:
            await store.close()
        await check_history(bootstrap, topic, owner, security)
