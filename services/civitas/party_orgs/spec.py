"""party_orgs as the platform knows it (registered in :mod:`civitas.catalog`)."""

from civitas.chassis.catalog import Projected, ServiceSpec

SPEC = ServiceSpec(
    name="party_orgs",
    grpc_port=50051,
    metrics_port=9101,
    summary="administrative units, party organizations, members, pairings",
    stubs="civitas.party_orgs.v1.party_orgs_pb2",
    aggregates=(
        "civitas.party_orgs.domain.units:AdminUnit",
        "civitas.party_orgs.domain.orgs:PartyOrg",
        "civitas.party_orgs.domain.members:Member",
        "civitas.party_orgs.domain.pairings:Pairing",
    ),
    projections=(
        Projected("party_orgs_directory", "party_orgs", "civitas.party_orgs.directory:Directory"),
    ),
    personal_data=True,
)
