"""funds' part of the saga with cases.

- A case's request for money (cases' ``CaseFundingRequested``) opens an
  expenditure under the id the case chose, so a redelivered request opens nothing
  twice; it is refused at once when the fund or the payee does not exist.
- People approve it as they approve any expenditure: each approval comes from
  another person, never the requester, and above the threshold the street approves
  too. The saga approves nothing on anyone's behalf; it acts as a principal that holds
  no role, through internal steps that no caller's token can reach.
- Once it has every approval (funds' own ``ExpenditureApproved``), the money is
  held and paid, or the expenditure is voided with the reason when the fund
  cannot cover it. Cases records the outcome from funds' events.
"""

from __future__ import annotations

from civitas.eventkit import RecordedEvent
from civitas.eventkit.process import ProcessManager, reacts

from .application import CaseRequest, Funds


class CaseFundingRequests(ProcessManager):
    name = "funds.case_requests"

    def __init__(self, app: Funds) -> None:
        self.app = app

    @reacts("CaseFundingRequested")
    async def on_requested(self, event: RecordedEvent) -> None:
        data = event.data
        request = CaseRequest(
            expenditure_id=data["expenditure_id"],
            case_id=event.aggregate_id,
            community_code=data["community_code"],
            payee_account=data["payee_account"],
            amount_fen=data["amount_fen"],
            purpose=data["purpose"],
            evidence=data["evidence"],
            requester=event.actor or "cases",
        )
        await self.app.request_for_case(request, event.correlation_id)


class CaseExpenditureSettlement(ProcessManager):
    name = "funds.case_settlement"

    def __init__(self, app: Funds) -> None:
        self.app = app

    @reacts("ExpenditureApproved")
    async def on_approved(self, event: RecordedEvent) -> None:
        await self.app.settle_for_case(event.aggregate_id, event.correlation_id)
