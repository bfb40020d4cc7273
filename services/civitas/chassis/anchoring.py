"""The anchoring task every service that keeps events runs: every
``CIVITAS_ANCHOR_SECONDS`` (60; 0 turns it off) it signs its store's current tree head
when the store has grown, appends the anchor to its anchors file and, with Kafka, to its
anchors topic. It reads only the rows added since the last period.

What it signed last is remembered in the anchors file and, with Kafka, on the anchors
topic: on its first run it reads both and refuses to sign unless the store extends the
later one, and unless the file is there and not behind the topic. Without Kafka the file
is its only memory. Refusals are logged and counted (``civitas_anchoring_refusals_total``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from civitas.eventkit import EventStore, setting
from civitas.eventkit.anchors import (
    Anchor,
    AnchorError,
    StoreTree,
    append_anchor,
    load_or_create_key,
    read_anchors,
    sign,
)
from civitas.eventkit.clock import Clock, SystemClock
from civitas.eventkit.kafka import TopicSpec, ensure_topics
from civitas.eventkit.kafka.security import PLAINTEXT, KafkaSecurity
from civitas.eventkit.lease import lease_at
from civitas.eventkit.metrics import ANCHOR_LAST_SUCCESS, ANCHORING_REFUSALS

from .settings import ServiceSettings
from .topics import anchors_spec

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
        every = float(setting("anchor_seconds", service, "60", environ=env) or "60")
        if not every >= 0:
            raise ValueError(f"CIVITAS_ANCHOR_SECONDS must be 0 (off) or more, not {every}")
        return cls(
            service,
            Path(setting("anchor_key_file", service, str(var / "anchor.key"), environ=env) or ""),
            Path(
                setting("anchors_file", service, str(var / service / "anchors.jsonl"), environ=env)
                or ""
            ),
            every,
        )


REFUSAL_REASONS = ("not_extended", "file_behind", "topic_unreadable", "publish_failed", "error")


class AnchoringRefused(AnchorError):
    """The anchoring task will not sign; ``reason`` is one of :data:`REFUSAL_REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Anchorer:
    """Signs a store's tree head when it has grown. On its first run it reads the whole
    store once and the last anchor of its file and (with Kafka) of its topic, and refuses
    to sign (an :class:`AnchoringRefused`, logged and counted) a history that does not
    extend the later of the two, or while the file is missing or behind the topic; later
    runs read only the new rows."""

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
            last, expect = await self._remembered()
            self._tree, self._last = StoreTree(expect), last
        digest = await self._tree.catch_up(self.store)
        if self._tree.mismatches:
            size, _ = self._tree.mismatches[0]
            raise AnchoringRefused(
                "not_extended",
                f"the store no longer extends its anchor at tree size {size}: not signing",
            )
        if self._last is not None and digest.tree_size < self._last.tree_size:
            raise AnchoringRefused(
                "not_extended",
                f"the store holds {digest.tree_size:,} events, its last anchor covers "
                f"{self._last.tree_size:,}: events were deleted; not signing",
            )
        if self._last is not None and digest.tree_size == self._last.tree_size:
            ANCHOR_LAST_SUCCESS.labels(self.settings.service).set(self.clock.now().timestamp())
            return None
        key = load_or_create_key(self.settings.key_file)
        anchor = sign(key, self.settings.service, digest, self.clock.now())
        append_anchor(self.settings.anchors_file, anchor)
        self._last = anchor
        ANCHOR_LAST_SUCCESS.labels(self.settings.service).set(self.clock.now().timestamp())
        if self.kafka is not None and not await self.kafka.publish(anchor):
            ANCHORING_REFUSALS.labels(self.settings.service, "publish_failed").inc()
        return anchor

    async def run(self) -> None:
        """Anchor every period until cancelled."""
        service = self.settings.service
        for reason in REFUSAL_REASONS:  # every series there from the start, at 0
            ANCHORING_REFUSALS.labels(service, reason)
        ANCHOR_LAST_SUCCESS.labels(service).set(self.clock.now().timestamp())
        while True:
            await asyncio.sleep(self.settings.every)
            try:
                await self.anchor_once()
            except AnchorError as refused:
                reason = getattr(refused, "reason", "error")
                ANCHORING_REFUSALS.labels(service, reason).inc()
                log.error("anchoring refused", reason=reason, why=str(refused))

    async def _remembered(self) -> tuple[Anchor | None, dict[int, bytes]]:
        """The later of the file's and the topic's last anchors, and every root the store
        must reproduce; refused while the file is missing or behind the topic."""
        written = self._last_written()
        if self.kafka is None:
            return written, {written.tree_size: bytes.fromhex(written.root)} if written else {}
        try:
            published = await self.kafka.last()
        except Exception as unreadable:
            raise AnchoringRefused(
                "topic_unreadable",
                f"cannot read the last anchor on {self.kafka.topic} ({unreadable!r}): not "
                "signing until it can be read",
            ) from None
        if published is None:
            return written, {written.tree_size: bytes.fromhex(written.root)} if written else {}
        try:
            published.check(load_or_create_key(self.settings.key_file).public_key())
        except AnchorError as forged:
            raise AnchoringRefused(
                "error", f"the last anchor on {self.kafka.topic} does not check: {forged}"
            ) from None
        if written is None or written.tree_size < published.tree_size:
            held = f"{written.tree_size:,} events" if written else "missing"
            raise AnchoringRefused(
                "file_behind",
                f"the anchors file {self.settings.anchors_file} is {held}, its last anchor "
                f"on {self.kafka.topic} covers {published.tree_size:,}: restore the file "
                "from its copy elsewhere (or append the topic's anchors to it), then "
                "restart; not signing",
            )
        expect = {published.tree_size: bytes.fromhex(published.root)}
        if expect.setdefault(written.tree_size, bytes.fromhex(written.root)).hex() != written.root:
            raise AnchoringRefused(
                "not_extended",
                f"the anchors file and {self.kafka.topic} disagree on the root at tree size "
                f"{written.tree_size:,}: not signing",
            )
        return written, expect

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

    def __init__(
        self, bootstrap: str, topic: TopicSpec, security: KafkaSecurity = PLAINTEXT
    ) -> None:
        self.bootstrap = bootstrap
        self.security = security
        self.spec = topic
        self.topic = topic.name
        self._producer: AIOKafkaProducer | None = None

    async def last(self) -> Anchor | None:
        """The last anchor on the topic (its one partition's last message), or None when
        the topic is empty or not there yet."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            request_timeout_ms=10_000,
            **self.security.aiokafka(),
        )
        await consumer.start()
        try:
            if self.topic not in await consumer.topics():
                return None
            partition = TopicPartition(self.topic, 0)
            consumer.assign([partition])
            end = (await consumer.end_offsets([partition]))[partition]
            if end == 0:
                return None
            consumer.seek(partition, end - 1)
            message = await asyncio.wait_for(consumer.getone(partition), timeout=10)
            return Anchor.from_json((message.value or b"").decode("utf-8", "replace"))
        finally:
            await consumer.stop()

    async def publish(self, anchor: Anchor) -> bool:
        """Publish one anchor; False (logged) when Kafka did not take it."""
        try:
            if self._producer is None:
                await ensure_topics(self.bootstrap, [self.spec], self.security)
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap, acks="all", **self.security.aiokafka()
                )
                await producer.start()
                self._producer = producer
            await self._producer.send_and_wait(
                self.topic, anchor.to_json().encode(), key=anchor.service.encode()
            )
        except Exception:
            log.exception("anchor not published to Kafka", topic=self.topic)
            return False
        return True

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()


@contextlib.asynccontextmanager
async def anchoring(store: EventStore, settings: ServiceSettings) -> AsyncIterator[None]:
    """Run the service's anchoring task while inside (none when its interval is 0), on
    one replica at a time (under the lease ``anchoring-<service>``). Replicas that
    take it over must share the anchors file (``var``), or each holder's file is
    behind the topic and it refuses to sign."""
    anchor_settings = AnchorSettings.of(settings.service, settings.var_dir, settings.environ)
    if not anchor_settings.every:
        yield
        return
    kafka = None
    if settings.kafka_bootstrap:
        topic = anchors_spec(settings.service, settings.kafka_namespace)
        kafka = KafkaAnchors(settings.kafka_bootstrap, topic, settings.kafka_security)
    lease = lease_at(settings.read_model_url, f"anchoring-{settings.service}")

    async def anchor() -> None:  # anew at each lease taken: another may have signed since
        await Anchorer(store, anchor_settings, kafka=kafka).run()

    from .service import leading  # service.py starts this task: imported late

    try:
        async with leading(lease, anchor):
            yield
    finally:
        if kafka is not None:
            await kafka.close()
