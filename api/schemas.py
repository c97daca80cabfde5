"""Request and response bodies of API v1. Amounts, quantities and rates are decimal strings."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from activities.einvoice import COUNTRY_CODES, EAS_SCHEMES, VAT_PREFIXES, endpoint_problem

EXTERNAL_ID = r"^[A-Za-z0-9][A-Za-z0-9._:/#-]*$"


# C0 control characters but tab, line feed and carriage return, and DEL. PostgreSQL cannot store NUL in
# text at all: accepted here, it made the workflow's recording activity fail and retry forever.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

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
    quantity: str = Field(max_length=40, description="decimal string, > 0", examples=["10"])
    unit_price: str = Field(max_length=40, description="decimal string, >= 0", examples=["125.00"])
    tax_rate: str = Field(max_length=12, description="percent, decimal string 0-100", examples=["20"])


class InvoiceCreate(Strict):
    external_id: str = Field(
        min_length=1,
        max_length=100,
        pattern=EXTERNAL_ID,
        description="the ERP's document id; the idempotency key of the creation",
    )
    customer_id: str = Field(min_length=1, max_length=36)
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")
    issue_date: date
    due_date: date | None = Field(default=None, description="default: issue date + the customer's terms")
    po_number: str | None = Field(default=None, max_length=100)
    lines: list[LineIn] = Field(min_length=1, max_length=500)
    exchange_rate: str | None = Field(
        default=None,
        max_length=40,
        description="units of the legal entity's currency per unit of the invoice currency; required when "
        "they differ (approval tiers are amounts in the entity's currency)",
    )


class InvoiceEdit(Strict):
    """Fields to change on a draft; absent fields keep their value."""

    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    issue_date: date | None = None
    due_date: date | None = None
    po_number: str | None = Field(default=None, max_length=100)
    lines: list[LineIn] | None = Field(default=None, min_length=1, max_length=500)
    exchange_rate: str | None = Field(default=None, max_length=40)


class ApproveBody(Strict):
    comment: str = Field(default="", max_length=2000)
    tier: int | None = Field(
        default=None,
        ge=1,
        le=20,
        description="the tier you are approving (default: the one waiting); a tier "
        "someone approved meanwhile is refused with 409 tier_already_approved",
    )


class ReassignBody(Strict):
    tier: int = Field(ge=1, le=20)
    assignee: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=2000)


class UnavailableAction(BaseModel):
    action: str
    reason: str


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


class CustomerCreate(Strict):
    legal_entity: str | None = Field(
        default=None, max_length=32, description="default: the caller's only legal entity"
    )
    external_ref: str | None = Field(default=None, max_length=100, pattern=EXTERNAL_ID)
    name: str = Field(min_length=1, max_length=200)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    payment_terms_days: int = Field(default=30, ge=0, le=365)
    email: str = Field(default="", max_length=254, pattern=r"^$|^[^@\s]+@[^@\s]+\.[^@\s]+$")
    contact_name: str = Field(default="", max_length=200)
    address: str = Field(default="", max_length=500, description="free text, as printed on PDF invoices")
    country: str = Field(default="", pattern=r"^$|^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    vat_id: str = Field(default="", max_length=32, description="with its country prefix, e.g. DE123456789")
    # The buyer on e-invoices (EN 16931 BG-7, BG-8; Peppol BIS Billing 3.0).
    street: str = Field(default="", max_length=200)
    city: str = Field(default="", max_length=100)
    postal_code: str = Field(default="", max_length=20)
    endpoint_scheme: str = Field(
        default="",
        pattern=r"^$|^[0-9]{4}$",
        description="EAS code of the Peppol endpoint, e.g. 0088 (GLN), 9930 (German VAT), 0009 (SIRET)",
    )
    endpoint_id: str = Field(
        default="",
        max_length=100,
        validate_default=True,
        description="the customer's Peppol participant identifier under endpoint_scheme",
    )
    company_id: str = Field(default="", max_length=50, description="legal registration number (BT-47)")
    po_required: bool = Field(default=False, description="their AP refuses invoices without a PO number")
    buyer_reference: str = Field(default="", max_length=100, description="BT-10, quoted on every invoice")
    portal: str = Field(
        default="email",
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="the channel invoices reach them through: a configured portal's name, or email",
    )

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str) -> str:
        if value and value not in COUNTRY_CODES:
            raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code")
        return value

    @field_validator("vat_id")
    @classmethod
    def _vat_id_prefixed(cls, value: str) -> str:
        # EN 16931 BR-CO-09: e-invoices refuse a VAT identifier that does not start with a country code.
        if value and value[:2] not in VAT_PREFIXES:
            raise ValueError("must start with its country code, e.g. DE123456789 (EL for Greece)")
        return value

    @field_validator("endpoint_scheme")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if value and value not in EAS_SCHEMES:
            raise ValueError(f"{value} is not an electronic address scheme (EAS) Peppol accepts")
        return value

    @field_validator("endpoint_id")
    @classmethod
    def _valid_endpoint(cls, value: str, info: ValidationInfo) -> str:
        if "endpoint_scheme" not in info.data:  # the scheme itself was refused: that error says it
            return value
        scheme = info.data["endpoint_scheme"]
        if value and not scheme:
            raise ValueError("needs its endpoint_scheme (the EAS code)")
        if scheme and not value:
            raise ValueError(f"is required with endpoint_scheme {scheme}")
        problem = endpoint_problem(scheme, value) if value else None
        if problem:
            raise ValueError(problem)
        return value


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
    amount: str = Field(max_length=40)


class PaymentCreate(Strict):
    customer_id: str = Field(min_length=1, max_length=36)
    amount: str = Field(max_length=40)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    received_on: date
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
