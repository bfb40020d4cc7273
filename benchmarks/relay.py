"""The Kafka relay: its throughput beside the raw producer, and append-to-read-model latency.

Run with ``make bench-relay`` (starts the local broker) or ``python -m benchmarks.relay``.
Writes ``benchmarks/results/relay.json`` and prints a table.

1. Throughput, store -> Kafka. A SQLite event store is filled once with
   ``BENCH_RELAY_EVENTS`` (default 100,000) events of about 550 bytes of JSON data
   (messages of about 860 bytes) over ``STREAMS`` streams, interleaved in the log.
   Each repetition times ``Relay.drain()`` of the whole store to a fresh 6-partition
   topic (so a fresh checkpoint), against the raw aiokafka producer sending the very
   same messages (key, value and header bytes made beforehand with ``encode_event``)
   to another fresh 6-partition topic: idempotent, ``acks="all"``, the relay's linger and
   batch size, pipelined (every ``send()`` queued, then all acks gathered).
   Interleaved, relay and raw, ``BENCH_REPEATS`` (default 5) times after one
   warm-up run each; the median events/s of each and their ratio.
2. Latency, append -> read model. A writer appends single events to a fresh store
   at a fixed ``BENCH_RELAY_RATE`` (default 1,000 events/s) on a schedule (open
   loop: each append starts at its planned time as a task, whatever earlier appends
   are doing), for ``BENCH_RELAY_SECONDS`` (default 15 s) after 2 s of warm-up.
   The relay follows the store live (``Relay.run()``), a ``ProjectionRunner`` fed
   by a ``KafkaFeed`` (default batch settings) writes a small SQLite read model.
   Per event: the time from the start of its ``append`` call to the moment the
   read-model transaction that applied it had committed (the feed's handler,
   which awaits the runner's transaction, returned). p50 and p99 per repetition,
   ``BENCH_LATENCY_REPEATS`` (default 3) repetitions, each with a fresh store,
   topic, consumer group and read model; the median of the repetitions' figures.

Everything runs in this one process and event loop (writer, relay and consumer),
beside the broker on the same machine. The per-event times are kept in float
arrays indexed by the event's ``seq``, not in dicts of ids: a dict entry per event
would survive into the garbage collector's oldest generation and trigger full
collections (100+ ms pauses) that belong to the benchmark, not to the code measured.
Topics made here are deleted at the end of each case.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import re
import shutil
import statistics
import tempfile
import time
import uuid
from array import array
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from civitas.eventkit import (
    NewEvent,
    Projection,
    ProjectionRunner,
    RecordedEvent,
    SqliteEventStore,
    StreamState,
    create_read_model_engine,
    handles,
)
from civitas.eventkit.hashing import canonical_json
from civitas.eventkit.kafka import KafkaFeed, Relay, TopicSpec, encode_event, ensure_topics
from civitas.eventkit.kafka.topics import dead_letter_topic
from civitas.eventkit.projection import BatchHandler
from civitas.eventkit.records import EventFilter

from ._common import (
    Result,
    Target,
    code_state,
    env_float,
    env_int,
    format_table,
    interleaved,
    log,
    machine_info,
    write_results,
)

BOOTSTRAP = "127.0.0.1:9092"
EVENTS = env_int("BENCH_RELAY_EVENTS", 100_000)
REPEATS = env_int("BENCH_REPEATS", 5)
RATE = env_float("BENCH_RELAY_RATE", 1000.0)
SECONDS = env_float("BENCH_RELAY_SECONDS", 15.0)
WARMUP_SECONDS = 2.0
LATENCY_REPEATS = env_int("BENCH_LATENCY_REPEATS", 3)
PARTITIONS = 6
STREAMS = 2000  # streams in the throughput store
LIVE_STREAMS = 500  # streams the paced writer appends to, round-robin
FILL_WAVE = 1000  # concurrent single-event appends while filling (one per stream)
#: The relay's producer settings (civitas.eventkit.kafka.relay.idempotent_producer),
#: given alike to the raw producer.
LINGER_MS = 5
MAX_BATCH_SIZE = 512 * 1024
EVENT_TYPE = "IssueNoted"
RUN = uuid.uuid4().hex[:8]
NAMESPACE = f"bench{RUN}"  # the consumer groups' and their dead-letter topics' namespace
Message = tuple[bytes, bytes, tuple[tuple[str, bytes], ...]]


def event_data(n: int) -> dict[str, Any]:
    """A realistic event body: about 550 bytes of canonical JSON."""
    return {
        "case_id": f"case-{n % 997}",
        "title": "Street light out on Elm Street near the primary school",
        "description": (
            "Residents report that the street light at the corner has been out for three "
            "nights; the path to the school is dark in the early morning. Request #"
            f"{n:08d} forwarded by the grid worker after a visit."
        ),
        "reported_by": {"role": "resident", "grid": f"QH-{n % 40:02d}", "contact": "phone"},
        "location": {"district": "Qinghe", "street": "Elm Street", "lat": 40.0301, "lon": 116.3358},
        "tags": ["lighting", "street", "safety", "school"],
        "priority": n % 5,
        "seq": n,
    }


def unique(prefix: str) -> str:
    return f"bench.relay.{RUN}.{prefix}.{uuid.uuid4().hex[:8]}"


def kafka_version() -> str | None:
    """The broker version pinned in deploy/kafka/pom.xml (what ``make kafka-up`` runs)."""
    pom = Path(__file__).resolve().parent.parent / "deploy" / "kafka" / "pom.xml"
    with contextlib.suppress(OSError):
        found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom.read_text())
        if found:
            return found.group(1)
    return None


class Topics:
    """Topics made by this run; all deleted at the end."""

    def __init__(self) -> None:
        self.made: list[str] = []

    def spec(self, prefix: str) -> TopicSpec:
        spec = TopicSpec(unique(prefix), partitions=PARTITIONS)
        self.made.append(spec.name)
        return spec

    def add(self, name: str) -> None:
        self.made.append(name)

    async def delete_all(self) -> None:
        if self.made:
            await asyncio.to_thread(self._delete, list(self.made))
            self.made.clear()

    @staticmethod
    def _delete(names: list[str]) -> None:
        admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="civitas-bench")
        try:
            existing = set(admin.list_topics())
            gone = [name for name in names if name in existing]
            if gone:
                admin.delete_topics(gone, raise_errors=False)
        except KafkaError as exc:
            log(f"  could not delete the benchmark's topics: {exc!r}")
        finally:
            admin.close()


# -- 1. relay throughput ----------------------------------------------------------


async def fill_store(store: SqliteEventStore, total: int) -> None:
    """Single-event appends, a wave of ``FILL_WAVE`` streams at a time, so that the
    streams interleave in the log as they would with many writers."""
    n = 0
    while n < total:
        wave = range(n, min(n + FILL_WAVE, total))
        await asyncio.gather(
            *(
                store.append(
                    f"case-{i % STREAMS}", [NewEvent(EVENT_TYPE, event_data(i))], StreamState.ANY
                )
                for i in wave
            )
        )
        n = wave.stop


async def encoded_messages(store: SqliteEventStore) -> list[Message]:
    """The relay's messages for every event in the store, encoded once, beforehand."""
    messages: list[Message] = []
    after = 0
    identity = await store.identity()
    while batch := await store.read_all(after=after, limit=1000):
        for event in batch:
            key, value, headers = encode_event(event, identity)
            # tuples of bytes and str only, which the garbage collector stops tracking
            # (aiokafka wants a list: made per send, as the relay does)
            messages.append((key, value, tuple((k, v.encode()) for k, v in headers.items())))
        after = batch[-1].position
    return messages


async def until_led(producer: AIOKafkaProducer, topic: str) -> None:
    """Wait until every partition of a new topic has a leader (and a moment more), so
    that no run pays for a leader election (NotLeaderForPartition, retry, backoff)."""
    await producer.partitions_for(topic)
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline:
        await producer.client.force_metadata_update()
        led = producer.client.cluster.available_partitions_for_topic(topic) or ()
        if len(led) == PARTITIONS:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)


async def relay_drain(store: SqliteEventStore, topics: Topics, count: int) -> float:
    """``Relay.drain()`` of the whole store to a fresh topic; events/s."""
    spec = topics.spec("relay")
    relay = Relay(store, BOOTSTRAP, spec)
    await relay.start()  # creates the topic, connects the producer: not timed
    try:
        await until_led(relay.producer, spec.name)
        gc.collect()  # neither variant pays for the other's garbage
        started = time.perf_counter()
        position = await relay.drain()
        elapsed = time.perf_counter() - started
    finally:
        await relay.stop()
    if position != count:
        raise RuntimeError(f"the relay stopped at position {position}, not {count}")
    return count / elapsed


async def raw_produce(messages: Sequence[Message], topics: Topics) -> float:
    """The raw aiokafka producer sending the same messages to a fresh topic; events/s."""
    spec = topics.spec("raw")
    await ensure_topics(BOOTSTRAP, [spec])
    producer = AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP,
        enable_idempotence=True,
        acks="all",
        linger_ms=LINGER_MS,
        max_batch_size=MAX_BATCH_SIZE,
        client_id="civitas-bench-raw",
    )
    await producer.start()
    try:
        await until_led(producer, spec.name)
        gc.collect()
        started = time.perf_counter()
        acks = [
            await producer.send(spec.name, value, key=key, headers=list(headers))
            for key, value, headers in messages
        ]
        await asyncio.gather(*acks)
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    return len(messages) / elapsed


async def throughput_case(tmp: Path, topics: Topics) -> list[Result]:
    log(f"relay throughput: filling a store with {EVENTS:,} events over {STREAMS:,} streams")
    store = SqliteEventStore(tmp / "throughput.db")
    try:
        started = time.perf_counter()
        await fill_store(store, EVENTS)
        messages = await encoded_messages(store)
        value_bytes = [len(value) for _, value, _ in messages]
        log(
            f"  prepared in {time.perf_counter() - started:.1f}s; message values "
            f"{statistics.mean(value_bytes):.0f} bytes on average"
        )

        # Each run moves the whole store, whatever ``seconds`` says; the warm-up too.
        # The topics are deleted after all runs: a deletion's files go later, in the
        # broker's background, and would weigh on whichever run comes next.
        samples = await interleaved(
            {
                "relay": lambda _seconds: relay_drain(store, topics, EVENTS),
                "raw": lambda _seconds: raw_produce(messages, topics),
            },
            repeats=REPEATS,
            seconds=0,
            warmup_seconds=0,
            label="throughput.",
        )
    finally:
        await store.close()
        await topics.delete_all()
    size = {
        "events": EVENTS,
        "streams": STREAMS,
        "partitions": PARTITIONS,
        "mean_value_bytes": round(statistics.mean(value_bytes)),
        "mean_data_bytes": round(
            statistics.mean(len(canonical_json(event_data(i)).encode()) for i in range(1000))
        ),
    }
    return [
        Result(
            "relay.drain.store_to_kafka",
            samples["relay"],
            "events/s (higher is better)",
            f"raw aiokafka {version('aiokafka')} AIOKafkaProducer (enable_idempotence=True, "
            f'acks="all", linger_ms={LINGER_MS}, max_batch_size={MAX_BATCH_SIZE}) sending the '
            "same pre-encoded key/value/headers, pipelined (send() futures gathered), to a "
            f"fresh {PARTITIONS}-partition topic",
            samples["raw"],
            Target("ratio", ">=", 0.7),
            note="Relay.drain() of the whole store (read from SQLite, encode, send, acks, "
            "checkpoints) to a fresh topic each repetition; the baseline only sends",
            extra={"workload": size},
        )
    ]


# -- 2. append -> projection latency ------------------------------------------------


marks = sa.MetaData()
marks_table = sa.Table(
    "latency_marks",
    marks,
    sa.Column("event_id", sa.String(36), primary_key=True),
    sa.Column("stream_id", sa.String(255), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
)


class MarksProjection(Projection):
    """One row per event: a small, realistic read-model write."""

    name = "bench_latency_marks"

    def create(self, conn: sa.Connection) -> None:
        marks.create_all(conn)

    def clear(self, conn: sa.Connection) -> None:
        conn.execute(marks_table.delete())

    @handles(EVENT_TYPE)
    def on_noted(self, event: RecordedEvent, conn: sa.Connection) -> None:
        conn.execute(
            marks_table.insert().values(
                event_id=str(event.event_id), stream_id=event.stream_id, seq=event.data["seq"]
            )
        )


NAN = float("nan")


def clock_array(size: int) -> array[float]:
    """Per-event times, indexed by the event's ``seq``: no object per event is kept,
    so the benchmark's bookkeeping does not feed Python's garbage collector."""
    return array("d", [NAN]) * size


class CommitClock:
    """A feed that notes, per event, when the runner's handler for its batch returned,
    that is when the read-model transaction that applied it had committed."""

    def __init__(self, inner: KafkaFeed, size: int) -> None:
        self.inner = inner
        self.committed = clock_array(size)
        self.batches = 0
        self.events = 0
        self.progress = asyncio.Event()

    async def run(self, handle: BatchHandler, *, after: int, filter: EventFilter | None) -> None:
        committed = self.committed

        async def timed(batch: list[RecordedEvent]) -> None:
            await handle(batch)
            now = time.perf_counter()
            self.batches += 1
            self.events += len(batch)
            for event in batch:
                seq = event.data["seq"]
                if math.isnan(committed[seq]):  # the first commit counts, not a redelivery
                    committed[seq] = now
            self.progress.set()

        await self.inner.run(timed, after=after, filter=filter)

    def missing(self, seqs: range) -> int:
        committed = self.committed
        return sum(1 for seq in seqs if math.isnan(committed[seq]))


class PacedWriter:
    """Appends single events at a fixed rate, on a schedule (open loop): each append
    starts as a task at its planned time, whatever earlier appends are doing."""

    def __init__(self, store: SqliteEventStore, size: int) -> None:
        self.store = store
        self.next = 0
        self.planned = clock_array(size)
        self.started = clock_array(size)
        self.returned = clock_array(size)
        self.failures = 0

    async def _one(self, seq: int) -> None:
        event = NewEvent(EVENT_TYPE, event_data(seq))
        self.started[seq] = time.perf_counter()
        try:
            await self.store.append(f"case-{seq % LIVE_STREAMS}", [event], StreamState.ANY)
        except Exception:  # counted and reported; the run goes on
            self.failures += 1
            return
        self.returned[seq] = time.perf_counter()

    async def run(self, seconds: float, rate: float) -> range:
        """Append ``seconds * rate`` events; returns their ``seq`` numbers."""
        seqs = range(self.next, self.next + round(seconds * rate))
        self.next = seqs.stop
        pending: set[asyncio.Task[None]] = set()  # only the running ones: few objects kept
        begin = time.perf_counter()
        for i, seq in enumerate(seqs):
            due = begin + i / rate
            self.planned[seq] = due
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            task = asyncio.create_task(self._one(seq))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.wait(pending)
        return seqs


async def wait_for(clock: CommitClock, seqs: range, within: float) -> int:
    """Wait until every event is committed in the read model; returns how many are not."""
    deadline = time.perf_counter() + within
    while (missing := clock.missing(seqs)) and (left := deadline - time.perf_counter()) > 0:
        clock.progress.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(clock.progress.wait(), left)
    return missing


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return NAN
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def gaps_ms(later: array[float], earlier: array[float], seqs: range) -> list[float]:
    """``later - earlier`` in ms for each event where both are known."""
    gaps = (later[seq] - earlier[seq] for seq in seqs)
    return [gap * 1000 for gap in gaps if not math.isnan(gap)]


async def latency_run(tmp: Path, topics: Topics, rep: int) -> dict[str, Any]:
    """One repetition: fresh store, topic, group and read model; figures in ms."""
    size = round((WARMUP_SECONDS + SECONDS) * RATE)
    store = SqliteEventStore(tmp / f"live-{rep}.db")
    engine = create_read_model_engine(f"sqlite:///{tmp / f'read-model-{rep}.db'}")
    topic = topics.spec("live")
    group = unique("group")
    topics.add(dead_letter_topic(group, NAMESPACE))
    relay = Relay(store, BOOTSTRAP, topic)
    clock = CommitClock(KafkaFeed(BOOTSTRAP, [topic.name], group, namespace=NAMESPACE), size)
    runner = ProjectionRunner(MarksProjection(), clock, engine)
    writer = PacedWriter(store, size)
    await ensure_topics(BOOTSTRAP, [topic])  # so that the consumer finds it at once
    relay_task = asyncio.create_task(relay.run())
    runner_task = asyncio.create_task(runner.run())
    gc_before = gc_totals()
    try:
        warm = await writer.run(WARMUP_SECONDS, RATE)
        if missing := await wait_for(clock, warm, 60):
            raise RuntimeError(f"{missing} warm-up events never reached the read model")
        gc_before = gc_totals()
        measured = await writer.run(SECONDS, RATE)
        missing = await wait_for(clock, measured, 30)
        gc_after = gc_totals()
    finally:
        for task in (relay_task, runner_task):
            task.cancel()
        for task in (relay_task, runner_task):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await store.close()
        engine.dispose()
        await topics.delete_all()
    from_start = gaps_ms(clock.committed, writer.started, measured)
    from_return = gaps_ms(clock.committed, writer.returned, measured)
    appends = gaps_ms(writer.returned, writer.started, measured)
    late = gaps_ms(writer.started, writer.planned, measured)
    first = writer.started[measured.start]
    last = max(x for x in (writer.returned[seq] for seq in measured) if not math.isnan(x))
    figures: dict[str, Any] = {
        "events": len(measured),
        "missing": missing,
        "append_failures": writer.failures,
        "append_rate": (len(measured) - writer.failures) / (last - first),
        "p50": percentile(from_start, 50),
        "p90": percentile(from_start, 90),
        "p99": percentile(from_start, 99),
        "max": max(from_start),
        "p50_from_return": percentile(from_return, 50),
        "p99_from_return": percentile(from_return, 99),
        "append_p50": percentile(appends, 50),
        "append_p99": percentile(appends, 99),
        "start_late_p99": percentile(late, 99),
        "read_model_batches": clock.batches,
        "mean_read_model_batch": clock.events / clock.batches if clock.batches else 0.0,
        "gc_collections": {f"gen{g}": gc_after[g] - gc_before[g] for g in range(len(gc_after))},
    }
    log(
        f"  latency #{rep + 1}: p50 {figures['p50']:.1f} ms, p99 {figures['p99']:.1f} ms, "
        f"max {figures['max']:.1f} ms; appended {figures['append_rate']:,.0f} events/s "
        f"(append p99 {figures['append_p99']:.1f} ms), {missing} missing, "
        f"gc {figures['gc_collections']}"
    )
    return figures


def gc_totals() -> list[int]:
    """Collections so far, per generation of Python's garbage collector."""
    return [stats["collections"] for stats in gc.get_stats()]


async def latency_case(tmp: Path, topics: Topics) -> list[Result]:
    log(
        f"append -> read model latency: {RATE:,.0f} events/s for {SECONDS:g}s, "
        f"{LATENCY_REPEATS} repetitions"
    )
    runs = [await latency_run(tmp, topics, rep) for rep in range(LATENCY_REPEATS)]

    def series(key: str) -> list[float]:
        return [float(run[key]) for run in runs]

    how = (
        f"single-event appends at {RATE:,.0f}/s on a schedule (open loop) to {LIVE_STREAMS} "
        f"streams for {SECONDS:g}s; relay live (Relay.run), KafkaFeed (default batches) -> "
        "ProjectionRunner -> SQLite read model (WAL, synchronous=FULL), all in one process; "
        "per event, from the start of its append call to its read-model commit (the moment "
        "the feed's handler, which awaits the runner's transaction, returned)"
    )
    per_run = {
        "per_repetition": [
            {k: round(v, 1) if isinstance(v, float) else v for k, v in run.items()} for run in runs
        ]
    }
    return [
        Result(
            "kafka.append_to_projection.p50",
            series("p50"),
            "ms (lower is better)",
            note=how,
        ),
        Result(
            "kafka.append_to_projection.p99",
            series("p99"),
            "ms (lower is better)",
            target=Target("value", "<", 250),
            note=how,
            extra=per_run,
        ),
        Result(
            "kafka.append_to_projection.max",
            series("max"),
            "ms (lower is better)",
        ),
        Result(
            "kafka.append_to_projection.p99_from_append_return",
            series("p99_from_return"),
            "ms (lower is better)",
            note="the same, measured from the moment the append call returned",
        ),
        Result(
            "kafka.append_to_projection.append_rate",
            series("append_rate"),
            f"events/s appended (planned: {RATE:,.0f})",
            note="events appended / (last append returned - first append started)",
        ),
        Result(
            "kafka.append_to_projection.append_latency.p99",
            series("append_p99"),
            "ms (lower is better)",
            note="the append calls themselves (SQLite group commit, synchronous=FULL)",
        ),
    ]


# -- main -------------------------------------------------------------------------


async def run() -> list[Result]:
    tmp = Path(tempfile.mkdtemp(prefix="civitas-bench-relay-"))
    topics = Topics()
    try:
        results = await throughput_case(tmp, topics)
        results += await latency_case(tmp, topics)
    finally:
        await topics.delete_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def main() -> None:
    started = time.perf_counter()
    code = code_state("services/civitas/eventkit", "benchmarks")
    load_before = os.getloadavg()[0]
    results = asyncio.run(run())
    machine = machine_info(
        load_average_1m={"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        kafka=kafka_version(),
        kafka_broker="one KRaft node on loopback, same machine (make kafka-up)",
        aiokafka=version("aiokafka"),
        faststream=version("faststream"),
        kafka_python=version("kafka-python"),
    )
    path = write_results(
        "relay",
        machine,
        results,
        code=code,
        method={
            "repeats": REPEATS,
            "statistic": "median",
            "interleaved": True,
            "throughput_events": EVENTS,
            "latency_rate": RATE,
            "latency_seconds": SECONDS,
            "latency_warmup_seconds": WARMUP_SECONDS,
            "latency_repeats": LATENCY_REPEATS,
        },
    )
    print(format_table(results))
    log(f"wrote {path.name} in {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
