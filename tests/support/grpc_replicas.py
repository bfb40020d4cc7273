"""Stand-in replicas of a service for tests of client channels: real gRPC servers on
real sockets that answer a query (``GetAdminUnit``), a command with a request id
(``RegisterAdminUnit``) and a command without one (``ForgetPerson``), and keep what
each received. ``python -m tests.support.grpc_replicas PORT DELAY`` runs one in a
process of its own (to be SIGKILLed), printing ``called <method>`` as each call comes
in."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import Message

from civitas.party_orgs.v1 import party_orgs_pb2 as pb
from civitas.privacy.v1 import privacy_pb2 as privacy_pb

PARTY_ORGS = "civitas.party_orgs.v1.PartyOrgsService"
PRIVACY = "civitas.privacy.v1.PrivacyService"
METHODS: dict[str, tuple[str, type[Message], type[Message]]] = {
    "GetAdminUnit": (PARTY_ORGS, pb.GetAdminUnitRequest, pb.GetAdminUnitResponse),
    "RegisterAdminUnit": (PARTY_ORGS, pb.RegisterAdminUnitRequest, pb.RegisterAdminUnitResponse),
    "ForgetPerson": (PRIVACY, privacy_pb.ForgetPersonRequest, privacy_pb.ForgetPersonResponse),
}


@dataclass
class Replica:
    """One server: each call it received (method and request), answered after ``delay``
    seconds, or refused UNAVAILABLE when ``refusing`` (a replica that is going away)."""

    delay: float = 0.0
    refusing: bool = False
    received: list[tuple[str, Message]] = field(default_factory=list)
    announce: bool = False
    port: int = 0
    server: grpc.aio.Server | None = None

    def calls_of(self, method: str) -> list[Message]:
        return [request for name, request in self.received if name == method]

    async def start(self, port: int = 0) -> Replica:
        self.server = grpc.aio.server()
        for service in {service for service, _, _ in METHODS.values()}:
            handlers = {
                name: self._handler(name, request, reply)
                for name, (owner, request, reply) in METHODS.items()
                if owner == service
            }
            self.server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(service, handlers),)
            )
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        await self.server.start()
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(None)

    def _handler(self, name: str, request: type[Message], reply: type[Message]) -> Any:
        async def answer(message: Message, context: grpc.aio.ServicerContext) -> Message:
            self.received.append((name, message))
            if self.announce:
                print(f"called {name}", flush=True)
            if self.refusing:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "this replica is stopping")
            await asyncio.sleep(self.delay)
            return reply()

        return grpc.unary_unary_rpc_method_handler(
            answer,
            request_deserializer=request.FromString,
            response_serializer=lambda m: m.SerializeToString(),
        )


async def _serve(port: int, delay: float) -> None:
    replica = await Replica(delay=delay, announce=True).start(port)
    print(f"serving {replica.port}", flush=True)
    assert replica.server is not None
    await replica.server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1]), float(sys.argv[2])))
