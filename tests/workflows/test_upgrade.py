"""An upgrade meets invoices in flight: an invoice recorded by a release of the previous shape, pending
approval when the worker stops, is finished by the current code (approved, mailed, paid), and the whole
history, old part and new, replays.

The runs of the previous shapes come from the current code taking those shapes' branches, as the
releases did: `before-2026-11-23` (no patch marker, started without search attributes by that release's
API) and `2026-11-23` (no patch marker, started with them). That those branches ARE the releases' shapes
is checked here against the histories the releases themselves recorded (histories/v1, histories/v2).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import temporalio.workflow
from sqlmodel import col, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment

import api.invoices
from activities.db import migrate, reading
from activities.models import InvoiceDelivery, LedgerEntry
from tests.conftest import invoice_body, running_stack
from tests.workflows.histories.record import commanded

HISTORIES = Path(__file__).parent / "histories"


def activities_of(history: WorkflowHistory) -> list[str]:
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


def as_release(monkeypatch: pytest.MonkeyPatch, release: str) -> None:
    """Make new runs take `release`'s shape: no patch marker, and for the release before 2026-11-23 a start
    without search attributes (its API set none; the workflow upserted them at creation)."""
    monkeypatch.setattr(temporalio.workflow, "patched", lambda patch_id: False)
    if release == "before-2026-11-23":
        monkeypatch.setattr(api.invoices, "search_attributes", lambda *args, **kwargs: [])


RELEASES = {"before-2026-11-23": "v1", "2026-11-23": "v2"}


@pytest.mark.parametrize("release", sorted(RELEASES))
async def test_an_invoice_pending_approval_under_the_previous_release_is_finished_by_the_current_code(
    release: str, temporal_env: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    migrate(db)
    runner = running_stack(db, temporal_env, tmp_path, with_worker=False)
    async with runner as stack:
        erp, preparer, approver, cashier = await stack.clients("erp", "preparer", "approver", "cashier")
        # The previous release's worker: the invoice is created and submitted, then the upgrade.
        with monkeypatch.context() as previous:
            as_release(previous, release)
            await runner.start_worker()
            r = await erp.post("/api/v1/invoices", json=invoice_body(stack.customers["initech"]))
            assert r.status_code == 201, r.text
            inv = r.json()
            r = await preparer.post(f"/api/v1/invoices/{inv['id']}/submit")
            assert r.status_code == 200 and r.json()["status"] == "pending_approval", r.text
            await runner.stop_worker()
        handle = stack.temporal.get_workflow_handle(inv["workflow_id"])
        before = json.loads((await handle.fetch_history()).to_json())["events"]
        recorded = json.loads((HISTORIES / RELEASES[release] / "pending_approval.json").read_text())["events"]
        # The run is what that release recorded for an invoice pending approval, command for command.
        assert commanded(before) == commanded(recorded)

        # The current code takes over.
        await runner.start_worker()
        r = await approver.post(f"/api/v1/invoices/{inv['id']}/approve", json={"comment": "after upgrade"})
        assert r.status_code == 200, r.text
        issued = await stack.wait_status(inv["id"], "submitted", within=60)
        assert issued["status"] == "submitted" and issued["number"], issued
        pay = {
            "customer_id": stack.customers["initech"],
            "amount": issued["total"],
            "currency": "EUR",
            "received_on": "2026-11-20",
            "reference": "BANK-UPGRADE",
            "allocations": [{"invoice_id": inv["id"], "amount": issued["total"]}],
        }
        r = await cashier.post("/api/v1/payments", json=pay)
        assert r.status_code == 201, r.text
        assert (await stack.wait_status(inv["id"], "paid"))["status"] == "paid"

        with reading(stack.store) as session:
            entries = session.exec(
                select(LedgerEntry).where(LedgerEntry.object_id == inv["id"]).order_by(col(LedgerEntry.seq))
            ).all()
            deliveries = session.exec(select(InvoiceDelivery)).all()
        assert [e.event for e in entries] == [
            "create",
            "submit",
            "approve",
            "deliver",
            "record_final_payment",
        ]
        assert [e.business_key for e in entries] == [f"{inv['workflow_id']}#{n}" for n in range(1, 6)]
        assert [d.invoice_id for d in deliveries] == [inv["id"]]
        assert Counter(m["To"] for m in stack.mails()) == Counter({"ap@initech.example": 1})

        history = await handle.fetch_history()
        # The run keeps the shape it started with, after the upgrade too: the earlier release's delivery
        # in three steps runs on the current worker (its activities are still registered).
        delivery = activities_of(history)[2:]
        if release == "before-2026-11-23":
            assert delivery[:1] == ["plan_delivery"] and delivery.count("deliver_invoice") == 1, delivery
            assert "submit_invoice" not in activities_of(history)
        else:
            assert "plan_delivery" not in delivery and delivery.count("deliver_invoice") == 1, delivery
        markers = [e.marker_recorded_event_attributes.marker_name for e in history.events]
        assert "core_patch" not in markers
        await stack.assert_replays(inv["workflow_id"])
