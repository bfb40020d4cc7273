"""The audit service every event-keeping service serves: read only, auditors only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from civitas.chassis.auth import Role, authorize
from civitas.chassis.convert import timestamp_in, timestamp_out
from civitas.chassis.interceptor import current_principal

from .history import Histories, state_json
from .v1 import audit_pb2 as pb
from .v1 import audit_pb2_grpc as pb_grpc

AUDITORS = {Role.AUDITOR}
AUDIT_SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AuditService"].full_name


class AuditServicer(pb_grpc.AuditServiceServicer):
    def __init__(self, histories: Histories) -> None:
        self.histories = histories

    async def GetHistory(self, request: pb.GetHistoryRequest, context: Any) -> Any:
        authorize(current_principal(), AUDITORS, None)
        history = await self.histories.history(
            request.stream_id,
            as_of=timestamp_in(request.as_of) if request.HasField("as_of") else None,
            version=request.version if request.HasField("version") else None,
        )
        return pb.GetHistoryResponse(
            stream_id=history.stream_id,
            version=history.version,
            state_json=state_json(history.state),
            events=[
                pb.HistoryEvent(
                    version=e.stream_version,
                    position=e.position,
                    type=e.type,
                    schema_version=e.schema_version,
                    occurred_at=timestamp_out(e.occurred_at),
                    actor=e.actor or "",
                    correlation_id=e.correlation_id or "",
                    causation_id=e.causation_id or "",
                    data_json=state_json(e.data),
                    hash_hex=e.hash.hex(),
                )
                for e in history.events
            ],
        )

    async def VerifyChains(self, request: pb.VerifyChainsRequest, context: Any) -> Any:
        authorize(current_principal(), AUDITORS, None)
        report = await self.histories.verify()
        return pb.VerifyChainsResponse(
            streams=report.streams,
            events=report.events,
            broken=[
                pb.BrokenLink(
                    stream_id=b.stream_id,
                    stream_version=b.stream_version,
                    position=b.position or 0,
                    reason=b.reason,
                )
                for b in report.broken
            ],
        )


def audit_service(
    histories: Histories,
) -> tuple[Callable[[Any, grpc.aio.Server], None], AuditServicer]:
    """The audit service over a service's own histories, for ``start_grpc_server``."""
    return pb_grpc.add_AuditServiceServicer_to_server, AuditServicer(histories)
