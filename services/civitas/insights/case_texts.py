"""Where insights gets a case's sealed text for a timeline: cases' GetCaseTexts, asked
with the caller's own token, so that cases alone holds the keys and decides by the
caller's role and scope (insights has no token of its own for it, and no vault)."""

from __future__ import annotations

from typing import Protocol

import grpc
import structlog

from civitas.cases.v1 import cases_pb2 as pb
from civitas.cases.v1 import cases_pb2_grpc as pb_grpc
from civitas.chassis.client import open_channel

log = structlog.get_logger("civitas.insights")
Texts = dict[int, dict[str, str]]
"""A case's sealed text by event version, then by field."""


class CaseTexts(Protocol):
    async def of(self, case_id: str, authorization: str) -> Texts: ...


class CasesTexts:
    """GetCaseTexts on cases, with a deadline; ``{}`` when cases does not answer."""

    def __init__(self, address: str, timeout_seconds: float = 2.0) -> None:
        self._channel = open_channel(address, None, timeout_seconds=timeout_seconds)
        self._stub = pb_grpc.CasesServiceStub(self._channel)

    async def of(self, case_id: str, authorization: str) -> Texts:
        """The case's text as cases shows it to the caller whose ``authorization``
        header this is; nothing when cases cannot be reached or refuses: the timeline
        then shows the text as unavailable, never as what insights stores."""
        request = pb.GetCaseTextsRequest(case_id=case_id)
        try:
            reply = await self._stub.GetCaseTexts(
                request, metadata=(("authorization", authorization),)
            )
        except grpc.aio.AioRpcError as exc:
            log.warning("case text unavailable", case_id=case_id, code=exc.code().name)
            return {}
        return {t.version: dict(t.fields) for t in reply.texts}

    async def close(self) -> None:
        await self._channel.close(None)
