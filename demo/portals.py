"""The demo's customers behind procurement portals (`cashcycle up --demo` runs the portal simulator,
`cashcycle portal-sim`): Initech GmbH, billed through a Coupa-style API and an Ariba-style cXML network."""

from __future__ import annotations

from datetime import date

from demo.client import DemoApi, Progress, wait_sent
from demo.company import DEMO_ENTITY, SIGNER

# -- the customer portals (`cashcycle up --demo` runs the portal simulator, `cashcycle portal-sim`) -------

# The simulated buyer: Initech GmbH, reachable through a Coupa-style API and an Ariba-style cXML network
# (portal_sim.default_scenario), with three purchase orders for consulting and travel. Its identity must
# match the orders' bill-to (VAT id), as a real portal checks.
INITECH = {
    "legal_entity": DEMO_ENTITY,
    "currency": "EUR",
    "payment_terms_days": 30,
    "contact_name": "Kreditorenbuchhaltung",
    "country": "DE",
    "vat_id": "DE129273398",
    "street": "Lindenstrasse 5",
    "postal_code": "20095",
    "city": "Hamburg",
    "endpoint_scheme": "0088",
    "endpoint_id": "4000001000005",
    "company_id": "HRB 12345",
    "po_required": True,
}
PORTAL_CUSTOMERS = [
    {
        **INITECH,
        "external_ref": "CUST-PORTAL-COUPA",
        "name": "Initech GmbH",
        "email": "ap@initech.example",
        "portal": "demo-coupa",
        "buyer_reference": "INITECH-AP",
    },
    {
        **INITECH,
        "external_ref": "CUST-PORTAL-ARIBA",
        "name": "Initech GmbH (Ariba network)",
        "email": "ap-ariba@initech.example",
        "portal": "demo-ariba",
        "buyer_reference": "INITECH-ARIBA",
    },
]
# (customer, PO, lines, what the buyer will do): the first passes of a week's billing to Initech.
_CONSULTING, _TRAVEL = ("Consulting", "125.00"), ("Travel expenses", "310.55")
PORTAL_INVOICES: list[tuple[int, str, list[tuple[str, str, str]], str]] = [
    (0, "PO-4711", [(_CONSULTING[0], "8", _CONSULTING[1])], "accepted"),
    (0, "PO-4711", [(_CONSULTING[0], "6", "130.00")], "rejected: price not as ordered"),
    (0, "PO-4712", [(_CONSULTING[0], "12", _CONSULTING[1]), (_TRAVEL[0], "2", _TRAVEL[1])], "accepted"),
    (1, "PO-4713", [(_CONSULTING[0], "4", _CONSULTING[1])], "accepted"),
    (1, "PO-9999", [(_CONSULTING[0], "3", _CONSULTING[1])], "rejected: unknown PO"),
    (1, "PO-4712", [(_TRAVEL[0], "1", _TRAVEL[1])], "accepted"),
]
# Initech's project office answers through the portal with a dispute (portal_sim's demo scenario): the rate
# on PO-4715 is contested (held until a credit note for the difference arrives), the hours of PO-4716 are
# put under query (approved a minute later). Each opens a dispute case with the portal as its source, a
# review (30 s) and a poll (10 s) after the invoice is sent.
PORTAL_DISPUTED_INVOICES: list[tuple[int, str, list[tuple[str, str, str]], str]] = [
    (0, "PO-4715", [(_CONSULTING[0], "8", _CONSULTING[1])], "disputed: rate above the framework's 120.00"),
    (0, "PO-4716", [(_CONSULTING[0], "10", _CONSULTING[1])], "under query: timesheets asked, then approved"),
]


async def create_portal_customers(api: DemoApi) -> list[str]:
    """Initech behind its two portals (Coupa-style, cXML), created by the ERP: their ids."""
    ids = []
    for body in PORTAL_CUSTOMERS:
        created = await api.call("erp", "POST", "/api/v1/customers", body)
        ids.append(created["id"])
    return ids


async def seed_portals(api: DemoApi, out: Progress, ids: list[str]) -> None:
    """Invoices to customers behind portals, approved today: they leave for the simulated portal at once,
    and their statuses move on in real time (received, in process, approved, payment scheduled, paid) as
    the portal poller brings them back; the ones the buyer refuses wait in portal_rejected for a fix."""
    await _send(api, ids, PORTAL_INVOICES, first=1)
    out.say(f"portals: {len(PORTAL_INVOICES)} invoices sent to Initech's portals (Coupa-style, cXML)")


async def seed_portal_disputes(api: DemoApi, out: Progress, ids: list[str]) -> None:
    """The invoices Initech's project office disputes or queries through the portal (sent first thing, so
    that their cases open about when seeding ends)."""
    await _send(api, ids, PORTAL_DISPUTED_INVOICES, first=len(PORTAL_INVOICES) + 1)
    out.say(
        f"portals: {len(PORTAL_DISPUTED_INVOICES)} invoices sent that Initech's buyer will dispute (PO-4715) "
        "or query (PO-4716): cases opened from the portal within a minute"
    )


async def _send(
    api: DemoApi, ids: list[str], invoices: list[tuple[int, str, list[tuple[str, str, str]], str]], first: int
) -> None:
    today = date.today().isoformat()
    for n, (customer, po, lines, _fate) in enumerate(invoices, start=first):
        key = f"demo-portal-{n}"
        inv = await api.call(
            "erp",
            "POST",
            "/api/v1/invoices",
            {
                "external_id": f"BILL-PORTAL-{n:04d}",
                "customer_id": ids[customer],
                "currency": "EUR",
                "issue_date": today,
                "po_number": po,
                "lines": [
                    {"description": d, "quantity": q, "unit_price": p, "tax_rate": "19"} for d, q, p in lines
                ],
            },
            key=key,
        )
        base = f"/api/v1/invoices/{inv['id']}"
        await api.call("preparer", "POST", f"{base}/submit", None, key=f"{key}-submit")
        state = await api.call("supervisor", "GET", base)
        for step in state["approval"]["steps"]:
            await api.call(
                SIGNER[step["role"]], "POST", f"{base}/approve", {"tier": step["tier"]}, key=f"{key}-approve"
            )
        await wait_sent(api, inv["id"], f"BILL-PORTAL-{n:04d}", 120)
