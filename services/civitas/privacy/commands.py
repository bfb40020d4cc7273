"""``civitas forget <person>``: erase a person in every service that keeps personal data."""

from __future__ import annotations

import grpc

from civitas import catalog
from civitas.chassis.client import open_channel

from .v1 import privacy_pb2 as pb
from .v1 import privacy_pb2_grpc as pb_grpc

KEEPERS = catalog.personal_data_keepers()


async def forget(person_id: str, addresses: dict[str, str], token: str) -> int:
    """Ask each keeper to delete the person's key; 1 when one could not be reached or
    refused (the others are asked all the same: asking again is harmless)."""
    failed = 0
    for service in KEEPERS:
        channel = open_channel(addresses[service], lambda: token)
        try:
            reply = await pb_grpc.PrivacyServiceStub(channel).ForgetPerson(
                pb.ForgetPersonRequest(person_id=person_id)
            )
            said = "key deleted" if reply.forgotten else "no key held"
            print(f"{service:<12} {said}")
        except grpc.aio.AioRpcError as refused:
            failed += 1
            print(f"{service:<12} {refused.code().name}: {refused.details()}")
        finally:
            await channel.close(None)
    return 1 if failed else 0
