"""cases as the platform knows it (registered in :mod:`civitas.catalog`)."""

from civitas.chassis.catalog import Projected, Reacting, ServiceSpec

SPEC = ServiceSpec(
    name="cases",
    grpc_port=50052,
    metrics_port=9102,
    summary="residents' requests from intake to follow-up",
    stubs="civitas.cases.v1.cases_pb2",
    aggregates=("civitas.cases.domain.case:Case",),
    projections=(Projected("cases_index", "cases", "civitas.cases.case_index:CaseIndex"),),
    process_managers=(
        Reacting("cases.funding_outcomes", "funds", "civitas.cases.processes:FundingOutcomes"),
    ),
    personal_data=True,
    peers=("party_orgs",),
)
