"""The anchoring task every service that keeps events runs: every
``CIVITAS_ANCHOR_SECONDS`` (60; 0 turns it off) it signs its store's current tree head
when the store has grown, appends the anchor to its anchors file and, with Kafka, to its
anchors topic. It reads only the rows added since the last period."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiokafka import AIOKafkaProducer

from civitas.eventkit import EventStore, setting
from civitas.eventkit.anchors import (
    Anchor,
    AnchorError,
    StoreTree,
    anchors_topic,
    append_anchor,
    load_or_create_key,
    read_anchors,
    sign,
)
from civitas.eventkit.clock import Clock, SystemClock
from civitas.eventkit.kafka import TopicSpec, ensure_topics

from .settings import ServiceSettings

log = structlog.get_logger("civitas.anchors")


@dataclass(frozen=True, slots=True)
class AnchorSettings:
    """Where a service's anchor key and anchors file are, and how often it anchors."""

    service: str
    key_file: Path
    anchors_file: Path
    every: float

    @classmethod
    def of(cls, service: str, var: Path, env: Mapping[str, str]) -> AnchorSettings:
        """``CIVITAS_[<SERVICE>_]ANCHOR_KEY_FILE`` (default ``var/anchor.key``, shared by the
        services of one machine), ``CIVITAS_[<SERVICE>_]ANCHORS_FILE`` (default
        ``var/<service>/anchors.jsonl``) and ``CIVITAS_[<SERVICE>_]ANCHOR_SECONDS`` (60)."""
        every = float(setting("anchor_seconds", service, "60", env) or "60")
        if not every >= 0:
            raise ValueError(f"CIVITAS_ANCHOR_SECONDS must be 0 (off) or more, not {every}")
        return cls(
            service,
            Path(setting("anchor_key_file", service, str(var / "anchor.key"), env) or ""),
            Path(setting("anchors_file", service, str(var / service / "anchors.jsonl"), env) or ""),
            every,
        )


class Anchorer:
    """Signs a store's tree head when it has grown. On its first run it reads the whole
    store once and refuses to sign a history that does not extend the last anchor in its
    file (an :class:`AnchorError`, logged); later runs read only the new rows."""

    def __init__(
        self,
        store: EventStore,
        settings: AnchorSettings,
        *,
        kafka: KafkaAnchors | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.kafka = kafka
        self.clock = clock or SystemClock()
        self._tree: StoreTree | None = None
        self._last: Anchor | None = None

    async def anchor_once(self) -> Anchor | None:
        """Sign, write and publish the current tree head; None when nothing was added."""
        if self._tree is None:
            self._last = self._last_written()
            last = self._last
            self._tree = StoreTree({last.tree_size: bytes.fromhex(last.root)} if last else {})
        digest = await self._tree.catch_up(self.store)
        if self._tree.mismatches:
            size, _ = self._tree.mismatches[0]
            raise AnchorError(
                f"the store no longer extends its anchor at tree size {size}: not signing"
            )
        if self._last is not None and digest.tree_size <= self._last.tree_size:
            return None
        key = load_or_create_key(self.settings.key_file)
        anchor = sign(key, self.settings.service, digest, self.clock.now())
        append_anchor(self.settings.anchors_file, anchor)
        self._last = anchor
        if self.kafka is not None:
            await self.kafka.publish(anchor)
        return anchor

    async def run(self) -> None:
        """Anchor every period until cancelled."""
        while True:
            await asyncio.sleep(self.settings.every)
            try:
                await self.anchor_once()
            except AnchorError as refused:
                log.error("anchoring refused", reason=str(refused))

    def _last_written(self) -> Anchor | None:
        try:
            with self.settings.anchors_file.open() as lines:
                anchors = read_anchors(lines)
        except FileNotFoundError:
            return None
        return anchors[-1] if anchors else None


class KafkaAnchors:
    """Publishes anchors to ``civitas.<service>.anchors.v1`` (one partition, kept forever).
    A failed publish is logged; the anchors file keeps the anchor either way."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self._producer: AIOKafkaProducer | None = None

    async def publish(self, anchor: Anchor) -> None:
        try:
            if self._producer is None:
                await ensure_topics(self.bootstrap, [TopicSpec(self.topic, partitions=1)])
                producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
                await producer.start()
                self._producer = producer
            await self._producer.send_and_wait(
                self.topic, anchor.to_json().encode(), key=anchor.service.encode()
            )
        except Exception:
            log.exception("anchor not published to Kafka", topic=self.topic)

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()


@contextlib.asynccontextmanager
async def anchoring(store: EventStore, settings: ServiceSettings) -> AsyncIterator[None]:
    """Run the service's anchoring task while inside (none when its interval is 0)."""
    anchor_settings = AnchorSettings.of(settings.service, settings.var_dir, settings.environ)
    if not anchor_settings.every:
        yield
        return
    kafka = None
    if settings.kafka_bootstrap:
        topic = anchors_topic(settings.service, settings.kafka_namespace)
        kafka = KafkaAnchors(settings.kafka_bootstrap, topic)
    anchorer = Anchorer(store, anchor_settings, kafka=kafka)
    from .service import in_background  # service.py starts this task: imported late

    try:
        async with in_background(f"anchoring-{settings.service}", anchorer.run):
            yield
    finally:
        if kafka is not None:
            await kafka.close()
