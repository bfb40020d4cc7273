"""``civitas dlq`` against real read-model databases: every argument checked before any
database is touched, ids bound to one consumer's database, a drop of what matches
listed and confirmed, and the OS account recorded next to ``--by``."""

from __future__ import annotations

import os
import pwd
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from civitas.cli import main
from civitas.eventkit import SqliteEventStore, create_read_model_engine, parking
from tests.support.parking import BROKEN, open_accounts, parked_of


@pytest.fixture
async def two_databases(
    tmp_path: Path, read_model_urls: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[list[tuple[sa.Engine, str]]]:
    """The cases and funds read models, each with one row parked (both row 1)."""
    store = SqliteEventStore(tmp_path / "events.db")
    await open_accounts(store, accounts=2, movements=1)
    [event] = await store.read_stream(BROKEN, from_version=1)
    await store.close()
    made = []
    for service, consumer in (("cases", "cases_index"), ("funds", "funds_ledger")):
        url = read_model_urls(service)
        monkeypatch.setenv(f"CIVITAS_{service.upper()}_READ_MODEL_URL", url)
        engine = create_read_model_engine(url)
        with engine.begin() as conn:
            parking.parking.create_all(conn)
            parking.park(conn, consumer, event, parking.Parking("failed", "it failed", None, 3))
        made.append((engine, consumer))
    yield made
    for engine, _ in made:
        engine.dispose()


def states(databases: list[tuple[sa.Engine, str]]) -> list[tuple[int, str, str | None]]:
    return [
        (row.id, row.state, row.resolved_by)
        for engine, consumer in databases
        for row in parked_of(engine, consumer)
    ]


@pytest.mark.parametrize(
    ("arguments", "refusal"),
    [
        (["--id", "1"], "--id needs --consumer"),
        (["--consumer", "nobody", "--id", "1"], "no consumer 'nobody'"),
        (["--consumer", "cases_index", "--id", "1", "--by", "b" * 65], "--by is longer than 64"),
        (["--consumer", "cases_index", "--reason", "r" * 501], "--reason is longer than 500"),
        (["--stream", "Account 1"], "is not 'category-id'"),
    ],
)
def test_a_drop_with_a_bad_argument_is_refused_naming_it_and_touches_no_database(
    two_databases: list[tuple[sa.Engine, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    refusal: str,
) -> None:
    reason = [] if "--reason" in arguments else ["--reason", "imported twice"]
    var = ["--var", str(tmp_path / "var")]

    assert main(["dlq", "drop", *arguments, *reason, "--yes", *var]) == 2

    assert refusal in capsys.readouterr().err
    assert states(two_databases) == [(1, parking.PARKED, None), (1, parking.PARKED, None)]


def test_a_drop_by_id_gives_up_that_row_of_that_consumer_only(
    two_databases: list[tuple[sa.Engine, str]], tmp_path: Path
) -> None:
    var = ["--var", str(tmp_path / "var")]

    assert (
        main(["dlq", "drop", "--consumer", "cases_index", "--id", "1", "--reason", "r", *var]) == 0
    )

    account = pwd.getpwuid(os.getuid()).pw_name
    assert states(two_databases) == [(1, parking.DROPPING, account), (1, parking.PARKED, None)]


def test_a_drop_of_what_matches_lists_it_and_asks_and_records_the_os_account_next_to_by(
    two_databases: list[tuple[sa.Engine, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    drop = ["dlq", "drop", "--stream", BROKEN, "--reason", "bad import", "--by", "li"]
    var = ["--var", str(tmp_path / "var")]
    answers = iter(["n", "y"])
    monkeypatch.setattr("builtins.input", lambda question: next(answers))

    assert main([*drop, *var]) == 1  # answered no
    listed = capsys.readouterr()
    assert "cases_index" in listed.out
    assert "funds_ledger" in listed.out
    assert "nothing dropped" in listed.err
    assert states(two_databases) == [(1, parking.PARKED, None), (1, parking.PARKED, None)]

    assert main([*drop, *var]) == 0  # answered yes
    assert "2 parked event(s) dropped" in capsys.readouterr().out
    who = f"li (OS account {pwd.getpwuid(os.getuid()).pw_name})"
    assert states(two_databases) == [(1, parking.DROPPING, who), (1, parking.DROPPING, who)]
