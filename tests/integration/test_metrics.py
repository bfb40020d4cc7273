"""The shared machinery's metrics move with the work they describe."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY

from civitas.eventkit import (
    ProjectionRunner,
    Repository,
    SqliteEventStore,
    StoreFeed,
    create_read_model_engine,
)
from tests.support.accounts import Account, BalancesProjection


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_appends_and_projected_events_are_counted_and_the_lag_is_set(
    tmp_path: Path,
) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    engine = create_read_model_engine(f"sqlite:///{tmp_path}/read.db")
    runner = ProjectionRunner(BalancesProjection(), StoreFeed(store), engine)
    appended = sample("civitas_events_appended_total", category="account")
    projected = sample("civitas_projection_events_total", projection=BalancesProjection.name)
    appends = sample("civitas_append_seconds_count")
    try:
        accounts = Repository(store, Account)
        for n in range(3):
            account = Account.open(f"a{n}", "周", "QH-01-01")
            account.deposit(100)
            await accounts.save(account)
        await runner.catch_up()
    finally:
        await store.close()
        engine.dispose()

    assert sample("civitas_events_appended_total", category="account") == appended + 6
    assert sample("civitas_append_seconds_count") == appends + 3
    assert (
        sample("civitas_projection_events_total", projection=BalancesProjection.name)
        == projected + 6
    )
    lag = REGISTRY.get_sample_value(
        "civitas_projection_lag_seconds", {"projection": BalancesProjection.name}
    )
    assert lag is not None
    assert 0 <= lag < 60


async def test_a_relay_that_has_published_nothing_yet_reads_zero_not_nothing(
    tmp_path: Path,
) -> None:
    from civitas.eventkit.kafka import Relay, TopicSpec

    store = SqliteEventStore(tmp_path / "events.db")
    try:
        relay = Relay(store, "127.0.0.1:1", TopicSpec("tnever.cases.events.v1"))  # never reached
        published = REGISTRY.get_sample_value(
            "civitas_events_published_total", {"topic": "tnever.cases.events.v1"}
        )
    finally:
        await store.close()

    assert relay.topic.name == "tnever.cases.events.v1"
    assert published == 0.0  # a series an alert can see, where before there was none
