"""PostgreSQL: a transaction that took a lower position but commits late is never skipped."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from civitas.eventkit import NewEvent, PostgresEventStore, StreamState
from tests.conftest import POSTGRES_URL, drop_schema, missing_dependency, postgres_reachable

pytestmark = pytest.mark.postgres


async def test_a_reader_waits_for_a_slow_transaction_instead_of_skipping_its_event() -> None:
    if not await postgres_reachable():
        missing_dependency(f"PostgreSQL at {POSTGRES_URL}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    store = await PostgresEventStore.open(POSTGRES_URL, schema=schema)
    slow = await asyncpg.connect(POSTGRES_URL)
    try:
        slow_tx = slow.transaction()
        await slow_tx.start()
        await slow.fetchrow(  # takes the lower position, then holds its commit back
            f"SELECT * FROM {schema}.append_events($1, 'case', -2, $2, $3, $4, $5, $6, $7, $8, "
            "$9, $10)",
            "case-slow",
            [uuid.uuid4()],
            ["Slow"],
            [1],
            [datetime.now(UTC)],
            [None],
            [None],
            [None],
            ['{"n":1}'],
            [b"\x00" * 32],
        )
        fast = await store.append("case-fast", [NewEvent("Fast", {"n": 2})], StreamState.ANY)

        while_slow_runs = await store.read_all()
        await slow_tx.commit()
        after_commit = await store.read_all()

        assert while_slow_runs == [], "the fast event was shown before a lower position"
        assert [e.type for e in after_commit] == ["Slow", "Fast"]
        assert after_commit[0].position < after_commit[1].position == fast.position
    finally:
        await slow.close()
        await store.close()
        await drop_schema(schema)
