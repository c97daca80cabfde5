"""The control tower through HTTP with the worker running: invoices past their SLA (an SLA file of seconds,
so the clock runs out within the test), a real failing activity (a customer whose mail server refuses),
filters and pagination, who may see it, and actions on several rows with a preview, a result per row,
a ledger entry each and idempotency."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlmodel import select as rows_of
from temporalio.testing import WorkflowEnvironment

from activities.db import reading, writing
from activities.directory import create_customer
from activities.models import CustomerBase, Invoice, LedgerEntry, Notification
from tests.conftest import Stack, invoice_body, running_stack

SLA = """
version = "test-1"

[engine]
retrying_from_attempt = 2
describe_limit = 50

[[rule]]
id = "draft_not_submitted"
label = "draft not sent for approval"
status = "draft"
after = "1 hours"
owner = "preparer"
escalate_to = "finance_manager"

[[rule]]
id = "approval_tier_1"
label = "tier 1 approval overdue"
status = "pending_approval"
tier = 1
from = "tier"
after = "1 seconds"
owner = "approvers"
escalate_to = "controller"

[[rule]]
id = "approved_not_sent"
label = "approved, not sent"
status = "approved"
from = "release"
after = "1 seconds"
owner = "preparer"
escalate_to = "finance_manager"
"""

REFUSING = "refusing.example"


class Tower:
    """A running stack with the test SLA file and a customer whose mail server refuses every mail."""

    def __init__(self, runner: running_stack, stack: Stack) -> None:
        self.runner, self.stack = runner, stack
        with writing(stack.store) as s:
            refused = create_customer(
                s,
                "ACME",
                CustomerBase(name="Refusing Ltd", currency="EUR", email=f"ap@{REFUSING}", contact_name="AP"),
                "test",
                external_ref="refusing",
            )
            self.refusing = refused.id

    def mail_server_refuses(self, refusing: bool) -> None:
        handler = self.runner.mail.handler
        handler.refuse_domains = frozenset({REFUSING} if refusing else set())


@pytest.fixture
async def tower(
    db_url: str, temporal_env: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Tower]:
    sla = tmp_path / "sla.toml"
    sla.write_text(SLA)
    monkeypatch.setenv("CASHCYCLE_SLA_FILE", str(sla))
    monkeypatch.setenv("CASHCYCLE_TEMPORAL_UI_URL", "http://127.0.0.1:8233")
    runner = running_stack(db_url, temporal_env, tmp_path)
    stack = await runner.__aenter__()
    try:
        t = Tower(runner, stack)
        t.mail_server_refuses(True)
        yield t
    finally:
        await runner.__aexit__(None, None, None)


async def pending(stack: Stack, customer: str = "initech", unit_price: str = "125.00") -> str:
    erp, preparer = await stack.clients("erp", "preparer")
    body = invoice_body(stack.customers.get(customer, customer))
    body["lines"][0]["unit_price"] = unit_price
    r = await erp.post("/api/v1/invoices", json=body)
    assert r.status_code == 201, r.text
    invoice_id: str = r.json()["id"]
    r = await preparer.post(f"/api/v1/invoices/{invoice_id}/submit")
    assert r.status_code == 200, r.text
    return invoice_id


async def stuck(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    r = await client.get("/api/v1/workflows/stuck", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def until(check: Any, seconds: float = 30) -> Any:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        found = await check()
        if found or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.3)


def ledger(stack: Stack, invoice_id: str) -> list[LedgerEntry]:
    with reading(stack.store) as s:
        return list(
            s.exec(rows_of(LedgerEntry).where(LedgerEntry.object_id == invoice_id).order_by(LedgerEntry.seq))
        )


def store_snapshot(stack: Stack) -> tuple[int, str]:
    with reading(stack.store) as s:
        entries = s.execute(select(func.count()).select_from(LedgerEntry)).scalar_one()
        rows = s.execute(select(Invoice.id, Invoice.status, Invoice.approval_json).order_by(Invoice.id)).all()
    return int(entries), json.dumps([list(r) for r in rows])


async def test_an_approval_past_its_sla_is_listed_with_its_cause_owner_age_amount_and_link(
    tower: Tower,
) -> None:
    stack = tower.stack
    late = await pending(stack)
    erp = await stack.client("erp")
    r = await erp.post("/api/v1/invoices", json=invoice_body(stack.customers["initech"]))
    fresh_draft = r.json()["id"]  # a draft has an hour: not stuck
    supervisor = await stack.client("supervisor")
    await asyncio.sleep(1.2)
    page = await stuck(supervisor)
    ids = [item["invoice_id"] for item in page["items"]]
    assert late in ids and fresh_draft not in ids
    item = next(i for i in page["items"] if i["invoice_id"] == late)
    assert item["cause"] == {
        "code": "approval_tier_1",
        "kind": "sla",
        "label": "tier 1 approval overdue",
        "detail": item["cause"]["detail"],
    }
    assert "allowed 1 second" in item["cause"]["detail"]
    assert item["owner"]["kind"] == "approvers" and item["owner"]["name"] == "ar_approver"
    assert item["owner"]["people"] == ["approver", "approver2"]
    assert (item["status"], item["tier"], item["tier_role"]) == ("pending_approval", 1, "ar_approver")
    assert (item["amount_due"], item["currency"]) == ("1872.66", "EUR")
    assert item["age_seconds"] >= 1 and item["sla"]["rule"] == "approval_tier_1"
    assert item["temporal_url"].startswith("http://127.0.0.1:8233/namespaces/default/workflows/")
    assert item["engine"]["checked"] and item["engine"]["run_id"] in item["temporal_url"]
    assert sorted(item["actions"]) == ["escalate", "reassign", "remind"]
    assert page["sla"]["version"] == "test-1" and page["engine"]["worker"]["polling"] is True
    assert [g["key"] for g in page["by_cause"]] == ["approval_tier_1"]
    assert page["by_owner"][0] == {
        "key": "approvers:ar_approver",
        "label": "ar_approver",
        "count": 1,
        "amounts": {"EUR": "1872.66"},
    }
    pipeline = (await supervisor.get("/api/v1/workflows/pipeline")).json()["cells"]
    cell = next(c for c in pipeline if c["status"] == "pending_approval")
    assert (cell["legal_entity"], cell["count"], cell["stuck"], cell["amount_due"]) == (
        "ACME",
        1,
        1,
        "1872.66",
    )
    assert next(c for c in pipeline if c["status"] == "draft")["stuck"] == 0


async def test_rows_sort_by_amount_at_stake_times_age_and_filter_and_page(tower: Tower) -> None:
    stack = tower.stack
    small = await pending(stack, unit_price="10.00")
    big = await pending(stack, unit_price="900.00")
    supervisor = await stack.client("supervisor")
    await asyncio.sleep(1.2)
    page = await stuck(supervisor)
    assert [i["invoice_id"] for i in page["items"]] == [big, small]
    assert page["items"][0]["score"] >= page["items"][1]["score"]
    first = await stuck(supervisor, limit=1)
    assert [i["invoice_id"] for i in first["items"]] == [big] and first["next_offset"] == 1
    assert first["total"] == 2
    second = await stuck(supervisor, limit=1, offset=1)
    assert [i["invoice_id"] for i in second["items"]] == [small] and second["next_offset"] is None
    assert (await stuck(supervisor, min_amount="5000"))["total"] == 1  # big: 10,000+ EUR due
    assert (await stuck(supervisor, status="draft"))["total"] == 0
    assert (await stuck(supervisor, cause="approval_tier_1"))["total"] == 2
    assert (await stuck(supervisor, cause="activity_retrying"))["total"] == 0
    assert (await stuck(supervisor, owner="ar_approver"))["total"] == 2
    assert (await stuck(supervisor, owner="nobody"))["total"] == 0
    assert (await stuck(supervisor, legal_entity="ACME"))["total"] == 2
    for bad in ({"limit": 0}, {"limit": 201}, {"offset": -1}, {"status": "lost"}, {"min_amount": "-3"}):
        r = await supervisor.get("/api/v1/workflows/stuck", params=bad)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input", bad
    r = await supervisor.get("/api/v1/workflows/stuck", params={"legal_entity": "GLOBEX"})
    assert r.status_code == 403


async def test_only_roles_with_the_tower_see_it_or_act_on_it(tower: Tower) -> None:
    stack = tower.stack
    invoice_id = await pending(stack)
    before = store_snapshot(stack)
    for username in ("approver", "preparer", "erp", "compliance", "outsider"):
        client = await stack.client(username)
        for path in ("/api/v1/workflows/stuck", "/api/v1/workflows/pipeline", "/api/v1/workflows/sla"):
            r = await client.get(path)
            assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (username, path)
        r = await client.post(
            "/api/v1/workflows/stuck/actions",
            json={"action": "remind", "invoice_ids": [invoice_id], "reason": "nudge"},
        )
        assert r.status_code == 403, (username, r.text)
    assert store_snapshot(stack) == before


async def test_bad_bulk_input_is_refused_and_changes_nothing(tower: Tower) -> None:
    stack = tower.stack
    invoice_id = await pending(stack)
    supervisor = await stack.client("supervisor")
    before = store_snapshot(stack)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"action": "remind", "invoice_ids": [invoice_id], "reason": " "}, "invalid_input"),
        ({"action": "remind", "invoice_ids": [], "reason": "x"}, "invalid_input"),
        ({"action": "remind", "invoice_ids": [invoice_id] * 101, "reason": "x"}, "invalid_input"),
        ({"action": "explode", "invoice_ids": [invoice_id], "reason": "x"}, "invalid_input"),
        ({"action": "reassign", "invoice_ids": [invoice_id], "reason": "x"}, "inconsistent_fields"),
        (
            {"action": "reassign", "invoice_ids": [invoice_id], "reason": "x", "assignee": "ghost"},
            "unknown_reference",
        ),
        ({"action": "remind", "invoice_ids": ["../etc"], "reason": "x"}, "invalid_input"),
    ]
    for body, code in cases:
        r = await supervisor.post("/api/v1/workflows/stuck/actions", json=body)
        assert r.status_code == 422 and r.json()["error"]["code"] == code, (body, r.text)
    assert store_snapshot(stack) == before


async def test_bulk_reassign_previews_then_applies_row_by_row_ledgered_and_idempotent(tower: Tower) -> None:
    stack = tower.stack
    a, b = await pending(stack), await pending(stack)
    erp = await stack.client("erp")
    draft = (await erp.post("/api/v1/invoices", json=invoice_body(stack.customers["initech"]))).json()["id"]
    supervisor = await stack.client("supervisor")
    body = {
        "action": "reassign",
        "invoice_ids": [a, b, draft, "no-such-invoice"],
        "reason": "approver is on leave",
        "assignee": "approver2",
        "dry_run": True,
    }
    before = store_snapshot(stack)
    r = await supervisor.post("/api/v1/workflows/stuck/actions", json=body)
    assert r.status_code == 200, r.text
    preview = r.json()
    assert (preview["will_apply"], preview["skipped"], preview["applied"]) == (2, 2, 0)
    outcomes = {row["invoice_id"]: (row["outcome"], row["code"]) for row in preview["rows"]}
    assert outcomes == {
        a: ("will_apply", ""),
        b: ("will_apply", ""),
        draft: ("skipped", "transition_refused"),
        "no-such-invoice": ("skipped", "not_found"),
    }
    assert store_snapshot(stack) == before, "a preview changes nothing"

    body["dry_run"] = False
    headers = {"Idempotency-Key": "tower-reassign-1"}
    r = await supervisor.post("/api/v1/workflows/stuck/actions", json=body, headers=headers)
    result = r.json()
    assert (result["applied"], result["skipped"], result["failed"]) == (2, 2, 0), result
    for invoice_id in (a, b):
        inv = (await supervisor.get(f"/api/v1/invoices/{invoice_id}")).json()
        assert inv["approval"]["steps"][0]["assigned_to"] == "approver2"
        [entry] = [e for e in ledger(stack, invoice_id) if e.event == "reassign_approval"]
        assert entry.actor == "supervisor" and json.loads(entry.actor_roles) == ["ar_supervisor"]
        assert "approval:reassign" in entry.rule
        assert "approver is on leave" in entry.reason and "[SLA approval_tier_1]" in entry.reason
    # The same request again: every row answers as before, nothing is recorded twice.
    again = (await supervisor.post("/api/v1/workflows/stuck/actions", json=body, headers=headers)).json()
    assert (again["applied"], again["skipped"]) == (2, 2)
    for invoice_id in (a, b):
        assert [e.event for e in ledger(stack, invoice_id)].count("reassign_approval") == 1


async def test_a_segregation_of_duties_conflict_is_skipped_in_the_preview(tower: Tower) -> None:
    stack = tower.stack
    invoice_id = await pending(stack)
    supervisor = await stack.client("supervisor")
    r = await supervisor.post(
        "/api/v1/workflows/stuck/actions",
        json={
            "action": "reassign",
            "invoice_ids": [invoice_id],
            "reason": "cover",
            "assignee": "preparer",
            "dry_run": True,
        },
    )
    [row] = r.json()["rows"]
    assert (row["outcome"], row["code"]) == ("skipped", "assignee_ineligible")


async def test_remind_and_escalate_notify_and_are_ledgered_with_the_supervisor_and_reason(
    tower: Tower,
) -> None:
    stack = tower.stack
    invoice_id = await pending(stack)
    erp = await stack.client("erp")
    draft = (await erp.post("/api/v1/invoices", json=invoice_body(stack.customers["initech"]))).json()["id"]
    supervisor = await stack.client("supervisor")
    r = await supervisor.post(
        "/api/v1/workflows/stuck/actions",
        json={"action": "remind", "invoice_ids": [invoice_id, draft], "reason": "month-end close"},
        headers={"Idempotency-Key": "remind-1"},
    )
    result = r.json()
    assert result["applied"] == 2, result
    [reminded] = [
        e for e in ledger(stack, invoice_id) if e.event == "remind_approvers" and e.actor == "supervisor"
    ]
    assert json.loads(reminded.actor_roles) == ["ar_supervisor"] and "workflow:remind" in reminded.rule
    assert "month-end close" in reminded.reason and "approver" in reminded.reason
    [nudged] = [e for e in ledger(stack, draft) if e.event == "remind"]
    assert nudged.actor == "supervisor" and "preparers" in nudged.reason

    async def inbox_sla() -> list[str]:
        approver = await stack.client("approver")
        inbox = (await approver.get("/api/v1/approvals/inbox")).json()
        return [i["sla"] for i in inbox if i["invoice_id"] == invoice_id]

    assert await inbox_sla() == ["reminded"]  # the approvers' inbox shows the reminder
    assert (await (await stack.client("approver")).get("/api/v1/approvals/inbox?sla=on_time")).json() == []
    r = await supervisor.post(
        "/api/v1/workflows/stuck/actions",
        json={"action": "escalate", "invoice_ids": [invoice_id], "reason": "customer waiting"},
    )
    assert r.json()["applied"] == 1, r.text
    [escalated] = [e for e in ledger(stack, invoice_id) if e.event == "escalate_approval"]
    assert escalated.actor == "supervisor" and "escalated to controller" in escalated.reason
    inv = (await supervisor.get(f"/api/v1/invoices/{invoice_id}")).json()
    assert inv["approval"]["escalated"] is True
    assert await inbox_sla() == ["escalated"]
    with reading(stack.store) as s:
        kinds = {(n.recipient, n.kind) for n in s.exec(rows_of(Notification))}
    assert ("approver", "supervisor_reminder") in kinds and ("controller", "supervisor_escalation") in kinds
    assert ("erp", "supervisor_reminder") in kinds or ("preparer", "supervisor_reminder") in kinds


async def test_a_delivery_the_customers_mail_server_refuses_shows_its_retries_and_is_retried_now(
    tower: Tower,
) -> None:
    """A real failing activity on the dev server: deliver_invoice keeps failing at RCPT (450), Temporal
    retries it; the tower names the activity, its attempt and the failure, and retry now resets it."""
    stack = tower.stack
    invoice_id = await pending(stack, customer=tower.refusing)
    approver, supervisor = await stack.clients("approver", "supervisor")
    r = await approver.post(f"/api/v1/invoices/{invoice_id}/approve")
    assert r.status_code == 200, r.text

    async def retrying() -> dict[str, Any] | None:
        page = await stuck(supervisor, cause="activity_retrying")
        return next((i for i in page["items"] if i["invoice_id"] == invoice_id), None)

    item = await until(retrying, 40)
    assert item is not None, "the failing delivery never showed in the tower"
    activity = item["engine"]["activity"]
    assert activity["activity_type"] == "deliver_invoice" and activity["attempt"] >= 2
    assert "Mailbox temporarily unavailable" in activity["last_failure"]
    assert item["cause"]["label"] == "deliver_invoice keeps failing"
    assert item["status"] == "approved" and item["sla"]["rule"] == "approved_not_sent"
    assert "retry" in item["actions"]
    assert "remind" not in item["actions"]  # approved: nobody to remind; escalation waits for the delivery
    assert any(u["action"] == "escalate" for u in item["unavailable_actions"])

    tower.mail_server_refuses(False)  # the customer fixed their mailbox
    r = await supervisor.post(
        "/api/v1/workflows/stuck/actions",
        json={"action": "retry", "invoice_ids": [invoice_id], "reason": "mailbox fixed"},
        headers={"Idempotency-Key": "retry-1"},
    )
    result = r.json()
    assert result["applied"] == 1, result
    assert "retried deliver_invoice" in result["rows"][0]["message"]
    delivered = await stack.wait_status(invoice_id, "submitted", within=30)
    assert delivered["status"] == "submitted"
    [entry] = [e for e in ledger(stack, invoice_id) if e.event == "retry_activity"]
    assert entry.actor == "supervisor" and "workflow:retry" in entry.rule and entry.reason == "mailbox fixed"
    assert json.loads(entry.payload)["activity_type"] == "deliver_invoice"
    again = (
        await supervisor.post(
            "/api/v1/workflows/stuck/actions",
            json={"action": "retry", "invoice_ids": [invoice_id], "reason": "mailbox fixed"},
            headers={"Idempotency-Key": "retry-1"},
        )
    ).json()
    # Delivered now: nothing left to retry, and the first retry is recorded once.
    assert again["rows"][0]["outcome"] == "skipped" and again["rows"][0]["code"] == "nothing_to_retry"
    assert [e.event for e in ledger(stack, invoice_id)].count("retry_activity") == 1
