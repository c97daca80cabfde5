"""A customer's portal disputing an invoice opens a dispute case by itself, for real: the API, the worker and
the Temporal dev server on one side, the portal simulator as its own HTTP service on the other (Coupa-style,
pulled by the portal's poller workflow).

The buyer's review disputes the price on the purchase order; the invoice workflow records the portal's word,
opens a case through the same door as a collector's complaint (`open_dispute_from_portal`), and the case
takes the invoice: `disputed` for what is due, the case naming the portal as its source. A second poll saying
the same opens nothing twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import col, select
from temporalio.testing import WorkflowEnvironment

from activities.db import reading
from activities.models import LedgerEntry
from portal_sim import default_scenario
from tests.api.test_portal_lifecycle import initech, portals_file, seller_master_data, until
from tests.conftest import portal_simulator, running_stack
from workflows.portal_poll import PortalPollWorkflow

PORTAL = "demo-coupa"


@pytest.fixture
def portal_sim(tmp_path: Path) -> Iterator[str]:
    scenario = default_scenario().model_copy(update={"clock": "manual", "name": "portal-disputes"})
    with portal_simulator(tmp_path, scenario) as base:
        yield base


async def test_a_portal_disputing_an_invoice_opens_a_case_that_holds_it(
    db_url: str, temporal_env: WorkflowEnvironment, tmp_path: Path, portal_sim: str
) -> None:
    runner = running_stack(db_url, temporal_env, tmp_path, with_worker=False)
    async with runner as stack:
        stack.settings.portals_file = str(portals_file(tmp_path, portal_sim))
        seller_master_data(stack.store)
        await runner.start_worker()
        erp, preparer, approver, collector = await stack.clients("erp", "preparer", "approver", "collector")
        r = await erp.post("/api/v1/customers", json=initech(PORTAL, payment_terms_days=30))
        assert r.status_code == 201, r.text
        customer = r.json()["id"]
        async with httpx.AsyncClient(base_url=portal_sim) as sim:
            r = await sim.post(
                "/_sim/disputes",
                json={
                    "po_number": "PO-4711",
                    "status": "disputed",
                    "reason": "price_mismatch",
                    "message": "Agreed rate is 120.00",
                },
            )
            assert r.status_code == 200, r.text
            body = {
                "external_id": f"ERP-DISPUTED-{uuid.uuid4().hex[:8]}",
                "customer_id": customer,
                "currency": "EUR",
                "issue_date": "2026-11-02",
                "po_number": "PO-4711",
                "lines": [
                    {"description": "Consulting", "quantity": "10", "unit_price": "125.00", "tax_rate": "19"}
                ],
            }
            r = await erp.post("/api/v1/invoices", json=body)
            assert r.status_code == 201, r.text
            inv = r.json()["id"]
            assert (await preparer.post(f"/api/v1/invoices/{inv}/submit")).status_code == 200
            assert (await approver.post(f"/api/v1/invoices/{inv}/approve", json={})).status_code == 200
            submitted = await stack.wait_status(inv, "submitted", within=60)
            assert submitted["status"] == "submitted", submitted

            async def disputed() -> dict[str, Any] | None:
                await sim.post("/_sim/advance", json={"seconds": 40})
                await stack.temporal.execute_workflow(
                    PortalPollWorkflow.run,
                    PORTAL,
                    id=f"poll-{uuid.uuid4().hex[:8]}",
                    task_queue=stack.settings.task_queue,
                )
                got: dict[str, Any] = (await collector.get(f"/api/v1/invoices/{inv}")).json()
                return got if got["status"] == "disputed" else None

            got = await until(disputed, "the invoice disputed through its portal", seconds=60)
            # Another poll with the same word: no second case, no second transition.
            await until(disputed, "a second poll")

        cases = (await collector.get("/api/v1/disputes", params={"customer_id": customer})).json()
        assert cases["total"] == 1, cases
        case = (await collector.get(f"/api/v1/disputes/{cases['items'][0]['id']}")).json()
        assert case["source"] == "portal" and case["opened_by"].startswith("portal:"), case
        assert case["amounts"]["original"] == got["amount_due"] == got["total"], (case["amounts"], got)
        assert [i["invoice_id"] for i in case["invoices"]] == [inv]
        assert "Agreed rate is 120.00" in case["description"]
        assert got["portal"]["status"] == "disputed"

        with reading(stack.store) as session:
            events = [
                e.event
                for e in session.exec(
                    select(LedgerEntry).where(LedgerEntry.object_id == inv).order_by(col(LedgerEntry.seq))
                )
            ]
        assert events.count("dispute") == 1, events
        assert events.index("portal_status") < events.index("dispute")
        # The portal's word, the case's activity and its update: the history replays through the sandbox.
        await stack.assert_replays(got["workflow_id"])
