"""Erasure: the privacy service every personal-data-keeping service serves."""

from __future__ import annotations

import re
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
PERSON_ID = re.compile(
    r"(?:[a-z_]{1,20}-)?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII
)
"""The ids vaults keep keys under: a member's id (a UUID), or the kind of person and a
UUID a vault drew (``resident-…``, ``volunteer-…``, ``holder-…``, ``staff-…``)."""


def person_id_in(value: str) -> str:
    """A person's id as the vaults write it, whole: nothing trimmed, no other case. An
    id that is near one (a space, a capital letter) would delete nothing and look as if
    it had: it is refused instead."""
    if not PERSON_ID.fullmatch(value):
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
