"""ACLs: what one principal may do on one topic or consumer group, and creating them."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kafka import KafkaAdminClient
from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourceType,
)

from .security import KafkaSecurity


@dataclass(frozen=True, slots=True)
class Grant:
    """Operations (Kafka's names: ``Write``, ``Read``, ``DescribeConfigs``…) a principal
    may do on one resource, a ``topic`` or a ``group`` named literally."""

    resource: str
    name: str
    operations: tuple[str, ...]


class AclsRefused(RuntimeError):
    """The broker created none, or only some, of the ACLs asked for."""


def _acls(principal: str, grant: Grant) -> list[ACL]:
    pattern = ResourcePattern(
        ResourceType[grant.resource.upper()], grant.name, ACLResourcePatternType.LITERAL
    )
    return [
        ACL(
            f"User:{principal}",
            "*",
            ACLOperation[re.sub(r"(?<=.)([A-Z])", r"_\1", operation).upper()],
            ACLPermissionType.ALLOW,
            pattern,
        )
        for operation in grant.operations
    ]


def _create(bootstrap: str, acls: list[ACL], security: KafkaSecurity) -> None:
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=10000, **security.kafka_python()
    )
    try:
        failed = admin.create_acls(acls)["failed"]
    finally:
        admin.close()
    if failed:
        acl, error = failed[0]
        raise AclsRefused(f"{len(failed)} of {len(acls)} ACLs refused, first {acl}: {error!r}")


async def create_acls(
    bootstrap: str, granted: Mapping[str, Sequence[Grant]], security: KafkaSecurity
) -> int:
    """Allow each principal its grants (creating an ACL that exists changes nothing), as
    ``security``'s principal, who must be allowed to (a super user); returns how many
    ACLs were asked for. Raises :class:`AclsRefused` if the broker refused any."""
    acls = [acl for who, grants in granted.items() for grant in grants for acl in _acls(who, grant)]
    await asyncio.to_thread(_create, bootstrap, acls, security)
    return len(acls)


def _delete(bootstrap: str, acls: list[ACL], security: KafkaSecurity) -> None:
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=10000, **security.kafka_python()
    )
    try:
        admin.delete_acls(acls)
    finally:
        admin.close()


async def revoke_acls(
    bootstrap: str, granted: Mapping[str, Sequence[Grant]], security: KafkaSecurity
) -> None:
    """Remove each principal's grants (those that are not there are passed over): for a
    namespace or a service taken out of use."""
    acls = [acl for who, grants in granted.items() for grant in grants for acl in _acls(who, grant)]
    await asyncio.to_thread(_delete, bootstrap, acls, security)
