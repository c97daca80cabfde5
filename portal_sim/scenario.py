"""Everything a test or the demo may configure: the buyer's purchase orders, its clients on each protocol,
the pace of its process, its review rules and standing answers (unanswered, under query, disputed), rate
limits and faults. A scenario is a file (`portal-sim --scenario FILE`, TOML or JSON) or a POST to
/_sim/scenario; `default_scenario()` is the demo's buyer."""

from __future__ import annotations

import json
import tomllib
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Protocol = Literal["cxml", "coupa", "peppol"]
AnyProtocol = Literal["any", "cxml", "coupa", "peppol"]


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
    review: float = 30.0  # in process -> approved (or queried / disputed / rejected by a rule)
    payment_scheduled: float = 60.0
    paid: float = 120.0
    query_resolution: float = 60.0  # under query or disputed -> approved (or rejected), unless held


class ReviewRule(_Model):
    """A later outcome of the buyer's review, for invoices matching the patterns (fnmatch)."""

    invoice_number: str = "*"
    po_number: str = "*"
    protocol: AnyProtocol = "any"
    outcome: Literal["query", "dispute", "reject"]
    reason: str = "other"  # a portal reason code (see peppol.REASON_TO_PEPPOL)
    message: str = "Rejected after review"
    then: Literal["accept", "reject"] = "accept"  # after a query or a dispute
    times: int = 1  # how many invoices it applies to (a resubmission after the fix passes)


class Dispute(_Model):
    """A standing answer of the buyer's review for every invoice on matching purchase orders (fnmatch),
    as `unanswered_po_numbers` is for silence: the invoice is put under query (the buyer asks a question)
    or disputed (the buyer contests it and wants a credit), with a reason, in each protocol's words:

        cXML    InvoiceStatus processing, Comments type="query" | "dispute", Extrinsic Query/DisputeReasonCode
        Coupa   status on_hold | disputed, dispute_reason {code, comment}
        Peppol  Invoice Response UQ with OPStatusReason, OPStatusAction PIN (query) | CNP (credit partially)

    `then`: what the buyer does after `delays.query_resolution`: approve it, reject it, or hold it (the
    default for a dispute) until a credit note referencing the invoice arrives; then it is approved."""

    po_number: str
    status: Literal["under_query", "disputed"] = "disputed"
    reason: str = "price_mismatch"  # a portal reason code (see peppol.REASON_TO_PEPPOL)
    message: str = "The price does not match the agreed price"
    protocol: AnyProtocol = "any"
    then: Literal["accept", "reject", "hold"] | None = None  # None: accept a query, hold a dispute

    @model_validator(mode="after")
    def _default_then(self) -> Dispute:
        if self.then is None:
            self.then = "hold" if self.status == "disputed" else "accept"
        return self


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
    # Purchase orders whose invoices the buyer's review puts under query or disputes, with a reason.
    disputes: list[Dispute] = Field(default_factory=list)


class Advance(_Model):
    seconds: float = Field(default=0.0, ge=0.0)


def _demo_order(number: str, bill_to: BillTo) -> PurchaseOrder:
    return PurchaseOrder(
        number=number,
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
        purchase_orders=[_demo_order(f"PO-{n}", bill_to) for n in (4711, 4712, 4713, 4714, 4715, 4716)],
        # Initech's facilities department (the demo's stuck portal pass) never works its queue.
        unanswered_po_numbers=["PO-4714"],
        # Initech's project office contests the rate on PO-4715 (until credited) and asks for the
        # timesheets of PO-4716 (then approves).
        disputes=[
            Dispute(
                po_number="PO-4715",
                status="disputed",
                reason="price_mismatch",
                message="Hourly rate above the framework agreement (120.00): credit the difference",
            ),
            Dispute(
                po_number="PO-4716",
                status="under_query",
                reason="missing_attachment",
                message="Please send the signed timesheets for these hours",
            ),
        ],
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
