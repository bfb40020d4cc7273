"""insights' gRPC health follows the projections it leads, as a service's does (#19): a
replica whose leased projections keep failing says NOT_SERVING, one that leads none
serves."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from civitas.chassis.readiness import FAILING_AFTER
from civitas.eventkit import ProjectionRunner
from civitas.insights.bootstrap import run_insights
from tests.support.cases_platform import settings_for
from tests.support.processes import eventually


async def _serving(port: int) -> bool:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=2
        )
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def _failing(self: ProjectionRunner) -> None:
    raise RuntimeError(f"the feed of {self.projection.name} refuses us")


async def test_an_insights_replica_whose_leased_projections_keep_failing_says_not_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ProjectionRunner, "run", _failing)
    settings = settings_for("insights", tmp_path)  # one read-model file: one set of leases
    async with run_insights(settings, port=0, http_port=0) as leader:

        async def leader_not_serving() -> bool:
            return not await _serving(leader.server.port)

        await eventually(leader_not_serving, "the failing leader to say NOT_SERVING", 15)
        assert set(leader.readiness.why_not) == {  # it leads every projection
            f"projection-{runner.projection.name}" for runner in leader.projections
        }
        async with run_insights(settings, port=0, http_port=0) as follower:
            await asyncio.sleep(FAILING_AFTER * 1.0 + 0.5)  # as long as the leader took to fail
            assert await _serving(follower.server.port)
            assert not await _serving(leader.server.port)
