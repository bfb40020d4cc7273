"""The gRPC edge of funds: protobuf in, commands and queries, protobuf out."""

from __future__ import annotations

from typing import Any

from civitas.chassis.convert import enum_in, enum_out, timestamp_in, timestamp_out, uuid_in
from civitas.chassis.interceptor import current_caller
from civitas.chassis.requests import request_id_of

from .application import Funds
from .domain.accounts import Account, AccountKind
from .domain.expenditures import Expenditure
from .domain.tasks import Task
from .ledger import AccountBalance
from .v1 import funds_pb2 as pb
from .v1 import funds_pb2_grpc as pb_grpc
from .views import FundsViews


def account_out(account: Account | AccountBalance) -> pb.Account:
    return pb.Account(
        account_id=account.id,
        kind=enum_out(account.kind, pb.AccountKind, "ACCOUNT_KIND_"),
        owner_code=account.owner_code,
        name=account.name,
        balance_fen=account.balance_fen,
        available_fen=account.available_fen,
    )


def expenditure_out(e: Expenditure) -> pb.Expenditure:
    return pb.Expenditure(
        expenditure_id=e.id,
        status=enum_out(e.status, pb.ExpenditureStatus, "EXPENDITURE_STATUS_"),
        community_code=e.community_code,
        fund_account=e.fund_account,
        payee_account=e.payee_account,
        amount_fen=e.amount_fen,
        case_id=e.case_id or "",
        requester=e.requester,
        needs_street_approval=e.needs_street_approval,
        approvers=[e.approvals[level] for level in sorted(e.approvals)],
    )


def task_out(task: Task) -> pb.Task:
    return pb.Task(
        task_id=task.id,
        status=enum_out(task.status, pb.TaskStatus, "TASK_STATUS_"),
        department_account=task.department_account,
        community_code=task.community_code,
        title=task.title,
        amount_fen=task.amount_fen,
    )


class FundsServicer(pb_grpc.FundsServiceServicer):
    """Converts between protobuf and the application; nothing else."""

    def __init__(self, app: Funds, views: FundsViews) -> None:
        self.app = app
        self.views = views

    @staticmethod
    def _id(request: Any) -> str:
        return uuid_in(request.expenditure_id, "expenditure_id")

    async def current(self, kind: str, object_id: str) -> Any:
        """What a command's reply named, as it is now: the reply to a repeated request id
        (chassis.requests)."""
        if kind == pb.Account.DESCRIPTOR.full_name:
            return account_out(await self.views.account(object_id))
        if kind == pb.Expenditure.DESCRIPTOR.full_name:
            return expenditure_out(await self.views.expenditure(object_id))
        raise LookupError(f"funds replies name no {kind}")

    async def OpenAccount(
        self, request: pb.OpenAccountRequest, context: Any
    ) -> pb.OpenAccountResponse:
        kind = enum_in(request.kind, pb.AccountKind, "ACCOUNT_KIND_", AccountKind, "kind")
        account = await self.app.open_account(
            current_caller(), kind, request.owner_code, request.key, request.name
        )
        return pb.OpenAccountResponse(account=account_out(account))

    async def AllocateYear(
        self, request: pb.AllocateYearRequest, context: Any
    ) -> pb.AllocateYearResponse:
        fund = await self.app.allocate_year(
            current_caller(), request.community_code, request.year, request.amount_fen
        )
        return pb.AllocateYearResponse(fund=account_out(fund))

    async def Transfer(self, request: pb.TransferRequest, context: Any) -> pb.TransferResponse:
        transfer_id, source, target = await self.app.transfer(
            current_caller(),
            request.idempotency_key,
            request.from_account,
            request.to_account,
            request.amount_fen,
            request.memo,
        )
        return pb.TransferResponse(
            transfer_id=transfer_id,
            from_account=account_out(source),
            to_account=account_out(target),
        )

    async def AssignTask(
        self, request: pb.AssignTaskRequest, context: Any
    ) -> pb.AssignTaskResponse:
        task = await self.app.assign_task(
            current_caller(),
            request.idempotency_key,
            request.department_account,
            request.community_code,
            request.title,
            request.amount_fen,
        )
        return pb.AssignTaskResponse(task=task_out(task))

    async def GetTask(self, request: pb.GetTaskRequest, context: Any) -> pb.GetTaskResponse:
        task = await self.views.task(uuid_in(request.task_id, "task_id"))
        return pb.GetTaskResponse(task=task_out(task))

    async def RequestExpenditure(
        self, request: pb.RequestExpenditureRequest, context: Any
    ) -> pb.RequestExpenditureResponse:
        case_id = uuid_in(request.case_id, "case_id") if request.case_id else None
        expenditure = await self.app.request_expenditure(
            current_caller(),
            request.community_code,
            request.payee_account,
            request.amount_fen,
            request.purpose,
            request.evidence,
            case_id,
            request_id_of(request),
        )
        return pb.RequestExpenditureResponse(expenditure=expenditure_out(expenditure))

    async def ApproveExpenditure(
        self, request: pb.ApproveExpenditureRequest, context: Any
    ) -> pb.ApproveExpenditureResponse:
        expenditure = await self.app.approve(current_caller(), self._id(request))
        return pb.ApproveExpenditureResponse(expenditure=expenditure_out(expenditure))

    async def ReserveExpenditure(
        self, request: pb.ReserveExpenditureRequest, context: Any
    ) -> pb.ReserveExpenditureResponse:
        expenditure = await self.app.reserve(current_caller(), self._id(request))
        return pb.ReserveExpenditureResponse(expenditure=expenditure_out(expenditure))

    async def DisburseExpenditure(
        self, request: pb.DisburseExpenditureRequest, context: Any
    ) -> pb.DisburseExpenditureResponse:
        expenditure = await self.app.disburse(current_caller(), self._id(request))
        return pb.DisburseExpenditureResponse(expenditure=expenditure_out(expenditure))

    async def VoidExpenditure(
        self, request: pb.VoidExpenditureRequest, context: Any
    ) -> pb.VoidExpenditureResponse:
        expenditure = await self.app.void(current_caller(), self._id(request), request.reason)
        return pb.VoidExpenditureResponse(expenditure=expenditure_out(expenditure))

    async def RejectExpenditure(
        self, request: pb.RejectExpenditureRequest, context: Any
    ) -> pb.RejectExpenditureResponse:
        expenditure = await self.app.reject(current_caller(), self._id(request), request.reason)
        return pb.RejectExpenditureResponse(expenditure=expenditure_out(expenditure))

    async def CloseFiscalYear(
        self, request: pb.CloseFiscalYearRequest, context: Any
    ) -> pb.CloseFiscalYearResponse:
        account = await self.app.close_year(current_caller(), request.account_id, request.year)
        return pb.CloseFiscalYearResponse(account=account_out(account))

    async def GetExpenditure(
        self, request: pb.GetExpenditureRequest, context: Any
    ) -> pb.GetExpenditureResponse:
        return pb.GetExpenditureResponse(
            expenditure=expenditure_out(await self.views.expenditure(self._id(request)))
        )

    async def GetStatement(
        self, request: pb.GetStatementRequest, context: Any
    ) -> pb.GetStatementResponse:
        as_of = timestamp_in(request.as_of) if request.HasField("as_of") else None
        account, entries = await self.views.statement(request.account_id, as_of)
        return pb.GetStatementResponse(
            account=account_out(account),
            entries=[
                pb.Entry(
                    transfer_id=e.transfer_id,
                    amount_fen=e.amount_fen,
                    counterpart_account=e.counterpart_account,
                    booked_at=timestamp_out(e.booked_at),
                    memo=e.memo,
                )
                for e in entries
            ],
        )

    async def GetTrialBalance(
        self, request: pb.GetTrialBalanceRequest, context: Any
    ) -> pb.GetTrialBalanceResponse:
        balance = await self.views.trial_balance()
        return pb.GetTrialBalanceResponse(
            accounts=[account_out(a) for a in balance.accounts], total_fen=balance.total_fen
        )
