"""insights as the platform knows it (registered in :mod:`civitas.catalog`): no events of
its own, a projection of each other service's."""

from civitas.chassis.catalog import Projected, ServiceSpec

SPEC = ServiceSpec(
    name="insights",
    grpc_port=50055,
    metrics_port=9105,
    summary="scorecards, trends, members' cards, case timelines and fund statements",
    stubs="civitas.insights.v1.insights_pb2",
    projections=(
        Projected("insights_party", "party_orgs", "civitas.insights.projections:PartyFacts"),
        Projected("insights_cases", "cases", "civitas.insights.projections:CaseFacts"),
        Projected(
            "insights_volunteering", "volunteers", "civitas.insights.projections:Volunteering"
        ),
        Projected("insights_funds", "funds", "civitas.insights.projections:FundLedger"),
    ),
    peers=("cases",),
    http_port=8080,
)
