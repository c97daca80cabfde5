"""A customer's procurement portal, simulated: one HTTP service that speaks three protocols the way real
portals do, for the tests and the demo (`cashcycle portal-sim --port 9100 [--scenario FILE]`).

    cXML (Ariba-style)     POST /cxml                       InvoiceDetailRequest -> Response 201;
                                                            GetPendingRequest -> pending StatusUpdateRequests;
                                                            StatusUpdateRequests also pushed to a callback
    Coupa-style REST       POST /coupa/oauth2/token         client credentials -> expiring bearer token
                           POST /coupa/api/invoices         JSON invoice -> 201, or 422 with reason codes
                           GET  /coupa/api/invoices[/{id}]  ?updated_at[gt]=...&limit=&offset=
    Peppol access point    POST /peppol/v1/documents        UBL Invoice / CreditNote -> 202
                           GET  /peppol/v1/inbox            Invoice Responses (T111) for us; also pushed
    Test and demo control  /_sim/...                        scenario, purchase orders, clock, faults,
                                                            what was received, pushed and logged

The buyer behind all three checks each invoice against its purchase orders (PO present and known,
bill-to legal entity, items, unit prices, tax rates, quantity left on the PO) and against earlier
invoices (duplicate numbers; a rejected invoice may come back under the same number, as suppliers do).
Coupa-style answers at once (422); cXML and Peppol answer "received" and reject a little later, as
networks do. Accepted invoices then move on over simulated time: received -> in process -> approved ->
payment scheduled -> paid, with configurable delays and review rules that query or reject later.

Realistic misbehaviour, per scenario or through /_sim/faults: a token bucket per client (429 with
Retry-After), 5xx storms (the next N requests, or a rate), replies lost after the work was done (the
client times out; its retry with the same idempotency key gets the first answer back), expiring tokens.

Time is a clock of its own: real time (optionally sped up) for the demo, or frozen and moved only by
POST /_sim/advance for tests. All state is in memory, behind one lock.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import fnmatch
import hashlib
import hmac
import json
import logging
import random
import secrets
import threading
import time
import tomllib
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from lxml import etree  # type: ignore[import-untyped, unused-ignore]  # no stubs ship with lxml
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger("cashcycle.portal_sim")

Protocol = Literal["cxml", "coupa", "peppol"]

# =====================================================================================================
# Scenario: everything a test or the demo may configure
# =====================================================================================================


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BillTo(_Model):
    name: str
    vat_id: str = ""


class PurchaseOrderLine(_Model):
    line: int
    item: str = ""
    description: str = ""
    quantity: Decimal
    unit_price: Decimal
    tax_rate: Decimal


class PurchaseOrder(_Model):
    number: str
    currency: str = "EUR"
    bill_to: BillTo
    lines: list[PurchaseOrderLine]


class Delays(_Model):
    """Seconds of simulated time between the steps of an invoice's life at the buyer."""

    in_process: float = 5.0  # received -> in process (or -> rejected, for cXML and Peppol validation)
    review: float = 30.0  # in process -> approved (or queried / rejected by a review rule)
    payment_scheduled: float = 60.0
    paid: float = 120.0
    query_resolution: float = 60.0  # under query -> approved (or rejected)


class ReviewRule(_Model):
    """A later outcome of the buyer's review, for invoices matching the patterns (fnmatch)."""

    invoice_number: str = "*"
    po_number: str = "*"
    protocol: Literal["any", "cxml", "coupa", "peppol"] = "any"
    outcome: Literal["query", "reject"]
    reason: str = "other"  # a portal reason code (see REASON_TO_PEPPOL)
    message: str = "Rejected after review"
    then: Literal["accept", "reject"] = "accept"  # after a query
    times: int = 1  # how many invoices it applies to (a resubmission after the fix passes)


class RateLimit(_Model):
    capacity: float = 100.0  # requests a client may burst
    refill_per_second: float = 20.0


class Faults(_Model):
    fail_next: int = 0  # the next N protocol requests fail with `status`
    fail_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    status: int = Field(default=503, ge=500, le=599)
    retry_after: int | None = None  # sent with the injected 5xx when set
    lose_next_replies: int = 0  # the next N requests are processed, then answered too late
    lost_reply_delay: float = 3.0  # real seconds: longer than the client's timeout
    seed: int = 0


class CxmlClient(_Model):
    identity: str
    shared_secret: str
    supplier: str = ""  # scope of invoice-number uniqueness; default: the identity
    callback_url: str = ""  # where StatusUpdateRequests are pushed ("" = fetch with GetPendingRequest)


class CxmlSection(_Model):
    buyer_identity: str = "AN-BUYER-0001"
    buyer_shared_secret: str = "sim-buyer-push-secret"  # presented in our pushes
    clients: list[CxmlClient] = Field(default_factory=list)


class CoupaClient(_Model):
    client_id: str
    client_secret: str
    supplier: str = ""


class CoupaSection(_Model):
    token_lifetime_seconds: float = 3600.0
    clients: list[CoupaClient] = Field(default_factory=list)


class PeppolClient(_Model):
    api_key: str
    participant_id: str  # the supplier's participant id, "0088:..."
    supplier: str = ""
    callback_url: str = ""
    webhook_secret: str = ""  # signs pushes (HMAC-SHA256) when set


class PeppolSection(_Model):
    receivers: list[str] = Field(default_factory=list)  # participants registered on the network; [] = any
    clients: list[PeppolClient] = Field(default_factory=list)


class Scenario(_Model):
    name: str = "default"
    clock: Literal["realtime", "manual"] = "realtime"
    start: datetime | None = None  # default: now
    speed: float = Field(default=1.0, gt=0)  # simulated seconds per real second (realtime clock)
    delays: Delays = Field(default_factory=Delays)
    review_rules: list[ReviewRule] = Field(default_factory=list)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    faults: Faults = Field(default_factory=Faults)
    cxml: CxmlSection = Field(default_factory=CxmlSection)
    coupa: CoupaSection = Field(default_factory=CoupaSection)
    peppol: PeppolSection = Field(default_factory=PeppolSection)
    purchase_orders: list[PurchaseOrder] = Field(default_factory=list)
    # Purchase orders (fnmatch patterns) whose invoices the buyer receives and then never answers: a queue
    # nobody works. The receipt is said; no status follows.
    unanswered_po_numbers: list[str] = Field(default_factory=list)


class Advance(_Model):
    seconds: float = Field(default=0.0, ge=0.0)


def default_scenario() -> Scenario:
    """The demo's portal: one buyer reachable by all three protocols with well-known development
    credentials, and a few purchase orders. Real time; a day of the buyer's process takes minutes."""
    bill_to = BillTo(name="Initech GmbH", vat_id="DE129273398")
    return Scenario(
        name="demo",
        delays=Delays(in_process=5, review=30, payment_scheduled=60, paid=120, query_resolution=60),
        cxml=CxmlSection(clients=[CxmlClient(identity="AN-CASHCYCLE-DEMO", shared_secret="sim-cxml-secret")]),
        coupa=CoupaSection(
            clients=[CoupaClient(client_id="cashcycle-demo", client_secret="sim-coupa-secret")]
        ),
        peppol=PeppolSection(
            clients=[PeppolClient(api_key="sim-peppol-key", participant_id="0088:5790000435968")]
        ),
        purchase_orders=[
            PurchaseOrder(
                number=f"PO-{n}",
                bill_to=bill_to,
                lines=[
                    PurchaseOrderLine(
                        line=1,
                        item="CONSULTING",
                        description="Consulting",
                        quantity=Decimal(100),
                        unit_price=Decimal("125.00"),
                        tax_rate=Decimal(19),
                    ),
                    PurchaseOrderLine(
                        line=2,
                        item="TRAVEL",
                        description="Travel expenses",
                        quantity=Decimal(10),
                        unit_price=Decimal("310.55"),
                        tax_rate=Decimal(19),
                    ),
                ],
            )
            for n in (4711, 4712, 4713, 4714)
        ],
        # Initech's facilities department (the demo's stuck portal pass) never works its queue.
        unanswered_po_numbers=["PO-4714"],
    )


def demo_portals(base_url: str) -> dict[str, dict[str, Any]]:
    """Cashcycle's portal configuration (activities.portals.config) for the default scenario served at
    `base_url`: one portal per protocol. Statuses are fetched (poll), as the default scenario configures
    no callback; a scenario with callback URLs can push them instead."""
    demo = default_scenario()
    cxml, coupa, peppol = demo.cxml.clients[0], demo.coupa.clients[0], demo.peppol.clients[0]
    return {
        "demo-ariba": {
            "channel": "cxml",
            "url": f"{base_url}/cxml",
            "from_identity": cxml.identity,
            "to_identity": demo.cxml.buyer_identity,
            "shared_secret": cxml.shared_secret,
            "push_shared_secret": demo.cxml.buyer_shared_secret,
            "follow_up": "poll",
        },
        "demo-coupa": {
            "channel": "coupa",
            "base_url": f"{base_url}/coupa",
            "client_id": coupa.client_id,
            "client_secret": coupa.client_secret,
        },
        "demo-peppol": {
            "channel": "peppol",
            "base_url": base_url,
            "api_key": peppol.api_key,
            "sender_id": peppol.participant_id,
            "follow_up": "poll",
        },
    }


def demo_portals_toml(base_url: str) -> str:
    """`demo_portals` as a portal configuration file (CASHCYCLE_PORTALS_FILE): TOML."""
    lines = ["# The portals of the local portal simulator (cashcycle portal-sim).", ""]
    for name, cfg in demo_portals(base_url).items():
        lines.append(f"[portals.{json.dumps(name)}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in cfg.items()]
        lines.append("")
    return "\n".join(lines)


def load_scenario(path: Path) -> Scenario:
    """A scenario file: TOML (.toml) or JSON (anything else)."""
    raw = path.read_bytes()
    data = tomllib.loads(raw.decode()) if path.suffix == ".toml" else json.loads(raw)
    return Scenario.model_validate(data)


# =====================================================================================================
# The buyer's side: invoices as any protocol carries them, validation, life over time
# =====================================================================================================

STATUSES = ("received", "in_process", "under_query", "approved", "payment_scheduled", "paid", "rejected")

# How each protocol says each status (None: the protocol has no word for it, nothing is sent).
COUPA_WORD = {
    "received": "new",
    "in_process": "pending_approval",
    "under_query": "on_hold",
    "approved": "approved",
    "payment_scheduled": "scheduled",
    "paid": "paid",
    "rejected": "disputed",
}
CXML_WORD: dict[str, str | None] = {
    "received": None,  # the synchronous Response said it
    "in_process": "processing",
    "under_query": "processing",  # cXML has no "under query": processing, with the question in Comments
    "approved": "reconciled",
    "payment_scheduled": "paying",
    "paid": "paid",
    "rejected": "rejected",
}
PEPPOL_CODE: dict[str, str | None] = {
    "received": "AB",
    "in_process": "IP",
    "under_query": "UQ",
    "approved": "AP",
    "payment_scheduled": None,  # no UNCL4343 code: Peppol buyers say nothing until PD
    "paid": "PD",
    "rejected": "RE",
}
# The buyer's reason codes, and the Peppol OPStatusReason they are sent under. Peppol has no code for a
# duplicate: buyers send OTH with an explanation (as Oracle's and others' mappings do).
REASON_TO_PEPPOL = {
    "po_missing": "REF",
    "po_unknown": "REF",
    "invoice_reference_unknown": "REF",
    "bill_to_mismatch": "REC",
    "item_not_on_po": "ITM",
    "price_mismatch": "PRI",
    "currency_mismatch": "PRI",
    "quantity_exceeds_po": "QTY",
    "tax_rate_mismatch": "LEG",
    "duplicate_invoice_number": "OTH",
    "missing_attachment": "OTH",
    "other": "OTH",
}

NS_UBL = {
    "inv": "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
    "cn": "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2",
    "ar": "urn:oasis:names:specification:ubl:schema:xsd:ApplicationResponse-2",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
}
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
CXML_DTD = "http://xml.cxml.org/schemas/cXML/1.2.063/cXML.dtd"


class BadDocument(ValueError):
    """The message cannot be read as an invoice (400: the sender's bug, not a business rejection)."""


@dataclass
class Line:
    item: str
    description: str
    quantity: Decimal
    unit_price: Decimal
    tax_rate: Decimal | None


@dataclass
class Parsed:
    """An invoice as any of the three protocols carries it: what the buyer checks."""

    number: str
    kind: Literal["invoice", "credit_note"]
    currency: str
    po_number: str
    bill_to_name: str
    bill_to_vat: str
    lines: list[Line]
    preceding: str = ""
    buyer_name: str = ""


@dataclass(frozen=True)
class Rejection:
    code: str  # the buyer's reason code (REASON_TO_PEPPOL's keys)
    message: str
    field: str = ""

    def as_json(self) -> dict[str, str]:
        return {"code": self.code, "field": self.field, "message": self.message}


@dataclass
class Event:
    at: datetime
    status: str
    reason: Rejection | None = None


@dataclass
class SimInvoice:
    id: int
    protocol: Protocol
    client: str
    supplier: str
    key: str  # the submission's idempotency key (cXML: its payloadID)
    parsed: Parsed
    created_at: datetime
    status: str = "received"
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    reason: Rejection | None = None
    next_status: str | None = None
    next_at: datetime | None = None
    pending: Rejection | None = None  # the validation outcome, announced at the in_process step
    after_query: Literal["accept", "reject"] = "accept"
    reservations: list[tuple[str, int, Decimal]] = field(default_factory=list)
    history: list[Event] = field(default_factory=list)
    sender: str = ""  # Peppol participants
    receiver: str = ""
    external_reference: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "protocol": self.protocol,
            "client": self.client,
            "supplier": self.supplier,
            "key": self.key,
            "invoice_number": self.parsed.number,
            "kind": self.parsed.kind,
            "po_number": self.parsed.po_number,
            "status": self.status,
            "reason": self.reason.as_json() if self.reason else None,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "next_status": self.next_status,
            "next_at": self.next_at.isoformat() if self.next_at else None,
            "history": [
                {
                    "at": e.at.isoformat(),
                    "status": e.status,
                    "reason": e.reason.as_json() if e.reason else None,
                }
                for e in self.history
            ],
        }

    def coupa_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "invoice_number": self.parsed.number,
            "document_type": "Credit Note" if self.parsed.kind == "credit_note" else "Invoice",
            "status": COUPA_WORD[self.status],
            "po_number": self.parsed.po_number,
            "currency": {"code": self.parsed.currency},
            "external_reference": self.external_reference,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "dispute_reason": (
                {"code": self.reason.code, "comment": self.reason.message} if self.reason else None
            ),
        }


@dataclass
class Message:
    """A document the buyer sends the supplier (cXML StatusUpdateRequest, Peppol Invoice Response)."""

    id: str
    at: datetime
    protocol: Protocol
    client: str
    invoice_id: int
    content: bytes
    sender: str = ""
    receiver: str = ""


@dataclass
class Push:
    message: Message
    url: str
    attempts: int = 0
    due: float = 0.0  # time.monotonic(): pushes are retried in real time, whatever the simulated clock


@dataclass(frozen=True)
class Reply:
    status_code: int
    body: bytes
    media_type: str
    headers: dict[str, str] = field(default_factory=dict)

    def response(self, replayed: bool = False) -> Response:
        headers = dict(self.headers)
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return Response(self.body, status_code=self.status_code, media_type=self.media_type, headers=headers)


def json_reply(status_code: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status_code, json.dumps(body, default=str).encode(), "application/json", headers or {})


class SimClock:
    """Simulated UTC time: real time times `speed` plus every advance, or frozen but for advances."""

    def __init__(self, start: datetime, realtime: bool, speed: float = 1.0) -> None:
        self._start = start.astimezone(UTC)
        self._mono = time.monotonic()
        self._realtime = realtime
        self._speed = speed
        self._offset = 0.0

    def now(self) -> datetime:
        elapsed = (time.monotonic() - self._mono) * self._speed if self._realtime else 0.0
        return self._start + timedelta(seconds=elapsed + self._offset)

    def advance(self, seconds: float) -> None:
        self._offset += seconds


@dataclass
class Bucket:
    tokens: float
    at: datetime


# =====================================================================================================
# Parsing the three formats
# =====================================================================================================


def _decimal(value: Any, what: str) -> Decimal:
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise BadDocument(f"{what}: {value!r} is not a decimal number") from None
    if not number.is_finite():
        raise BadDocument(f"{what}: {value!r} is not a finite number")
    return number


def _xml(body: bytes) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(body, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise BadDocument(f"not well-formed XML: {exc}") from None
    if root is None:
        raise BadDocument("empty document")
    return root


def _text(el: etree._Element | None) -> str:
    return " ".join("".join(el.itertext()).split()) if el is not None else ""


def parse_invoice_detail(request: etree._Element) -> Parsed:
    """An InvoiceDetailRequest element."""
    head = request.find("InvoiceDetailRequestHeader")
    if head is None or not head.get("invoiceID"):
        raise BadDocument("InvoiceDetailRequestHeader@invoiceID is required")
    purpose = head.get("purpose", "standard")
    kind: Literal["invoice", "credit_note"] = (
        "credit_note" if purpose.lower().endswith("creditmemo") else "invoice"
    )
    order_id = ""
    for tag in ("OrderIDInfo", "OrderReference"):
        found = request.find(f"InvoiceDetailOrder/InvoiceDetailOrderInfo/{tag}")
        if found is not None:
            order_id = found.get("orderID", "")
            break
    bill_name = bill_vat = ""
    for partner in head.findall("InvoicePartner"):
        contact = partner.find("Contact")
        if contact is not None and contact.get("role") == "billTo":
            bill_name = _text(contact.find("Name"))
            for ref in partner.findall("IdReference"):
                if ref.get("domain") == "vatID":
                    bill_vat = ref.get("identifier", "")
    money = request.find(".//InvoiceDetailSummary//Money")
    lines = []
    for item in request.findall("InvoiceDetailOrder/InvoiceDetailItem"):
        rate = item.find("Tax/TaxDetail")
        price = item.find("UnitPrice/Money")
        if price is None:
            raise BadDocument("InvoiceDetailItem without UnitPrice/Money")
        lines.append(
            Line(
                item=_text(item.find("InvoiceDetailItemReference/ItemID/SupplierPartID")),
                description=_text(item.find("InvoiceDetailItemReference/Description")),
                quantity=abs(_decimal(item.get("quantity"), "InvoiceDetailItem@quantity")),
                unit_price=_decimal(_text(price), "UnitPrice"),
                tax_rate=(
                    _decimal(rate.get("percentageRate"), "TaxDetail@percentageRate")
                    if rate is not None and rate.get("percentageRate")
                    else None
                ),
            )
        )
    if not lines:
        raise BadDocument("an InvoiceDetailRequest needs at least one InvoiceDetailItem")
    preceding = head.find("InvoiceIDInfo")
    return Parsed(
        number=head.get("invoiceID", ""),
        kind=kind,
        currency=money.get("currency", "") if money is not None else "",
        po_number=order_id,
        bill_to_name=bill_name,
        bill_to_vat=bill_vat,
        lines=lines,
        preceding=preceding.get("invoiceID", "") if preceding is not None else "",
    )


def parse_coupa_invoice(body: Any) -> Parsed:
    if not isinstance(body, dict):
        raise BadDocument("the invoice must be a JSON object")
    number = str(body.get("invoice_number") or "")
    if not number:
        raise BadDocument("invoice_number is required")
    currency = body.get("currency")
    lines_in = body.get("invoice_lines")
    if not isinstance(lines_in, list) or not lines_in:
        raise BadDocument("invoice_lines must be a non-empty list")
    lines = []
    for i, ln in enumerate(lines_in, start=1):
        if not isinstance(ln, dict):
            raise BadDocument(f"invoice_lines[{i}] must be an object")
        rate = ln.get("tax_rate")
        lines.append(
            Line(
                item=str(ln.get("item") or ""),
                description=str(ln.get("description") or ""),
                quantity=abs(_decimal(ln.get("quantity"), f"invoice_lines[{i}].quantity")),
                unit_price=_decimal(ln.get("price"), f"invoice_lines[{i}].price"),
                tax_rate=_decimal(rate, f"invoice_lines[{i}].tax_rate") if rate not in (None, "") else None,
            )
        )
    bill_to = body.get("bill_to") if isinstance(body.get("bill_to"), dict) else {}
    assert isinstance(bill_to, dict)
    return Parsed(
        number=number,
        kind="credit_note" if str(body.get("document_type", "")).lower() == "credit note" else "invoice",
        currency=str(currency.get("code", "")) if isinstance(currency, dict) else str(currency or ""),
        po_number=str(body.get("po_number") or ""),
        bill_to_name=str(bill_to.get("name") or ""),
        bill_to_vat=str(bill_to.get("vat_id") or ""),
        lines=lines,
        preceding=str(body.get("original_invoice_number") or ""),
    )


def parse_ubl(body: bytes) -> Parsed:
    """A UBL 2.1 Invoice or CreditNote (what the buyer reads of it)."""
    root = _xml(body)
    if root.tag == f"{{{NS_UBL['inv']}}}Invoice":
        kind: Literal["invoice", "credit_note"] = "invoice"
        line_tag, qty_tag = "cac:InvoiceLine", "cbc:InvoicedQuantity"
    elif root.tag == f"{{{NS_UBL['cn']}}}CreditNote":
        kind, line_tag, qty_tag = "credit_note", "cac:CreditNoteLine", "cbc:CreditedQuantity"
    else:
        raise BadDocument("not a UBL Invoice or CreditNote")

    def find(el: etree._Element, path: str) -> str:
        return " ".join((el.findtext(path, default="", namespaces=NS_UBL) or "").split())

    customer = "cac:AccountingCustomerParty/cac:Party/"
    lines = []
    for ln in root.findall(line_tag, NS_UBL):
        rate = find(ln, "cac:Item/cac:ClassifiedTaxCategory/cbc:Percent")
        lines.append(
            Line(
                item=find(ln, "cac:Item/cac:SellersItemIdentification/cbc:ID"),
                description=find(ln, "cac:Item/cbc:Name"),
                quantity=abs(_decimal(find(ln, qty_tag), qty_tag)),
                unit_price=_decimal(find(ln, "cac:Price/cbc:PriceAmount"), "PriceAmount"),
                tax_rate=_decimal(rate, "Percent") if rate else None,
            )
        )
    if not find(root, "cbc:ID") or not lines:
        raise BadDocument("a UBL invoice needs an ID and at least one line")
    return Parsed(
        number=find(root, "cbc:ID"),
        kind=kind,
        currency=find(root, "cbc:DocumentCurrencyCode"),
        po_number=find(root, "cac:OrderReference/cbc:ID"),
        bill_to_name=find(root, customer + "cac:PartyLegalEntity/cbc:RegistrationName")
        or find(root, customer + "cac:PartyName/cbc:Name"),
        bill_to_vat=find(root, customer + "cac:PartyTaxScheme/cbc:CompanyID"),
        lines=lines,
        preceding=find(root, "cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID"),
        buyer_name=find(root, customer + "cac:PartyName/cbc:Name"),
    )


# =====================================================================================================
# Rendering what the buyer sends back
# =====================================================================================================


def _el(parent: etree._Element, tag: str, content: str | None = None, /, **attrs: str) -> etree._Element:
    el = etree.SubElement(parent, tag, attrs)
    if content is not None:
        el.text = content
    return el


def _cxml_root(payload_id: str, at: datetime) -> etree._Element:
    root = etree.Element("cXML")
    root.set("payloadID", payload_id)
    root.set("timestamp", at.isoformat(timespec="microseconds"))
    root.set("version", "1.2.063")
    root.set(XML_LANG, "en-US")
    return root


def _cxml_bytes(root: etree._Element) -> bytes:
    data: bytes = etree.tostring(
        root, xml_declaration=True, encoding="UTF-8", doctype=f'<!DOCTYPE cXML SYSTEM "{CXML_DTD}">'
    )
    return data


def cxml_response(code: int, text: str, message: str = "", *, at: datetime) -> bytes:
    root = _cxml_root(f"{uuid.uuid4()}@portal-sim", at)
    status = _el(_el(root, "Response"), "Status", message or None, code=str(code), text=text)
    status.set(XML_LANG, "en-US")
    return _cxml_bytes(root)


def _credential(parent: etree._Element, identity: str, secret: str | None = None) -> None:
    cred = _el(parent, "Credential", domain="NetworkId")
    _el(cred, "Identity", identity)
    if secret is not None:
        _el(cred, "SharedSecret", secret)


def cxml_status_update(inv: SimInvoice, event: Event, section: CxmlSection, payload_id: str) -> bytes:
    word = CXML_WORD[event.status]
    assert word is not None
    root = _cxml_root(payload_id, event.at)
    header = _el(root, "Header")
    _credential(_el(header, "From"), section.buyer_identity)
    _credential(_el(header, "To"), inv.client)
    sender = _el(header, "Sender")
    _credential(sender, section.buyer_identity, section.buyer_shared_secret)
    _el(sender, "UserAgent", "Cashcycle portal simulator")
    sur = _el(_el(root, "Request"), "StatusUpdateRequest")
    _el(sur, "DocumentReference", payloadID=inv.key)
    _el(sur, "Status", f"Invoice {word}", code="200", text="OK").set(XML_LANG, "en-US")
    status = _el(sur, "InvoiceStatus", type=word)
    _el(status, "InvoiceIDInfo", invoiceID=inv.parsed.number)
    if event.reason is not None:
        note = event.reason.message
        if event.status == "under_query":
            note = f"Under query: {note}"
        _el(status, "Comments", note).set(XML_LANG, "en")
        if event.status == "rejected":
            _el(sur, "Extrinsic", event.reason.code, name="RejectionReasonCode")
    return _cxml_bytes(root)


def _endpoint(parent: etree._Element, tag: str, participant: str, name: str) -> None:
    scheme, _, value = participant.partition(":")
    party = _el(parent, f"{{{NS_UBL['cac']}}}{tag}")
    _el(party, f"{{{NS_UBL['cbc']}}}EndpointID", value, schemeID=scheme)
    legal = _el(party, f"{{{NS_UBL['cac']}}}PartyLegalEntity")
    _el(legal, f"{{{NS_UBL['cbc']}}}RegistrationName", name or participant)


def peppol_invoice_response(inv: SimInvoice, event: Event, response_id: str) -> bytes:
    """A Peppol Invoice Response (BIS 3, T111) for one status of one invoice."""
    code = PEPPOL_CODE[event.status]
    assert code is not None
    cac, cbc = NS_UBL["cac"], NS_UBL["cbc"]
    root = etree.Element(
        f"{{{NS_UBL['ar']}}}ApplicationResponse", nsmap={None: NS_UBL["ar"], "cac": cac, "cbc": cbc}
    )
    _el(root, f"{{{cbc}}}CustomizationID", "urn:fdc:peppol.eu:poacc:trns:invoice_response:3")
    _el(root, f"{{{cbc}}}ProfileID", "urn:fdc:peppol.eu:poacc:bis:invoice_response:3")
    _el(root, f"{{{cbc}}}ID", response_id)
    _el(root, f"{{{cbc}}}IssueDate", event.at.date().isoformat())
    _el(root, f"{{{cbc}}}IssueTime", event.at.time().replace(microsecond=0).isoformat() + "Z")
    _endpoint(root, "SenderParty", inv.receiver, inv.parsed.bill_to_name)
    _endpoint(root, "ReceiverParty", inv.sender, inv.supplier)
    doc_response = _el(root, f"{{{cac}}}DocumentResponse")
    response = _el(doc_response, f"{{{cac}}}Response")
    _el(response, f"{{{cbc}}}ResponseCode", code)
    if code == "PD":
        _el(response, f"{{{cbc}}}EffectiveDate", event.at.date().isoformat())
    if event.reason is not None and code in ("RE", "UQ"):
        status = _el(response, f"{{{cac}}}Status")
        reason = REASON_TO_PEPPOL.get(event.reason.code, "OTH")
        _el(status, f"{{{cbc}}}StatusReasonCode", reason, listID="OPStatusReason")
        _el(status, f"{{{cbc}}}StatusReason", event.reason.message)
        action = _el(response, f"{{{cac}}}Status")
        _el(action, f"{{{cbc}}}StatusReasonCode", "NIN" if code == "RE" else "PIN", listID="OPStatusAction")
    ref = _el(doc_response, f"{{{cac}}}DocumentReference")
    _el(ref, f"{{{cbc}}}ID", inv.parsed.number)
    _el(ref, f"{{{cbc}}}DocumentTypeCode", "381" if inv.parsed.kind == "credit_note" else "380")
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return data


def _norm(value: str) -> str:
    return "".join(value.split()).casefold()


# =====================================================================================================
# The simulator's state and rules
# =====================================================================================================


class Simulator:
    """The buyer organisation behind the three protocols. Every public method takes the lock."""

    def __init__(self, scenario: Scenario) -> None:
        self._lock = threading.RLock()
        self._load(scenario)

    # -- scenario -----------------------------------------------------------------------------------

    def _load(self, scenario: Scenario) -> None:
        self.scenario = scenario
        start = scenario.start or datetime.now(UTC)
        self.clock = SimClock(start, scenario.clock == "realtime", scenario.speed)
        self.faults = scenario.faults.model_copy()
        self.rng = random.Random(scenario.faults.seed)
        self.purchase_orders = {po.number: po for po in scenario.purchase_orders}
        self.invoices: dict[int, SimInvoice] = {}
        self.submissions: list[dict[str, Any]] = []
        self.replies: dict[tuple[str, str, str], tuple[str, Reply]] = {}
        self.tokens: dict[str, tuple[str, datetime]] = {}
        self.buckets: dict[str, Bucket] = {}
        self.messages: list[Message] = []
        self.pushes: deque[Push] = deque()
        self.push_log: deque[dict[str, Any]] = deque(maxlen=2000)
        self.requests: deque[dict[str, Any]] = deque(maxlen=5000)
        self.rule_uses: dict[int, int] = {}
        self._next_id = 1000

    def load(self, scenario: Scenario) -> None:
        with self._lock:
            self._load(scenario)

    def reset(self) -> None:
        with self._lock:
            self._load(self.scenario)

    def now(self) -> datetime:
        with self._lock:
            return self.clock.now()

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self.clock.advance(seconds)
            self.catch_up()
            return self.clock.now()

    def set_faults(self, faults: Faults) -> None:
        with self._lock:
            self.faults = faults
            self.rng = random.Random(faults.seed)

    def set_rate_limit(self, limit: RateLimit) -> None:
        with self._lock:
            self.scenario = self.scenario.model_copy(update={"rate_limit": limit})
            self.buckets.clear()

    def add_purchase_order(self, po: PurchaseOrder) -> None:
        with self._lock:
            self.purchase_orders[po.number] = po

    def add_review_rule(self, rule: ReviewRule) -> None:
        with self._lock:
            self.scenario = self.scenario.model_copy(
                update={"review_rules": [*self.scenario.review_rules, rule]}
            )

    def expire_tokens(self) -> int:
        with self._lock:
            count = len(self.tokens)
            now = self.clock.now()
            self.tokens = {t: (c, now) for t, (c, _) in self.tokens.items()}
            return count

    # -- the gate every protocol request passes -------------------------------------------------------

    def log_request(
        self, protocol: str, method: str, path: str, client: str, status: int, note: str = ""
    ) -> None:
        with self._lock:
            self.requests.append(
                {
                    "at": self.clock.now().isoformat(),
                    "protocol": protocol,
                    "method": method,
                    "path": path,
                    "client": client,
                    "status": status,
                    "note": note,
                }
            )

    def injected_failure(self) -> int | None:
        """The status of an injected 5xx for this request, if any (before authentication: a storm hits
        the load balancer, not the application)."""
        with self._lock:
            if self.faults.fail_next > 0:
                self.faults.fail_next -= 1
                return self.faults.status
            if self.faults.fail_rate and self.rng.random() < self.faults.fail_rate:
                return self.faults.status
            return None

    def failure_headers(self) -> dict[str, str]:
        with self._lock:
            after = self.faults.retry_after
            return {"Retry-After": str(after)} if after is not None else {}

    def throttle(self, client: str) -> int | None:
        """Seconds to wait when the client's bucket is empty (429), else None (a token is taken)."""
        with self._lock:
            limit = self.scenario.rate_limit
            now = self.clock.now()
            bucket = self.buckets.setdefault(client, Bucket(limit.capacity, now))
            elapsed = (now - bucket.at).total_seconds()
            if elapsed > 0:
                bucket.tokens = min(limit.capacity, bucket.tokens + elapsed * limit.refill_per_second)
                bucket.at = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return None
            missing = 1 - bucket.tokens
            rate = limit.refill_per_second
            return max(1, int(-(-missing // rate))) if rate > 0 else 3600

    def lose_reply(self) -> float:
        """Real seconds to hold this reply back (0: answer now)."""
        with self._lock:
            if self.faults.lose_next_replies > 0:
                self.faults.lose_next_replies -= 1
                return self.faults.lost_reply_delay
            return 0.0

    # -- idempotency -------------------------------------------------------------------------------------

    def once(
        self, protocol: str, client: str, key: str, fingerprint: str, work: Callable[[], Reply]
    ) -> tuple[Reply | None, bool]:
        """The reply to one attempt: the stored one when the key was seen (replayed), None when the key
        was used for another document (a conflict), else `work()`'s, stored. One lock around all of it,
        so that two copies of one attempt arriving together still make one document."""
        with self._lock:
            stored = self.replies.get((protocol, client, key))
            if stored is not None:
                known, reply = stored
                return (reply, True) if known == fingerprint else (None, False)
            reply = work()
            self.replies[(protocol, client, key)] = (fingerprint, reply)
            return reply, False

    # -- the buyer's checks --------------------------------------------------------------------------------

    def _live(self, supplier: str, number: str) -> SimInvoice | None:
        """The supplier's invoice with this number that still counts (not rejected)."""
        for inv in self.invoices.values():
            if inv.supplier == supplier and inv.parsed.number == number and inv.status != "rejected":
                return inv
        return None

    def _consumed(self, po: str, line: int) -> Decimal:
        return sum(
            (q for inv in self.invoices.values() for (p, n, q) in inv.reservations if (p, n) == (po, line)),
            Decimal(0),
        )

    def validate(self, supplier: str, doc: Parsed) -> tuple[Rejection | None, list[tuple[str, int, Decimal]]]:
        """The buyer's checks, in the order portals apply them; the reservations a valid invoice takes
        on its purchase order's lines."""
        live = self._live(supplier, doc.number)
        if live is not None:
            return Rejection(
                "duplicate_invoice_number",
                f"Duplicate invoice number {doc.number}: already received "
                f"(portal id {live.id}, {live.status})",
                "invoice_number",
            ), []
        if doc.kind == "credit_note":
            if not doc.preceding or self._live(supplier, doc.preceding) is None:
                return Rejection(
                    "invoice_reference_unknown",
                    f"The credited invoice {doc.preceding or '(none given)'} is not known",
                    "original_invoice_number",
                ), []
            return None, []
        po_number = doc.po_number.strip()
        if not po_number or po_number.upper() == "NA":
            return Rejection("po_missing", "A purchase order number is required", "po_number"), []
        po = self.purchase_orders.get(po_number)
        if po is None:
            return Rejection("po_unknown", f"Purchase order {po_number} is not known", "po_number"), []
        if doc.currency and doc.currency != po.currency:
            return Rejection(
                "currency_mismatch",
                f"Currency {doc.currency} differs from the order's {po.currency}",
                "currency",
            ), []
        if not self._bill_to_matches(po.bill_to, doc):
            return Rejection(
                "bill_to_mismatch",
                f"Bill-to legal entity {doc.bill_to_name or doc.bill_to_vat or '(none)'} does not match "
                f"purchase order {po.number} ({po.bill_to.name})",
                "bill_to",
            ), []
        wanted: dict[int, Decimal] = {}
        for i, line in enumerate(doc.lines, start=1):
            po_line = self._po_line(po, line)
            if po_line is None:
                what = line.item or line.description or "(no item)"
                return Rejection(
                    "item_not_on_po", f"Line {i}: item {what} is not on purchase order {po.number}", "item"
                ), []
            if line.unit_price != po_line.unit_price:
                return Rejection(
                    "price_mismatch",
                    f"Line {i}: unit price {line.unit_price} does not match the purchase order price "
                    f"{po_line.unit_price}",
                    "price",
                ), []
            if line.tax_rate is None or line.tax_rate != po_line.tax_rate:
                given = "(none)" if line.tax_rate is None else f"{line.tax_rate}%"
                return Rejection(
                    "tax_rate_mismatch",
                    f"Line {i}: tax rate {given} does not match the purchase order's {po_line.tax_rate}%",
                    "tax_rate",
                ), []
            wanted[po_line.line] = wanted.get(po_line.line, Decimal(0)) + line.quantity
        for po_line in po.lines:
            if po_line.line not in wanted:
                continue
            left = po_line.quantity - self._consumed(po.number, po_line.line)
            if wanted[po_line.line] > left:
                return Rejection(
                    "quantity_exceeds_po",
                    f"Quantity {wanted[po_line.line]} exceeds what is left on purchase order {po.number} "
                    f"line {po_line.line}: {left} of {po_line.quantity}",
                    "quantity",
                ), []
        return None, [(po.number, n, q) for n, q in wanted.items()]

    @staticmethod
    def _bill_to_matches(bill_to: BillTo, doc: Parsed) -> bool:
        if bill_to.vat_id and doc.bill_to_vat:
            return _norm(bill_to.vat_id) == _norm(doc.bill_to_vat)
        return bool(doc.bill_to_name) and _norm(bill_to.name) == _norm(doc.bill_to_name)

    @staticmethod
    def _po_line(po: PurchaseOrder, line: Line) -> PurchaseOrderLine | None:
        for po_line in po.lines:
            if line.item and po_line.item and _norm(line.item) == _norm(po_line.item):
                return po_line
        for po_line in po.lines:
            if line.description and _norm(line.description) == _norm(po_line.description or po_line.item):
                return po_line
        return None

    # -- receiving an invoice ----------------------------------------------------------------------------

    def receive(
        self,
        protocol: Protocol,
        client: str,
        supplier: str,
        key: str,
        doc: Parsed,
        *,
        synchronous: bool,
        sender: str = "",
        receiver: str = "",
        external_reference: str = "",
    ) -> tuple[SimInvoice | None, Rejection | None]:
        """Check and, unless refused at once (synchronous validation), keep the invoice. For the
        asynchronous protocols a failed check is announced at the in_process step, as networks do."""
        with self._lock:
            self.catch_up()
            now = self.clock.now()
            rejection, reservations = self.validate(supplier, doc)
            self.submissions.append(
                {
                    "at": now.isoformat(),
                    "protocol": protocol,
                    "client": client,
                    "key": key,
                    "invoice_number": doc.number,
                    "outcome": rejection.code if rejection else "accepted",
                    "message": rejection.message if rejection else "",
                }
            )
            if rejection is not None and synchronous:
                return None, rejection
            self._next_id += 1
            inv = SimInvoice(
                id=self._next_id,
                protocol=protocol,
                client=client,
                supplier=supplier,
                key=key,
                parsed=doc,
                created_at=now,
                updated_at=now,
                pending=rejection,
                reservations=reservations,
                sender=sender,
                receiver=receiver,
                external_reference=external_reference,
            )
            self.invoices[inv.id] = inv
            self._record(inv, Event(now, "received"))
            unanswered = any(
                fnmatch.fnmatchcase(doc.po_number, p) for p in self.scenario.unanswered_po_numbers
            )
            if not unanswered:
                self._schedule(inv, "in_process", self.scenario.delays.in_process)
            return inv, None

    # -- life over time ----------------------------------------------------------------------------------

    def _schedule(self, inv: SimInvoice, status: str | None, seconds: float) -> None:
        inv.next_status = status
        inv.next_at = inv.updated_at + timedelta(seconds=seconds) if status else None

    def catch_up(self) -> None:
        """Apply every step due by now, in time order (events carry their scheduled time, so that a
        poller's updated_at cursor sees them in order whatever the moment they are computed)."""
        with self._lock:
            now = self.clock.now()
            while True:
                due = [i for i in self.invoices.values() if i.next_at is not None and i.next_at <= now]
                if not due:
                    return
                inv = min(due, key=lambda i: (i.next_at or now, i.id))
                self._step(inv)

    def _review_rule(self, inv: SimInvoice) -> ReviewRule | None:
        for index, rule in enumerate(self.scenario.review_rules):
            if self.rule_uses.get(index, 0) >= rule.times:
                continue
            if rule.protocol not in ("any", inv.protocol):
                continue
            if fnmatch.fnmatchcase(inv.parsed.number, rule.invoice_number) and fnmatch.fnmatchcase(
                inv.parsed.po_number, rule.po_number
            ):
                self.rule_uses[index] = self.rule_uses.get(index, 0) + 1
                return rule
        return None

    def _step(self, inv: SimInvoice) -> None:
        at = inv.next_at
        target = inv.next_status
        assert at is not None and target is not None
        delays = self.scenario.delays
        inv.next_at = inv.next_status = None
        if target == "in_process":
            if inv.pending is not None:
                self._reject(inv, at, inv.pending)
                return
            self._record(inv, Event(at, "in_process"))
            self._schedule(inv, "reviewed", delays.review)
        elif target == "reviewed":
            rule = self._review_rule(inv)
            if rule is None:
                self._record(inv, Event(at, "approved"))
                self._schedule(inv, "payment_scheduled", delays.payment_scheduled)
            elif rule.outcome == "reject":
                self._reject(inv, at, Rejection(rule.reason, rule.message))
            else:
                reason = Rejection(rule.reason, rule.message)
                inv.reason = reason
                inv.after_query = rule.then
                self._record(inv, Event(at, "under_query", reason))
                self._schedule(inv, "query_resolved", delays.query_resolution)
        elif target == "query_resolved":
            if inv.after_query == "reject" and inv.reason is not None:
                self._reject(inv, at, inv.reason)
                return
            inv.reason = None
            self._record(inv, Event(at, "approved"))
            self._schedule(inv, "payment_scheduled", delays.payment_scheduled)
        elif target == "payment_scheduled":
            self._record(inv, Event(at, "payment_scheduled"))
            self._schedule(inv, "paid", delays.paid)
        elif target == "paid":
            self._record(inv, Event(at, "paid"))

    def _reject(self, inv: SimInvoice, at: datetime, reason: Rejection) -> None:
        inv.reason = reason
        inv.reservations = []  # the quantity goes back to the purchase order
        inv.pending = None
        self._record(inv, Event(at, "rejected", reason))

    def _record(self, inv: SimInvoice, event: Event) -> None:
        """The new status, and the message each protocol sends for it (queued for push if configured)."""
        inv.status = event.status
        inv.updated_at = event.at
        inv.history.append(event)
        content: bytes | None = None
        url = ""
        message_id = f"{uuid.uuid4()}"
        if inv.protocol == "cxml" and CXML_WORD[event.status] is not None:
            client = self._cxml_client(inv.client)
            message_id = f"{message_id}@portal-sim"
            content = cxml_status_update(inv, event, self.scenario.cxml, message_id)
            url = client.callback_url if client else ""
        elif inv.protocol == "peppol" and PEPPOL_CODE[event.status] is not None:
            peppol = self._peppol_client(inv.client)
            content = peppol_invoice_response(inv, event, message_id)
            url = peppol.callback_url if peppol else ""
        if content is None:
            return
        message = Message(
            message_id,
            event.at,
            inv.protocol,
            inv.client,
            inv.id,
            content,
            sender=inv.receiver,
            receiver=inv.sender,
        )
        self.messages.append(message)
        if url:
            self.pushes.append(Push(message, url))

    # -- clients ---------------------------------------------------------------------------------------

    def _cxml_client(self, identity: str) -> CxmlClient | None:
        return next((c for c in self.scenario.cxml.clients if c.identity == identity), None)

    def _peppol_client(self, participant: str) -> PeppolClient | None:
        return next((c for c in self.scenario.peppol.clients if c.participant_id == participant), None)

    def cxml_client(self, identity: str, secret: str) -> CxmlClient | None:
        with self._lock:
            client = self._cxml_client(identity)
            if client is None or not hmac.compare_digest(client.shared_secret.encode(), secret.encode()):
                return None
            return client

    def coupa_client(self, client_id: str, secret: str) -> CoupaClient | None:
        with self._lock:
            client = next((c for c in self.scenario.coupa.clients if c.client_id == client_id), None)
            if client is None or not hmac.compare_digest(client.client_secret.encode(), secret.encode()):
                return None
            return client

    def peppol_client(self, api_key: str) -> PeppolClient | None:
        with self._lock:
            return next(
                (
                    c
                    for c in self.scenario.peppol.clients
                    if hmac.compare_digest(c.api_key.encode(), api_key.encode())
                ),
                None,
            )

    def supplier_of(self, protocol: Protocol, client: str) -> str:
        """Whose invoice numbers must be unique: the client's configured supplier, else the client."""
        with self._lock:
            found: CxmlClient | CoupaClient | PeppolClient | None
            if protocol == "cxml":
                found = self._cxml_client(client)
            elif protocol == "coupa":
                found = next((c for c in self.scenario.coupa.clients if c.client_id == client), None)
            else:
                found = self._peppol_client(client)
            return (found.supplier if found else "") or client

    def issue_token(self, client_id: str) -> tuple[str, float]:
        with self._lock:
            token = secrets.token_urlsafe(24)
            lifetime = self.scenario.coupa.token_lifetime_seconds
            self.tokens[token] = (client_id, self.clock.now() + timedelta(seconds=lifetime))
            return token, lifetime

    def token_client(self, token: str) -> tuple[str | None, bool]:
        """(client id, expired) of a bearer token; (None, False) when unknown."""
        with self._lock:
            found = self.tokens.get(token)
            if found is None:
                return None, False
            client_id, expires = found
            return client_id, expires <= self.clock.now()

    # -- reads -----------------------------------------------------------------------------------------

    def coupa_invoices(
        self, client: str, since: datetime | None, limit: int, offset: int
    ) -> list[dict[str, Any]]:
        with self._lock:
            self.catch_up()
            found = sorted(
                (
                    i
                    for i in self.invoices.values()
                    if i.protocol == "coupa"
                    and i.client == client
                    and (since is None or i.updated_at > since)
                ),
                key=lambda i: (i.updated_at, i.id),
            )
            return [i.coupa_json() for i in found[offset : offset + limit]]

    def coupa_invoice(self, client: str, invoice_id: int) -> dict[str, Any] | None:
        with self._lock:
            self.catch_up()
            inv = self.invoices.get(invoice_id)
            return (
                inv.coupa_json()
                if inv is not None and inv.protocol == "coupa" and inv.client == client
                else None
            )

    def pending_messages(
        self, protocol: Protocol, client: str, since: datetime | None, limit: int
    ) -> list[Message]:
        """Messages for a client newer than `since`, oldest first; a page never splits one timestamp
        (a caller continuing from the last timestamp it saw would miss the rest of it)."""
        with self._lock:
            self.catch_up()
            found = sorted(
                (
                    m
                    for m in self.messages
                    if m.protocol == protocol and m.client == client and (since is None or m.at > since)
                ),
                key=lambda m: m.at,
            )
            if len(found) <= limit:
                return found
            last = found[limit - 1].at
            return [m for m in found if m.at <= last]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            self.catch_up()
            return {
                "now": self.clock.now().isoformat(),
                "invoices": [i.as_json() for i in self.invoices.values()],
                "submissions": list(self.submissions),
            }

    def invoices_json(self, protocol: str | None = None, number: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            self.catch_up()
            return [
                i.as_json()
                for i in self.invoices.values()
                if (protocol is None or i.protocol == protocol)
                and (number is None or i.parsed.number == number)
            ]

    def purchase_orders_json(self) -> list[dict[str, Any]]:
        with self._lock:
            out = []
            for po in self.purchase_orders.values():
                data = po.model_dump(mode="json")
                for line in data["lines"]:
                    line["consumed"] = str(self._consumed(po.number, int(line["line"])))
                out.append(data)
            return out

    def messages_json(self, protocol: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            self.catch_up()
            return [
                {
                    "id": m.id,
                    "at": m.at.isoformat(),
                    "protocol": m.protocol,
                    "client": m.client,
                    "invoice_id": m.invoice_id,
                    "content": m.content.decode(),
                }
                for m in self.messages
                if protocol is None or m.protocol == protocol
            ]

    # -- pushing ---------------------------------------------------------------------------------------

    def take_pushes(self, *, all_due: bool) -> list[Push]:
        with self._lock:
            self.catch_up()
            now = time.monotonic()
            taken = [p for p in self.pushes if all_due or p.due <= now]
            for push in taken:
                self.pushes.remove(push)
            return taken

    def push_done(self, push: Push, ok: bool, detail: str) -> None:
        with self._lock:
            push.attempts += 1
            self.push_log.append(
                {
                    "at": self.clock.now().isoformat(),
                    "url": push.url,
                    "message_id": push.message.id,
                    "invoice_id": push.message.invoice_id,
                    "protocol": push.message.protocol,
                    "ok": ok,
                    "attempt": push.attempts,
                    "detail": detail,
                }
            )
            if not ok and push.attempts < 8:
                push.due = time.monotonic() + min(60.0, 0.5 * 2**push.attempts)
                self.pushes.append(push)

    def push_request(self, push: Push) -> tuple[dict[str, str], bytes]:
        message = push.message
        headers = {"Content-Type": "text/xml; charset=UTF-8"}
        if message.protocol == "peppol":
            headers = {
                "Content-Type": "application/xml",
                "X-Peppol-Message-Id": message.id,
                "X-Peppol-Sender-Id": message.sender,
                "X-Peppol-Receiver-Id": message.receiver,
                "X-Peppol-Received-At": message.at.isoformat(),
            }
            with self._lock:
                client = self._peppol_client(message.client)
            if client is not None and client.webhook_secret:
                digest = hmac.new(client.webhook_secret.encode(), message.content, hashlib.sha256).hexdigest()
                headers["X-Peppol-Signature"] = f"sha256={digest}"
        return headers, message.content


def deliver_pushes(sim: Simulator, http: httpx.Client, *, all_due: bool) -> tuple[int, int]:
    """Push what is due (outside the lock: a slow receiver must not stall the portal)."""
    ok = failed = 0
    for push in sim.take_pushes(all_due=all_due):
        headers, body = sim.push_request(push)
        try:
            response = http.post(push.url, content=body, headers=headers)
            good = 200 <= response.status_code < 300
            detail = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            good, detail = False, type(exc).__name__
        sim.push_done(push, good, detail)
        ok, failed = (ok + 1, failed) if good else (ok, failed + 1)
    return ok, failed


class Pusher:
    """The background thread: moves realtime scenarios on and retries pushes."""

    def __init__(self, sim: Simulator, tick_seconds: float) -> None:
        self._sim = sim
        self._tick = tick_seconds
        self._stop = threading.Event()
        self._http = httpx.Client(timeout=5.0)
        # One delivery round at a time: a flush (/_sim/advance) waits for a round the thread has already
        # taken pushes for, so that "every queued push is delivered before answering" holds.
        self._delivering = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="portal-sim-pusher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._http.close()

    def flush(self) -> tuple[int, int]:
        with self._delivering:
            return deliver_pushes(self._sim, self._http, all_due=True)

    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            try:
                with self._delivering:
                    deliver_pushes(self._sim, self._http, all_due=False)
            except Exception:  # the thread must survive a bad receiver or a bug in one message
                log.exception("push delivery failed")


# =====================================================================================================
# HTTP
# =====================================================================================================


def _since(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _bearer(request: Request) -> str:
    value = request.headers.get("Authorization", "")
    return value[7:].strip() if value.lower().startswith("bearer ") else ""


def create_app(scenario: Scenario | None = None, *, tick_seconds: float = 0.2) -> FastAPI:
    """The simulator as an ASGI app; `app.state.sim` is the Simulator (tests may reach in)."""
    sim = Simulator(scenario or default_scenario())
    pusher = Pusher(sim, tick_seconds)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        pusher.start()
        try:
            yield
        finally:
            pusher.stop()

    app = FastAPI(title="Cashcycle portal simulator", lifespan=lifespan)
    app.state.sim = sim
    app.state.pusher = pusher

    async def finish(
        protocol: str, request: Request, client: str, reply: Reply, note: str = "", *, replayed: bool = False
    ) -> Response:
        """Log, then answer; a reply chosen to be lost is held back until the client has given up."""
        delay = sim.lose_reply()
        sim.log_request(
            protocol,
            request.method,
            request.url.path,
            client,
            reply.status_code,
            note or ("lost" if delay else ""),
        )
        if delay:
            await asyncio.sleep(delay)
        return reply.response(replayed)

    def injected(protocol: str, request: Request) -> Response | None:
        status = sim.injected_failure()
        if status is None:
            return None
        sim.log_request(protocol, request.method, request.url.path, "", status, "injected")
        return Response(
            f"{status} simulated outage".encode(),
            status_code=status,
            media_type="text/plain",
            headers=sim.failure_headers(),
        )

    def throttled(protocol: str, request: Request, client: str) -> Response | None:
        wait = sim.throttle(f"{protocol}:{client}")
        if wait is None:
            return None
        sim.log_request(protocol, request.method, request.url.path, client, 429, "rate limited")
        body = {"errors": [{"code": "rate_limited", "message": f"Too many requests; retry in {wait}s"}]}
        return JSONResponse(body, status_code=429, headers={"Retry-After": str(wait)})

    # -- cXML ------------------------------------------------------------------------------------------

    @app.post("/cxml")
    async def cxml_endpoint(request: Request) -> Response:
        """cXML requests: InvoiceDetailRequest, GetPendingRequest, ProfileRequest."""
        if (failure := injected("cxml", request)) is not None:
            return failure
        now = sim.now()

        def answer(code: int, text: str, message: str = "", http: int | None = None) -> Reply:
            return Reply(
                http or (200 if code < 300 else code), cxml_response(code, text, message, at=now), "text/xml"
            )

        try:
            root = _xml(await request.body())
        except BadDocument as exc:
            return await finish("cxml", request, "", answer(400, "Bad Request", str(exc)))
        identity = (root.findtext("Header/Sender/Credential/Identity") or "").strip()
        secret = root.findtext("Header/Sender/Credential/SharedSecret") or ""
        client = sim.cxml_client(identity, secret)
        if client is None:
            return await finish(
                "cxml",
                request,
                identity,
                answer(401, "Unauthorized", "Unknown sender or wrong shared secret"),
            )
        if (limited := throttled("cxml", request, identity)) is not None:
            return limited
        if root.find("Request/InvoiceDetailRequest") is not None:
            idr = root.find("Request/InvoiceDetailRequest")
            payload_id = root.get("payloadID", "")
            if not payload_id:
                return await finish(
                    "cxml", request, identity, answer(400, "Bad Request", "payloadID is required")
                )
            fingerprint = hashlib.sha256(etree.tostring(idr, method="c14n")).hexdigest()

            def take_invoice() -> Reply:
                try:
                    doc = parse_invoice_detail(idr)
                except BadDocument as exc:
                    return answer(400, "Bad Request", str(exc))
                supplier = sim.supplier_of("cxml", identity)
                inv, _ = sim.receive("cxml", identity, supplier, payload_id, doc, synchronous=False)
                assert inv is not None
                return answer(201, "Accepted", f"Invoice {doc.number} received (portal id {inv.id})")

            reply, replayed = sim.once("cxml", identity, payload_id, fingerprint, take_invoice)
            if reply is None:
                reply = answer(409, "Conflict", "payloadID already used for another document")
            note = (
                "replayed"
                if replayed
                else f"invoice {idr.find('InvoiceDetailRequestHeader').get('invoiceID')}"
            )
            return await finish("cxml", request, identity, reply, note, replayed=replayed)
        pending = root.find("Request/GetPendingRequest")
        if pending is not None:
            try:
                limit = max(1, int(pending.get("maxMessages") or 100))
            except ValueError:
                return await finish("cxml", request, identity, answer(400, "Bad Request", "maxMessages"))
            messages = sim.pending_messages(
                "cxml", identity, _since(pending.get("lastReceivedTimestamp")), limit
            )
            out = _cxml_root(f"{uuid.uuid4()}@portal-sim", now)
            response = _el(out, "Response")
            _el(response, "Status", code="200", text="OK").set(XML_LANG, "en-US")
            if messages:
                holder = _el(response, "GetPendingResponse")
                for message in messages:
                    holder.append(_xml(message.content))
            return await finish(
                "cxml",
                request,
                identity,
                Reply(200, _cxml_bytes(out), "text/xml"),
                f"{len(messages)} pending",
            )
        if root.find("Request/ProfileRequest") is not None:
            return await finish("cxml", request, identity, answer(200, "OK"))
        return await finish(
            "cxml", request, identity, answer(406, "Not Acceptable", "request type not supported")
        )

    # -- Coupa-style REST ------------------------------------------------------------------------------

    @app.post("/coupa/oauth2/token")
    async def coupa_token(request: Request) -> Response:
        """OAuth2 client credentials (form fields or HTTP Basic)."""
        if (failure := injected("coupa", request)) is not None:
            return failure
        form = await request.form()
        client_id, secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
        if not client_id and request.headers.get("Authorization", "").lower().startswith("basic "):
            try:
                decoded = base64.b64decode(request.headers["Authorization"][6:]).decode()
                client_id, _, secret = decoded.partition(":")
            except (binascii.Error, ValueError):
                pass  # not Basic credentials: refused below as unknown client
        if form.get("grant_type") != "client_credentials":
            return await finish(
                "coupa", request, client_id, json_reply(400, {"error": "unsupported_grant_type"})
            )
        if sim.coupa_client(client_id, secret) is None:
            return await finish("coupa", request, client_id, json_reply(401, {"error": "invalid_client"}))
        if (limited := throttled("coupa", request, client_id)) is not None:
            return limited
        token, lifetime = sim.issue_token(client_id)
        body = {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": int(lifetime),
            "scope": str(form.get("scope", "")),
        }
        return await finish("coupa", request, client_id, json_reply(200, body), "token")

    def coupa_auth(request: Request) -> tuple[str | None, Reply | None]:
        client_id, expired = sim.token_client(_bearer(request))
        if client_id is None or expired:
            why = "The access token expired" if expired else "The access token is invalid"
            header = f'Bearer error="invalid_token", error_description="{why}"'
            return None, json_reply(
                401, {"error": "invalid_token", "error_description": why}, {"WWW-Authenticate": header}
            )
        return client_id, None

    @app.post("/coupa/api/invoices")
    async def coupa_create(request: Request) -> Response:
        """Create an invoice: 201, or 422 with the buyer's reason codes. Idempotency-Key per attempt."""
        if (failure := injected("coupa", request)) is not None:
            return failure
        client_id, refused = coupa_auth(request)
        if refused is not None or client_id is None:
            return await finish("coupa", request, "", refused or json_reply(401, {}))
        if (limited := throttled("coupa", request, client_id)) is not None:
            return limited
        raw = await request.body()
        key = request.headers.get("Idempotency-Key", "") or f"auto-{uuid.uuid4()}"
        try:
            body = json.loads(raw)
        except ValueError:
            return await finish(
                "coupa",
                request,
                client_id,
                json_reply(400, {"errors": [{"code": "invalid_json", "message": "body is not JSON"}]}),
            )
        fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

        def take_invoice() -> Reply:
            try:
                doc = parse_coupa_invoice(body)
            except BadDocument as exc:
                return json_reply(400, {"errors": [{"code": "invalid", "message": str(exc)}]})
            supplier = sim.supplier_of("coupa", client_id)
            reference = str(body.get("external_reference") or "")
            inv, rejection = sim.receive(
                "coupa", client_id, supplier, key, doc, synchronous=True, external_reference=reference
            )
            if rejection is not None:
                return json_reply(422, {"errors": [rejection.as_json()]})
            assert inv is not None
            return json_reply(201, inv.coupa_json())

        reply, replayed = sim.once("coupa", client_id, key, fingerprint, take_invoice)
        if reply is None:
            reused = {
                "code": "idempotency_key_reused",
                "message": "Idempotency-Key already used for another invoice",
            }
            reply = json_reply(409, {"errors": [reused]})
        return await finish(
            "coupa", request, client_id, reply, "replayed" if replayed else "", replayed=replayed
        )

    @app.get("/coupa/api/invoices")
    async def coupa_list(request: Request) -> Response:
        """Invoices of this client, oldest change first; `updated_at[gt]` filters, limit/offset page."""
        if (failure := injected("coupa", request)) is not None:
            return failure
        client_id, refused = coupa_auth(request)
        if refused is not None or client_id is None:
            return await finish("coupa", request, "", refused or json_reply(401, {}))
        if (limited := throttled("coupa", request, client_id)) is not None:
            return limited
        params = request.query_params
        try:
            limit = min(500, max(1, int(params.get("limit", "50"))))
            offset = max(0, int(params.get("offset", "0")))
        except ValueError:
            return await finish(
                "coupa",
                request,
                client_id,
                json_reply(400, {"errors": [{"message": "limit and offset are integers"}]}),
            )
        found = sim.coupa_invoices(client_id, _since(params.get("updated_at[gt]")), limit, offset)
        return await finish("coupa", request, client_id, json_reply(200, found), f"{len(found)} invoices")

    @app.get("/coupa/api/invoices/{invoice_id}")
    async def coupa_get(invoice_id: int, request: Request) -> Response:
        if (failure := injected("coupa", request)) is not None:
            return failure
        client_id, refused = coupa_auth(request)
        if refused is not None or client_id is None:
            return await finish("coupa", request, "", refused or json_reply(401, {}))
        if (limited := throttled("coupa", request, client_id)) is not None:
            return limited
        found = sim.coupa_invoice(client_id, invoice_id)
        reply = json_reply(200, found) if found else json_reply(404, {"errors": [{"message": "not found"}]})
        return await finish("coupa", request, client_id, reply)

    # -- Peppol access point ---------------------------------------------------------------------------

    async def peppol_caller(request: Request) -> tuple[str, Response | None]:
        """The calling participant, or the answer that stops its request here: an injected fault, an
        unknown API key, the rate limit."""
        if (failure := injected("peppol", request)) is not None:
            return "", failure
        client = sim.peppol_client(_bearer(request))
        if client is None:
            unknown = json_reply(401, {"code": "unauthorized", "message": "unknown API key"})
            return "", await finish("peppol", request, "", unknown)
        me = client.participant_id
        return me, throttled("peppol", request, me)

    @app.post("/peppol/v1/documents")
    async def peppol_send(request: Request) -> Response:
        """A UBL invoice or credit note to deliver to a Peppol participant: 202 with a message id."""
        me, stop = await peppol_caller(request)
        if stop is not None:
            return stop
        sender = request.headers.get("X-Peppol-Sender-Id", "")
        receiver = request.headers.get("X-Peppol-Receiver-Id", "")
        if sender != me:
            mismatch = {"code": "sender_mismatch", "message": f"this API key sends as {me}, not {sender}"}
            return await finish("peppol", request, me, json_reply(403, mismatch))
        receivers = sim.scenario.peppol.receivers
        if not receiver or (receivers and receiver not in receivers):
            unknown = {
                "code": "receiver_unknown",
                "message": f"participant {receiver or '(none)'} is not registered in the SMP",
            }
            return await finish("peppol", request, me, json_reply(404, unknown))
        raw = await request.body()
        key = request.headers.get("Idempotency-Key", "") or f"auto-{uuid.uuid4()}"
        fingerprint = hashlib.sha256(raw).hexdigest()

        def take_document() -> Reply:
            try:
                doc = parse_ubl(raw)
            except BadDocument as exc:
                return json_reply(400, {"code": "invalid_document", "message": str(exc)})
            supplier = sim.supplier_of("peppol", me)
            inv, _ = sim.receive(
                "peppol", me, supplier, key, doc, synchronous=False, sender=me, receiver=receiver
            )
            assert inv is not None
            message_id = f"msg-{inv.id}-{uuid.uuid4().hex[:8]}"
            return json_reply(
                202,
                {"message_id": message_id, "received_at": inv.created_at.isoformat(), "status": "accepted"},
            )

        reply, replayed = sim.once("peppol", me, key, fingerprint, take_document)
        if reply is None:
            reused = {
                "code": "idempotency_key_reused",
                "message": "Idempotency-Key already used for another document",
            }
            reply = json_reply(409, reused)
        return await finish("peppol", request, me, reply, "replayed" if replayed else "", replayed=replayed)

    @app.get("/peppol/v1/inbox")
    async def peppol_inbox(request: Request) -> Response:
        """Documents received for this participant (Invoice Responses), oldest first."""
        me, stop = await peppol_caller(request)
        if stop is not None:
            return stop
        messages = sim.pending_messages(
            "peppol", me, _since(request.query_params.get("received_after")), 1000
        )
        documents = [
            {
                "message_id": m.id,
                "received_at": m.at.isoformat(),
                "sender": m.sender,
                "receiver": m.receiver,
                "document_type": "ApplicationResponse",
                "content": m.content.decode(),
            }
            for m in messages
        ]
        return await finish(
            "peppol", request, me, json_reply(200, {"documents": documents}), f"{len(documents)} documents"
        )

    # -- control ---------------------------------------------------------------------------------------

    @app.get("/_sim/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "scenario": sim.scenario.name, "now": sim.now().isoformat()}

    @app.get("/_sim/scenario")
    def get_scenario() -> dict[str, Any]:
        return sim.scenario.model_dump(mode="json")

    @app.post("/_sim/scenario")
    def put_scenario(scenario: Scenario) -> dict[str, Any]:
        """Replace the whole state with a fresh one from this scenario."""
        sim.load(scenario)
        return {"ok": True, "now": sim.now().isoformat()}

    @app.post("/_sim/reset")
    def reset() -> dict[str, Any]:
        sim.reset()
        return {"ok": True, "now": sim.now().isoformat()}

    @app.get("/_sim/clock")
    def clock() -> dict[str, Any]:
        return {"now": sim.now().isoformat(), "mode": sim.scenario.clock}

    @app.post("/_sim/advance")
    def advance(body: Advance) -> dict[str, Any]:
        """Move the clock; apply what falls due; deliver every queued push before answering."""
        now = sim.advance(body.seconds)
        pushed, failed = pusher.flush()
        return {"now": now.isoformat(), "pushed": pushed, "push_failures": failed}

    @app.get("/_sim/purchase-orders")
    def list_pos() -> list[dict[str, Any]]:
        return sim.purchase_orders_json()

    @app.post("/_sim/purchase-orders")
    def add_po(po: PurchaseOrder) -> dict[str, Any]:
        sim.add_purchase_order(po)
        return {"ok": True}

    @app.post("/_sim/review-rules")
    def add_rule(rule: ReviewRule) -> dict[str, Any]:
        sim.add_review_rule(rule)
        return {"ok": True}

    @app.get("/_sim/faults")
    def get_faults() -> dict[str, Any]:
        return sim.faults.model_dump(mode="json")

    @app.post("/_sim/faults")
    def set_faults(faults: Faults) -> dict[str, Any]:
        sim.set_faults(faults)
        return {"ok": True}

    @app.post("/_sim/rate-limit")
    def set_rate_limit(limit: RateLimit) -> dict[str, Any]:
        sim.set_rate_limit(limit)
        return {"ok": True}

    @app.post("/_sim/tokens/expire")
    def expire_tokens() -> dict[str, Any]:
        return {"expired": sim.expire_tokens()}

    @app.get("/_sim/invoices")
    def invoices(protocol: str | None = None, number: str | None = None) -> list[dict[str, Any]]:
        return sim.invoices_json(protocol, number)

    @app.get("/_sim/submissions")
    def submissions() -> list[dict[str, Any]]:
        return list(sim.snapshot()["submissions"])

    @app.get("/_sim/messages")
    def messages(protocol: str | None = None) -> list[dict[str, Any]]:
        """Every StatusUpdateRequest and Invoice Response sent (or to be fetched)."""
        return sim.messages_json(protocol)

    @app.get("/_sim/pushes")
    def pushes() -> list[dict[str, Any]]:
        return list(sim.push_log)

    @app.get("/_sim/requests")
    def requests_log() -> list[dict[str, Any]]:
        return list(sim.requests)

    return app


def serve(host: str, port: int, scenario: Path | None = None) -> None:
    """Run the simulator until interrupted (uvicorn handles SIGINT and SIGTERM)."""
    import uvicorn

    chosen = load_scenario(scenario) if scenario else default_scenario()
    log.info("portal simulator %r on http://%s:%s", chosen.name, host, port)
    uvicorn.run(create_app(chosen), host=host, port=port, log_level="warning", timeout_graceful_shutdown=2)
