"""The frozen dataclasses that cross DisputeWorkflow's boundary: its input and configuration, its commands,
its state and what the recording activity receives. Money in integer minor units of the case's currency;
instants as ISO strings.

Workflow id: `dispute_workflow_id(legal_entity, case_number)` = "dispute/<legal_entity>/<case_number>".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workflows.capa_types import CapaConfig
from workflows.credit_memo_types import RebillLine, ResolutionConfig
from workflows.types import Actor, Line


def dispute_workflow_id(legal_entity: str, case_number: str) -> str:
    return f"dispute/{legal_entity}/{case_number}"


@dataclass(frozen=True)
class DisputeConfig:
    """The case's SLA and timings, from policies/disputes.toml as it was when the case opened (business
    days already turned into seconds there), so that tests and customers set them.

    Reminder and escalations count the case's *running* time: waiting on the customer pauses them. The
    customer's window (`window_deadline`) is an instant: it does not pause."""

    sla_seconds: float = 10 * 86400.0  # resolve within (the "past SLA" line)
    reminder_seconds: float = 7 * 86400.0  # 0: no reminder
    escalation_seconds: list[float] = field(default_factory=lambda: [10 * 86400.0, 15 * 86400.0])
    escalation_roles: list[str] = field(default_factory=lambda: ["ar_supervisor", "finance_manager"])
    window_deadline: str = ""  # ISO instant: the customer's own dispute window ends; "" none
    sla_rule: str = ""  # which rule of which policy version set these (evidence)
    record_timeout_seconds: float = 30.0
    command_timeout_seconds: float = 60.0
    resolution: ResolutionConfig = field(default_factory=ResolutionConfig)
    capa: CapaConfig = field(default_factory=CapaConfig)


@dataclass(frozen=True)
class DisputedInvoiceIn:
    """An invoice the case takes (part of): `amount_minor` is what the case holds on it in total."""

    invoice_id: str
    invoice_workflow_id: str
    invoice_number: str
    amount_minor: int


@dataclass(frozen=True)
class DisputeInput:
    legal_entity: str
    dispute_id: str
    case_number: str
    customer_id: str
    currency: str
    source: str  # "manual" | "portal" | "deduction"
    claimed_code: str  # the customer's reason code, as they gave it
    reason: str  # ours (a root-cause taxonomy code), mapped from the claimed code
    reason_version: str  # the mapping file and version that mapped it
    description: str
    owner: str
    coordinator: str
    invoices: list[DisputedInvoiceIn]
    opened_by: Actor
    request_id: str = ""
    config: DisputeConfig = field(default_factory=DisputeConfig)
    currency_exponent: int = 2  # the currency's minor units (ISO 4217), to price a credit line


# -- commands (updates; each refusable by a validator) -------------------------------------------------


@dataclass(frozen=True)
class JoinCommand:
    """add_invoice: an invoice (or more of one already in the case) joins it: a deduction, the portal's
    word, a collector. `amount_minor` is added to what the case holds on that invoice."""

    actor: Actor
    invoice: DisputedInvoiceIn
    source: str = "manual"
    reason: str = ""


@dataclass(frozen=True)
class NoteCommand:
    actor: Actor
    text: str


@dataclass(frozen=True)
class AttachCommand:
    """An attachment's metadata; its content is in the store under its SHA-256 (activities/disputes.py)."""

    actor: Actor
    filename: str
    content_type: str
    size: int
    sha256: str
    text: str = ""


@dataclass(frozen=True)
class AssignCommand:
    """assign (first owner) or reassign (a supervisor): the owner and, optionally, the coordinator."""

    actor: Actor
    owner: str
    reason: str
    coordinator: str = ""


@dataclass(frozen=True)
class WaitCommand:
    """wait_on_customer: why the case waits (the SLA clock pauses); resume: what came back."""

    actor: Actor
    reason: str


@dataclass(frozen=True)
class InvoiceAmount:
    """What a resolution's document takes on one invoice; `lines`: the credit note's lines (the API splits
    the gross amount at the invoice's tax rate), `exchange_rate`: the invoice's (for the approval tiers)."""

    invoice_id: str
    amount_minor: int
    lines: list[Line] = field(default_factory=list)
    exchange_rate: str = "1"


@dataclass(frozen=True)
class ResolveCommand:
    """One resolution with its reason. credit_memo / write_off: `amounts` per invoice (default: each
    invoice's open amount); rebill: `rebill_lines` are the corrected invoice's lines (one invoice)."""

    actor: Actor
    kind: str  # a dispute_states.Resolution value
    reason: str
    amounts: list[InvoiceAmount] = field(default_factory=list)
    rebill_lines: list[RebillLine] = field(default_factory=list)


@dataclass(frozen=True)
class ActionPlan:
    owner: str
    due: str  # ISO date or instant
    description: str


@dataclass(frozen=True)
class CloseCommand:
    """close: the validated root cause (workflows/root_causes.py) and the validity, separate fields. An
    internal root cause needs both actions (they start the CAPA)."""

    actor: Actor
    root_cause: str
    validity: str  # valid | partly_valid | invalid
    comment: str = ""
    corrective: ActionPlan | None = None
    preventive: ActionPlan | None = None


@dataclass(frozen=True)
class PaymentOnCase:
    """Signal `payment_received`: a payment applied to an invoice of the case, and what is due after it."""

    invoice_id: str
    payment_id: str
    amount_minor: int
    amount_due_after_minor: int
    at: str


# -- state ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DisputedInvoice:
    invoice_id: str
    invoice_workflow_id: str
    invoice_number: str
    original_minor: int  # what the case took on it (grows when more joins)
    open_minor: int  # what is still disputed on it
    linked: bool = True  # the invoice holds the case's amount (open_dispute sent, end_dispute not yet)


@dataclass(frozen=True)
class Amounts:
    """original = open + credited + written_off + paid + recovered, each >= 0 (asserted at every move)."""

    original_minor: int = 0
    open_minor: int = 0
    credited_minor: int = 0
    written_off_minor: int = 0
    paid_minor: int = 0
    recovered_minor: int = 0

    def adds_up(self) -> bool:
        parts = (
            self.open_minor,
            self.credited_minor,
            self.written_off_minor,
            self.paid_minor,
            self.recovered_minor,
        )
        return all(p >= 0 for p in parts) and sum(parts) == self.original_minor


@dataclass(frozen=True)
class ResolutionDocument:
    kind: str  # credit_memo | write_off
    document_id: str
    workflow_id: str
    invoice_id: str
    amount_minor: int
    status: str = "pending"  # pending | applied | rejected | cancelled
    number: str = ""
    applied_minor: int = 0


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True)
class DisputeState:
    dispute_id: str
    workflow_id: str
    legal_entity: str
    case_number: str
    customer_id: str
    currency: str
    source: str
    status: str
    claimed_code: str
    reason: str
    reason_version: str
    description: str
    owner: str
    coordinator: str
    invoices: list[DisputedInvoice]
    amounts: Amounts
    opened_by: str
    opened_at: str
    status_since: str
    transition_seq: int
    escalation_level: int = 0
    reminded: bool = False
    window_passed: bool = False
    waiting_reason: str = ""
    paused_seconds: float = 0.0  # time spent waiting on the customer, before the current wait
    paused_since: str = ""
    sla_due_at: str = ""  # when the case is past its SLA if it keeps running; "" while paused or resolved
    window_deadline: str = ""
    sla_rule: str = ""
    resolution: str = ""  # the resolution kind
    resolution_reason: str = ""
    resolved_by: str = ""
    resolved_at: str = ""
    documents: list[ResolutionDocument] = field(default_factory=list)
    root_cause: str = ""
    validity: str = ""
    capa_id: str = ""
    closed_at: str = ""
    attachments: list[Attachment] = field(default_factory=list)
    notes: int = 0


@dataclass(frozen=True)
class DisputeRecord:
    """One transition of a case as the ledger and the read model receive it (activities/disputes.py)."""

    legal_entity: str
    dispute_id: str
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
    state: DisputeState
    note: str = ""  # a note's text (note, attach, wait_on_customer, resume... say why)
    attachment: Attachment | None = None
    payload: dict[str, str | int] = field(default_factory=dict)  # event-specific facts for the ledger


@dataclass(frozen=True)
class DisputeRecorded:
    ledger_seq: int
    entry_hash: str
    at: str
