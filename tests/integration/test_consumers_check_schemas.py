"""Consumers check what they receive against the schema of its type and version before
handling it: a schema-invalid event reaching a running consumer (insights, as its
bootstrap builds it) is parked with the reason, its stream's later events wait behind
it, and other streams are applied."""

from __future__ import annotations

from pathlib import Path

from civitas.eventkit import NewEvent, StreamState, open_event_store
from civitas.eventkit.parking import select
from civitas.insights.bootstrap import run_insights
from civitas.party_orgs.domain.units import AdminUnit
from tests.support.cases_platform import settings_for
from tests.support.every_event import store_history
from tests.support.processes import eventually, streams_applied


def renamed_grid(code: str) -> AdminUnit:
    """A grid registered and renamed through its aggregate: two valid events."""
    grid = AdminUnit.register(code, "一网格", 900, [])
    grid.rename("第一网格")
    return grid


async def test_a_schema_invalid_event_is_parked_by_a_running_consumer(tmp_path: Path) -> None:
    settings = settings_for("insights", tmp_path, CIVITAS_CASES_ADDRESS="127.0.0.1:1")
    store = await open_event_store(settings.of_peer("party_orgs").eventstore_url)
    forged = renamed_grid("QH-01-01-G01")
    registered, rename = forged.collect_pending()
    await store.append(
        forged.stream_id,
        [
            NewEvent("UnitRegistered", registered.to_data() | {"population": "many"}),
            NewEvent("UnitRenamed", rename.to_data()),
        ],
        StreamState.NO_STREAM,
    )
    genuine = renamed_grid("QH-01-01-G02")
    await store_history(store, [genuine])
    await store.close()

    async with run_insights(settings, port=0, http_port=0) as insights:
        engine = insights.projections[0].engine

        def parked() -> list[tuple[str, int | None, str]]:
            with engine.connect() as conn:
                rows = select(conn, consumer="insights_party")
            return [(row.stream_id, row.stream_version, row.reason) for row in rows]

        async def both_parked() -> bool:
            return len(parked()) == 2

        await streams_applied(engine, {"insights_party": {genuine.stream_id: 1}}, "genuine", 30)
        await eventually(both_parked, "the forged stream parked", seconds=30)

    assert parked() == [
        (
            forged.stream_id,
            0,
            'invalid: UnitRegistered v1: data.population: "many" is not of type "integer"',
        ),
        (forged.stream_id, 1, f"behind: {forged.stream_id}@0 is parked"),
    ]
