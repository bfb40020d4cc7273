"""Erasure: the privacy service every personal-data-keeping service serves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from civitas.chassis.auth import Role, authorize
from civitas.chassis.interceptor import current_principal
from civitas.errors import InvalidInput
from civitas.eventkit.personal import PersonalDataVault, is_person_id

from .v1 import privacy_pb2 as pb
from .v1 import privacy_pb2_grpc as pb_grpc

PRIVACY_SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PrivacyService"].full_name


def person_id_in(value: str) -> str:
    """A person's id as the vaults write it, whole: nothing trimmed, no other case. An
    id that is near one (a space, a capital letter) would delete nothing and look as if
    it had: it is refused instead."""
    if not is_person_id(value):
        raise InvalidInput(
            f"person_id {value[:60]!r} is not a person's id (a member's id, or "
            "resident-, volunteer-, holder-, staff- or mediator- and a UUID)"
        )
    return value


class PrivacyServicer(pb_grpc.PrivacyServiceServicer):
    def __init__(self, vault: PersonalDataVault) -> None:
        self.vault = vault

    async def ForgetPerson(self, request: pb.ForgetPersonRequest, context: Any) -> Any:
        authorize(current_principal(), {Role.DISTRICT_ADMIN}, None)
        person_id = person_id_in(request.person_id)
        return pb.ForgetPersonResponse(forgotten=await self.vault.forget(person_id))


def privacy_service(
    vault: PersonalDataVault,
) -> tuple[Callable[[Any, grpc.aio.Server], None], PrivacyServicer]:
    """The privacy service over a service's vault, for ``start_grpc_server``."""
    return pb_grpc.add_PrivacyServiceServicer_to_server, PrivacyServicer(vault)
