"""The write-off state machine: statuses, events and the one table of allowed transitions (pure).

requested -> pending_approval -> approved -> written_off (applied to the invoice)
    \\-> written_off directly when below the legal entity's tolerance (actor `system`, the rule named)
pending_approval -> rejected (reason) | cancelled (reason)
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    REQUESTED = "requested"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    WRITTEN_OFF = "written_off"  # applied to the invoice
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class Event(StrEnum):
    REQUEST = "request"
    SUBMIT = "submit"  # the approval tiers fixed
    APPROVE_TIER = "approve_tier"
    APPROVE = "approve"  # the last tier: the approver decides
    REJECT = "reject"
    CANCEL = "cancel"
    WRITE_OFF = "write_off"  # applied to the invoice (automatic ones straight from `requested`)


S, E = Status, Event

TRANSITIONS: dict[tuple[Status | None, Event], Status] = {
    (None, E.REQUEST): S.REQUESTED,
    (S.REQUESTED, E.SUBMIT): S.PENDING_APPROVAL,
    (S.REQUESTED, E.WRITE_OFF): S.WRITTEN_OFF,  # below the tolerance: automatic
    (S.REQUESTED, E.CANCEL): S.CANCELLED,
    (S.PENDING_APPROVAL, E.APPROVE_TIER): S.PENDING_APPROVAL,
    (S.PENDING_APPROVAL, E.APPROVE): S.APPROVED,
    (S.PENDING_APPROVAL, E.REJECT): S.REJECTED,
    (S.PENDING_APPROVAL, E.CANCEL): S.CANCELLED,
    (S.APPROVED, E.WRITE_OFF): S.WRITTEN_OFF,
    # Approved, but the invoice no longer had that much open (paid meanwhile): nothing written off.
    (S.APPROVED, E.CANCEL): S.CANCELLED,
}

TERMINAL: frozenset[Status] = frozenset({S.WRITTEN_OFF, S.REJECTED, S.CANCELLED})


class TransitionRefused(Exception):
    def __init__(self, status: Status | None, event: Event) -> None:
        self.status = status
        self.event = event
        where = status.value if status else "(not requested)"
        super().__init__(f"cannot {event.value} a write-off in status {where}")


def can(status: Status | None, event: Event) -> bool:
    return (status, event) in TRANSITIONS


def apply(status: Status | None, event: Event) -> Status:
    try:
        return TRANSITIONS[(status, event)]
    except KeyError:
        raise TransitionRefused(status, event) from None
