"""Request and response bodies of API v1. Amounts, quantities and rates are decimal strings.

Every rule a single field obeys is in its schema, so that a client generated from the OpenAPI document
builds no request the API refuses with `invalid_input`: free text has no control characters (and is not
blank where it is required), decimal strings carry their bounds and places in a pattern, currencies are
the ISO 4217 codes that have a minor unit. What relates fields to each other or to the store is checked by
the routes, with the codes api/errors.py lists.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from typing import Annotated, Any

import iso4217
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)

from activities.directory import KNOWN_ROLES
from activities.einvoice import COUNTRY_CODES, EAS_SCHEMES, VAT_PREFIXES, endpoint_problem
from activities.models import LedgerEntry

EXTERNAL_ID = r"^[A-Za-z0-9][A-Za-z0-9._:/#-]*$"

# C0 control characters but tab, line feed and carriage return, and DEL. PostgreSQL cannot store NUL in
# text at all: accepted here, it made the workflow's recording activity fail and retry forever.
_CONTROLS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f"
_CONTROL = re.compile(f"[{_CONTROLS}]")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# The whitespace pydantic strips from text (Unicode White_Space) that is not a refused control character.
_SPACES = r"\t\n\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
TEXT = f"^[^{_CONTROLS}]*$"
NONBLANK_TEXT = f"^[^{_CONTROLS}]*[^{_CONTROLS}{_SPACES}][^{_CONTROLS}]*$"


def positive_decimal(digits: int, places: int) -> str:
    """A decimal string > 0 with at most `digits` digits before the point (leading zeros aside) and at
    most `places` after it, in plain ASCII digits: what activities.money.parse_decimal takes within those
    bounds."""
    whole = rf"0*[1-9][0-9]{{0,{digits - 1}}}(\.[0-9]{{1,{places}}})?"
    fractions = "|".join(f"0{{{k}}}[1-9][0-9]{{0,{places - 1 - k}}}" for k in range(places))
    return rf"^(?:{whole}|0+\.(?:{fractions}))$"


def decimal_at_least_zero(digits: int, places: int) -> str:
    return rf"^[0-9]{{1,{digits}}}(\.[0-9]{{1,{places}}})?$"


QUANTITY = positive_decimal(9, 6)  # money.parse_decimal: > 0, <= 1e9, 6 places
UNIT_PRICE = decimal_at_least_zero(12, 6)  # >= 0, <= 1e12, 6 places
TAX_RATE = r"^(?:100(\.0{1,4})?|[0-9]{1,2}(\.[0-9]{1,4})?)$"  # percent 0-100, 4 places
EXCHANGE_RATE = positive_decimal(9, 10)  # > 0, <= 1e9, 10 places
# > 0, < 1e15, at most 4 places (the most any currency has); more than the currency's own places is a 422
# invalid_amount, a rule between two fields.
AMOUNT = positive_decimal(15, 4)


def _json_integer(value: Any) -> Any:
    if isinstance(value, str | bool):  # pydantic would take "30" and true for 30 and 1
        raise ValueError("must be a JSON integer")
    return value


def _json_date(value: Any) -> Any:
    # pydantic also reads a date from a datetime at midnight or a number of seconds, neither a `date`.
    if not (isinstance(value, date) or (isinstance(value, str) and _DATE.fullmatch(value))):
        raise ValueError("must be a date written as a string, YYYY-MM-DD")
    return value


# JSON types as the schema states them: pydantic's lax mode also took "30" for an integer, 0 for false and
# a number of seconds for a date, requests the schema calls invalid.
# An integer field is `Annotated[int, Field(ge=..., le=...), JSON_INTEGER]`: the bounds before the validator,
# or pydantic writes them into the schema as "ge"/"le", which no JSON Schema reader knows.
JSON_INTEGER = BeforeValidator(_json_integer)
# Business dates (issue, due, payment, delegation, report and pack periods) in years 1900-2999: the
# arithmetic on them (due = issue + terms, the start of the issue date in the entity's zone, a report's
# end of period) stays within what Python's dates hold (0001-01-01 and 9999-12-31 were 500s).
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(2999, 12, 31)
_YEAR = "(?:19|2[0-9])[0-9]{2}"
_LEAP_YEAR = "(?:(?:19|2[0-9])(?:0[48]|[2468][048]|[13579][26])|(?:20|24|28)00)"
_MONTH_DAY = (
    "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    "|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
# Exactly the dates of those years, February 29 of leap years included: a pattern a generator can draw from
# (the year range alone, beside `format: date`, left it filtering out nearly everything it drew).
BUSINESS_DAY = f"^(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)$"


def _business_day(value: date) -> date:
    if not FIRST_DAY <= value <= LAST_DAY:
        raise ValueError(f"must be between {FIRST_DAY} and {LAST_DAY}")
    return value


Day = Annotated[
    date,
    BeforeValidator(_json_date),
    AfterValidator(_business_day),
    WithJsonSchema({"type": "string", "format": "date", "pattern": BUSINESS_DAY}),
]

# Exact values: not stripped (a pattern says what is accepted, surrounding spaces included).
Exact = Annotated[str, StringConstraints(strip_whitespace=False)]

CURRENCIES = sorted(c.code for c in iso4217.Currency if c.exponent is not None)


def one_of(values: list[str], what: str) -> AfterValidator:
    """Refuses a string that is not one of `values` (the enum the type's schema states)."""
    allowed = frozenset(values)

    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


_NOT_TEXT = _CONTROLS + _SPACES.replace(" ", "")  # what an e-mail address part cannot contain
EMAIL = rf"^$|^[^@ {_NOT_TEXT}]+@[^@ {_NOT_TEXT}]+\.[^@ {_NOT_TEXT}]+$"
COUNTRY = "^$|^(?:" + "|".join(sorted(COUNTRY_CODES)) + ")$"
# EN 16931 BR-CO-09: e-invoices refuse a VAT identifier that does not start with a country code (EL: Greece).
VAT_ID = "^$|^(?:" + "|".join(sorted(VAT_PREFIXES)) + f")[^{_CONTROLS}]*$"
EAS_SCHEME = "^$|^(?:" + "|".join(sorted(EAS_SCHEMES)) + ")$"

Currency = Annotated[
    str,
    StringConstraints(strip_whitespace=False),
    one_of(CURRENCIES, "an ISO 4217 currency code with a minor unit"),
    WithJsonSchema({"type": "string", "enum": CURRENCIES, "description": "ISO 4217 code"}),
]
ROLES = sorted(KNOWN_ROLES)
Role = Annotated[
    str,
    StringConstraints(strip_whitespace=False),
    one_of(ROLES, f"a known role ({', '.join(ROLES)})"),
    WithJsonSchema({"type": "string", "enum": ROLES}),
]
USERNAME = r"^[A-Za-z0-9._]{1,64}$"  # activities.directory.add_user


def _text_patterns(schema: dict[str, Any]) -> None:
    """Free text in the schema says what the validator below refuses: no control characters, and not
    blank when the field is required to be non-empty (text is stripped before its length is checked)."""
    for prop in schema.get("properties", {}).values():
        for variant in prop.get("anyOf", [prop]):
            if (
                variant.get("type") == "string"
                and not {"pattern", "format", "enum", "const"} & variant.keys()
            ):
                variant["pattern"] = NONBLANK_TEXT if variant.get("minLength", 0) >= 1 else TEXT


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra=_text_patterns)

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        if isinstance(value, str) and _CONTROL.search(value):
            raise ValueError("must not contain control characters such as NUL")
        return value


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"


class LineIn(Strict):
    description: str = Field(min_length=1, max_length=500)
    quantity: Exact = Field(
        pattern=QUANTITY, description="decimal string, > 0, < 1e9, 6 places", examples=["10"]
    )
    unit_price: Exact = Field(
        pattern=UNIT_PRICE, description="decimal string, >= 0, < 1e12, 6 places", examples=["125.00"]
    )
    tax_rate: Exact = Field(pattern=TAX_RATE, description="percent, decimal string 0-100", examples=["20"])


class InvoiceCreate(Strict):
    external_id: Exact = Field(
        min_length=1,
        max_length=100,
        pattern=EXTERNAL_ID,
        description="the ERP's document id; the idempotency key of the creation",
    )
    customer_id: str = Field(min_length=1, max_length=36)
    currency: Currency
    issue_date: Day
    due_date: Day | None = Field(default=None, description="default: issue date + the customer's terms")
    po_number: str | None = Field(default=None, max_length=100)
    lines: list[LineIn] = Field(min_length=1, max_length=500)
    exchange_rate: Exact | None = Field(
        default=None,
        pattern=EXCHANGE_RATE,
        description="decimal string > 0, 10 places: units of the legal entity's currency per unit of the "
        "invoice currency; required when they differ (approval tiers are amounts in the entity's currency), "
        "1 when they do not (422 exchange_rate)",
    )


class InvoiceEdit(Strict):
    """Fields to change on a draft; absent fields keep their value."""

    currency: Currency | None = None
    issue_date: Day | None = None
    due_date: Day | None = None
    po_number: str | None = Field(default=None, max_length=100)
    lines: list[LineIn] | None = Field(default=None, min_length=1, max_length=500)
    exchange_rate: Exact | None = Field(default=None, pattern=EXCHANGE_RATE)


class ApproveBody(Strict):
    comment: str = Field(default="", max_length=2000)
    tier: Annotated[int, Field(ge=1, le=20), JSON_INTEGER] | None = Field(
        default=None,
        description="the tier you are approving (default: the one waiting); a tier "
        "someone approved meanwhile is refused with 409 tier_already_approved",
    )


class ReassignBody(Strict):
    tier: Annotated[int, Field(ge=1, le=20), JSON_INTEGER]
    assignee: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=2000)


class UnavailableAction(BaseModel):
    """An action the state allows but the caller may not take: why, and who may take it instead. The same
    evaluation answers a refused command (its 403 body's `details.who_can_instead`)."""

    action: str
    reason: str
    code: str = Field(default="forbidden", description="the error code the command would be refused with")
    rule: str = Field(default="", description="the rule that refuses it (segregation of duties, role, ...)")
    tier: int | None = Field(default=None, description="the approval tier it concerns (approve)")
    who_can_instead: list[str] = Field(
        default_factory=list,
        description="users who may take the action now: the tier's role (or a delegation of it in force), "
        "less those segregation of duties bars",
    )


class ReasonBody(Strict):
    reason: str = Field(min_length=1, max_length=2000)


class PortalOut(BaseModel):
    """Where the invoice stands in the customer's portal (its latest pass)."""

    portal: str
    channel: str
    submission_pass: int
    submission_key: str
    portal_ref: str
    status: str
    status_at: datetime
    submitted_at: datetime
    reason_code: str
    reason_text: str
    accepted_at: datetime | None
    rejected_at: datetime | None


class FixBody(Strict):
    comment: str = Field(min_length=1, max_length=2000, description="what is being corrected")


class SubmitBody(Strict):
    comment: str = Field(default="", max_length=2000)


class LineOut(BaseModel):
    line_no: int
    description: str
    quantity: str
    unit_price: str
    tax_rate: str
    net: str
    tax: str


class ApprovalOut(BaseModel):
    approver: str
    at: datetime
    comment: str
    tier: int = 1
    role: str = ""
    on_behalf_of: str | None = None


class InvoicePublic(BaseModel):
    id: str
    external_id: str
    number: str | None = Field(description="allocated when the invoice is issued (delivered); null before")
    status: str
    legal_entity: str
    customer_id: str
    currency: str
    subtotal: str
    tax_total: str
    total: str
    amount_paid: str
    amount_due: str
    issue_date: date
    due_date: date
    po_number: str | None
    workflow_id: str
    created_by: str
    created_at: datetime
    updated_at: datetime
    status_since: datetime
    delivered_at: datetime | None
    lines: list[LineOut]
    approvals: list[ApprovalOut]
    actions: list[str] = Field(description="what the caller can do now (state machine and permissions)")
    unavailable_actions: list[UnavailableAction] = Field(
        default_factory=list, description="what the state allows but the caller may not do, and why"
    )
    exchange_rate: str = Field(default="1", description="entity currency per unit of the invoice currency")
    portal: PortalOut | None = Field(
        default=None, description="the latest pass through the customer's portal"
    )
    approval: Any = Field(
        default=None,
        description="the approval chain: tiers, who approved, on whose "
        "delegation, what is waiting (api.approvals.ApprovalChain)",
    )


class InvoicePage(BaseModel):
    items: list[InvoicePublic]
    next_cursor: str | None


class HistoryEntry(BaseModel):
    seq: int
    event: str
    from_status: str | None
    to_status: str | None
    actor: str
    actor_roles: list[str]
    rule: str
    at: datetime
    reason: str
    request_id: str
    payload_hash: str
    prev_hash: str
    entry_hash: str

    @classmethod
    def of(cls, e: LedgerEntry) -> HistoryEntry:
        """One ledger entry as every object's history shows it (invoice, dispute, credit memo, write-off)."""
        return cls(
            seq=e.seq,
            event=e.event,
            from_status=e.from_status,
            to_status=e.to_status,
            actor=e.actor,
            actor_roles=json.loads(e.actor_roles),
            rule=e.rule,
            at=datetime.fromisoformat(e.at),
            reason=e.reason,
            request_id=e.request_id,
            payload_hash=e.payload_hash,
            prev_hash=e.prev_hash,
            entry_hash=e.entry_hash,
        )


class CustomerCreate(Strict):
    legal_entity: str | None = Field(
        default=None, max_length=32, description="default: the caller's only legal entity"
    )
    external_ref: Exact | None = Field(default=None, max_length=100, pattern=EXTERNAL_ID)
    name: str = Field(min_length=1, max_length=200)
    currency: Currency
    payment_terms_days: Annotated[int, Field(ge=0, le=365), JSON_INTEGER] = 30
    email: Exact = Field(default="", max_length=254, pattern=EMAIL)
    contact_name: str = Field(default="", max_length=200)
    address: str = Field(default="", max_length=500, description="free text, as printed on PDF invoices")
    country: Exact = Field(default="", pattern=COUNTRY, description="ISO 3166-1 alpha-2")
    vat_id: Exact = Field(
        default="", max_length=32, pattern=VAT_ID, description="with its country prefix, e.g. DE123456789"
    )
    # The buyer on e-invoices (EN 16931 BG-7, BG-8; Peppol BIS Billing 3.0).
    street: str = Field(default="", max_length=200)
    city: str = Field(default="", max_length=100)
    postal_code: str = Field(default="", max_length=20)
    endpoint_scheme: Exact = Field(
        default="",
        pattern=EAS_SCHEME,
        description="EAS code of the Peppol endpoint, e.g. 0088 (GLN), 9930 (German VAT), 0009 (SIRET)",
    )
    endpoint_id: str = Field(
        default="",
        max_length=100,
        description="the customer's Peppol participant identifier under endpoint_scheme (required with it, "
        "checked against the scheme's format and check digits: 422 inconsistent_fields)",
    )
    company_id: str = Field(default="", max_length=50, description="legal registration number (BT-47)")
    po_required: StrictBool = Field(
        default=False, description="their AP refuses invoices without a PO number"
    )
    buyer_reference: str = Field(default="", max_length=100, description="BT-10, quoted on every invoice")
    portal: Exact = Field(
        default="email",
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="the channel invoices reach them through: a configured portal's name, or email",
    )

    def endpoint_problem(self) -> str | None:
        """What is wrong between endpoint_scheme and endpoint_id (a rule between two fields), if anything."""
        if self.endpoint_id and not self.endpoint_scheme:
            return "endpoint_id needs its endpoint_scheme (the EAS code)"
        if self.endpoint_scheme and not self.endpoint_id:
            return f"endpoint_id is required with endpoint_scheme {self.endpoint_scheme}"
        if self.endpoint_id:
            problem = endpoint_problem(self.endpoint_scheme, self.endpoint_id)
            return f"endpoint_id: {problem}" if problem else None
        return None


class CustomerPublic(BaseModel):
    id: str
    legal_entity: str
    external_ref: str | None
    name: str
    currency: str
    payment_terms_days: int
    email: str
    contact_name: str
    address: str
    country: str
    vat_id: str
    street: str
    city: str
    postal_code: str
    endpoint_scheme: str
    endpoint_id: str
    company_id: str
    po_required: bool
    buyer_reference: str
    portal: str
    created_by: str
    created_at: datetime


class AllocationIn(Strict):
    invoice_id: str = Field(min_length=1, max_length=36)
    amount: Exact = Field(pattern=AMOUNT, description="decimal string > 0, in the payment's currency")
    deduction: DeductionIn | None = Field(
        default=None,
        description="what the customer deducted from this invoice and why: opens a dispute case for it (or "
        "joins the invoice's open case)",
    )


class PaymentCreate(Strict):
    customer_id: str = Field(min_length=1, max_length=36)
    amount: Exact = Field(pattern=AMOUNT, description="decimal string > 0, at most the currency's places")
    currency: Currency
    received_on: Day
    reference: str = Field(min_length=1, max_length=140)
    allocations: list[AllocationIn] = Field(min_length=1, max_length=500)


class AllocationOut(BaseModel):
    invoice_id: str
    invoice_number: str | None
    amount: str
    invoice_status: str
    invoice_amount_due: str


class PaymentPublic(BaseModel):
    id: str
    customer_id: str
    amount: str
    currency: str
    received_on: date
    reference: str
    allocated: str
    unapplied: str
    allocations: list[AllocationOut]


class Health(BaseModel):
    status: str
    checks: dict[str, Any]


# -- disputes (issue 11) ---------------------------------------------------------------------------------

REASON_CODE = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$"
ROOT_CAUSE_CODES = [
    "PRC",
    "PRM",
    "BIL",
    "MDM",
    "PO",
    "DLV",
    "QLT",
    "CMP",
    "TAX",
    "FRT",
    "SVC",
    "DOC",
    "RTN",
    "CSH",
    "CUS",
]


class DisputedInvoiceBody(Strict):
    invoice_id: str = Field(min_length=1, max_length=36)
    amount: Exact = Field(pattern=AMOUNT, description="the disputed amount on this invoice, in its currency")


class DisputeCreate(Strict):
    invoices: list[DisputedInvoiceBody] = Field(min_length=1, max_length=50)
    reason_code: Exact = Field(
        pattern=REASON_CODE,
        description="the customer's reason code as they gave it (mapped to ours per customer)",
    )
    description: str = Field(min_length=1, max_length=4000)


class DeductionIn(Strict):
    """A short payment the customer claims: it opens a dispute case (or joins the invoice's open one)."""

    amount: Exact = Field(pattern=AMOUNT, description="decimal string > 0: what the customer deducted")
    reason_code: Exact = Field(
        pattern=REASON_CODE, description="the customer's reason code for the deduction"
    )


class DisputeNoteBody(Strict):
    text: str = Field(min_length=1, max_length=4000)


class DisputeAssignBody(Strict):
    owner: str = Field(pattern=USERNAME)
    coordinator: Exact = Field(default="", pattern=r"^$|^[A-Za-z0-9._]{1,64}$")
    reason: str = Field(default="", max_length=2000)


class DisputeWaitBody(Strict):
    reason: str = Field(min_length=1, max_length=2000)


class ResolutionAmountBody(Strict):
    invoice_id: str = Field(min_length=1, max_length=36)
    amount: Exact = Field(pattern=AMOUNT)


class RebillLineBody(Strict):
    description: str = Field(min_length=1, max_length=500)
    quantity: Exact = Field(pattern=QUANTITY)
    unit_price: Exact = Field(pattern=UNIT_PRICE)
    tax_rate: Exact = Field(pattern=TAX_RATE)


RESOLUTIONS = ["credit_memo", "rebill", "invalid", "withdrawn", "write_off"]


class DisputeResolveBody(Strict):
    kind: Annotated[
        str,
        StringConstraints(strip_whitespace=False),
        one_of(RESOLUTIONS, "a resolution"),
        WithJsonSchema({"type": "string", "enum": RESOLUTIONS}),
    ]
    reason: str = Field(min_length=1, max_length=2000)
    amounts: list[ResolutionAmountBody] = Field(
        default_factory=list,
        max_length=50,
        description="credit_memo / write_off: the amount per invoice (default: what is open on each)",
    )
    rebill_lines: list[RebillLineBody] = Field(
        default_factory=list, max_length=200, description="rebill: the corrected invoice's lines"
    )


class ActionPlanBody(Strict):
    owner: str = Field(pattern=USERNAME)
    due: Day
    description: str = Field(min_length=1, max_length=2000)


VALIDITIES = ["valid", "partly_valid", "invalid"]


class DisputeCloseBody(Strict):
    root_cause: Annotated[
        str,
        StringConstraints(strip_whitespace=False),
        one_of(ROOT_CAUSE_CODES, "a root-cause code"),
        WithJsonSchema({"type": "string", "enum": ROOT_CAUSE_CODES}),
    ]
    validity: Annotated[
        str,
        StringConstraints(strip_whitespace=False),
        one_of(VALIDITIES, "a validity"),
        WithJsonSchema({"type": "string", "enum": VALIDITIES}),
    ]
    comment: str = Field(default="", max_length=2000)
    corrective: ActionPlanBody | None = Field(default=None, description="required for an internal root cause")
    preventive: ActionPlanBody | None = Field(default=None, description="required for an internal root cause")


class DisputeAmounts(BaseModel):
    """original = open + credited + written_off + paid + recovered."""

    original: str
    open: str
    credited: str
    written_off: str
    paid: str
    recovered: str


class DisputeInvoiceOut(BaseModel):
    invoice_id: str
    number: str | None
    status: str
    disputed: str
    open: str
    amount_due: str
    linked: bool


class DisputeNoteOut(BaseModel):
    seq: int
    event: str
    author: str
    at: datetime
    text: str
    attachment: dict[str, Any] | None = Field(
        default=None, description="filename, content_type, size, sha256 and the download path"
    )


class DisputeAction(BaseModel):
    action: str
    reason: str = ""
    code: str = ""
    rule: str = ""
    who_can_instead: list[str] = Field(default_factory=list)


class DisputeSummary(BaseModel):
    id: str
    case_number: str
    legal_entity: str
    customer_id: str
    customer_name: str
    currency: str
    source: str
    status: str
    claimed_code: str
    reason: str
    reason_version: str
    owner: str
    coordinator: str
    amounts: DisputeAmounts
    escalation_level: int
    waiting_reason: str
    sla_due_at: datetime | None
    past_sla: bool
    window_deadline: datetime | None
    resolution: str
    root_cause: str
    validity: str
    capa_reference: str = Field(
        description='the CAPA this case started: its reference, the case number ("" when none)'
    )
    opened_by: str
    opened_at: datetime
    status_since: datetime
    closed_at: datetime | None
    workflow_id: str


class DisputePublic(DisputeSummary):
    description: str
    sla_rule: str
    invoices: list[DisputeInvoiceOut]
    documents: list[dict[str, Any]] = Field(description="credit memos and write-offs the resolution started")
    thread: list[DisputeNoteOut]
    timeline: list[HistoryEntry]
    available_actions: list[str]
    unavailable_actions: list[DisputeAction]


class DisputePage(BaseModel):
    items: list[DisputeSummary]
    total: int
    limit: int
    offset: int


AllocationIn.model_rebuild()
PaymentCreate.model_rebuild()
