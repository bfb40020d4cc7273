"""``civitas up --replicas N``'s layout (ports, targets, which stores replicas may share),
its arguments, and the restart backoff."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from civitas.cli import main
from civitas.replicas import layout, shared_store_refusal, targets
from civitas.restarts import Backoff, Child
from civitas.runner import platform_settings
from tests.support.platform import ROOT
from tests.support.process_state import logging_put_back
from tests.support.processes import eventually

POSTGRES = "postgresql://civitas:civitas@127.0.0.1:5432/civitas"


def test_replica_k_listens_on_each_port_of_its_service_plus_k_hundred() -> None:
    replicas = layout({"CIVITAS_CASES_GRPC_PORT": "12000"}, 2, "127.0.0.1")

    cases = [r for r in replicas if r.service == "cases"]
    insights = [r for r in replicas if r.service == "insights"]
    assert [r.name for r in cases] == ["cases#0", "cases#1"]
    assert [dict(r.ports) for r in cases] == [
        {"grpc_port": 12000, "metrics_port": 9102},
        {"grpc_port": 12100, "metrics_port": 9202},
    ]
    assert [r.ports["http_port"] for r in insights] == [8080, 8180]
    assert cases[1].settings({})["CIVITAS_CASES_GRPC_PORT"] == "12100"


def test_a_service_s_target_names_every_replica_or_its_one_address() -> None:
    two = targets(layout({}, 2, "127.0.0.1"))
    one = targets(layout({}, 1, "127.0.0.1"))

    assert two["party_orgs"] == "ipv4:127.0.0.1:50051,127.0.0.1:50151"
    assert one["party_orgs"] == "127.0.0.1:50051"
    assert [r.name for r in layout({}, 1, "127.0.0.1")][:2] == ["party_orgs", "cases"]


def test_ports_beyond_the_last_one_are_refused_with_the_port() -> None:
    with pytest.raises(ValueError, match="grpc_port would be 65600"):
        layout({"CIVITAS_CASES_GRPC_PORT": "65500"}, 2, "127.0.0.1")


def test_replicas_may_share_postgresql_stores_but_not_embedded_ones(tmp_path: Path) -> None:
    on_postgres = platform_settings(tmp_path, "s", postgres=POSTGRES)
    embedded = platform_settings(tmp_path, "s")

    assert shared_store_refusal(on_postgres, tmp_path, 2) is None
    assert shared_store_refusal(embedded, tmp_path, 1) is None
    refused = shared_store_refusal(embedded, tmp_path, 2)
    assert refused is not None
    assert refused.startswith("2 replicas of party_orgs would share its event store at sqlite")
    assert "--postgres URL" in refused


def test_a_service_s_own_store_setting_wins_over_postgres_for_all(tmp_path: Path) -> None:
    own = {"CIVITAS_CASES_VAULT_URL": f"sqlite:///{tmp_path}/vault.db"}
    env = {**platform_settings(tmp_path, "s", postgres=POSTGRES, kafka="k:9092"), **own}

    refused = shared_store_refusal(env, tmp_path, 2)
    assert env["CIVITAS_KAFKA_BOOTSTRAP"] == "k:9092"
    assert refused is not None
    assert "cases would share its vault at sqlite" in refused


@pytest.mark.parametrize(
    ("args", "refusal"),
    [
        (["--replicas", "0"], "--replicas: a whole number from 1 to 9, not '0'"),
        (["--replicas", "10"], "--replicas: a whole number from 1 to 9, not '10'"),
        (["--replicas", "two"], "--replicas: a whole number from 1 to 9, not 'two'"),
        (["--postgres", "sqlite:///x.db"], "--postgres: a postgresql://… URL, not 'sqlite"),
    ],
)
def test_civitas_up_refuses_a_replica_count_or_url_it_cannot_use(
    args: list[str], refusal: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with logging_put_back(), pytest.raises(SystemExit) as exited:
        main(["up", *args])

    assert exited.value.code == 2
    assert refusal in capsys.readouterr().err


def test_the_backoff_doubles_from_half_a_second_to_thirty() -> None:
    delays = [Backoff().delay(n) for n in range(1, 10)]

    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


async def test_a_process_that_keeps_exiting_is_restarted_with_backoff_until_stopped(
    capfd: pytest.CaptureFixture[str],
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = await Child.start("crashing#1", "", "tests.support.exits", env)
    stop = asyncio.Event()
    keeper = asyncio.create_task(child.keep_running(stop, Backoff(first=0.05, longest=0.2)))

    async def restarted_thrice() -> bool:
        return child.restarts >= 3

    await eventually(restarted_thrice, "three restarts", 30)
    stop.set()
    await asyncio.wait_for(keeper, 5)
    restarts, said = child.restarts, capfd.readouterr()

    assert restarts >= 3
    assert "civitas: crashing#1 restarted (exit code 3, restart 1)" in said.out
    assert "civitas: crashing#1 exited (exit code 3); starting it again in 0.05s" in said.err
    assert "starting it again in 0.1s" in said.err  # the second exit in a row waits longer
    assert child.restarts == restarts  # none after the stop
