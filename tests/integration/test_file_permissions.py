"""What the platform writes under var/ is its owner's alone from the first moment:
folders 0700, files 0600 (SQLite's -wal, -shm and -journal too, and after a forget
has truncated a vault's WAL), whatever the umask; a token
secret that others may read or change is refused."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from civitas.chassis.settings import (
    ServiceSettings,
    UnsafeSecretFile,
    ensure_secret,
    read_secret,
)
from civitas.eventkit import NewEvent, StreamState, create_read_model_engine
from civitas.eventkit.personal import PersonalDataVault
from civitas.eventkit.sqlite import SqliteEventStore
from civitas.party_orgs.bootstrap import run_party_orgs
from tests.support.platform import ROOT
from tests.support.process_state import umask


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """The usual umask (group and others may read what is made): what is private must
    be made so on purpose."""
    with umask(0o022):
        yield


def modes(root: Path) -> dict[str, str]:
    """Every folder and file under ``root`` (itself too), by path, with its mode."""
    found = {root, *root.rglob("*")}
    return {
        str(path.relative_to(root.parent)): oct(stat.S_IMODE(path.stat().st_mode)) for path in found
    }


def not_owner_only(root: Path) -> dict[str, str]:
    return {
        path: mode
        for path, mode in modes(root).items()
        if int(mode, 8) & 0o077 or (Path(root.parent, path).is_dir() and mode != "0o700")
    }


def test_the_secret_and_var_are_created_owner_only(tmp_path: Path) -> None:
    var = tmp_path / "var"

    secret = ensure_secret(var)

    assert modes(var) == {"var": "0o700", "var/auth-secret": "0o600"}
    assert len(secret) >= 32
    assert ensure_secret(var) == read_secret(var) == secret  # made once, then read


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660])
def test_a_secret_that_others_may_read_or_change_is_refused_naming_the_fix(
    tmp_path: Path, mode: int
) -> None:
    var = tmp_path / "var"
    ensure_secret(var)
    path = var / "auth-secret"
    path.chmod(mode)

    for reading in (
        lambda: read_secret(var),
        lambda: ensure_secret(var),
        lambda: ServiceSettings.from_env("funds", {"CIVITAS_VAR_DIR": str(var)}),
    ):
        with pytest.raises(UnsafeSecretFile, match=f"run `chmod 600 {path}`"):
            reading()


async def test_civitas_up_refuses_a_world_readable_secret_and_says_what_to_run(
    tmp_path: Path,
) -> None:
    var = tmp_path / "var"
    ensure_secret(var)
    (var / "auth-secret").chmod(0o644)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIVITAS_")}
    up = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "civitas.cli", "up", "--var", str(var)],
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(up.communicate(), 60)

    assert up.returncode == 2
    assert f"run `chmod 600 {var / 'auth-secret'}`" in err.decode()
    assert "Traceback" not in err.decode()
    assert "starting" not in out.decode()  # no service was started


async def test_an_event_store_its_wal_and_shm_are_owner_only(tmp_path: Path) -> None:
    store = SqliteEventStore(tmp_path / "var" / "cases" / "events.db")
    try:
        await store.append("case-1", [NewEvent("CaseRegistered", {"n": 1})], StreamState.ANY)
        written = modes(tmp_path / "var")
    finally:
        await store.close()

    assert written == {
        "var": "0o700",
        "var/cases": "0o700",
        "var/cases/events.db": "0o600",
        "var/cases/events.db-wal": "0o600",
        "var/cases/events.db-shm": "0o600",
    }


def test_a_read_model_database_its_wal_and_shm_are_owner_only(tmp_path: Path) -> None:
    engine = create_read_model_engine(f"sqlite:///{tmp_path}/var/insights/read.db")
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE facts (n INTEGER)"))
            conn.execute(sa.text("INSERT INTO facts VALUES (1)"))
        written = modes(tmp_path / "var")
    finally:
        engine.dispose()

    assert written == {
        "var": "0o700",
        "var/insights": "0o700",
        "var/insights/read.db": "0o600",
        "var/insights/read.db-wal": "0o600",
        "var/insights/read.db-shm": "0o600",
    }


async def test_a_vault_of_personal_data_keys_is_owner_only_before_and_after_a_forget(
    tmp_path: Path,
) -> None:
    engine = create_read_model_engine(f"sqlite:///{tmp_path}/var/cases/vault.db")
    try:
        vault = PersonalDataVault(engine)
        await vault.setup()
        person = await vault.person_for("resident", "13800000000")
        await vault.seal(person, "王芳")
        written = modes(tmp_path / "var")
        await vault.forget(person)  # checkpoints, truncates the WAL, reopens connections
        await vault.seal(await vault.person_for("resident", "13800000001"), "李娜")
        after_forget = not_owner_only(tmp_path / "var")
    finally:
        engine.dispose()
    with contextlib.closing(sqlite3.connect(tmp_path / "var" / "cases" / "vault.db")) as conn:
        conn.execute("PRAGMA journal_mode=PERSIST")  # should SQLite use a rollback journal
        conn.execute("DELETE FROM personal_index")
        conn.commit()
        journal = modes(tmp_path / "var")["var/cases/vault.db-journal"]

    assert {path for path in written if path.startswith("var/cases/vault.db")} == {
        "var/cases/vault.db",
        "var/cases/vault.db-wal",
        "var/cases/vault.db-shm",
    }
    assert not_owner_only(tmp_path / "var") == after_forget == {}
    assert journal == "0o600"


async def test_a_running_service_has_made_nothing_that_others_may_open(tmp_path: Path) -> None:
    var = tmp_path / "var"
    ensure_secret(var)
    settings = ServiceSettings.from_env("party_orgs", {"CIVITAS_VAR_DIR": str(var)})

    async with run_party_orgs(settings, port=0):
        written = modes(var)
        private = not_owner_only(var)

    assert {
        "var/party_orgs/events.db-wal",
        "var/party_orgs/read.db",
        "var/party_orgs/vault.db",
    } <= set(written)
    assert private == {}
