"""Record the golden histories: drive each main path through the real API and worker on a Temporal dev
server, then export each workflow's history as JSON (the format of `temporal workflow show -o json`).

    .venv/bin/python -m tests.workflows.histories.record --tag v4            # every scenario
    .venv/bin/python -m tests.workflows.histories.record --tag v4 --only checkpoint

Files land in tests/workflows/histories/<tag>/<scenario>.json; `test_replay.py` replays every
file found there against the current code. The script drives the product through HTTP only, with the
fixtures of `tests.conftest`: the `v1` histories were recorded by its first version copied into a
checkout of commit 58bce71, the shape before submission and delivery became one activity each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.db import migrate, writing
from activities.directory import add_user, grant
from tests.api.test_portal_lifecycle import until
from tests.conftest import (
    BIN,
    PASSWORD,
    PASSWORD_HASH,
    ROOT,
    Stack,
    invoice_body,
    portal_simulator,
    running_stack,
)
from workflows.invoice import SEARCH_ATTRIBUTES

HERE = Path(__file__).resolve().parent

Scenario = Callable[["Recording"], Awaitable[None]]


class Recording:
    """One scenario's stack, and the histories it keeps."""

    def __init__(self, stack: Stack, portal_sim: str, out: Path, name: str) -> None:
        self.stack, self.portal_sim, self.out, self.name = stack, portal_sim, out, name
        self.written: list[Path] = []

    async def events(self, reader: httpx.AsyncClient, invoice_id: str) -> list[str]:
        return [h["event"] for h in (await reader.get(f"/api/v1/invoices/{invoice_id}/history")).json()]

    async def save(self, workflow_id: str, suffix: str = "") -> None:
        """Write the workflow's history as it stands now (a running workflow's too: mid-flow histories
        are what an upgrade meets in a user's data directory)."""
        history = await self.stack.temporal.get_workflow_handle(workflow_id).fetch_history()
        path = self.out / f"{self.name}{suffix}.json"
        path.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
        self.written.append(path)

    async def call(self, client: httpx.AsyncClient, method: str, url: str, **kw: Any) -> dict[str, Any]:
        r = await client.request(method, url, **kw)
        if r.status_code >= 300:
            raise AssertionError(f"{self.name}: {method} {url} -> {r.status_code} {r.text}")
        body: dict[str, Any] = r.json()
        return body


# Events that say what the workflow commanded (workflow tasks and activity starts come from the server).
COMMANDED = {
    "EVENT_TYPE_MARKER_RECORDED",
    "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED",
    "EVENT_TYPE_TIMER_STARTED",
    "EVENT_TYPE_TIMER_CANCELED",
    "EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES",
    "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED",
    "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED",
}


def commanded(events: list[dict[str, Any]]) -> list[str]:
    """What a history says the workflow commanded, in order: the sequence a replay must reproduce."""
    out = []
    for e in events:
        if e["eventType"] not in COMMANDED:
            continue
        name = e["eventType"].removeprefix("EVENT_TYPE_")
        scheduled = e.get("activityTaskScheduledEventAttributes")
        if scheduled:
            name += ":" + scheduled["activityType"]["name"]
        marker = e.get("markerRecordedEventAttributes")
        if marker:
            name += ":" + marker["markerName"]
        out.append(name)
    return out


def pay(customer: str, invoice: dict[str, Any], amount: str, reference: str) -> dict[str, Any]:
    return {
        "customer_id": customer,
        "amount": amount,
        "currency": invoice["currency"],
        "received_on": "2026-11-20",
        "reference": reference,
        "allocations": [{"invoice_id": invoice["id"], "amount": amount}],
    }


async def mail_to_paid(rec: Recording) -> None:
    """Created by the ERP, submitted, approved (one tier), mailed, paid in two parts."""
    s = rec.stack
    erp, preparer, approver, cashier = await s.clients("erp", "preparer", "approver", "cashier")
    inv = await rec.call(erp, "POST", "/api/v1/invoices", json=invoice_body(s.customers["initech"]))
    await rec.call(preparer, "POST", f"/api/v1/invoices/{inv['id']}/submit")
    await rec.call(approver, "POST", f"/api/v1/invoices/{inv['id']}/approve", json={"comment": "ok"})
    issued = await s.wait_status(inv["id"], "submitted", within=60)
    assert issued["status"] == "submitted", issued
    customer = s.customers["initech"]
    await rec.call(cashier, "POST", "/api/v1/payments", json=pay(customer, inv, "1000.00", "BANK-1"))
    await rec.call(cashier, "POST", "/api/v1/payments", json=pay(customer, inv, "872.66", "BANK-2"))
    assert (await s.wait_status(inv["id"], "paid"))["status"] == "paid"
    await rec.save(inv["workflow_id"])


async def tiers_reassign_sla(rec: Recording) -> None:
    """Two tiers (ar_approver, then finance_manager): tier 1 approved, tier 2 waits past its reminder and
    its escalation, the supervisor reassigns it to a named approver, who approves; mailed, paid."""
    s = rec.stack
    with writing(s.store) as session:
        for name in ("finance", "finance2"):
            add_user(session, name, PASSWORD, "test", password_hash=PASSWORD_HASH)
            grant(session, name, "finance_manager", "ACME", "test")
    erp, preparer, approver, supervisor, finance2, cashier = await s.clients(
        "erp", "preparer", "approver", "supervisor", "finance2", "cashier"
    )
    body = invoice_body(
        s.customers["initech"],
        lines=[
            {"description": "Line commissioning", "quantity": "1", "unit_price": "24000.00", "tax_rate": "20"}
        ],
    )
    inv = await rec.call(erp, "POST", "/api/v1/invoices", json=body)
    await rec.call(preparer, "POST", f"/api/v1/invoices/{inv['id']}/submit")
    await rec.call(approver, "POST", f"/api/v1/invoices/{inv['id']}/approve", json={"comment": "tier 1"})

    async def escalated() -> bool:
        return "escalate_approval" in await rec.events(supervisor, inv["id"])

    await until(escalated, "the reminder and the escalation of tier 2")
    await rec.call(
        supervisor,
        "POST",
        f"/api/v1/invoices/{inv['id']}/reassign",
        json={"tier": 2, "assignee": "finance2", "reason": "finance is on leave"},
    )
    await rec.call(finance2, "POST", f"/api/v1/invoices/{inv['id']}/approve", json={"comment": "tier 2"})
    assert (await s.wait_status(inv["id"], "submitted", within=60))["status"] == "submitted"
    total = (await supervisor.get(f"/api/v1/invoices/{inv['id']}")).json()["total"]
    await rec.call(
        cashier, "POST", "/api/v1/payments", json=pay(s.customers["initech"], inv, total, "BANK-T")
    )
    assert (await s.wait_status(inv["id"], "paid"))["status"] == "paid"
    events = await rec.events(supervisor, inv["id"])
    assert {"remind_approvers", "escalate_approval", "reassign_approval", "approve_tier"} <= set(events), (
        events
    )
    await rec.save(inv["workflow_id"])


async def reject_edit_void(rec: Recording) -> None:
    """Rejected with a reason, edited, submitted again, approved, then voided while it waits for its
    issue date (the release timer cancelled)."""
    s = rec.stack
    erp, preparer, approver = await s.clients("erp", "preparer", "approver")
    body = invoice_body(s.customers["initech"], issue_date="2027-06-30")
    inv = await rec.call(erp, "POST", "/api/v1/invoices", json=body)
    iid = inv["id"]
    await rec.call(preparer, "POST", f"/api/v1/invoices/{iid}/submit")
    await rec.call(approver, "POST", f"/api/v1/invoices/{iid}/reject", json={"reason": "wrong PO"})
    await rec.call(preparer, "PATCH", f"/api/v1/invoices/{iid}", json={"po_number": "PO-4712"})
    await rec.call(preparer, "POST", f"/api/v1/invoices/{iid}/submit")
    await rec.call(approver, "POST", f"/api/v1/invoices/{iid}/approve", json={})
    await rec.call(preparer, "POST", f"/api/v1/invoices/{iid}/void", json={"reason": "order cancelled"})
    assert (await s.wait_status(iid, "void"))["status"] == "void"
    await rec.save(inv["workflow_id"])


async def pending_approval(rec: Recording) -> None:
    """Mid-flow: submitted, waiting for its approver (the SLA timer running). An upgrade meets it so."""
    s = rec.stack
    erp, preparer = await s.clients("erp", "preparer")
    inv = await rec.call(erp, "POST", "/api/v1/invoices", json=invoice_body(s.customers["initech"]))
    await rec.call(preparer, "POST", f"/api/v1/invoices/{inv['id']}/submit")
    await rec.save(inv["workflow_id"])


async def awaiting_issue_date(rec: Recording) -> None:
    """Mid-flow: approved, waiting on the release timer for its issue date."""
    s = rec.stack
    erp, preparer, approver = await s.clients("erp", "preparer", "approver")
    inv = await rec.call(
        erp, "POST", "/api/v1/invoices", json=invoice_body(s.customers["initech"], issue_date="2027-06-30")
    )
    await rec.call(preparer, "POST", f"/api/v1/invoices/{inv['id']}/submit")
    await rec.call(approver, "POST", f"/api/v1/invoices/{inv['id']}/approve", json={})
    await rec.save(inv["workflow_id"])


async def checkpoint(rec: Recording) -> None:
    """The ledger checkpoint workflow, on demand (the daily schedule runs the same one)."""
    s = rec.stack
    erp, compliance = await s.clients("erp", "compliance")
    await rec.call(erp, "POST", "/api/v1/invoices", json=invoice_body(s.customers["initech"]))
    r = await compliance.post("/api/v1/evidence/checkpoints", json={"legal_entity": "ACME"})
    assert r.status_code == 201, r.text
    await rec.save(await only_workflow(s.temporal, "LedgerCheckpointWorkflow", s.settings.task_queue))


async def portal_reject_fix_resubmit(rec: Recording) -> None:
    """Through the Coupa-style portal of the simulator: pass 1 refused (price), fixed, approved again,
    pass 2 received, in process, accepted (statuses pulled by the poller workflow), paid. Also keeps one
    poller run that routed statuses."""
    from tests.api.test_portal_lifecycle import initech

    s = rec.stack
    sim = rec.portal_sim
    erp, preparer, approver, cashier = await s.clients("erp", "preparer", "approver", "cashier")
    customer = (
        await rec.call(erp, "POST", "/api/v1/customers", json=initech("demo-coupa", po_required=True))
    )["id"]
    body = {
        "external_id": f"ERP-PORTAL-{uuid.uuid4().hex[:8]}",
        "customer_id": customer,
        "currency": "EUR",
        "issue_date": "2026-11-02",
        "po_number": "PO-4711",
        "lines": [{"description": "Consulting", "quantity": "10", "unit_price": "130.00", "tax_rate": "19"}],
    }
    inv = await rec.call(erp, "POST", "/api/v1/invoices", json=body)
    iid = inv["id"]
    await rec.call(preparer, "POST", f"/api/v1/invoices/{iid}/submit")
    await rec.call(approver, "POST", f"/api/v1/invoices/{iid}/approve", json={})
    assert (await s.wait_status(iid, "portal_rejected", within=60))["status"] == "portal_rejected"
    await rec.call(preparer, "POST", f"/api/v1/invoices/{iid}/fix", json={"comment": "price as on PO-4711"})
    lines = [{"description": "Consulting", "quantity": "10", "unit_price": "125.00", "tax_rate": "19"}]
    await rec.call(preparer, "PATCH", f"/api/v1/invoices/{iid}", json={"lines": lines})
    await rec.call(preparer, "POST", f"/api/v1/invoices/{iid}/submit")
    await rec.call(approver, "POST", f"/api/v1/invoices/{iid}/approve", json={})
    assert (await s.wait_status(iid, "submitted", within=60))["status"] == "submitted"
    from workflows.portal_poll import PortalPollWorkflow

    async with httpx.AsyncClient(base_url=sim) as admin:
        await admin.post("/_sim/advance", json={"seconds": 36})
        routed_run = ""

        async def accepted() -> bool:
            nonlocal routed_run
            await admin.post("/_sim/advance", json={"seconds": 1})
            run_id = f"portal-poll/record/{uuid.uuid4().hex[:8]}"
            result = await s.temporal.execute_workflow(
                PortalPollWorkflow.run, "demo-coupa", id=run_id, task_queue=s.settings.task_queue
            )
            if result.routed and not routed_run:
                routed_run = run_id
            status: str = (await cashier.get(f"/api/v1/invoices/{iid}")).json()["status"]
            return status == "accepted"

        await until(accepted, "the acceptance through the portal")
    total = (await cashier.get(f"/api/v1/invoices/{iid}")).json()["total"]
    await rec.call(cashier, "POST", "/api/v1/payments", json=pay(customer, inv, total, "BANK-P"))
    assert (await s.wait_status(iid, "paid"))["status"] == "paid"
    await rec.save(inv["workflow_id"])
    rec.name = "portal_poll"
    await rec.save(routed_run)


async def tower_actions(rec: Recording) -> None:
    """The control tower's actions on one invoice (POST /api/v1/workflows/stuck/actions): a draft reminded
    to its preparers and escalated; once submitted, its approvers reminded, the approval escalated and the
    tier reassigned; approved by the assignee, mailed, paid."""
    s = rec.stack
    erp, preparer, supervisor, approver2, cashier = await s.clients(
        "erp", "preparer", "supervisor", "approver2", "cashier"
    )
    inv = await rec.call(erp, "POST", "/api/v1/invoices", json=invoice_body(s.customers["initech"]))
    iid = inv["id"]

    async def tower(action: str, **extra: Any) -> None:
        body = {"action": action, "invoice_ids": [iid], "reason": f"tower {action}", **extra}
        result = await rec.call(supervisor, "POST", "/api/v1/workflows/stuck/actions", json=body)
        assert result["applied"] == 1, result

    await tower("remind")
    await tower("escalate")
    await rec.call(preparer, "POST", f"/api/v1/invoices/{iid}/submit")
    await tower("remind")
    await tower("escalate")
    await tower("reassign", assignee="approver2")
    await rec.call(approver2, "POST", f"/api/v1/invoices/{iid}/approve", json={"comment": "ok"})
    assert (await s.wait_status(iid, "submitted", within=60))["status"] == "submitted"
    await rec.call(
        cashier, "POST", "/api/v1/payments", json=pay(s.customers["initech"], inv, "1872.66", "BANK-W")
    )
    assert (await s.wait_status(iid, "paid"))["status"] == "paid"
    events = await rec.events(supervisor, iid)
    assert ["remind", "escalate"] == [e for e in events if e in ("remind", "escalate")], events
    assert {"remind_approvers", "escalate_approval", "reassign_approval"} <= set(events), events
    await rec.save(inv["workflow_id"])


async def dispute_credit_memo(rec: Recording) -> None:
    """A short payment's deduction opens a case (the invoice disputed for it); the collector resolves it by
    a credit memo, an approver approves it, the credit note is issued and applied (the invoice credited in
    full); the case is closed with an internal root cause, which starts the CAPA. Saves the four workflows:
    the invoice (suffix none), the case, the credit memo and the CAPA (still waiting for its actions)."""
    s = rec.stack
    erp, preparer, approver, cashier, collector = await s.clients(
        "erp", "preparer", "approver", "cashier", "collector"
    )
    inv = await rec.call(erp, "POST", "/api/v1/invoices", json=invoice_body(s.customers["initech"]))
    await rec.call(preparer, "POST", f"/api/v1/invoices/{inv['id']}/submit")
    await rec.call(approver, "POST", f"/api/v1/invoices/{inv['id']}/approve", json={"comment": "ok"})
    assert (await s.wait_status(inv["id"], "submitted", within=60))["status"] == "submitted"
    short = pay(s.customers["initech"], inv, "1800.00", "BANK-D")
    short["allocations"][0]["deduction"] = {"amount": "72.66", "reason_code": "01"}
    await rec.call(cashier, "POST", "/api/v1/payments", json=short)
    case = (await rec.call(collector, "GET", "/api/v1/disputes"))["items"][0]
    url = f"/api/v1/disputes/{case['id']}"
    resolving = await rec.call(
        collector, "POST", f"{url}/resolve", json={"kind": "credit_memo", "reason": "ok"}
    )
    memo_id = resolving["documents"][0]["document_id"]
    memo_url = f"/api/v1/credit-memos/{memo_id}"

    async def memo_status(status: str) -> dict[str, Any]:
        for _ in range(300):
            memo = (await approver.get(memo_url)).json()
            if memo.get("status") == status:
                return memo
            await asyncio.sleep(0.1)
        raise AssertionError(f"credit memo never {status}: {memo}")

    await memo_status("pending_approval")
    await rec.call(approver, "POST", f"{memo_url}/approve", json={"comment": "agreed"})
    memo = await memo_status("applied")
    assert (await s.wait_status(inv["id"], "credited"))["status"] == "credited"
    for _ in range(300):
        if (await rec.call(collector, "GET", url))["status"] == "resolved":
            break
        await asyncio.sleep(0.1)
    closed = await rec.call(
        collector,
        "POST",
        f"{url}/close",
        json={
            "root_cause": "PRC",
            "validity": "valid",
            "corrective": {"owner": "collector", "due": "2026-12-31", "description": "credit note issued"},
            "preventive": {"owner": "supervisor", "due": "2027-01-31", "description": "price list synced"},
        },
    )
    assert closed["status"] == "closed", closed
    for _ in range(300):
        if (await collector.get("/api/v1/capa")).json()["total"]:
            break
        await asyncio.sleep(0.1)
    await rec.save(inv["workflow_id"])
    await rec.save(case["workflow_id"], "-case")
    await rec.save(memo["workflow_id"], "-credit_memo")
    await rec.save(f"capa/ACME/{case['case_number']}", "-capa")


async def only_workflow(client: Client, workflow_type: str, task_queue: str) -> str:
    ids = [
        w.id
        async for w in client.list_workflows(
            f"WorkflowType = '{workflow_type}' AND TaskQueue = '{task_queue}'"
        )
    ]
    assert len(ids) == 1, ids
    return ids[0]


SCENARIOS: dict[str, Scenario] = {
    "mail_to_paid": mail_to_paid,
    "tiers_reassign_sla": tiers_reassign_sla,
    "reject_edit_void": reject_edit_void,
    "pending_approval": pending_approval,
    "awaiting_issue_date": awaiting_issue_date,
    "checkpoint": checkpoint,
    "portal_reject_fix_resubmit": portal_reject_fix_resubmit,
    "tower_actions": tower_actions,
    "dispute_credit_memo": dispute_credit_memo,
}

# What the SLA scenario needs: a reminder and an escalation within seconds, not days.
SCENARIO_ENV: dict[str, dict[str, str]] = {
    "tiers_reassign_sla": {
        "CASHCYCLE_APPROVAL_REMINDER_SECONDS": "2",
        "CASHCYCLE_APPROVAL_ESCALATION_SECONDS": "4",
    },
}


async def record(name: str, env: WorkflowEnvironment, out: Path) -> list[Path]:
    saved = {k: os.environ.get(k) for k in SCENARIO_ENV.get(name, {})}
    os.environ.update(SCENARIO_ENV.get(name, {}))
    try:
        with tempfile.TemporaryDirectory() as tmp_dir:
            tmp = Path(tmp_dir)
            db = f"sqlite:///{tmp / 'store.db'}"
            migrate(db)
            with portal_simulator(tmp) as sim:
                runner = running_stack(db, env, tmp, with_worker=False)
                async with runner as stack:
                    from tests.api.test_portal_lifecycle import portals_file, seller_master_data

                    stack.settings.portals_file = str(portals_file(tmp, sim))
                    seller_master_data(stack.store)
                    await runner.start_worker()
                    rec = Recording(stack, sim, out, name)
                    await SCENARIOS[name](rec)
                    return rec.written
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tag", required=True, help="the folder under tests/workflows/histories (v1, v2...)")
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), help="these scenarios only")
    args = parser.parse_args()
    out = HERE / args.tag
    out.mkdir(parents=True, exist_ok=True)
    try:  # the production data converter, where the checkout has one
        from activities.converter import DATA_CONVERTER as converter
    except ImportError:
        from temporalio.converter import DataConverter

        converter = DataConverter.default
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=converter,
    )
    try:
        for name in args.only or list(SCENARIOS):
            for path in await record(name, env, out):
                print(path.relative_to(ROOT))
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
