"""The invoice state machine: statuses, events and the one table of allowed transitions.

Pure and dependency-free on purpose: the workflow uses it to move, the update validators use it to
refuse, and the API and UI use it to show only the actions that are possible now.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    DRAFT = "draft"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    SUBMITTED = "submitted"
    PORTAL_REJECTED = "portal_rejected"
    ACCEPTED = "accepted"
    PARTIALLY_PAID = "partially_paid"
    PAID = "paid"
    DISPUTED = "disputed"
    VOID = "void"
    WRITTEN_OFF = "written_off"
    CREDITED = "credited"  # issued credit notes took the whole amount due off (a rebill's original, say)


class Event(StrEnum):
    CREATE = "create"
    EDIT = "edit"
    SUBMIT = "submit"
    APPROVE_TIER = "approve_tier"  # one tier approved, more to go
    APPROVE = "approve"  # the last tier approved
    REMIND_APPROVERS = "remind_approvers"
    ESCALATE_APPROVAL = "escalate_approval"
    REASSIGN_APPROVAL = "reassign_approval"
    REJECT = "reject"
    VOID = "void"
    DELIVER = "deliver"
    PORTAL_REJECT = "portal_reject"
    PORTAL_ACCEPT = "portal_accept"
    PORTAL_STATUS = "portal_status"  # the portal said something that moves nothing (received, in process...)
    BLOCK_SUBMISSION = "block_submission"  # a pre-submission check failed: it never left
    FIX = "fix"
    RESUBMIT = "resubmit"  # fixed without touching amounts, tax, PO or customer: the approvals stand
    RECORD_PARTIAL_PAYMENT = "record_partial_payment"
    RECORD_FINAL_PAYMENT = "record_final_payment"
    DISPUTE = "dispute"  # a dispute case takes part of the invoice (again: the amount it holds changed)
    RESOLVE_DISPUTE = "resolve_dispute"
    RESOLVE_DISPUTE_PAID_IN_PART = "resolve_dispute_paid_in_part"
    WRITE_OFF = "write_off"  # the write-off that leaves nothing due
    WRITE_OFF_PART = "write_off_part"
    APPLY_CREDIT = "apply_credit"  # an issued credit memo lowers the amount due
    APPLY_FINAL_CREDIT = "apply_final_credit"  # ... to nothing
    # A supervisor acting on a stuck invoice (the control tower): tell whoever it waits for, or raise it
    # to the role the SLA names. Neither moves the invoice. While approval is pending, the tower's remind
    # and escalate are the approval SLA's own events (REMIND_APPROVERS, ESCALATE_APPROVAL).
    REMIND = "remind"
    ESCALATE = "escalate"


S, E = Status, Event

# (from status, event) -> to status. `None` as the from-status is the workflow's birth.
# Anything not in this table is refused, with the current status named.
TRANSITIONS: dict[tuple[Status | None, Event], Status] = {
    (None, E.CREATE): S.DRAFT,
    (S.DRAFT, E.EDIT): S.DRAFT,
    (S.DRAFT, E.SUBMIT): S.PENDING_APPROVAL,
    (S.DRAFT, E.VOID): S.VOID,
    # Editing while approval is pending pulls the invoice back to draft and voids every approval.
    (S.PENDING_APPROVAL, E.EDIT): S.DRAFT,
    (S.PENDING_APPROVAL, E.APPROVE_TIER): S.PENDING_APPROVAL,
    (S.PENDING_APPROVAL, E.APPROVE): S.APPROVED,
    (S.PENDING_APPROVAL, E.REMIND_APPROVERS): S.PENDING_APPROVAL,
    (S.PENDING_APPROVAL, E.ESCALATE_APPROVAL): S.PENDING_APPROVAL,
    (S.PENDING_APPROVAL, E.REASSIGN_APPROVAL): S.PENDING_APPROVAL,
    (S.PENDING_APPROVAL, E.REJECT): S.DRAFT,
    (S.PENDING_APPROVAL, E.VOID): S.VOID,
    (S.APPROVED, E.DELIVER): S.SUBMITTED,
    (S.APPROVED, E.VOID): S.VOID,
    # What the portal would refuse is stopped before it leaves, and fixed the way a rejection is.
    (S.APPROVED, E.BLOCK_SUBMISSION): S.PORTAL_REJECTED,
    (S.SUBMITTED, E.PORTAL_REJECT): S.PORTAL_REJECTED,
    (S.SUBMITTED, E.PORTAL_ACCEPT): S.ACCEPTED,
    (S.SUBMITTED, E.PORTAL_STATUS): S.SUBMITTED,
    (S.ACCEPTED, E.PORTAL_STATUS): S.ACCEPTED,
    (S.PARTIALLY_PAID, E.PORTAL_STATUS): S.PARTIALLY_PAID,
    (S.DISPUTED, E.PORTAL_STATUS): S.DISPUTED,
    (S.SUBMITTED, E.RECORD_PARTIAL_PAYMENT): S.PARTIALLY_PAID,
    (S.SUBMITTED, E.RECORD_FINAL_PAYMENT): S.PAID,
    (S.PORTAL_REJECTED, E.FIX): S.DRAFT,
    (S.DRAFT, E.RESUBMIT): S.APPROVED,
    (S.ACCEPTED, E.RECORD_PARTIAL_PAYMENT): S.PARTIALLY_PAID,
    (S.ACCEPTED, E.RECORD_FINAL_PAYMENT): S.PAID,
    (S.ACCEPTED, E.DISPUTE): S.DISPUTED,
    (S.ACCEPTED, E.WRITE_OFF): S.WRITTEN_OFF,
    (S.PARTIALLY_PAID, E.RECORD_PARTIAL_PAYMENT): S.PARTIALLY_PAID,
    (S.PARTIALLY_PAID, E.RECORD_FINAL_PAYMENT): S.PAID,
    (S.PARTIALLY_PAID, E.DISPUTE): S.DISPUTED,
    (S.PARTIALLY_PAID, E.WRITE_OFF): S.WRITTEN_OFF,
    (S.DISPUTED, E.RESOLVE_DISPUTE): S.ACCEPTED,
    (S.DISPUTED, E.RECORD_PARTIAL_PAYMENT): S.DISPUTED,
    (S.DISPUTED, E.RECORD_FINAL_PAYMENT): S.PAID,
    (S.DISPUTED, E.WRITE_OFF): S.WRITTEN_OFF,
    # Supervisor's remind: where the preparers must act next (a draft, a rejection to fix). Escalate:
    # wherever an invoice can sit before the customer has it.
    (S.DRAFT, E.REMIND): S.DRAFT,
    (S.PENDING_APPROVAL, E.REMIND): S.PENDING_APPROVAL,
    (S.PORTAL_REJECTED, E.REMIND): S.PORTAL_REJECTED,
    (S.DRAFT, E.ESCALATE): S.DRAFT,
    (S.PENDING_APPROVAL, E.ESCALATE): S.PENDING_APPROVAL,
    (S.APPROVED, E.ESCALATE): S.APPROVED,
    (S.SUBMITTED, E.ESCALATE): S.SUBMITTED,
    (S.PORTAL_REJECTED, E.ESCALATE): S.PORTAL_REJECTED,
    # Disputes and adjustments (issue 11): a case may open as soon as the customer has the invoice; a
    # second word about the same case changes the amount it holds. Credit memos and write-offs lower the
    # amount due wherever the customer owes it; the one that leaves nothing ends the invoice.
    (S.DISPUTED, E.RESOLVE_DISPUTE_PAID_IN_PART): S.PARTIALLY_PAID,
    (S.SUBMITTED, E.DISPUTE): S.DISPUTED,
    (S.DISPUTED, E.DISPUTE): S.DISPUTED,
    (S.SUBMITTED, E.APPLY_CREDIT): S.SUBMITTED,
    (S.ACCEPTED, E.APPLY_CREDIT): S.ACCEPTED,
    (S.PARTIALLY_PAID, E.APPLY_CREDIT): S.PARTIALLY_PAID,
    (S.DISPUTED, E.APPLY_CREDIT): S.DISPUTED,
    (S.SUBMITTED, E.APPLY_FINAL_CREDIT): S.CREDITED,
    (S.ACCEPTED, E.APPLY_FINAL_CREDIT): S.CREDITED,
    (S.PARTIALLY_PAID, E.APPLY_FINAL_CREDIT): S.CREDITED,
    (S.DISPUTED, E.APPLY_FINAL_CREDIT): S.CREDITED,
    (S.SUBMITTED, E.WRITE_OFF_PART): S.SUBMITTED,
    (S.ACCEPTED, E.WRITE_OFF_PART): S.ACCEPTED,
    (S.PARTIALLY_PAID, E.WRITE_OFF_PART): S.PARTIALLY_PAID,
    (S.DISPUTED, E.WRITE_OFF_PART): S.DISPUTED,
    (S.SUBMITTED, E.WRITE_OFF): S.WRITTEN_OFF,
}

TERMINAL: frozenset[Status] = frozenset({S.PAID, S.VOID, S.WRITTEN_OFF, S.CREDITED})

# Statuses in which the customer owes the money (used for aging and for accepting payments).
OPEN_RECEIVABLE: frozenset[Status] = frozenset({S.SUBMITTED, S.ACCEPTED, S.PARTIALLY_PAID, S.DISPUTED})


class TransitionRefused(Exception):
    """The event is not allowed in the current status."""

    def __init__(self, status: Status | None, event: Event) -> None:
        self.status = status
        self.event = event
        where = status.value if status else "(not created)"
        super().__init__(f"cannot {event.value} an invoice in status {where}")


def can(status: Status | None, event: Event) -> bool:
    return (status, event) in TRANSITIONS


def apply(status: Status | None, event: Event) -> Status:
    """The status after `event`, or TransitionRefused naming the current status."""
    try:
        return TRANSITIONS[(status, event)]
    except KeyError:
        raise TransitionRefused(status, event) from None


def events_from(status: Status) -> list[Event]:
    """Events possible in `status`, in table order."""
    return [event for (source, event) in TRANSITIONS if source == status]
