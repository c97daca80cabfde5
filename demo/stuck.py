"""Invoices the demo leaves stuck, for real reasons, so that the supervisor's control tower has something
to show on the first start:

- approvals waiting: invoices pending approval at each tier, some handed by the supervisor to a named
  approver; `up --demo` runs with policies/sla-demo.toml (the SLAs of policies/sla.toml in minutes), so
  they are past their SLA minutes after the start;
- a portal pass without an answer: Initech's facilities department, whose purchase order PO-4714 sits in
  a queue nobody works (the portal simulator receives those invoices and never says anything more,
  `Scenario.unanswered_po_numbers`);
- a delivery that keeps retrying: Brouwerij De Vos, whose mail server answers every recipient with a
  temporary refusal (the demo's mail capture, `cashcycle mail-capture --refuse-domain`), so the
  `deliver_invoice` activity is retried by Temporal with backoff, for real, until someone fixes it.

Nothing here bypasses the workflows: the same API calls as the rest of the demo, made by the demo users.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from demo.client import DemoApi, DemoSeedError, Progress, gather_all, wait_sent
from demo.company import SIGNER, DemoCustomer, DemoParty
from demo.portals import INITECH

# The customer whose mail server refuses: every RCPT to its domain gets this temporary (4xx) answer.
REFUSING_MAIL_DOMAIN = "brouwerij-devos.example"
REFUSING_CUSTOMER = DemoCustomer(
    "CUST-STUCK-MAIL",
    "Brouwerij De Vos NV",
    "BE",
    "EUR",
    30,
    "Els Peeters",
    f"ap@{REFUSING_MAIL_DOMAIN}",
    "Grote Markt 7, 9000 Gent",
    "BE0456789123",
    0,  # not in the random plan: only the invoices below
    DemoParty("Grote Markt 7", "9000", "Gent", "9925", "BE0456789123", "0456789123", "DEVOS-AP"),
)

# The customer whose portal never answers after receipt (the simulator's unanswered PO).
UNANSWERED_PO = "PO-4714"
SILENT_PORTAL_CUSTOMER: dict[str, Any] = {
    **INITECH,
    "external_ref": "CUST-PORTAL-SILENT",
    "name": "Initech GmbH (Facilities)",
    "email": "ap-facilities@initech.example",
    "portal": "demo-coupa",
    "buyer_reference": "INITECH-FM",
}


@dataclass(frozen=True)
class StuckApproval:
    """An invoice left pending approval: how many tiers are approved, and who the supervisor assigned the
    waiting tier to (None: anyone holding the tier's role)."""

    external_id: str
    customer_ref: str
    days_ago: int  # issue date
    lines: list[tuple[str, str, str]]  # description, quantity, unit price (20 % VAT: French customers)
    approved_tiers: int = 0
    assign_to: str | None = None
    assign_reason: str = ""


# Amounts (VAT included) put each on a different tier of policies/approval_matrix.toml: up to 10,000 EUR
# tier 1 (ar_approver), up to 100,000 tier 2 (finance_manager), then tier 3 (controller).
STUCK_APPROVALS = [
    StuckApproval(
        "BILL-STUCK-0001", "CUST-1015", 3, [("Consulting, senior consultant (days)", "4", "1150.00")]
    ),
    StuckApproval(
        "BILL-STUCK-0002",
        "CUST-1014",
        6,
        [("Cashflow Analytics licence, annual subscription (seats)", "20", "310.00")],
        assign_to="approver",
        assign_reason="Julien knows this customer's licence agreement: assigned to him",
    ),
    StuckApproval(
        "BILL-STUCK-0003",
        "CUST-1016",
        8,
        [
            ("Consulting, senior consultant (days)", "30", "1200.00"),
            ("Project management (days)", "8", "900.00"),
        ],
        approved_tiers=1,
        assign_to="approver2",
        assign_reason="Finance manager sign-off needed before the quarter closes: Sophie to approve",
    ),
    StuckApproval(
        "BILL-STUCK-0004",
        "CUST-1002",
        2,
        [("Rugged tablet T10 with dock", "120", "750.00"), ("Delivery and installation", "1", "900.00")],
        approved_tiers=2,
    ),
]

# (external id, lines) for the refusing mail server and the unanswered portal.
STUCK_DELIVERIES = [
    ("BILL-STUCK-0101", [("Managed support retainer", "1", "2400.00")]),
    (
        "BILL-STUCK-0102",
        [("Barcode scanner ZX-200", "12", "189.90"), ("Delivery and installation", "1", "250.00")],
    ),
]
STUCK_PORTAL = ("BILL-STUCK-0201", [("Consulting", "6", "125.00")])


def _body(
    external_id: str,
    customer_id: str,
    issued: date,
    lines: list[tuple[str, str, str]],
    tax: str,
    po: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "external_id": external_id,
        "customer_id": customer_id,
        "currency": "EUR",
        "issue_date": issued.isoformat(),
        "lines": [{"description": d, "quantity": q, "unit_price": p, "tax_rate": tax} for d, q, p in lines],
    }
    if po:
        body["po_number"] = po
    return body


async def _approve_tiers(api: DemoApi, invoice_id: str, key: str, upto: int | None = None) -> dict[str, Any]:
    """Approve the planned tiers in order (all of them, or the first `upto`), as their approvers."""
    base = f"/api/v1/invoices/{invoice_id}"
    state = await api.call("supervisor", "GET", base)
    for step in state["approval"]["steps"][:upto]:
        state = await api.call(
            SIGNER[step["role"]],
            "POST",
            f"{base}/approve",
            {"tier": step["tier"], "comment": "Checked against the PO"},
            key=f"{key}-approve-{step['tier']}",
        )
    return state


async def _leave_pending(
    api: DemoApi, stuck: StuckApproval, customer_ids: dict[str, str], today: date
) -> None:
    key = f"demo-{stuck.external_id}"
    issued = today - timedelta(days=stuck.days_ago)
    body = _body(stuck.external_id, customer_ids[stuck.customer_ref], issued, stuck.lines, "20")
    inv = await api.call("erp", "POST", "/api/v1/invoices", body, key=key)
    base = f"/api/v1/invoices/{inv['id']}"
    await api.call("preparer", "POST", f"{base}/submit", None, key=f"{key}-submit")
    state = await _approve_tiers(api, inv["id"], key, stuck.approved_tiers)
    if stuck.assign_to:
        state = await api.call(
            "supervisor",
            "POST",
            f"{base}/reassign",
            {"tier": stuck.approved_tiers + 1, "assignee": stuck.assign_to, "reason": stuck.assign_reason},
            key=f"{key}-reassign",
        )
    waiting = [s for s in state["approval"]["steps"] if s["status"] == "waiting"]
    if state["status"] != "pending_approval" or [s["tier"] for s in waiting] != [stuck.approved_tiers + 1]:
        raise DemoSeedError(f"{stuck.external_id} should wait for tier {stuck.approved_tiers + 1}: {state}")


async def _approve_and_let_go(api: DemoApi, external_id: str, body: dict[str, Any]) -> str:
    """Create, submit and approve: the workflow then delivers it on its own. The invoice's id."""
    key = f"demo-{external_id}"
    inv = await api.call("erp", "POST", "/api/v1/invoices", body, key=key)
    await api.call("preparer", "POST", f"/api/v1/invoices/{inv['id']}/submit", None, key=f"{key}-submit")
    await _approve_tiers(api, inv["id"], key)
    invoice_id: str = inv["id"]
    return invoice_id


async def seed_stuck(api: DemoApi, customer_ids: dict[str, str], out: Progress, today: date) -> None:
    """The stuck invoices; the portal case only when the demo runs the portal simulator."""
    mail = await api.call("erp", "POST", "/api/v1/customers", REFUSING_CUSTOMER.body())
    await gather_all([_leave_pending(api, s, customer_ids, today) for s in STUCK_APPROVALS])
    # Issued today: the workflow delivers at once, and the mail server refuses (unless the demo's mail
    # capture is not the one in use: then they are simply delivered).
    for external_id, lines in STUCK_DELIVERIES:
        await _approve_and_let_go(api, external_id, _body(external_id, mail["id"], today, lines, "0"))
    sla = os.environ.get("CASHCYCLE_SLA_FILE") or "policies/sla.toml"
    said = [
        f"{len(STUCK_APPROVALS)} approvals waiting (SLAs of {sla})",
        f"{len(STUCK_DELIVERIES)} deliveries to {REFUSING_CUSTOMER.name} retrying (its mail server refuses)",
    ]
    if os.environ.get("CASHCYCLE_DEMO_PORTALS") == "1":
        silent = await api.call("erp", "POST", "/api/v1/customers", SILENT_PORTAL_CUSTOMER)
        external_id, lines = STUCK_PORTAL
        invoice_id = await _approve_and_let_go(
            api, external_id, _body(external_id, silent["id"], today, lines, "19", UNANSWERED_PO)
        )
        status = await wait_sent(api, invoice_id, external_id, 120)
        if status != "submitted":
            raise DemoSeedError(f"{external_id} should be submitted to the silent portal, not {status}")
        said.append(f"1 portal pass unanswered ({SILENT_PORTAL_CUSTOMER['name']}, {UNANSWERED_PO})")
    out.say("stuck for the control tower: " + "; ".join(said))
