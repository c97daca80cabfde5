"""The credit memo state machine: statuses, events and the one table of allowed transitions.

Pure, like workflows/states.py: the workflow moves by it, the validators refuse by it, the API and the pages
show only the actions possible now.

    proposed -> pending_approval -> approved -> issued -> applied (-> delivered to the customer, same status)
                      |                                 \\-> on_account (the invoice no longer owed that much)
                      +-> rejected (reason)  +-> cancelled (reason: the case withdrawn...)
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    PROPOSED = "proposed"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    ISSUED = "issued"  # numbered, the credit note built
    APPLIED = "applied"  # the invoice's amount due lowered
    ON_ACCOUNT = "on_account"  # issued, but the invoice had nothing left to lower: credit on account
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class Event(StrEnum):
    PROPOSE = "propose"
    SUBMIT = "submit"  # the approval tiers fixed (matrix in force now)
    APPROVE_TIER = "approve_tier"  # one tier approved, more to go
    APPROVE = "approve"  # the last tier: the approver decides
    REJECT = "reject"
    CANCEL = "cancel"
    ISSUE = "issue"  # number + UBL 381 + PDF
    APPLY = "apply"  # applied to the invoice's open amount
    HOLD_ON_ACCOUNT = "hold_on_account"
    REBILL = "rebill"  # the corrected invoice of a rebill started (the link recorded)
    DELIVER = "deliver"  # the credit note sent through the customer's channel


S, E = Status, Event

TRANSITIONS: dict[tuple[Status | None, Event], Status] = {
    (None, E.PROPOSE): S.PROPOSED,
    (S.PROPOSED, E.SUBMIT): S.PENDING_APPROVAL,
    (S.PROPOSED, E.CANCEL): S.CANCELLED,
    (S.PENDING_APPROVAL, E.APPROVE_TIER): S.PENDING_APPROVAL,
    (S.PENDING_APPROVAL, E.APPROVE): S.APPROVED,
    (S.PENDING_APPROVAL, E.REJECT): S.REJECTED,
    (S.PENDING_APPROVAL, E.CANCEL): S.CANCELLED,
    (S.APPROVED, E.ISSUE): S.ISSUED,
    (S.ISSUED, E.APPLY): S.APPLIED,
    (S.ISSUED, E.HOLD_ON_ACCOUNT): S.ON_ACCOUNT,
    (S.APPLIED, E.REBILL): S.APPLIED,
    (S.APPLIED, E.DELIVER): S.APPLIED,
    (S.ON_ACCOUNT, E.DELIVER): S.ON_ACCOUNT,
}

# The workflow ends in these (a delivered credit note stays `applied` / `on_account`).
DECIDED_NEGATIVE: frozenset[Status] = frozenset({S.REJECTED, S.CANCELLED})
TERMINAL: frozenset[Status] = frozenset({S.REJECTED, S.CANCELLED, S.APPLIED, S.ON_ACCOUNT})


class TransitionRefused(Exception):
    def __init__(self, status: Status | None, event: Event) -> None:
        self.status = status
        self.event = event
        where = status.value if status else "(not proposed)"
        super().__init__(f"cannot {event.value} a credit memo in status {where}")


def can(status: Status | None, event: Event) -> bool:
    return (status, event) in TRANSITIONS


def apply(status: Status | None, event: Event) -> Status:
    try:
        return TRANSITIONS[(status, event)]
    except KeyError:
        raise TransitionRefused(status, event) from None
