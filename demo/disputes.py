"""The demo's dispute cases, credit memos, write-offs and CAPAs: each one a story of Acme's AR team, told
through the API as the people who would do it, so that every case is a real DisputeWorkflow (with its
credit memo, write-off and CAPA workflows) and every step is in the evidence ledger.

`up --demo` runs with policies/disputes-demo.toml: price and promotion cases are past their SLA 30 s
after they open, the others have half an hour; a CAPA's effectiveness check runs a minute after its
preventive action is done. The cases (one invoice each, external ids BILL-DSP-*, issued weeks ago and
mailed):

    open             Van Dijk Bouw: 2 of 10 mobile computers missing (a note, their goods receipt attached)
    waiting          Rossi Meccanica: says it paid twice; the collector waits for their remittance advice
    past SLA         Kronberg Pharma: a promotion allowance deducted from a payment, nobody on it yet
    credit memo      Lumière Hôtels: day rate deducted (short payment), credited (approver), closed PRC;
                     its CAPA's preventive action done by the supervisor -> checked a minute later
    rebill           Océane Cosmétiques: 25 seats billed for 20, credited in full (approver, approver2),
                     corrected invoice approved and sent, closed BIL; both CAPA actions done -> closed
                     after the check
    write-off        Castellano: freight surcharge deducted, written off (approver), closed FRT; CAPA open,
                     the preventive action's owner asking for more time (the supervisor decides)
    write-off, auto  Kestrel Software: 3.20 of bank charges, below the 5.00 tolerance: written off by the
                     system, the rule named; closed CUS
    invalid          Bergmann Logistik: "damaged" deduction, the signed delivery note says otherwise;
                     resolved invalid, the customer pays it (recovered), closed CUS
    awaiting approval  Groupe Vauban (credit memo, tier 1: approver's inbox) and Duarte Têxteis (credit
                     memo, tier 1 approved, tier 2 waiting in approver2's inbox)

Segregation of duties holds: the collector owns the cases and proposes the documents; the approvers who
sign are neither the proposer, nor the case's owner, nor a cash applier of the customer (the ERP applies
cash in the demo). The cases opened by Initech's portal (PO-4715 disputed, PO-4716 under query) come from
demo/portals.py when the demo runs the portal simulator.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from demo.client import DemoApi, DemoSeedError, Progress, gather_all, wait_sent
from demo.company import DEMO_CUSTOMERS, SIGNER, DemoCustomer

DISPUTES = "/api/v1/disputes"
CUSTOMERS = {c.ref: c for c in DEMO_CUSTOMERS}
PREFIX = "BILL-DSP-"  # the demo's disputed invoices (the ERP's billing document numbers)


@dataclass(frozen=True)
class DisputedInvoice:
    external_id: str
    customer_ref: str
    days_ago: int  # issue date
    lines: list[tuple[str, str, str]]  # description, quantity, unit price (tax: the customer's)
    po_number: str | None = None


# One invoice per story, by story.
INVOICES = {
    "credit_memo": DisputedInvoice(
        f"{PREFIX}0001", "CUST-1002", 50, [("Consulting, senior consultant (days)", "4", "1150.00")]
    ),
    "rebill": DisputedInvoice(
        f"{PREFIX}0002",
        "CUST-1014",
        20,
        [("Cashflow Analytics licence, annual subscription (seats)", "25", "310.00")],
    ),
    "write_off": DisputedInvoice(
        f"{PREFIX}0003",
        "CUST-1003",
        75,
        [("Rugged tablet T10 with dock", "6", "750.00"), ("Delivery and installation", "1", "240.00")],
    ),
    "write_off_auto": DisputedInvoice(
        f"{PREFIX}0004", "CUST-1017", 40, [("Managed support retainer", "1", "2400.00")]
    ),
    "invalid": DisputedInvoice(
        f"{PREFIX}0005",
        "CUST-1001",
        45,
        [("Barcode scanner ZX-200", "20", "189.90"), ("Delivery and installation", "1", "450.00")],
        po_number="4500771203",
    ),
    "open": DisputedInvoice(
        f"{PREFIX}0006",
        "CUST-1004",
        25,
        [("Handheld mobile computer MC-33", "10", "1180.00"), ("Delivery and installation", "1", "300.00")],
    ),
    "waiting": DisputedInvoice(
        f"{PREFIX}0007", "CUST-1005", 70, [("Managed support retainer", "1", "1800.00")]
    ),
    "past_sla": DisputedInvoice(
        f"{PREFIX}0008",
        "CUST-1020",
        30,
        [("Cashflow Analytics licence, annual subscription (seats)", "50", "290.00")],
        po_number="4500771288",
    ),
    "pending_tier_1": DisputedInvoice(
        f"{PREFIX}0009",
        "CUST-1016",
        35,
        [
            ("Consulting, senior consultant (days)", "6", "1200.00"),
            ("On-site workshop (days)", "2", "300.00"),
        ],
        po_number="PO-88120",
    ),
    "pending_tier_2": DisputedInvoice(
        f"{PREFIX}0010",
        "CUST-1018",
        55,
        [("Barcode scanner ZX-200", "40", "189.90"), ("Docking cradle, 4 slots", "10", "240.00")],
    ),
}


def _tax_rate(customer: DemoCustomer) -> str:
    return "20" if customer.country == "FR" else "0"  # reverse charge or export outside France


class Cases:
    """The stories' shared means: the API as the demo users, ids, and bounded waits."""

    def __init__(self, api: DemoApi, customer_ids: dict[str, str], today: date) -> None:
        self.api = api
        self.customer_ids = customer_ids
        self.today = today

    async def until(
        self, path: str, ok: Callable[[dict[str, Any]], bool], what: str, within: float = 180.0
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        pause = 0.2
        while True:
            state = await self.api.call("supervisor", "GET", path)
            if ok(state):
                return state
            if loop.time() >= deadline:
                raise DemoSeedError(f"{what} within {within:.0f}s: {path} says {str(state)[:400]}")
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 2.0)

    async def delivered(self, inv: DisputedInvoice) -> dict[str, Any]:
        """Created by the ERP, submitted, approved tier by tier, mailed: the invoice as sent."""
        customer = CUSTOMERS[inv.customer_ref]
        key = f"demo-{inv.external_id}"
        body: dict[str, Any] = {
            "external_id": inv.external_id,
            "customer_id": self.customer_ids[inv.customer_ref],
            "currency": customer.currency,
            "issue_date": (self.today - timedelta(days=inv.days_ago)).isoformat(),
            "lines": [
                {"description": d, "quantity": q, "unit_price": p, "tax_rate": _tax_rate(customer)}
                for d, q, p in inv.lines
            ],
        }
        if inv.po_number or customer.party.po_required:
            body["po_number"] = inv.po_number or f"PO-{inv.external_id[-4:]}"
        created = await self.api.call("erp", "POST", "/api/v1/invoices", body, key=key)
        await self.approve_invoice(created["id"], key, submit=True)
        status = await wait_sent(self.api, created["id"], inv.external_id, 180)
        if status != "submitted":
            raise DemoSeedError(f"{inv.external_id} should have been sent, it is {status}")
        state: dict[str, Any] = await self.api.call("supervisor", "GET", f"/api/v1/invoices/{created['id']}")
        return state

    async def approve_invoice(self, invoice_id: str, key: str, submit: bool = False) -> None:
        base = f"/api/v1/invoices/{invoice_id}"
        if submit:
            await self.api.call("preparer", "POST", f"{base}/submit", None, key=f"{key}-submit")
        state = await self.api.call("supervisor", "GET", base)
        for step in state["approval"]["steps"]:
            await self.api.call(
                SIGNER[step["role"]],
                "POST",
                f"{base}/approve",
                {"tier": step["tier"], "comment": "Checked against the order"},
                key=f"{key}-approve-{step['tier']}",
            )

    async def short_payment(
        self, inv: dict[str, Any], deducted: str, code: str, reference: str
    ) -> dict[str, Any]:
        """The customer pays all but `deducted`, and says why (their reason code): a case opens. The case."""
        paid = Decimal(inv["amount_due"]) - Decimal(deducted)
        await self.api.call(
            "erp",
            "POST",
            "/api/v1/payments",
            {
                "customer_id": inv["customer_id"],
                "amount": str(paid),
                "currency": inv["currency"],
                "received_on": self.today.isoformat(),
                "reference": reference,
                "allocations": [
                    {
                        "invoice_id": inv["id"],
                        "amount": str(paid),
                        "deduction": {"amount": deducted, "reason_code": code},
                    }
                ],
            },
            key=f"demo-{reference}",
        )
        return await self.case_of(inv)

    async def case_of(self, inv: dict[str, Any]) -> dict[str, Any]:
        """The invoice's case (a deduction opens it as the payment is recorded)."""
        page = await self.until(
            f"{DISPUTES}?customer_id={inv['customer_id']}&limit=50",
            lambda p: bool(p["items"]),
            f"a case for {inv['external_id']}",
        )
        for item in page["items"]:
            case: dict[str, Any] = await self.api.call("supervisor", "GET", f"{DISPUTES}/{item['id']}")
            if any(i["invoice_id"] == inv["id"] for i in case["invoices"]):
                return case
        raise DemoSeedError(f"no case holds {inv['external_id']}")

    async def complaint(
        self, inv: dict[str, Any], amount: str, code: str, description: str, key: str
    ) -> dict[str, Any]:
        """The collector records the customer's complaint (they called, or wrote)."""
        case: dict[str, Any] = await self.api.call(
            "collector",
            "POST",
            DISPUTES,
            {
                "invoices": [{"invoice_id": inv["id"], "amount": amount}],
                "reason_code": code,
                "description": description,
            },
            key=key,
        )
        return case

    async def command(
        self, user: str, case: dict[str, Any], action: str, body: dict[str, Any], key: str
    ) -> dict[str, Any]:
        state: dict[str, Any] = await self.api.call(
            user, "POST", f"{DISPUTES}/{case['id']}/{action}", body, key=f"demo-{key}-{action}"
        )
        return state

    async def resolve(self, case: dict[str, Any], kind: str, reason: str) -> dict[str, Any]:
        """The collector resolves the case by a credit memo or write-off of what is open on each invoice,
        the amounts named (the API then splits a credit at the invoice's tax rate for the credit note)."""
        amounts = [
            {"invoice_id": i["invoice_id"], "amount": i["open"]}
            for i in case["invoices"]
            if Decimal(i["open"]) > 0
        ]
        body = {"kind": kind, "reason": reason, "amounts": amounts}
        return await self.command("collector", case, "resolve", body, case["case_number"])

    async def document(self, case: dict[str, Any], status: str) -> dict[str, Any]:
        """The case's credit memo or write-off, once it reached `status` (its own workflow moves it)."""
        case = await self.until(f"{DISPUTES}/{case['id']}", lambda c: bool(c["documents"]), "a document")
        doc = case["documents"][-1]
        path = ("/api/v1/credit-memos/" if doc["kind"] == "credit_memo" else "/api/v1/write-offs/") + doc[
            "document_id"
        ]
        return await self.until(path, lambda d: d["status"] == status, f"{doc['kind']} {status}")

    async def approve_document(self, doc: dict[str, Any], signers: list[str], comment: str) -> None:
        """Each waiting tier by the next signer (never the proposer, the case's owner or a cash applier)."""
        path = ("/api/v1/credit-memos/" if doc["kind"] == "credit_memo" else "/api/v1/write-offs/") + doc[
            "id"
        ]
        for tier, user in enumerate(signers, start=1):
            await self.api.call(
                user,
                "POST",
                f"{path}/approve",
                {"comment": comment, "tier": tier},
                key=f"demo-{doc['id']}-{tier}",
            )

    async def resolved(self, case: dict[str, Any]) -> dict[str, Any]:
        return await self.until(
            f"{DISPUTES}/{case['id']}",
            lambda c: c["status"] == "resolved",
            f"case {case['case_number']} resolved",
        )

    async def capa(self, case: dict[str, Any]) -> dict[str, Any]:
        """The CAPA the case's closing started (by its case number)."""

        def found(page: dict[str, Any]) -> bool:
            return any(c["case_number"] == case["case_number"] for c in page["items"])

        page = await self.until("/api/v1/capa?limit=200", found, f"the CAPA of {case['case_number']}")
        return next(c for c in page["items"] if c["case_number"] == case["case_number"])

    def due(self, days: int) -> str:
        return (self.today + timedelta(days=days)).isoformat()


# -- the stories ----------------------------------------------------------------------------------------


async def credit_memo_closed_capa_checked(c: Cases) -> None:
    """A deduction for the day rate, credited and closed; the pricing fix is done, so its check runs."""
    inv = await c.delivered(INVOICES["credit_memo"])
    case = await c.short_payment(inv, "360.00", "PRICE", "SEPA CT 7730012001")
    key = case["case_number"]
    await c.command(
        "collector",
        case,
        "notes",
        {"text": "Their framework agreement says 1,075.00 a day; we billed 1,150.00: the deduction is right"},
        key,
    )
    await c.resolve(case, "credit_memo", "Framework day rate applies (4 days x 75.00 + VAT)")
    memo = await c.document(case, "pending_approval")
    await c.approve_document(memo, ["approver"], "Matches the framework agreement")
    await c.resolved(case)
    await c.command(
        "collector",
        case,
        "close",
        {
            "root_cause": "PRC",
            "validity": "valid",
            "comment": "Billed at the list rate instead of the framework rate",
            "corrective": {
                "owner": "collector",
                "due": c.due(7),
                "description": "Credit note sent; Lumière told",
            },
            "preventive": {
                "owner": "supervisor",
                "due": c.due(30),
                "description": "Framework-agreement day rates loaded into the billing price list",
            },
        },
        key,
    )
    capa = await c.capa(case)
    await c.api.call(
        "supervisor",
        "POST",
        f"/api/v1/capa/{capa['id']}/actions/preventive/complete",
        {"note": "All 14 framework agreements' rates loaded; billing reads them first"},
        key=f"demo-{key}-preventive",
    )


async def rebill_closed_capa_done(c: Cases) -> None:
    """Seats billed that were not ordered: the invoice credited in full and billed again, corrected."""
    planned = INVOICES["rebill"]
    inv = await c.delivered(planned)
    case = await c.complaint(
        inv,
        inv["amount_due"],
        "QUANTITY",
        "Océane ordered 20 seats, not 25 (their signed order form): they ask for a corrected invoice",
        f"demo-{planned.external_id}-complaint",
    )
    key = case["case_number"]
    await c.command(
        "collector",
        case,
        "resolve",
        {
            "kind": "rebill",
            "reason": "Seat count from the quote, not the signed order form",
            "rebill_lines": [
                {
                    "description": "Cashflow Analytics licence, annual subscription (seats)",
                    "quantity": "20",
                    "unit_price": "310.00",
                    "tax_rate": "20",
                }
            ],
        },
        key,
    )
    memo = await c.document(case, "pending_approval")
    await c.approve_document(memo, ["approver", "approver2"], "Order form checked: 20 seats")
    memo = await c.until(
        f"/api/v1/credit-memos/{memo['id']}", lambda d: bool(d["rebill_invoice_id"]), "the corrected invoice"
    )
    corrected = memo["rebill_invoice_id"]
    await c.until(
        f"/api/v1/invoices/{corrected}", lambda i: i["status"] == "pending_approval", "rebill pending"
    )
    await c.approve_invoice(corrected, f"demo-{planned.external_id}-R1")
    await wait_sent(c.api, corrected, f"{planned.external_id}-R1", 180)
    await c.resolved(case)
    await c.command(
        "collector",
        case,
        "close",
        {
            "root_cause": "BIL",
            "validity": "valid",
            "corrective": {
                "owner": "preparer",
                "due": c.due(5),
                "description": "Corrected invoice for 20 seats",
            },
            "preventive": {
                "owner": "preparer",
                "due": c.due(21),
                "description": "Licence invoices billed from the signed order form, never the quote",
            },
        },
        key,
    )
    capa = await c.capa(case)
    for kind, note in (
        ("corrective", "Corrected invoice sent with the credit note"),
        ("preventive", "Billing checklist: seat count read from the signed order form"),
    ):
        await c.api.call(
            "preparer",
            "POST",
            f"/api/v1/capa/{capa['id']}/actions/{kind}/complete",
            {"note": note},
            key=f"demo-{key}-{kind}",
        )


async def write_off_closed_capa_open(c: Cases) -> None:
    """A freight surcharge the contract does not allow, deducted: written off; the CAPA is open and its
    owner asks for more time."""
    inv = await c.delivered(INVOICES["write_off"])
    case = await c.short_payment(inv, "240.00", "FREIGHT", "SEPA CT 7730012003")
    key = case["case_number"]
    await c.resolve(case, "write_off", "DAP terms: delivery was ours to pay; not worth a credit note")
    doc = await c.document(case, "pending_approval")
    await c.approve_document(doc, ["approver"], "DAP terms confirmed in the contract")
    await c.resolved(case)
    await c.command(
        "collector",
        case,
        "close",
        {
            "root_cause": "FRT",
            "validity": "valid",
            "corrective": {
                "owner": "collector",
                "due": c.due(10),
                "description": "Castellano told; no credit note",
            },
            "preventive": {
                "owner": "preparer",
                "due": c.due(14),
                "description": "No delivery line on invoices to customers with DAP terms",
            },
        },
        key,
    )
    capa = await c.capa(case)
    await c.api.call(
        "preparer",
        "POST",
        f"/api/v1/capa/{capa['id']}/actions/preventive/request-extension",
        {"new_due": c.due(45), "reason": "The billing template change waits for the ERP release"},
        key=f"demo-{key}-extension",
    )


async def write_off_automatic(c: Cases) -> None:
    """Bank charges kept back by the customer's bank: below the tolerance, written off by the system."""
    inv = await c.delivered(INVOICES["write_off_auto"])
    case = await c.short_payment(inv, "3.20", "OTHER", "SEPA CT 7730012004")
    key = case["case_number"]
    await c.resolve(case, "write_off", "Bank charges of the payer's bank")
    await c.resolved(case)
    await c.command(
        "collector",
        case,
        "close",
        {"root_cause": "CUS", "validity": "invalid", "comment": "Charges are the payer's (SEPA SHA)"},
        key,
    )


async def invalid_recovered(c: Cases) -> None:
    """ "Damaged" says the deduction; the signed delivery note says otherwise: the customer pays it."""
    inv = await c.delivered(INVOICES["invalid"])
    case = await c.short_payment(inv, "450.00", "DAMAGED", "SEPA CT 7730012005")
    key = case["case_number"]
    await c.api.upload(
        "collector",
        f"{DISPUTES}/{case['id']}/attachments",
        ("delivery-note-4500771203.pdf", DELIVERY_NOTE, "application/pdf"),
        "Signed delivery note: 20 scanners received, no reservation",
        key=f"demo-{key}-attach",
    )
    await c.command(
        "collector",
        case,
        "resolve",
        {
            "kind": "invalid",
            "reason": "Delivery note signed without reservation; no damage reported within 7 days",
        },
        key,
    )
    await c.api.call(
        "erp",
        "POST",
        "/api/v1/payments",
        {
            "customer_id": inv["customer_id"],
            "amount": "450.00",
            "currency": inv["currency"],
            "received_on": c.today.isoformat(),
            "reference": "SEPA CT 7730012015",
            "allocations": [{"invoice_id": inv["id"], "amount": "450.00"}],
        },
        key="demo-SEPA CT 7730012015",
    )
    await c.until(
        f"{DISPUTES}/{case['id']}", lambda d: d["amounts"]["recovered"] == "450.00", "the deduction recovered"
    )
    await c.command(
        "collector",
        case,
        "close",
        {
            "root_cause": "CUS",
            "validity": "invalid",
            "comment": "Unauthorised deduction, paid after our answer",
        },
        key,
    )


async def left_open(c: Cases) -> None:
    planned = INVOICES["open"]
    inv = await c.delivered(planned)
    case = await c.complaint(
        inv,
        "2360.00",
        "SHORTAGE",
        "Van Dijk received 8 of the 10 MC-33 computers (their goods receipt attached to the mail)",
        f"demo-{planned.external_id}-complaint",
    )
    key = case["case_number"]
    await c.command(
        "collector", case, "notes", {"text": "Asked the warehouse for the carrier's proof of delivery."}, key
    )
    await c.api.upload(
        "collector",
        f"{DISPUTES}/{case['id']}/attachments",
        ("goods-receipt-vandijk.pdf", GOODS_RECEIPT, "application/pdf"),
        "The customer's goods receipt",
        key=f"demo-{key}-attach",
    )


async def left_waiting(c: Cases) -> None:
    planned = INVOICES["waiting"]
    inv = await c.delivered(planned)
    case = await c.complaint(
        inv,
        inv["amount_due"],
        "DUPLICATE",
        "Rossi says this retainer was already paid with last month's invoice",
        f"demo-{planned.external_id}-complaint",
    )
    await c.command(
        "collector",
        case,
        "wait",
        {"reason": "Asked Giulia Ferraro for the remittance advice listing this invoice"},
        case["case_number"],
    )


async def left_past_sla(c: Cases) -> None:
    """A promotion allowance deducted and nobody on it: past its SLA a minute later (demo policy)."""
    inv = await c.delivered(INVOICES["past_sla"])
    await c.short_payment(inv, "1200.00", "PROMO", "SEPA CT 7730012008")


async def credit_memo_waiting(c: Cases, which: str, amount: str, code: str, signers: list[str]) -> None:
    """A case resolved by a credit memo that waits in an approver's inbox (after `signers` signed)."""
    planned = INVOICES[which]
    inv = await c.delivered(planned)
    texts = {
        "SERVICE": ("Two workshop days cancelled by us were billed", "Workshop days not held"),
        "RETURN": ("12 scanners returned in October (RMA 2231) were not credited", "RMA 2231 received"),
    }
    description, reason = texts[code]
    case = await c.complaint(inv, amount, code, description, f"demo-{planned.external_id}-complaint")
    await c.resolve(case, "credit_memo", reason)
    memo = await c.document(case, "pending_approval")
    if signers:
        await c.approve_document(memo, signers, "Checked")


async def seed_disputes(api: DemoApi, customer_ids: dict[str, str], out: Progress, today: date) -> None:
    """Every story, concurrently (each one in order)."""
    c = Cases(api, customer_ids, today)
    stories: list[Awaitable[None]] = [
        credit_memo_closed_capa_checked(c),
        rebill_closed_capa_done(c),
        write_off_closed_capa_open(c),
        write_off_automatic(c),
        invalid_recovered(c),
        left_open(c),
        left_waiting(c),
        left_past_sla(c),
        credit_memo_waiting(c, "pending_tier_1", "720.00", "SERVICE", []),
        credit_memo_waiting(c, "pending_tier_2", "2278.80", "RETURN", ["approver"]),
    ]
    await gather_all(stories)
    out.say(
        f"disputes: {len(stories)} cases (open, waiting on the customer, past SLA, resolved by credit memo, "
        "rebill, write-off and invalid), 2 credit memos awaiting approval, CAPAs open, done and checked "
        "(checks a minute after the preventive action)"
    )


# Attachments: tiny but real PDFs.
def _pdf(text: str) -> bytes:
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


DELIVERY_NOTE = _pdf("Delivery note 4500771203: 20 x Barcode scanner ZX-200, received without reservation")
GOODS_RECEIPT = _pdf("Goods receipt Van Dijk Bouw: 8 x Handheld mobile computer MC-33")
