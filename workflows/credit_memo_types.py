"""The frozen dataclasses of credit memos and write-offs (issue 11): the workflows' inputs, their commands,
their state, what the recording activity receives, and the outcome they signal back to a dispute.

A credit memo and a write-off are both a "resolution document": something that lowers what a customer owes
on one invoice, under approval tiers from the matrix (`credit_memo` / `write_off` sections) and the same
segregation of duties. They share one state shape (`ResolutionState`, `kind` tells them apart) so that the
recording activity, the inbox and the API treat them alike; the credit-memo-only fields stay empty on a
write-off.

Workflow ids: `credit_memo/<legal_entity>/<id>` and `write_off/<legal_entity>/<id>`
(`credit_memo_workflow_id`, `write_off_workflow_id`). A dispute that starts one passes its own workflow id
(`dispute_workflow_id`); the document signals `resolution_outcome(ResolutionOutcome)` there when it ends
(applied, rejected or cancelled). `dispute_workflow_id == ""`: no dispute, no signal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workflows.credit_note_types import CreditNoteDocument
from workflows.types import Actor, Approval, ApprovalPlan, Line

CREDIT_MEMO = "credit_memo"
WRITE_OFF = "write_off"
# The signal a dispute workflow receives (its handler takes one ResolutionOutcome).
RESOLUTION_OUTCOME_SIGNAL = "resolution_outcome"


def credit_memo_workflow_id(legal_entity: str, credit_memo_id: str) -> str:
    return f"credit_memo/{legal_entity}/{credit_memo_id}"


def write_off_workflow_id(legal_entity: str, write_off_id: str) -> str:
    return f"write_off/{legal_entity}/{write_off_id}"


@dataclass(frozen=True)
class ResolutionConfig:
    """Durations the workflows wait for; from configuration so tests and customers can set them."""

    record_timeout_seconds: float = 30.0
    delivery_timeout_seconds: float = 60.0
    delivery_retry_max_interval_seconds: float = 300.0
    # How long a pending document waits for its approvers before it is cancelled by itself (0: forever).
    approval_timeout_seconds: float = 0.0


@dataclass(frozen=True)
class RebillLine:
    """A line of the corrected invoice of a rebill, as the ERP would send it (POST /api/v1/invoices)."""

    description: str
    quantity: str  # Decimal as text
    unit_price: str  # Decimal as text, in the invoice currency
    tax_rate: str  # percent, Decimal as text


@dataclass(frozen=True)
class Rebill:
    """A rebill: the credit memo credits the whole invoice, then a corrected invoice is started through the
    same code as POST /api/v1/invoices (external id `<original>-R<n>`), and goes through normal approval."""

    lines: list[RebillLine]
    external_id: str = ""  # "" -> "<original external id>-R1"
    issue_date: str = ""  # "" -> the business date when it is started
    due_date: str = ""  # "" -> from the customer's payment terms
    po_number: str | None = None


@dataclass(frozen=True)
class CreditMemoInput:
    """A proposed credit memo for one invoice. `amount_minor` is the gross credit (lines' net + tax) in the
    invoice currency; `lines` are what the credit note will say (one line is fine)."""

    legal_entity: str
    id: str
    invoice_id: str
    invoice_workflow_id: str
    customer_id: str
    currency: str
    amount_minor: int
    reason: str
    proposed_by: Actor
    lines: list[Line]
    dispute_id: str = ""
    dispute_workflow_id: str = ""  # where the outcome is signalled; "" when there is no dispute
    dispute_owner: str = ""  # the case owner: never an approver
    exchange_rate: str = "1"  # units of the entity's currency per invoice-currency unit (tiers)
    rebill: Rebill | None = None  # set for a rebill: a full credit plus a corrected invoice
    request_id: str = ""
    config: ResolutionConfig = field(default_factory=ResolutionConfig)


@dataclass(frozen=True)
class WriteOffInput:
    """A requested write-off of (part of) an invoice's open amount, in the invoice currency."""

    legal_entity: str
    id: str
    invoice_id: str
    invoice_workflow_id: str
    customer_id: str
    currency: str
    amount_minor: int
    reason: str
    proposed_by: Actor  # the requester
    dispute_id: str = ""
    dispute_workflow_id: str = ""
    dispute_owner: str = ""
    exchange_rate: str = "1"
    request_id: str = ""
    config: ResolutionConfig = field(default_factory=ResolutionConfig)


@dataclass(frozen=True)
class ResolutionOutcome:
    """Signalled to the dispute workflow (`resolution_outcome`) when a credit memo or write-off ends."""

    kind: str  # "credit_memo" | "write_off"
    document_id: str
    status: str  # "applied" | "rejected" | "cancelled"
    amount_minor: int  # what was applied (0 when rejected or cancelled)
    number: str  # the credit note's number; "" for a write-off or an unissued memo
    by: str  # who decided it (the last approver, the rejecter, "system" for an automatic write-off)
    at: str  # ISO instant
    reason: str = ""
    rebill_invoice_id: str = ""  # a rebill's corrected invoice


# -- commands (updates; each refusable by a validator) -----------------------------------------------


@dataclass(frozen=True)
class ResolutionApproveCommand:
    actor: Actor
    comment: str = ""
    tier: int = 0  # the tier the approver saw (0: the current one); a stale one is refused
    on_behalf_of: str | None = None  # approving under this colleague's delegation


@dataclass(frozen=True)
class ResolutionRejectCommand:
    """reject (an approver) or cancel (the proposer, the dispute's owner, a supervisor): reason required."""

    actor: Actor
    reason: str


# -- state, and what the recording activity receives ---------------------------------------------------


@dataclass(frozen=True)
class ResolutionState:
    """A credit memo or write-off as its workflow holds it; returned by every update and the `state` query."""

    kind: str  # "credit_memo" | "write_off"
    id: str
    workflow_id: str
    legal_entity: str
    status: str
    invoice_id: str
    customer_id: str
    currency: str
    amount_minor: int
    reason: str
    proposed_by: str
    dispute_id: str
    dispute_owner: str
    status_since: str
    transition_seq: int
    plan: ApprovalPlan | None = None
    # The matrix's bound (up_to, entity currency, decimal text) of each tier's role; "" for the top tier
    # (unbounded). The cumulative limit per approver, customer and period reads it.
    tier_bounds: list[str] = field(default_factory=list)
    # Who applied cash for the customer in the period, as the store said at submission (the validator's
    # view; the recording activity asks the store again).
    cash_appliers: list[str] = field(default_factory=list)
    approvals: list[Approval] = field(default_factory=list)
    decided_by: str = ""  # the last approver, the rejecter or canceller, "system"
    decision_reason: str = ""  # a rejection's or cancellation's reason
    auto_rule: str = ""  # an automatic write-off: the rule that allowed it
    lines: list[Line] = field(default_factory=list)  # credit memo
    number: str = ""  # credit memo: the credit note's number, once issued
    issued_at: str = ""
    delivered_at: str = ""
    channel: str = ""  # where the credit note went (email, or the portal's name)
    applied_minor: int = 0
    rebill_invoice_id: str = ""
    rebill: Rebill | None = None


@dataclass(frozen=True)
class ResolutionAuthority:
    """What the recording activity re-checks against the store before it records an approval: the role
    (or delegation), the cash-application conflict, and (for the tier that decides) the cumulative limit."""

    username: str
    role: str
    tier: int
    decides: bool  # the last tier: the approver decides the document
    on_behalf_of: str | None = None


@dataclass(frozen=True)
class ResolutionRecord:
    """One transition of a credit memo or write-off, as the ledger and the read model receive it."""

    object_type: str  # "credit_memo" | "write_off"
    object_id: str
    legal_entity: str
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
    state: ResolutionState
    authority: ResolutionAuthority | None = None
    rule: str = ""  # overrides the actor's rule in the ledger (an automatic write-off's tolerance rule)


@dataclass(frozen=True)
class ResolutionRecorded:
    ledger_seq: int
    entry_hash: str
    at: str
    number: str = ""  # the credit note's number (issue)


@dataclass(frozen=True)
class ResolutionPlanRequest:
    """The `submit` step: the approval tiers under the matrix in force now (and for a write-off, whether it
    falls under the entity's automatic tolerance), recorded with the transition in one activity."""

    amount_minor: int
    currency: str
    exchange_rate: str
    transition: ResolutionRecord


@dataclass(frozen=True)
class ResolutionPlanResult:
    plan: ApprovalPlan
    tier_bounds: list[str]
    cash_appliers: list[str]
    reason: str
    # Recorded `submit` transition; None for a write-off below the tolerance (`auto_rule` says which rule):
    # nothing recorded yet, the workflow applies it and records `write_off` as the system.
    recorded: ResolutionRecorded | None = None
    auto_rule: str = ""


@dataclass(frozen=True)
class IssueRequest:
    """Issue an approved credit memo: number, UBL credit note and PDF, in one transaction with the record."""

    transition: ResolutionRecord


@dataclass(frozen=True)
class IssueResult:
    recorded: ResolutionRecorded
    number: str
    issued_at: str
    document: CreditNoteDocument  # what deliver_credit_note renders and sends (as issued)


@dataclass(frozen=True)
class RebillRequest:
    """Start the corrected invoice of a rebill (idempotent: the external id is the invoice workflow id)."""

    credit_memo_id: str
    legal_entity: str
    original_invoice_id: str
    rebill: Rebill
    actor: Actor


@dataclass(frozen=True)
class RebillResult:
    invoice_id: str
    external_id: str
