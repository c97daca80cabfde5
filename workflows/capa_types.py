"""The frozen dataclasses that cross the CAPA workflow's boundary (issue 11).

A dispute closed with an internal root cause (workflows/root_causes.py) starts one `CapaWorkflow` with a
`CapaInput`: a corrective action (fix this case) and a preventive action (stop the next one), each with an
owner and a due date. Dates travel as ISO strings, money never appears here, durations are seconds in
`CapaConfig` so that tests (and customers, through policies/disputes.toml `[capa]`) set them.

Workflow id: `capa_workflow_id(legal_entity, capa_id)` = "capa/<legal_entity>/<capa_id>". The capa_id is
chosen by the starter and unique per legal entity; the disputes part uses the case number (one CAPA per
closing of a case), e.g. "DSP-2026-000012".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workflows.types import Actor

ACTIONS = ("corrective", "preventive")


def capa_workflow_id(legal_entity: str, capa_id: str) -> str:
    return f"capa/{legal_entity}/{capa_id}"


@dataclass(frozen=True)
class CapaAction:
    """One action as the dispute's closing gives it.

    `due`: an ISO date ("2026-03-31": due at the end of that day, 23:59:59 UTC) or an ISO instant with its
    offset ("2026-03-31T12:00:00+00:00"); tests use instants a few seconds ahead."""

    owner: str  # username of the person who does it (and completes it, and may ask for more time)
    due: str
    description: str


@dataclass(frozen=True)
class CapaConfig:
    """Durations and thresholds; defaults are domain.md's. policies/disputes.toml `[capa]` overrides them."""

    # Reminders to the owner of an open action: `reminder_lead_seconds` before the due date, at the due
    # date, then every `overdue_reminder_seconds` while overdue, at most `max_overdue_reminders` times.
    reminder_lead_seconds: float = 3 * 86400.0
    overdue_reminder_seconds: float = 7 * 86400.0
    max_overdue_reminders: int = 4
    # The effectiveness check runs this long after the preventive action is done, and compares the same
    # length of time before it.
    effectiveness_window_seconds: float = 90 * 86400.0
    # Effective needs at least this many invoices issued in the window after (fewer: Inconclusive).
    min_invoices: int = 20
    # Ineffective reopens the preventive action, due this long after the check.
    reopen_due_seconds: float = 30 * 86400.0
    # Who may approve an extension (never the action's owner): any of these roles in the legal entity.
    extension_approver_roles: list[str] = field(
        default_factory=lambda: ["ar_supervisor", "finance_manager", "controller"]
    )
    record_timeout_seconds: float = 30.0
    check_timeout_seconds: float = 120.0


@dataclass(frozen=True)
class CapaInput:
    legal_entity: str
    capa_id: str
    dispute_id: str
    case_number: str
    root_cause: str  # a code of workflows/root_causes.py, internal (not CUS)
    customer_id: str  # "" when the customer is not the scope: the check then counts the owning function
    function: str  # the root cause's owning function (RootCause.function), the "process" of the check
    corrective: CapaAction
    preventive: CapaAction
    opened_by: Actor
    config: CapaConfig = field(default_factory=CapaConfig)
    dispute_workflow_id: str = ""
    currency: str = ""  # the case's currency, for the pages only


# -- commands (updates, each with a validator) -------------------------------------------------------


@dataclass(frozen=True)
class CompleteCommand:
    """`complete_corrective` / `complete_preventive`: by the action's owner, with what was done."""

    by: Actor
    note: str


@dataclass(frozen=True)
class ExtensionRequest:
    """`request_extension`: the owner asks to move an open action's due date later, with a reason."""

    by: Actor
    action: str  # "corrective" | "preventive"
    new_due: str  # as CapaAction.due
    reason: str


@dataclass(frozen=True)
class ExtensionDecision:
    """`approve_extension` / `refuse_extension`: someone who is not the owner, holding an approver role."""

    by: Actor
    action: str
    reason: str = ""


# -- state (query result, and what the record activity writes) ----------------------------------------


@dataclass(frozen=True)
class PendingExtension:
    new_due: str
    reason: str
    requested_by: str
    requested_at: str


@dataclass(frozen=True)
class ActionState:
    kind: str  # "corrective" | "preventive"
    owner: str
    due: str
    description: str
    status: str = "open"  # "open" | "done"
    completed_at: str = ""
    completed_by: str = ""
    note: str = ""
    extension: PendingExtension | None = None
    extensions_approved: int = 0
    reminders_sent: int = 0


@dataclass(frozen=True)
class RecurrenceRequest:
    """For the activity that counts recurrences: cases of `root_cause` opened, and invoices issued, for the
    customer (or, with customer_id "", for every customer where the function is the scope) in
    [before_from, split) and [split, after_to)."""

    legal_entity: str
    root_cause: str
    customer_id: str
    function: str
    before_from: str  # ISO instants
    split: str  # when the preventive action was done
    after_to: str
    exclude_dispute_id: str = ""  # unused by default; kept so a starter can leave its own case out


@dataclass(frozen=True)
class RecurrenceFigures:
    cases_before: int
    invoices_before: int
    cases_after: int
    invoices_after: int
    query: str = ""  # how the activity counted (evidence: the figures that decided it)


@dataclass(frozen=True)
class EffectivenessCheck:
    """One check as decided and recorded (ledger event "check", reason = outcome)."""

    number: int  # 1, 2, ... (a reopened CAPA is checked again)
    outcome: str  # "effective" | "ineffective" | "inconclusive"
    scope: str  # "customer" | "function"
    before_from: str
    split: str
    after_to: str
    cases_before: int
    invoices_before: int
    cases_after: int
    invoices_after: int
    rate_before: str  # cases per 100 invoices, Decimal as text (2 places, half up); "" when no invoices
    rate_after: str
    why: str


@dataclass(frozen=True)
class CapaState:
    legal_entity: str
    capa_id: str
    dispute_id: str
    case_number: str
    root_cause: str
    customer_id: str
    function: str
    status: str  # workflows/capa_states.py
    corrective: ActionState
    preventive: ActionState
    opened_by: str
    opened_at: str
    check_due_at: str = ""  # when the pending effectiveness check runs ("" when none is pending)
    checks: list[EffectivenessCheck] = field(default_factory=list)
    reopened: int = 0
    closed_at: str = ""
    currency: str = ""
    seq: int = 0  # transitions recorded


@dataclass(frozen=True)
class CapaTransition:
    """One transition as the ledger and the read model receive it (activities/capa.py record_capa)."""

    workflow_id: str
    run_id: str
    transition_seq: int  # with workflow_id, the business key that makes recording idempotent
    event: str
    from_status: str | None
    to_status: str
    actor: Actor
    reason: str
    at: str
    request_id: str
    state: CapaState
    action: str = ""  # the action the event is about ("corrective" | "preventive"), "" for the CAPA
    check: EffectivenessCheck | None = None
    # A decider must hold one of these roles in the store (extension decisions): the activity checks it.
    required_roles: list[str] = field(default_factory=list)
