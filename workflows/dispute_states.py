"""The dispute case's state machine: statuses, events and the one table of allowed transitions.

Pure and dependency-free, like workflows/states.py: DisputeWorkflow uses it to move, the update validators
use it to refuse, and the API and the pages use it to show only the actions possible now.

    open ──wait_on_customer──> waiting_on_customer ──resume──> open
    open / waiting ──resolve (credit_memo, rebill, write_off)──> resolving ──resolution_applied──> resolved
                                                                 resolving ──resolution_rejected──> open
    open / waiting ──resolve (invalid, withdrawn)──> resolved ──close (root cause, validity)──> closed
    open ──void──> closed   (the invoice refused the case as it opened: the number stays used, with why)
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    OPEN = "open"
    WAITING_ON_CUSTOMER = "waiting_on_customer"  # the SLA clock is paused, and why is recorded
    RESOLVING = "resolving"  # a credit memo or write-off is in approval
    RESOLVED = "resolved"  # the resolution took effect; closing needs the root cause and validity
    CLOSED = "closed"


class Event(StrEnum):
    OPEN = "open"
    JOIN = "join"  # another invoice, or more of one (a second deduction, the portal's word) joins the case
    ASSIGN = "assign"
    REASSIGN = "reassign"
    NOTE = "note"
    ATTACH = "attach"
    WAIT_ON_CUSTOMER = "wait_on_customer"
    RESUME = "resume"
    REMIND = "remind"  # the SLA's reminder to the owner
    ESCALATE = "escalate"  # the SLA's escalation (the level only goes up), or the customer's window ending
    RECORD_PAYMENT = "record_payment"  # a payment on a disputed invoice: paid, or recovered after `invalid`
    RESOLVE = "resolve"  # reason: the resolution kind
    RESOLUTION_APPLIED = "resolution_applied"  # a credit memo or write-off applied to the invoice
    RESOLUTION_REJECTED = "resolution_rejected"  # refused by its approvers (or cancelled): the case reopens
    RESOLUTION_OUTCOME = "resolution_outcome"  # one document of several decided, others still pending
    CLOSE = "close"
    VOID = "void"


class Resolution(StrEnum):
    CREDIT_MEMO = "credit_memo"
    REBILL = "rebill"
    INVALID = "invalid"
    WITHDRAWN = "withdrawn"
    WRITE_OFF = "write_off"


# Resolutions that start a document with its own approval (the case waits in `resolving`).
BY_DOCUMENT: frozenset[Resolution] = frozenset(
    {Resolution.CREDIT_MEMO, Resolution.REBILL, Resolution.WRITE_OFF}
)

S, E = Status, Event

# (from status, event) -> to status. `None` as the from-status is the workflow's birth. `resolve` goes to
# `resolving` or `resolved` by kind: `apply` takes the kind (see `resolve_to`).
# Anything not in this table is refused, with the current status named.
TRANSITIONS: dict[tuple[Status | None, Event], Status] = {
    (None, E.OPEN): S.OPEN,
    (S.OPEN, E.VOID): S.CLOSED,
    (S.OPEN, E.JOIN): S.OPEN,
    (S.WAITING_ON_CUSTOMER, E.JOIN): S.WAITING_ON_CUSTOMER,
    (S.OPEN, E.ASSIGN): S.OPEN,
    (S.OPEN, E.REASSIGN): S.OPEN,
    (S.WAITING_ON_CUSTOMER, E.REASSIGN): S.WAITING_ON_CUSTOMER,
    (S.RESOLVING, E.REASSIGN): S.RESOLVING,
    (S.RESOLVED, E.REASSIGN): S.RESOLVED,
    (S.OPEN, E.NOTE): S.OPEN,
    (S.WAITING_ON_CUSTOMER, E.NOTE): S.WAITING_ON_CUSTOMER,
    (S.RESOLVING, E.NOTE): S.RESOLVING,
    (S.RESOLVED, E.NOTE): S.RESOLVED,
    (S.OPEN, E.ATTACH): S.OPEN,
    (S.WAITING_ON_CUSTOMER, E.ATTACH): S.WAITING_ON_CUSTOMER,
    (S.RESOLVING, E.ATTACH): S.RESOLVING,
    (S.RESOLVED, E.ATTACH): S.RESOLVED,
    (S.OPEN, E.WAIT_ON_CUSTOMER): S.WAITING_ON_CUSTOMER,
    (S.WAITING_ON_CUSTOMER, E.RESUME): S.OPEN,
    (S.OPEN, E.REMIND): S.OPEN,
    (S.RESOLVING, E.REMIND): S.RESOLVING,
    (S.OPEN, E.ESCALATE): S.OPEN,
    (S.WAITING_ON_CUSTOMER, E.ESCALATE): S.WAITING_ON_CUSTOMER,  # the customer's window does not pause
    (S.RESOLVING, E.ESCALATE): S.RESOLVING,
    (S.OPEN, E.RECORD_PAYMENT): S.OPEN,
    (S.WAITING_ON_CUSTOMER, E.RECORD_PAYMENT): S.WAITING_ON_CUSTOMER,
    (S.RESOLVING, E.RECORD_PAYMENT): S.RESOLVING,
    (S.RESOLVED, E.RECORD_PAYMENT): S.RESOLVED,
    (S.OPEN, E.RESOLVE): S.RESOLVED,
    (S.WAITING_ON_CUSTOMER, E.RESOLVE): S.RESOLVED,
    (S.RESOLVING, E.RESOLUTION_APPLIED): S.RESOLVED,
    (S.RESOLVING, E.RESOLUTION_REJECTED): S.OPEN,
    (S.RESOLVING, E.RESOLUTION_OUTCOME): S.RESOLVING,
    (S.RESOLVED, E.CLOSE): S.CLOSED,
}

TERMINAL: frozenset[Status] = frozenset({S.CLOSED})
# While the case is in these, its SLA clock runs (waiting on the customer pauses it; resolved stops it).
CLOCK_RUNS: frozenset[Status] = frozenset({S.OPEN, S.RESOLVING})
# The case still holds its invoices (they are `disputed` for the amounts it holds).
HOLDS_INVOICES: frozenset[Status] = frozenset({S.OPEN, S.WAITING_ON_CUSTOMER, S.RESOLVING})


class TransitionRefused(Exception):
    """The event is not allowed in the current status."""

    def __init__(self, status: Status | None, event: Event) -> None:
        self.status = status
        self.event = event
        where = status.value if status else "(not opened)"
        super().__init__(f"cannot {event.value} a dispute in status {where}")


def can(status: Status | None, event: Event) -> bool:
    return (status, event) in TRANSITIONS


def apply(status: Status | None, event: Event, resolution: Resolution | None = None) -> Status:
    """The status after `event`, or TransitionRefused naming the current status. `resolve` with a
    resolution by document (credit memo, rebill, write-off) waits for it in `resolving`."""
    try:
        to = TRANSITIONS[(status, event)]
    except KeyError:
        raise TransitionRefused(status, event) from None
    if event == E.RESOLVE and resolution in BY_DOCUMENT:
        return S.RESOLVING
    return to


def events_from(status: Status) -> list[Event]:
    """Events possible in `status`, in table order."""
    return [event for (source, event) in TRANSITIONS if source == status]
