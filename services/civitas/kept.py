"""What a service serves beside its own API, by what its spec says it keeps: the audit
service over its event store, the privacy service over its vault.

The chassis serves what it is given; this module, above the chassis, audit and
privacy, is where they meet, so the chassis imports neither."""

from __future__ import annotations

from civitas.audit.grpc_api import AUDIT_SERVICE_NAME, audit_service
from civitas.audit.history import Histories
from civitas.chassis.catalog import ServiceSpec
from civitas.chassis.service import Infrastructure, Served
from civitas.privacy.grpc_api import PRIVACY_SERVICE_NAME, privacy_service


def kept_services(spec: ServiceSpec, infra: Infrastructure) -> list[Served]:
    """The audit service (a service that keeps events: the histories of its aggregates)
    and the privacy service (one that keeps personal data)."""
    served = []
    if spec.keeps_events:
        histories = Histories(infra.store, spec.aggregate_types())
        served.append(Served(AUDIT_SERVICE_NAME, audit_service(histories)))
    if spec.personal_data:
        served.append(Served(PRIVACY_SERVICE_NAME, privacy_service(infra.vault)))
    return served
