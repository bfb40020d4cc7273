"""The relay each service runs beside its store when Kafka is configured."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import structlog

from civitas.eventkit import EventStore
from civitas.eventkit.kafka import Relay
from civitas.eventkit.lease import lease_at

from .service import leading
from .settings import ServiceSettings
from .topics import events_spec

log = structlog.get_logger("civitas.relay")


@contextlib.asynccontextmanager
async def relaying(store: EventStore, settings: ServiceSettings) -> AsyncIterator[Relay | None]:
    """Run the service's relay to ``civitas.<service>.events.v1`` while inside, on one
    replica at a time (under the lease ``relay-<service>``; a relay that refuses the
    topic makes its replica not ready); without ``CIVITAS_KAFKA_BOOTSTRAP`` there is
    none and consumers read the store directly."""
    if not settings.kafka_bootstrap:
        yield None
        return
    topic = events_spec(settings.service, settings.kafka_namespace)
    relay = Relay(store, settings.kafka_bootstrap, topic, security=settings.kafka_security)
    lease = lease_at(settings.read_model_url, f"relay-{settings.service}")
    log.info("relaying", topic=topic.name, bootstrap=settings.kafka_bootstrap)
    async with leading(lease, relay.run):
        yield relay
