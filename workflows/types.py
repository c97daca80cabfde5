"""The frozen dataclasses that cross the workflow boundary: inputs, update arguments, query results and
the records handed to activities. Dates travel as ISO strings and money as integer minor units so that
the default Temporal data converter round-trips them exactly.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Actor:
    """Who asks, with the roles they held in the legal entity at that moment (evidence)."""

    username: str
    roles: list[str] = field(default_factory=list)
    # The policy rule that allowed the request in the API, e.g. "p, ar_approver, *, invoice:approve".
    rule: str = ""


@dataclass(frozen=True)
class Line:
    description: str
    quantity: str  # Decimal as text
    unit_price: str  # Decimal as text, in the invoice currency
    tax_rate: str  # percent, Decimal as text
    net_minor: int
    tax_minor: int


@dataclass(frozen=True)
class InvoiceDraft:
    """Everything an editor can change. Totals are computed by the caller with the currency's exponent."""

    customer_id: str
    currency: str
    issue_date: str
    due_date: str
    po_number: str | None
    lines: list[Line]
    subtotal_minor: int
    tax_total_minor: int
    total_minor: int
    # Approved invoices are released to the customer at this UTC instant (the issue date's start in
    # the legal entity's zone); computed outside the workflow because zone data is I/O.
    release_at: str
    payload_hash: str
    # Units of the legal entity's currency per unit of the invoice currency ("1" when they are the same):
    # approval tiers are amounts in the entity's currency.
    exchange_rate: str = "1"


@dataclass(frozen=True)
class InvoiceConfig:
    """Durations the workflow waits for; from configuration so tests and customers can set them."""

    record_timeout_seconds: float = 30.0
    delivery_timeout_seconds: float = 60.0
    delivery_retry_max_interval_seconds: float = 300.0
    # Approval SLA: a reminder to the tier's approvers after this long at one tier, then an alert to the
    # supervisors (who can reassign the tier) after the second, counted from the tier's start.
    approval_reminder_seconds: float = 24 * 3600.0
    approval_escalation_seconds: float = 72 * 3600.0


@dataclass(frozen=True)
class InvoiceInput:
    invoice_id: str
    legal_entity: str
    external_id: str
    draft: InvoiceDraft
    actor: Actor
    request_id: str = ""
    config: InvoiceConfig = field(default_factory=InvoiceConfig)


@dataclass(frozen=True)
class Approval:
    approver: str
    at: str
    comment: str = ""
    tier: int = 1
    role: str = ""
    on_behalf_of: str | None = None  # the delegator, when a delegate approved


@dataclass(frozen=True)
class TierRequirement:
    level: int  # 1, 2, 3... approved in this order
    role: str


@dataclass(frozen=True)
class ApprovalPlan:
    """The tiers one submission needs, fixed when it was submitted (the matrix may change meanwhile)."""

    matrix_version: str
    document_kind: str
    amount_minor: int  # in the legal entity's currency, converted at the document's rate
    currency: str  # the legal entity's currency
    tiers: list[TierRequirement]


@dataclass(frozen=True)
class PlanRequest:
    legal_entity: str
    document_kind: str
    total_minor: int
    currency: str
    exchange_rate: str


@dataclass(frozen=True)
class Assignment:
    """A supervisor's reassignment of one tier to a named approver."""

    tier: int
    assignee: str
    by: str
    at: str
    reason: str


@dataclass(frozen=True)
class PaymentApplied:
    payment_id: str
    customer_id: str
    amount_minor: int
    currency: str
    received_on: str
    reference: str
    payment_total_minor: int


@dataclass(frozen=True)
class InvoiceState:
    """The invoice as the workflow holds it; returned by every update and by the `state` query."""

    invoice_id: str
    workflow_id: str
    legal_entity: str
    external_id: str
    number: str
    status: str
    draft: InvoiceDraft
    created_by: str
    editors: list[str]
    approvals: list[Approval]
    amount_paid_minor: int
    payments: list[str]
    status_since: str
    transition_seq: int
    delivered_at: str | None = None
    submitters: list[str] = field(default_factory=list)
    plan: ApprovalPlan | None = None
    assignments: list[Assignment] = field(default_factory=list)
    tier_since: str = ""  # when the current approval tier started waiting (the SLA clock)
    escalated: bool = False
    submission: int = 0  # how many times it was sent for approval
    # The customer's channel, and where the invoice stands there (portal channels only).
    portal: str = ""  # the portal's configured name; "email" for PDF by mail; "" before delivery
    submission_pass: int = 0  # 1 for the first submission to the portal, 2 after the first fix...
    portal_status: str = ""  # normalised (activities/portals/status.py PortalStatus)
    portal_reason: str = ""  # "<code>: <text>" of the last rejection
    reopened: bool = False  # fixed after a rejection and not yet resubmitted
    # Disputes and adjustments (issue 11). `dispute_id`: the open case that holds part of this invoice,
    # "" when none; `disputed_minor` the amount it holds. Credits and write-offs lower the amount due.
    dispute_id: str = ""
    disputed_minor: int = 0
    amount_credited_minor: int = 0
    amount_written_off_minor: int = 0
    adjustments: list[str] = field(default_factory=list)  # adjustment ids applied, in order


@dataclass(frozen=True)
class EditCommand:
    actor: Actor
    draft: InvoiceDraft


@dataclass(frozen=True)
class Command:
    """submit, approve, reject, void: who, and the comment or reason."""

    actor: Actor
    comment: str = ""


@dataclass(frozen=True)
class ApproveCommand:
    actor: Actor
    comment: str = ""
    tier: int = 0  # the tier the approver saw (0: whichever is current); a stale one is refused
    on_behalf_of: str | None = None  # approving under this colleague's delegation


@dataclass(frozen=True)
class ReassignCommand:
    actor: Actor
    tier: int
    assignee: str
    reason: str


@dataclass(frozen=True)
class SupervisorCommand:
    """remind / escalate, from the control tower: who acts, why (required), the SLA rule the tower
    matched (evidence: `policies/sla.toml`), and for an escalation the role to raise it to."""

    actor: Actor
    reason: str
    sla_rule: str = ""
    escalate_to: str = ""


@dataclass(frozen=True)
class Authority:
    """What the recording activity verifies in the store before it records an approval: the approver
    (or the delegator, with an active delegation) holds the role in the legal entity."""

    username: str
    role: str
    on_behalf_of: str | None = None


@dataclass(frozen=True)
class NotifyRequest:
    workflow_id: str
    notification_seq: int  # with workflow_id, the idempotency key
    kind: str  # approval_reminder | approval_escalation | portal_rejection ...
    state: InvoiceState
    tier: int
    role: str
    assignee: str | None = None
    # A person's words to pass on (a supervisor's reminder or escalation: who, and why).
    note: str = ""


@dataclass(frozen=True)
class NotifyResult:
    recipients: list[str]


@dataclass(frozen=True)
class PaymentCommand:
    actor: Actor
    payment: PaymentApplied


@dataclass(frozen=True)
class PortalEvent:
    """What a portal transition records (the ledger payload and the portal_submission read model)."""

    portal: str
    channel: str
    submission_pass: int
    submission_key: str
    status: str  # normalised PortalStatus ("" when the portal said nothing yet)
    at: str  # ISO instant: when the portal said it
    portal_ref: str = ""
    reason_code: str = ""
    reason_text: str = ""


@dataclass(frozen=True)
class TransitionRecord:
    """One transition as the ledger and the read model receive it (see activities.transitions)."""

    legal_entity: str
    object_type: str
    object_id: str
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
    state: InvoiceState
    payment: PaymentApplied | None = None
    authority: Authority | None = None
    portal: PortalEvent | None = None


@dataclass(frozen=True)
class RecordResult:
    number: str
    ledger_seq: int
    entry_hash: str
    at: str = ""  # the entry's ISO instant (the record's own `at`, or the first recording's on a retry)


@dataclass(frozen=True)
class SubmitRequest:
    """A submission to record. `transition`: the submit transition as the workflow would record it, its
    state without the approval plan and its reason without the tiers (the activity adds both)."""

    plan: PlanRequest
    transition: TransitionRecord


@dataclass(frozen=True)
class SubmitResult:
    plan: ApprovalPlan  # the tiers under the matrix in force at the submission (as recorded)
    recorded: RecordResult
    reason: str  # what the recorded transition says


@dataclass(frozen=True)
class DeliveryPlan:
    """How the invoice leaves: its channel, and why it cannot leave yet (pre-submission checks)."""

    portal: str  # "email", or a configured portal's name
    channel: str  # email | cxml | coupa | peppol
    follow_up: str  # none | push | poll
    problems: list[str] = field(default_factory=list)  # empty: it may be sent


@dataclass(frozen=True)
class DeliveryRequest:
    """An approved, released invoice to deliver. `transition`: its `deliver` transition as the workflow
    would record it if it leaves by e-mail now (the activity fills in the number, the recipient and the
    instant it was sent).

    The shape before 2026-11-23 (an invoice workflow whose history took that path: see
    `InvoiceWorkflow._one_activity_steps`) sends no transition but which mail this is (`workflow_id`,
    `transition_seq`) and the state to render: the activity then only mails it, answers with a
    `LegacyDeliveryResult`, and the workflow records the transition itself."""

    invoice_id: str
    transition: TransitionRecord | None = None
    workflow_id: str = ""
    transition_seq: int = 0
    state: InvoiceState | None = None


@dataclass(frozen=True)
class DeliveryResult:
    """The customer's channel; for e-mail, the mail sent and its `deliver` transition recorded. For a
    portal, or when a pre-submission check stops it, nothing is sent and nothing recorded here."""

    plan: DeliveryPlan
    message_id: str = ""
    recipient: str = ""
    number: str = ""  # the invoice number, allocated when it is issued (gapless over issued invoices)
    recorded: RecordResult | None = None
    reason: str = ""  # what the recorded transition says


@dataclass(frozen=True)
class LegacyDeliveryResult:
    """What `deliver_invoice` answered before 2026-11-23: the mail sent, nothing recorded."""

    channel: str
    message_id: str
    recipient: str
    number: str = ""


@dataclass(frozen=True)
class DeliveryPlanRequest:
    """The `plan_delivery` activity's input, for invoice workflows of the shape before 2026-11-23."""

    invoice_id: str
    state: InvoiceState


@dataclass(frozen=True)
class CheckpointRequest:
    trigger: str  # "schedule" or "on_demand"
    requested_by: str = "cashcycle"
    legal_entity: str = ""  # one chain, or every chain when empty


@dataclass(frozen=True)
class CheckpointRun:
    checkpoint_ids: list[int]
    broken_chains: list[str] = field(default_factory=list)  # verified broken, so not signed


# -- customer portals ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PortalSubmitRequest:
    portal: str
    invoice_id: str
    submission_pass: int  # 1, 2, ...: the idempotency key is per pass


@dataclass(frozen=True)
class PortalSubmitResult:
    portal: str
    channel: str
    submission_key: str
    portal_ref: str
    status: str  # a PortalStatus value; "" when the channel reports nothing (e-mail)
    at: str  # ISO 8601 instant
    follow_up: str  # "push" (wait for signals), "poll" (call poll_portal), "none"
    replayed: bool = False


@dataclass(frozen=True)
class PortalPollRequest:
    portal: str
    since: str = ""  # the previous result's cursor; "" for everything the portal still has


@dataclass(frozen=True)
class PortalUpdate:
    portal: str
    status: str  # a PortalStatus value
    at: str
    invoice_number: str = ""
    portal_ref: str = ""
    submission_key: str = ""
    reason_code: str = ""  # a ReasonCode value (Peppol OPStatusReason, or DUP)
    reason_text: str = ""
    portal_reason_code: str = ""
    actions: list[str] = field(default_factory=list)
    message: str = ""
    portal_status: str = ""
    update_id: str = ""
    paid_minor: int | None = None


@dataclass(frozen=True)
class PortalPollResult:
    portal: str
    updates: list[PortalUpdate]
    cursor: str  # the newest update's time (the portal's clock): the next poll's `since`


@dataclass(frozen=True)
class PortalPollRun:
    portal: str
    updates: int
    routed: int


# -- disputes and adjustments: the commands other workflows send an invoice (issue 11) ----------------


@dataclass(frozen=True)
class DisputeLinkCommand:
    """A dispute case takes part of the invoice (`open_dispute`), changes that amount (the same case again,
    e.g. a second deduction joining it), or lets it go (`end_dispute`) when the case ends."""

    actor: Actor
    dispute_id: str
    case_number: str
    amount_minor: int = 0  # open_dispute: the disputed amount on this invoice (the case's total for it)
    reason: str = ""


@dataclass(frozen=True)
class AdjustmentCommand:
    """An issued credit memo or an approved (or automatic) write-off lowers the amount due. Applying the same
    `adjustment_id` twice is refused (`already_applied`), so a retried activity applies it once."""

    actor: Actor
    adjustment_id: str  # the credit memo's or write-off's id
    kind: str  # "credit_memo" | "write_off"
    amount_minor: int
    document_number: str = ""  # the credit note's number; "" for a write-off
    reason: str = ""
    rule: str = ""  # what allowed it, e.g. "write_off:auto_tolerance:ACME<=5.00 EUR"


@dataclass(frozen=True)
class InvoiceCommandRequest:
    """For the activity that sends an invoice workflow one of the updates above (workflows cannot send
    updates themselves). `update_id` makes a retried activity one update."""

    workflow_id: str
    update: str  # "open_dispute" | "end_dispute" | "apply_adjustment"
    update_id: str
    link: DisputeLinkCommand | None = None
    adjustment: AdjustmentCommand | None = None


@dataclass(frozen=True)
class PortalDisputeRequest:
    """An invoice whose portal says "under query" or "disputed": open a case (or join the open one) through
    the same door as a collector's complaint. Idempotent on `update_id`."""

    legal_entity: str
    invoice_id: str
    portal: str
    status: str  # normalised portal status: "under_query" | "disputed"
    reason_code: str
    reason_text: str
    update_id: str
    amount_minor: int  # the amount due when the portal said it
