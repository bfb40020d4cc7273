"""``civitas replay <projection>``: rebuild a read model beside the live one, compare,
and swap it in on request.

The projection is replayed from the source service's event store (or its Kafka
topic, from the beginning) into shadow tables: a database file of its own next to
the live read model (SQLite), or a schema of its own (PostgreSQL). Then each table is
compared row by row with the live one, and the differences are reported. With
``--swap`` the shadow's rows and tracking replace the live ones, and the events
stored since the replay read its last one are applied, in one transaction: queries
go on being answered throughout (they see the old rows until the commit), and the
service's own projection goes on after it, its later deliveries of what the swap
applied passed over by per-stream versions.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from tqdm import tqdm

from civitas import catalog as services
from civitas.chassis.settings import Locations, kafka_security
from civitas.contracts import schemas_of
from civitas.eventkit import (
    CatchUpFeed,
    EventFilter,
    EventStore,
    Projection,
    ProjectionRunner,
    RecordedEvent,
    StoreFeed,
    create_read_model_engine,
    open_event_store,
    parking,
)
from civitas.eventkit.projection import (
    Check,
    apply_tracked,
    hold_projection,
    positions_table,
    streams_table,
    tracked_position,
)


@dataclass(frozen=True)
class Replayable:
    owner: str  # whose read model it is
    source: str  # whose events it reads
    build: Callable[[], Projection]


def catalog() -> dict[str, Replayable]:
    """Every projection a service declares, by name."""
    return {
        name: Replayable(owner, projected.source, projected.projection)
        for name, (owner, projected) in services.projections().items()
    }


@dataclass
class TableDiff:
    table: str
    live_rows: int
    shadow_rows: int
    only_live: list[tuple[Any, ...]]
    only_shadow: list[tuple[Any, ...]]

    @property
    def same(self) -> bool:
        return not self.only_live and not self.only_shadow


class ProgressFeed:
    """A catch-up feed that moves a progress bar as batches pass."""

    def __init__(self, feed: CatchUpFeed, bar: tqdm[Any], by_position: bool) -> None:
        self.feed = feed
        self.bar = bar
        self.by_position = by_position
        self.complete_streams = getattr(feed, "complete_streams", False)

    async def run(self, handle: Any, *, after: int, filter: EventFilter | None) -> None:
        raise NotImplementedError("a replay reads until it has caught up")

    async def read(
        self, *, after: int, filter: EventFilter | None, limit: int | None = None
    ) -> list[RecordedEvent]:
        batch = await self.feed.read(after=after, filter=filter, limit=limit)
        if batch:
            step = batch[-1].position - self.bar.n if self.by_position else len(batch)
            self.bar.update(max(0, step))
        return batch

    async def head(self) -> int:
        return await self.feed.head()


def settings_of(service: str, var: Path) -> Locations:
    """Where ``service`` keeps its stores under ``var`` (and its Kafka)."""
    return Locations.of(service, var=var)


def shadow_url(live_url: str, name: str) -> str:
    """Where the shadow tables go: a file beside the live one, or a schema beside it."""
    url = sa.make_url(live_url)
    if url.get_backend_name() == "sqlite":
        live = Path(url.database or "")
        return f"sqlite:///{live.with_name(f'{live.stem}.shadow-{name}{live.suffix}')}"
    shadow = f"{url.query.get('schema', 'public')}_shadow_{name}"
    if len(shadow) > 63:  # PostgreSQL would cut it short
        raise SystemExit(
            f"the shadow schema {shadow!r} is longer than PostgreSQL's 63 characters: "
            "give the read model a shorter schema"
        )
    return url.update_query_dict({"schema": shadow}).render_as_string(False)


def reset_shadow(url: str) -> None:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        Path(parsed.database or "").unlink(missing_ok=True)
        return
    schema = str(parsed.query["schema"])
    engine = sa.create_engine(parsed.difference_update_query(["schema"]))
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    engine.dispose()


def compare(live: sa.Engine, shadow: sa.Engine, tables: tuple[sa.Table, ...]) -> list[TableDiff]:
    diffs = []
    for table in tables:
        with live.connect() as conn:
            live_rows = Counter(tuple(r) for r in conn.execute(sa.select(table)))
        with shadow.connect() as conn:
            shadow_rows = Counter(tuple(r) for r in conn.execute(sa.select(table)))
        diffs.append(
            TableDiff(
                table.name,
                sum(live_rows.values()),
                sum(shadow_rows.values()),
                sorted((live_rows - shadow_rows).elements(), key=repr),
                sorted((shadow_rows - live_rows).elements(), key=repr),
            )
        )
    return diffs


def swap(
    live: sa.Engine,
    shadow_db: str,
    projection: Projection,
    events_after: Callable[[int], list[RecordedEvent]],
    check: Check | None = None,
) -> int:
    """Replace the live rows and tracking with the shadow's, then apply what came after
    the replay's last event (``events_after(position)``: the next batch from the source,
    empty at its end), in one transaction that holds the projection's lock; returns the
    position reached.

    The service's own runner goes on while a replay runs, and has applied events the
    shadow lacks; the swap puts those rows back, and only the catch-up in the same
    transaction mends them before anyone sees them. Were the catch-up a transaction of
    its own, the runner could apply a stream's next event between the two, and the
    catch-up would then pass over the ones before it as applied."""
    sqlite = live.dialect.name == "sqlite"
    source = "shadow" if sqlite else f'"{sa.make_url(shadow_db).query["schema"]}"'
    with live.connect() as conn:
        if sqlite:
            path = sa.make_url(shadow_db).database
            conn.exec_driver_sql(f"ATTACH DATABASE '{path}' AS shadow")
            conn.commit()
        try:
            with conn.begin():
                hold_projection(conn, projection.name)
                for table in projection.tables:
                    conn.exec_driver_sql(f'DELETE FROM "{table.name}"')
                    conn.exec_driver_sql(
                        f'INSERT INTO "{table.name}" SELECT * FROM {source}."{table.name}"'
                    )
                for table in (positions_table, streams_table):
                    conn.execute(table.delete().where(table.c.projection == projection.name))
                    conn.execute(
                        sa.text(
                            f'INSERT INTO "{table.name}" SELECT * FROM {source}."{table.name}" '
                            "WHERE projection = :p"
                        ),
                        {"p": projection.name},
                    )
                parking.copy_from(conn, source, projection.name)
                reached = tracked_position(conn, projection.name)
                while batch := events_after(reached):
                    apply_tracked(conn, projection, batch, check=check)
                    reached = batch[-1].position
        finally:
            if sqlite:
                conn.exec_driver_sql("DETACH DATABASE shadow")
                conn.commit()
    return reached


async def swap_in(
    projection: Projection,
    shadow_db: str,
    shadow: sa.Engine,
    live: sa.Engine,
    store: EventStore,
    check: Check | None = None,
) -> int:
    """:func:`swap`, caught up from the service's event store, on a worker thread.

    The shadow is first caught up outside the lock, so that the swap applies only the
    few events stored meanwhile: while it holds the lock, the service's projection (on
    SQLite, every writer of its read model) waits."""
    feed = StoreFeed(store, batch_size=5000, complete_streams=True)
    await ProjectionRunner(projection, feed, shadow, check=check).catch_up()
    loop = asyncio.get_running_loop()

    def events_after(position: int) -> list[RecordedEvent]:
        batch = feed.read(after=position, filter=projection.filter)
        return asyncio.run_coroutine_threadsafe(batch, loop).result(timeout=60)

    return await asyncio.to_thread(swap, live, shadow_db, projection, events_after, check)


class OriginStore:
    """The replayed service's event store: opened once, when first needed (a replay
    from Kafka needs it only for a swap: the relay's checkpoint, then the catch-up)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._store: EventStore | None = None

    async def get(self) -> EventStore:
        if self._store is None:
            self._store = await open_event_store(self.url)
        return self._store

    async def close(self) -> None:
        if self._store is not None:
            await self._store.close()


async def replay(name: str, source: str, do_swap: bool, var: Path) -> int:
    """Rebuild, compare, report, and swap if asked; 1 when differences stay live."""
    known = catalog()
    if name not in known:
        raise SystemExit(f"no projection {name!r}; replayable: {', '.join(sorted(known))}")
    spec = known[name]
    projection = spec.build()
    owner, origin = settings_of(spec.owner, var), settings_of(spec.source, var)
    shadow_db = shadow_url(owner.read_model_url, name)
    reset_shadow(shadow_db)
    live, shadow = (
        create_read_model_engine(owner.read_model_url),
        create_read_model_engine(shadow_db),
    )
    store = OriginStore(origin.eventstore_url)
    check = schemas_of(spec.source).check  # as the live consumer checks what it reads
    try:
        with tqdm(desc=f"replay {name} from {source}", unit="ev", file=sys.stderr) as bar:
            if source == "kafka":
                replayed = await replay_from_kafka(
                    spec.source, origin, projection, shadow, bar, store if do_swap else None
                )
            else:
                bar.total = await (await store.get()).head_position()
                whole = StoreFeed(await store.get(), batch_size=5000, complete_streams=True)
                feed = ProgressFeed(whole, bar, True)
                replayed = await ProjectionRunner(projection, feed, shadow, check=check).rebuild()
        diffs = compare(live, shadow, projection.tables)
        report(name, replayed, diffs)
        if all(d.same for d in diffs):
            print("the live read model equals the replay")
            return 0
        if do_swap:
            reached = await swap_in(projection, shadow_db, shadow, live, await store.get(), check)
            print(f"swapped: {name} now holds the replayed rows, caught up to {reached:,}")
            return 0
        print("differences stay in the live read model (run again with --swap to replace it)")
        return 1
    finally:
        live.dispose()
        shadow.dispose()
        await store.close()


async def replay_from_kafka(
    service: str,
    origin: Locations,
    projection: Projection,
    shadow: sa.Engine,
    bar: tqdm[Any],
    swapping_from: OriginStore | None,
) -> int:
    """Rebuild the shadow from the service's topic, from its beginning to where it ended
    when the replay began.

    For a swap (``swapping_from`` the service's store), the shadow's position is then
    set back to the relay's checkpoint as it was before the topic's ends were read: the
    relay has every partition acknowledge on its own, so above the checkpoint one
    partition may hold later events while another lacks earlier ones, and the catch-up
    from the store must start there. It passes over, by per-stream versions, what the
    shadow has."""
    from civitas.eventkit.kafka import events_topic
    from civitas.eventkit.kafka.history import relay_checkpoint
    from civitas.eventkit.kafka.replay import KafkaReplayFeed

    if not origin.kafka_bootstrap:
        raise SystemExit("--source kafka needs CIVITAS_KAFKA_BOOTSTRAP")
    topic = events_topic(service, origin.kafka_namespace)
    relayed = (
        await (await swapping_from.get()).load_checkpoint(relay_checkpoint(topic))
        if swapping_from
        else None
    )
    kafka = KafkaReplayFeed(origin.kafka_bootstrap, [topic], security=kafka_security(service))
    try:
        feed = ProgressFeed(kafka, bar, by_position=False)
        check = schemas_of(service).check
        reached = await ProjectionRunner(projection, feed, shadow, check=check).rebuild()
    finally:
        await kafka.close()
    if relayed is not None:
        await asyncio.to_thread(lower_position, shadow, projection.name, relayed)
    return reached


def lower_position(engine: sa.Engine, name: str, position: int) -> None:
    """Set a projection's tracked position back to ``position`` if it is beyond it."""
    with engine.begin() as conn:
        conn.execute(
            positions_table.update()
            .where(positions_table.c.projection == name, positions_table.c.position > position)
            .values(position=position)
        )


def report(name: str, position: int, diffs: list[TableDiff]) -> None:
    print(f"{name}: replayed to position {position:,}")
    for d in diffs:
        verdict = (
            "same"
            if d.same
            else f"{len(d.only_live)} only live, {len(d.only_shadow)} only replayed"
        )
        print(f"  {d.table}: {d.live_rows:,} live rows, {d.shadow_rows:,} replayed: {verdict}")
        for row in d.only_live[:3]:
            print(f"    live only:     {row}")
        for row in d.only_shadow[:3]:
            print(f"    replayed only: {row}")
