"""Task funding (费随事转): a department's task enters a community only with its money.

A task is assigned pending; the department's money moves into the community's task
account; only then is the task active. When the money cannot move once the task is
recorded, the task is cancelled with the reason: no task is ever active without its
funding. A task's id derives from the caller's idempotency key, and the key stays
bound to the assignment it first named (department, community, title, amount).
"""

from __future__ import annotations

import enum

from civitas.errors import RuleViolation
from civitas.eventkit import Aggregate, DomainEvent, applies, natural_id
from civitas.validation import required_text

from .accounts import check_amount, checked_key, transfer_id_for


def task_id_for(idempotency_key: str) -> str:
    return str(natural_id("task", checked_key(idempotency_key)))


class TaskStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    CANCELLED = "cancelled"


class TaskAssigned(DomainEvent):
    department_account: str
    community_code: str
    title: str
    amount_fen: int


class TaskFunded(DomainEvent):
    transfer_id: str


class TaskCancelled(DomainEvent):
    reason: str


class Task(Aggregate):
    category = "task"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.status = TaskStatus.PENDING
        self.department_account = ""
        self.community_code = ""
        self.title = ""
        self.amount_fen = 0
        self.assigned: TaskAssigned | None = None  # the assignment, as first made
        self.cancel_reason = ""

    @classmethod
    def assign(
        cls, task_id: str, department_account: str, community_code: str, title: str, amount_fen: int
    ) -> Task:
        task = cls(task_id)
        task._record(
            TaskAssigned(
                department_account=department_account,
                community_code=community_code,
                title=required_text("title", title, 200),
                amount_fen=check_amount(amount_fen),
            )
        )
        return task

    def is_same_assignment(self, other: Task) -> bool:
        """Whether ``other`` assigns exactly this task (a retry under the same key)."""
        return self.assigned is not None and self.assigned == other.assigned

    @property
    def transfer_id(self) -> str:
        return transfer_id_for(f"task:{self.id}")

    def funded(self) -> None:
        if self.status is TaskStatus.ACTIVE:
            return
        self.check_not_cancelled()
        self._record(TaskFunded(transfer_id=self.transfer_id))

    def check_not_cancelled(self) -> None:
        if self.status is TaskStatus.CANCELLED:
            raise RuleViolation(f"the task was cancelled: {self.cancel_reason}")

    def cancel(self, reason: str) -> None:
        if self.status is not TaskStatus.PENDING:
            raise RuleViolation(f"cannot cancel a task that is {self.status}")
        self._record(TaskCancelled(reason=required_text("reason", reason, 500)))

    @applies
    def _on_assigned(self, event: TaskAssigned) -> None:
        self.department_account, self.community_code = (
            event.department_account,
            event.community_code,
        )
        self.title, self.amount_fen = event.title, event.amount_fen
        self.assigned = event

    @applies
    def _on_funded(self, event: TaskFunded) -> None:
        self.status = TaskStatus.ACTIVE

    @applies
    def _on_cancelled(self, event: TaskCancelled) -> None:
        self.status = TaskStatus.CANCELLED
        self.cancel_reason = event.reason
