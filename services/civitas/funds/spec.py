"""funds as the platform knows it (registered in :mod:`civitas.catalog`)."""

from civitas.chassis.catalog import Projected, Reacting, ServiceSpec

SPEC = ServiceSpec(
    name="funds",
    grpc_port=50054,
    metrics_port=9104,
    summary="the double-entry ledger of community funds",
    stubs="civitas.funds.v1.funds_pb2",
    aggregates=(
        "civitas.funds.domain.accounts:Account",
        "civitas.funds.domain.expenditures:Expenditure",
        "civitas.funds.domain.tasks:Task",
        "civitas.funds.domain.transfers:TransferRecord",
    ),
    projections=(Projected("funds_ledger", "funds", "civitas.funds.ledger:Ledger"),),
    process_managers=(
        Reacting("funds.case_requests", "cases", "civitas.funds.processes:CaseFundingRequests"),
        Reacting(
            "funds.case_settlement", "funds", "civitas.funds.processes:CaseExpenditureSettlement"
        ),
    ),
)
