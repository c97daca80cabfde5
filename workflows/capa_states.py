"""The CAPA state machine and its rules: statuses, events, one literal table, and the effectiveness decision.

Pure and dependency-free on purpose (like workflows/states.py): the workflow uses it to move, the update
validators to refuse, the API and the pages to show only the actions possible now, and the reports to
explain a check with the same arithmetic that decided it.

    open      the preventive action is open (the corrective one may be open or done)
    checking  the preventive action is done; the effectiveness check waits for its window to pass
    checked   the check said effective or inconclusive; the corrective action is still open
    closed    checked and both actions done

An ineffective check reopens the CAPA (checking -> checked -> open in two recorded steps: `check` with
the figures, then `reopen` with the new due date), and the next completion schedules a new check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum


class Status(StrEnum):
    OPEN = "open"
    CHECKING = "checking"
    CHECKED = "checked"
    CLOSED = "closed"


class Event(StrEnum):
    OPEN = "open"
    COMPLETE_CORRECTIVE = "complete_corrective"
    COMPLETE_PREVENTIVE = "complete_preventive"
    REQUEST_EXTENSION = "request_extension"
    APPROVE_EXTENSION = "approve_extension"
    REFUSE_EXTENSION = "refuse_extension"
    REMIND = "remind"
    CHECK = "check"
    REOPEN = "reopen"
    CLOSE = "close"


S, E = Status, Event

# (from status, event) -> to status; `None` is the workflow's birth. Anything else is refused.
TRANSITIONS: dict[tuple[Status | None, Event], Status] = {
    (None, E.OPEN): S.OPEN,
    (S.OPEN, E.COMPLETE_CORRECTIVE): S.OPEN,
    (S.OPEN, E.COMPLETE_PREVENTIVE): S.CHECKING,
    (S.CHECKING, E.COMPLETE_CORRECTIVE): S.CHECKING,
    (S.CHECKING, E.CHECK): S.CHECKED,
    (S.CHECKED, E.COMPLETE_CORRECTIVE): S.CHECKED,
    (S.CHECKED, E.REOPEN): S.OPEN,
    (S.CHECKED, E.CLOSE): S.CLOSED,
    # Extensions and reminders concern an open action; they move nothing.
    (S.OPEN, E.REQUEST_EXTENSION): S.OPEN,
    (S.OPEN, E.APPROVE_EXTENSION): S.OPEN,
    (S.OPEN, E.REFUSE_EXTENSION): S.OPEN,
    (S.OPEN, E.REMIND): S.OPEN,
    (S.CHECKING, E.REQUEST_EXTENSION): S.CHECKING,
    (S.CHECKING, E.APPROVE_EXTENSION): S.CHECKING,
    (S.CHECKING, E.REFUSE_EXTENSION): S.CHECKING,
    (S.CHECKING, E.REMIND): S.CHECKING,
    (S.CHECKED, E.REQUEST_EXTENSION): S.CHECKED,
    (S.CHECKED, E.APPROVE_EXTENSION): S.CHECKED,
    (S.CHECKED, E.REFUSE_EXTENSION): S.CHECKED,
    (S.CHECKED, E.REMIND): S.CHECKED,
}

TERMINAL: frozenset[Status] = frozenset({S.CLOSED})

OUTCOMES = ("effective", "ineffective", "inconclusive")


class TransitionRefused(Exception):
    def __init__(self, status: Status | None, event: Event) -> None:
        self.status, self.event = status, event
        where = status.value if status else "(not opened)"
        super().__init__(f"cannot {event.value.replace('_', ' ')} a CAPA in status {where}")


def can(status: Status | None, event: Event) -> bool:
    return (status, event) in TRANSITIONS


def apply(status: Status | None, event: Event) -> Status:
    try:
        return TRANSITIONS[(status, event)]
    except KeyError:
        raise TransitionRefused(status, event) from None


# -- action rules (the validators', the API's and the pages' one copy) ------------------------------


@dataclass(frozen=True)
class ActionView:
    """What the rules need of one action."""

    kind: str
    owner: str
    status: str  # "open" | "done"
    extension_pending: bool


def completion_refusal(status: str, action: ActionView, username: str) -> tuple[str, str] | None:
    """(code, message) when `username` may not complete the action now; None when they may."""
    event = E.COMPLETE_CORRECTIVE if action.kind == "corrective" else E.COMPLETE_PREVENTIVE
    if not can(Status(status), event) or action.status != "open":
        return ("transition_refused", f"the {action.kind} action is {action.status} (CAPA {status})")
    if username != action.owner:
        return ("not_owner", f"only the owner ({action.owner}) completes the {action.kind} action")
    return None


def extension_request_refusal(status: str, action: ActionView, username: str) -> tuple[str, str] | None:
    if not can(Status(status), E.REQUEST_EXTENSION) or action.status != "open":
        return ("transition_refused", f"the {action.kind} action is {action.status} (CAPA {status})")
    if username != action.owner:
        return (
            "not_owner",
            f"only the owner ({action.owner}) asks for more time on the {action.kind} action",
        )
    if action.extension_pending:
        return ("transition_refused", f"an extension of the {action.kind} action already waits for approval")
    return None


def extension_decision_refusal(
    status: str, action: ActionView, username: str, roles: list[str], approver_roles: list[str]
) -> tuple[str, str] | None:
    """Segregation of duties: the owner never approves (nor refuses) their own extension; the decider holds
    one of the approver roles."""
    if (
        not can(Status(status), E.APPROVE_EXTENSION)
        or action.status != "open"
        or not action.extension_pending
    ):
        return ("transition_refused", f"no extension of the {action.kind} action waits (CAPA {status})")
    if username == action.owner:
        return ("segregation_of_duties", f"{username} owns the {action.kind} action: another person decides")
    if not set(roles) & set(approver_roles):
        return ("no_authority", f"deciding an extension needs one of the roles {', '.join(approver_roles)}")
    return None


# -- dates -------------------------------------------------------------------------------------------


def due_instant(due: str) -> datetime:
    """An action's due date as an instant: a plain ISO date is due at the end of that day (UTC)."""
    if len(due) == 10:
        return datetime.combine(datetime.fromisoformat(due).date(), time(23, 59, 59), tzinfo=UTC)
    at = datetime.fromisoformat(due)
    if at.tzinfo is None:
        raise ValueError(f"due {due!r} has no UTC offset")
    return at


def valid_due(due: str) -> bool:
    try:
        due_instant(due)
    except ValueError:
        return False
    return True


# -- the effectiveness decision (domain.md, "CAPA") -------------------------------------------------


def rate_per_100(cases: int, invoices: int) -> str:
    """Cases per 100 invoices issued, 2 places, rounded half up; "" when no invoice was issued."""
    if invoices == 0:
        return ""
    value = Decimal(cases * 100) / Decimal(invoices)
    return str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def decide(
    cases_before: int, invoices_before: int, cases_after: int, invoices_after: int, min_invoices: int
) -> tuple[str, str]:
    """(outcome, why). Effective when the rate fell by at least half with at least `min_invoices` issued in
    the window after; Inconclusive with fewer (or with no invoice before, when there is no rate to compare);
    Ineffective otherwise. Compared exactly, on integers: after/ia <= (before/ib)/2  <=>
    2 * after * ib <= before * ia."""
    before = rate_per_100(cases_before, invoices_before) or "n/a"
    after = rate_per_100(cases_after, invoices_after) or "n/a"
    figures = (
        f"before: {cases_before} cases / {invoices_before} invoices = {before} per 100; "
        f"after: {cases_after} cases / {invoices_after} invoices = {after} per 100"
    )
    if invoices_after < min_invoices:
        return (
            "inconclusive",
            f"{invoices_after} invoices issued in the window, fewer than {min_invoices}; {figures}",
        )
    if invoices_before == 0:
        return "inconclusive", f"no invoice issued in the window before, no rate to compare; {figures}"
    if 2 * cases_after * invoices_before <= cases_before * invoices_after:
        return "effective", f"the rate fell by at least half; {figures}"
    return "ineffective", f"the rate did not fall by half; {figures}"
