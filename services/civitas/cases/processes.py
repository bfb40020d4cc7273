"""cases' part of the saga with funds: the case records what became of its request
for money, from funds' events (paid, rejected by an approver, or voided because the
fund could not cover it). The case records each outcome once, so a redelivered
event changes nothing.
"""

from __future__ import annotations

from civitas.eventkit import RecordedEvent
from civitas.eventkit.process import ProcessManager, reacts

from .application import Cases

OUTCOMES = {
    "ExpenditureDisbursed": "paid",
    "ExpenditureRejected": "rejected",
    "ExpenditureVoided": "voided",
}


class FundingOutcomes(ProcessManager):
    name = "cases.funding_outcomes"

    def __init__(self, app: Cases) -> None:
        self.app = app

    @reacts(*OUTCOMES)
    async def on_outcome(self, event: RecordedEvent) -> None:
        case_id = event.data.get("case_id")
        if not case_id:
            return  # not a case's expenditure
        outcome = OUTCOMES[event.type]
        reason = f"{outcome}: {event.data['reason']}" if "reason" in event.data else outcome
        await self.app.record_funding_outcome(
            case_id,
            event.aggregate_id,
            outcome == "paid",
            reason,
            event.correlation_id,
        )
