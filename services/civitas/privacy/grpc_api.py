"""Erasure: the privacy service every personal-data-keeping service serves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from civitas.chassis.auth import Role, authorize
from civitas.chassis.interceptor import current_principal
from civitas.errors import InvalidInput
from civitas.eventkit.personal import PersonalDataVault

from .v1 import privacy_pb2 as pb
from .v1 import privacy_pb2_grpc as pb_grpc

PRIVACY_SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PrivacyService"].full_name


class PrivacyServicer(pb_grpc.PrivacyServiceServicer):
    def __init__(self, vault: PersonalDataVault) -> None:
        self.vault = vault

    async def ForgetPerson(self, request: pb.ForgetPersonRequest, context: Any) -> Any:
        authorize(current_principal(), {Role.DISTRICT_ADMIN}, None)
        person_id = request.person_id.strip()
        if not person_id or len(person_id) > 200 or person_id.startswith("__"):
            raise InvalidInput(f"person_id {person_id!r} is not a person's id (1-200 characters)")
        return pb.ForgetPersonResponse(forgotten=await self.vault.forget(person_id))


def privacy_service(
    vault: PersonalDataVault,
) -> tuple[Callable[[Any, grpc.aio.Server], None], PrivacyServicer]:
    """The privacy service over a service's vault, for ``start_grpc_server``."""
    return pb_grpc.add_PrivacyServiceServicer_to_server, PrivacyServicer(vault)
