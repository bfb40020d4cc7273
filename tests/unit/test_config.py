"""Settings from CIVITAS_ variables, and infrastructure chosen by URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from civitas.eventkit import (
    InMemoryEventStore,
    ManualClock,
    NewEvent,
    SqliteEventStore,
    StreamState,
    create_read_model_engine,
    open_event_store,
    setting,
)


def test_a_service_specific_setting_overrides_the_shared_one() -> None:
    environ = {
        "CIVITAS_EVENTSTORE_URL": "sqlite:///shared.db",
        "CIVITAS_CASES_EVENTSTORE_URL": "sqlite:///cases.db",
    }

    assert setting("eventstore_url", "cases", environ=environ) == "sqlite:///cases.db"
    assert setting("eventstore_url", "funds", environ=environ) == "sqlite:///shared.db"
    assert setting("kafka_url", "funds", default="none", environ=environ) == "none"


async def test_a_sqlite_url_opens_a_store_in_that_file(tmp_path: Path) -> None:
    store = await open_event_store(f"sqlite:///{tmp_path}/sub/events.db")

    assert isinstance(store, SqliteEventStore)
    assert Path(store.path) == tmp_path / "sub" / "events.db"
    assert (tmp_path / "sub" / "events.db").exists()
    await store.close()


async def test_memory_opens_a_fresh_store_that_keeps_nothing_after_it_closes(
    clock: ManualClock,
) -> None:
    first = await open_event_store("memory://", clock=clock)
    await first.append("case-1", [NewEvent("Happened", {})], StreamState.NO_STREAM)
    second = await open_event_store("memory://")

    assert isinstance(first, InMemoryEventStore)
    assert (await first.read_stream("case-1"))[0].occurred_at == clock.now()
    assert await second.read_all() == []
    await first.close()
    await second.close()


@pytest.mark.parametrize("url", ["memory://cases", "memory:///x", "memory:"])
async def test_a_memory_url_takes_nothing_after_it(url: str) -> None:
    with pytest.raises(ValueError, match="named by memory:// alone"):
        await open_event_store(url)
    with pytest.raises(ValueError, match="unknown database URL scheme"):
        create_read_model_engine("memory://")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://x/y", "unknown database URL scheme"),
        ("not a url", "not a store URL"),
        ("sqlite://", "names no file"),
        ("sqlite:///:memory:", "names no file"),
    ],
)
async def test_a_bad_store_url_is_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await open_event_store(url)
    with pytest.raises(ValueError, match=message):
        create_read_model_engine(url)


async def test_a_refused_store_url_never_shows_its_password() -> None:
    for url in ("mysql://civitas:hunter2@db/civitas", "sqlite://civitas:hunter2@"):
        with pytest.raises(ValueError, match=r"civitas:\*\*\*@") as refused:
            create_read_model_engine(url)
        assert "hunter2" not in str(refused.value)
