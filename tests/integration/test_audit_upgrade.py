"""`civitas audit upgrade`: a store from before the ledger gets its history chained
once, in place; running it again changes nothing."""

from __future__ import annotations

from pathlib import Path

from civitas.eventkit import NewEvent, SqliteEventStore, StreamState
from tests.support.platform import run_cli

SECRET = "audit-upgrade-secret-" + "q" * 40  # the audit commands mint no token


async def civitas(tmp_path: Path, *args: str) -> tuple[int, str]:
    return await run_cli([*args, "--var", str(tmp_path)], SECRET)


async def test_upgrade_chains_an_old_store_once_and_verify_then_passes(tmp_path: Path) -> None:
    (tmp_path / "cases").mkdir()
    old = SqliteEventStore(tmp_path / "cases" / "events.db", global_chain=False)  # as before
    await old.append("case-1", [NewEvent("Happened", {"n": n}) for n in range(3)], StreamState.ANY)
    await old.close()

    before, unsealed = await civitas(tmp_path, "audit", "verify", "--service", "cases")
    first, upgraded = await civitas(tmp_path, "audit", "upgrade", "--service", "cases")
    again, unchanged = await civitas(tmp_path, "audit", "upgrade", "--service", "cases")
    after, intact = await civitas(tmp_path, "audit", "verify", "--service", "cases")

    assert (before, first, again, after) == (1, 0, 0, 0)
    assert "civitas audit upgrade" in unsealed
    assert "first bad global position: 1 (case-1)" in unsealed
    assert "cases: 3 events added to the ledger" in upgraded
    assert "cases: 0 events added to the ledger" in unchanged
    assert "cases: 3 events in 1 streams: intact" in intact
    assert "ledger: 3 events sealed, 0 not yet" in intact
