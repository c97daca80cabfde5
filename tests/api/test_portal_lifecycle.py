"""An invoice through a customer's portal, for real: the API, the worker and the Temporal dev server on one
side, the portal simulator as its own HTTP service (`cashcycle portal-sim`) on the other, talking the
Coupa-style protocol with the real adapter.

reject -> fix -> re-approve -> resubmit -> accepted -> paid: the first pass is refused by the buyer
(price not as on the purchase order), the preparer is told, fixes the price (an amount: approval again),
the second pass is accepted after the buyer's review (statuses pulled by the portal's poller workflow),
the payment closes it. The simulator holds exactly two documents (no duplicate), the report counts one
invoice submitted and none accepted at first pass, and the ledger tells the whole story.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import col, select
from temporalio.testing import WorkflowEnvironment

from activities.db import reading, writing
from activities.models import LedgerEntry, LegalEntity, Notification, PortalSubmission
from portal_sim import default_scenario, demo_portals_toml
from tests.conftest import portal_simulator, running_stack
from workflows.portal_poll import PortalPollWorkflow
from workflows.types import PortalPollRun

PORTAL = "demo-coupa"


@pytest.fixture
def portal_sim(tmp_path: Path) -> Iterator[str]:
    """The simulator as its own process, on a manual clock that the test moves."""
    scenario = default_scenario().model_copy(update={"clock": "manual", "name": "lifecycle"})
    with portal_simulator(tmp_path, scenario) as base:
        yield base


def portals_file(tmp_path: Path, base: str) -> Path:
    path = tmp_path / "portals.toml"
    path.write_text(demo_portals_toml(base))
    return path


def initech(portal: str, **extra: Any) -> dict[str, Any]:
    """The simulator's buyer as a customer of ACME (its VAT id is the purchase orders' bill-to)."""
    return {
        "legal_entity": "ACME",
        "name": "Initech GmbH",
        "currency": "EUR",
        "email": "ap@initech.example",
        "country": "DE",
        "vat_id": "DE129273398",
        "street": "Lindenstrasse 5",
        "city": "Hamburg",
        "postal_code": "20095",
        "endpoint_scheme": "0088",
        "endpoint_id": "4000001000005",
        "buyer_reference": "04011000-12345-67",
        "portal": portal,
        **extra,
    }


def seller_master_data(store: Any) -> None:
    """ACME as a complete e-invoicing seller (the master data `cashcycle entities` does not set yet)."""
    with writing(store) as session:
        acme = session.get(LegalEntity, "ACME")
        assert acme is not None
        acme.name, acme.country, acme.vat_id = "Nordlicht Maschinenbau GmbH", "DE", "DE811569869"
        acme.street, acme.city, acme.postal_code = "Am Wall 120", "Bremen", "28195"
        acme.endpoint_scheme, acme.endpoint_id, acme.company_id = "9930", "DE811569869", "HRB 31745"
        acme.contact_name, acme.email, acme.iban = (
            "Debitoren",
            "ar@nordlicht.example",
            "DE02120300000000202051",
        )
        acme.telephone = "+49 421 3360 120"
        session.add(acme)


async def poll_until_accepted(
    stack: Any, sim: httpx.AsyncClient, reader: httpx.AsyncClient, inv: str, portal: str
) -> tuple[dict[str, Any], list[PortalPollRun]]:
    """Run the portal's poller (as its schedule does) until the invoice is accepted; the polls' results."""
    polls: list[PortalPollRun] = []

    async def accepted() -> dict[str, Any] | None:
        # A second of the buyer's time between polls (its rate limit refills on its own clock).
        await sim.post("/_sim/advance", json={"seconds": 1})
        polls.append(
            await stack.temporal.execute_workflow(
                PortalPollWorkflow.run,
                portal,
                id=f"poll-{uuid.uuid4().hex[:8]}",
                task_queue=stack.settings.task_queue,
            )
        )
        got: dict[str, Any] = (await reader.get(f"/api/v1/invoices/{inv}")).json()
        return got if got["status"] == "accepted" else None

    got = await until(accepted, f"the acceptance through {portal}", seconds=30)
    return got, polls


async def until(probe: Any, what: str, seconds: float = 60) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        value = await probe()
        if value:
            return value
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def test_rejected_fixed_reapproved_resubmitted_accepted_and_paid_through_the_portal(
    db_url: str, temporal_env: WorkflowEnvironment, tmp_path: Path, portal_sim: str
) -> None:
    runner = running_stack(db_url, temporal_env, tmp_path, with_worker=False)
    async with runner as stack:
        stack.settings.portals_file = str(portals_file(tmp_path, portal_sim))
        seller_master_data(stack.store)
        await runner.start_worker()
        erp, preparer, approver, cashier, supervisor = await stack.clients(
            "erp", "preparer", "approver", "cashier", "supervisor"
        )
        r = await erp.post(
            "/api/v1/customers",
            json=initech(PORTAL, po_required=True, payment_terms_days=30),
        )
        assert r.status_code == 201, r.text
        customer = r.json()["id"]
        assert r.json()["portal"] == PORTAL
        bad = await erp.post(
            "/api/v1/customers",
            json={"legal_entity": "ACME", "name": "X", "currency": "EUR", "portal": "nowhere"},
        )
        assert bad.status_code == 422 and bad.json()["error"]["details"]["field"] == "portal"

        # Pass 1: the price is not the purchase order's (130.00 instead of 125.00).
        body = {
            "external_id": f"ERP-PORTAL-{uuid.uuid4().hex[:8]}",
            "customer_id": customer,
            "currency": "EUR",
            "issue_date": "2026-11-02",
            "po_number": "PO-4711",
            "lines": [
                {"description": "Consulting", "quantity": "10", "unit_price": "130.00", "tax_rate": "19"}
            ],
        }
        r = await erp.post("/api/v1/invoices", json=body)
        assert r.status_code == 201, r.text
        inv = r.json()["id"]
        assert (await preparer.post(f"/api/v1/invoices/{inv}/submit")).status_code == 200
        assert (await approver.post(f"/api/v1/invoices/{inv}/approve", json={})).status_code == 200
        rejected = await stack.wait_status(inv, "portal_rejected", within=60)
        history = (await cashier.get(f"/api/v1/invoices/{inv}/history")).json()
        assert rejected["portal"] is not None, history[-1]["reason"]
        assert rejected["portal"]["submission_pass"] == 1
        assert rejected["portal"]["reason_code"] == "PRI", rejected["portal"]
        assert "125.00" in rejected["portal"]["reason_text"]
        number = rejected["number"]
        assert number

        # The preparer is told, fixes the price: an amount changed, so it is approved again.
        async def told() -> list[Notification]:
            with reading(stack.store) as session:
                return list(session.exec(select(Notification).where(Notification.kind == "portal_rejection")))

        notes = await until(told, "the preparers' notification")
        assert "preparer" in {n.recipient for n in notes} and "125.00" in notes[0].body
        r = await preparer.post(f"/api/v1/invoices/{inv}/fix", json={"comment": "price as on PO-4711"})
        assert r.status_code == 200 and r.json()["status"] == "draft", r.text
        r = await preparer.patch(
            f"/api/v1/invoices/{inv}",
            json={
                "lines": [
                    {"description": "Consulting", "quantity": "10", "unit_price": "125.00", "tax_rate": "19"}
                ]
            },
        )
        assert r.status_code == 200, r.text
        r = await preparer.post(f"/api/v1/invoices/{inv}/submit")
        assert r.status_code == 200 and r.json()["status"] == "pending_approval", r.text
        assert (await approver.post(f"/api/v1/invoices/{inv}/approve", json={})).status_code == 200
        submitted = await stack.wait_status(inv, "submitted", within=60)
        assert submitted["portal"]["submission_pass"] == 2 and submitted["number"] == number

        # The buyer reviews it (the simulator's clock moves) and the poller pulls the statuses.
        async with httpx.AsyncClient(base_url=portal_sim) as sim:
            # Received, in process after 5 s of the buyer's time, approved after its 30 s review.
            assert (await sim.post("/_sim/advance", json={"seconds": 36})).status_code == 200

            got, polls = await poll_until_accepted(stack, sim, cashier, inv, PORTAL)
            assert polls[0].routed >= 1
            assert got["portal"]["status"] == "accepted" and got["portal"]["accepted_at"]
            docs = (await sim.get("/_sim/invoices")).json()
            attempts = (await sim.get("/_sim/submissions")).json()
        # The buyer holds one invoice: pass 2 (pass 1 was refused at its door), and no duplicate.
        assert [(d["invoice_number"], d["key"]) for d in docs] == [(number, f"{inv}.pass-2")]
        assert {a["key"] for a in attempts} == {f"{inv}.pass-1", f"{inv}.pass-2"}

        r = await cashier.post(
            "/api/v1/payments",
            json={
                "customer_id": customer,
                "amount": got["total"],
                "currency": "EUR",
                "received_on": "2026-11-20",
                "reference": "BANK-PORTAL-1",
                "allocations": [{"invoice_id": inv, "amount": got["total"]}],
            },
        )
        assert r.status_code in (200, 201), r.text
        await stack.wait_status(inv, "paid", within=30)

        with reading(stack.store) as session:
            events = [
                e.event
                for e in session.exec(
                    select(LedgerEntry).where(LedgerEntry.object_id == inv).order_by(col(LedgerEntry.seq))
                )
            ]
            passes = session.exec(select(PortalSubmission).where(PortalSubmission.invoice_id == inv)).all()
        assert events[:4] == ["create", "submit", "approve", "deliver"]
        assert events[4:9] == ["portal_reject", "fix", "edit", "submit", "approve"]
        assert events[9] == "deliver" and "portal_accept" in events and events[-1] == "record_final_payment"
        assert sorted(
            (p.submission_pass, p.rejected_at is not None, p.accepted_at is not None) for p in passes
        ) == [
            (1, True, False),
            (2, False, True),
        ]
        report = await supervisor.get(
            "/api/v1/reports/portals", params={"from": "2026-01-01", "to": "2026-12-31"}
        )
        assert report.status_code == 200, report.text
        figures = report.json()
        assert (figures["invoices_submitted"], figures["first_pass_accepted"]) == (1, 0)
        assert figures["rejections"]["by_reason"][0]["code"] == "PRI"
        # Rejection, fix, re-approval, a second pass, the poller's signals: the history replays through
        # the sandbox.
        await stack.assert_replays(got["workflow_id"])


async def test_a_cxml_portal_pushes_its_statuses_to_the_inbound_endpoint(
    db_url: str, temporal_env: WorkflowEnvironment, tmp_path: Path, portal_sim: str
) -> None:
    """Ariba style: the buyer's network POSTs StatusUpdateRequests to Cashcycle, authenticated by its
    shared secret; they reach the invoice workflow as signals. A push with the wrong secret is refused
    (401, in cXML) and changes nothing."""
    runner = running_stack(db_url, temporal_env, tmp_path, with_worker=False)
    async with runner as stack:
        inbound = f"{stack.base_url}/api/v1/portals/demo-ariba/inbound"
        scenario = default_scenario()
        cxml = scenario.cxml.model_copy(
            update={
                "clients": [c.model_copy(update={"callback_url": inbound}) for c in scenario.cxml.clients]
            }
        )
        scenario = scenario.model_copy(update={"clock": "manual", "cxml": cxml})
        async with httpx.AsyncClient(base_url=portal_sim) as sim:
            r = await sim.post(
                "/_sim/scenario",
                content=scenario.model_dump_json(),
                headers={"content-type": "application/json"},
            )
            assert r.status_code == 200, r.text
            config = portals_file(tmp_path, portal_sim)
            config.write_text(config.read_text().replace('follow_up = "poll"', 'follow_up = "push"'))
            stack.settings.portals_file = str(config)
            seller_master_data(stack.store)
            await runner.start_worker()
            erp, preparer, approver, reader = await stack.clients("erp", "preparer", "approver", "cashier")
            r = await erp.post(
                "/api/v1/customers",
                json=initech("demo-ariba"),
            )
            assert r.status_code == 201, r.text
            body = {
                "external_id": f"ERP-ARIBA-{uuid.uuid4().hex[:8]}",
                "customer_id": r.json()["id"],
                "currency": "EUR",
                "issue_date": "2026-11-02",
                "po_number": "PO-4712",
                "lines": [
                    {"description": "Consulting", "quantity": "4", "unit_price": "125.00", "tax_rate": "19"}
                ],
            }
            inv = (await erp.post("/api/v1/invoices", json=body)).json()["id"]
            assert (await preparer.post(f"/api/v1/invoices/{inv}/submit")).status_code == 200
            assert (await approver.post(f"/api/v1/invoices/{inv}/approve", json={})).status_code == 200
            submitted = await stack.wait_status(inv, "submitted", within=60)
            assert submitted["portal"]["channel"] == "cxml"

            # A forged push: the right document shape, the wrong secret.
            forged = (
                '<?xml version="1.0"?><cXML payloadID="x@forged" timestamp="2026-11-23T10:00:00+00:00">'
                '<Header><From><Credential domain="NetworkId"><Identity>AN-BUYER-0001</Identity>'
                "</Credential></From>"
                '<To><Credential domain="NetworkId"><Identity>AN-CASHCYCLE-DEMO</Identity></Credential></To>'
                '<Sender><Credential domain="NetworkId"><Identity>AN-BUYER-0001</Identity>'
                "<SharedSecret>guess</SharedSecret></Credential><UserAgent>x</UserAgent></Sender></Header>"
                '<Request><StatusUpdateRequest><Status code="200" text="OK"/>'
                '<InvoiceStatus type="paid"><InvoiceIDInfo invoiceID="INV-2026-000001"/></InvoiceStatus>'
                "</StatusUpdateRequest></Request></cXML>"
            )
            async with httpx.AsyncClient() as outsider:
                r = await outsider.post(inbound, content=forged, headers={"content-type": "text/xml"})
            assert r.status_code == 401 and b"Unauthorized" in r.content
            assert (await reader.get(f"/api/v1/invoices/{inv}")).json()["status"] == "submitted"

            # The buyer's review: the simulator pushes its statuses as its clock moves.
            assert (await sim.post("/_sim/advance", json={"seconds": 36})).status_code == 200
            accepted = await stack.wait_status(inv, "accepted", within=60)
            assert accepted["portal"]["status"] == "accepted" and accepted["portal"]["submission_pass"] == 1
            pushes = (await sim.get("/_sim/pushes")).json()
            assert pushes and all(p.get("status_code", 200) == 200 for p in pushes), pushes


async def test_an_invoice_goes_to_a_peppol_access_point_and_its_invoice_response_comes_back(
    db_url: str, temporal_env: WorkflowEnvironment, tmp_path: Path, portal_sim: str
) -> None:
    """Peppol: the UBL rendering (checked by the EN 16931 rules before it leaves) goes to the access
    point; the buyer's Invoice Response (T111) is fetched from the inbox and moves the invoice."""
    runner = running_stack(db_url, temporal_env, tmp_path, with_worker=False)
    async with runner as stack:
        stack.settings.portals_file = str(portals_file(tmp_path, portal_sim))
        seller_master_data(stack.store)
        await runner.start_worker()
        erp, preparer, approver, reader = await stack.clients("erp", "preparer", "approver", "cashier")
        r = await erp.post(
            "/api/v1/customers",
            json=initech("demo-peppol"),
        )
        assert r.status_code == 201, r.text
        body = {
            "external_id": f"ERP-PEPPOL-{uuid.uuid4().hex[:8]}",
            "customer_id": r.json()["id"],
            "currency": "EUR",
            "issue_date": "2026-11-02",
            "po_number": "PO-4713",
            "lines": [
                {"description": "Travel expenses", "quantity": "2", "unit_price": "310.55", "tax_rate": "19"}
            ],
        }
        inv = (await erp.post("/api/v1/invoices", json=body)).json()["id"]
        assert (await preparer.post(f"/api/v1/invoices/{inv}/submit")).status_code == 200
        assert (await approver.post(f"/api/v1/invoices/{inv}/approve", json={})).status_code == 200
        submitted = await stack.wait_status(inv, "submitted", within=60)
        assert submitted["portal"]["channel"] == "peppol"
        async with httpx.AsyncClient(base_url=portal_sim) as sim:
            assert (await sim.post("/_sim/advance", json={"seconds": 36})).status_code == 200

            got, _ = await poll_until_accepted(stack, sim, reader, inv, "demo-peppol")
            docs = (await sim.get("/_sim/invoices", params={"protocol": "peppol"})).json()
        assert got["portal"]["submission_pass"] == 1
        assert [(d["invoice_number"], d["protocol"]) for d in docs] == [(submitted["number"], "peppol")]
