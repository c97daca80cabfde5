"""Request and response bodies of API v1. Amounts, quantities and rates are decimal strings."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

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
    address: str = Field(default="", max_length=500)
    country: str = Field(default="", pattern=r"^$|^[A-Z]{2}$")
    vat_id: str = Field(default="", max_length=32)


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
