"""Approval controls through HTTP with the worker running: tiers from the matrix, distinct people in
order, segregation of duties, delegation, reassignment, the inbox, and refusals that change nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select, text
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from activities.db import writing
from activities.directory import add_user, grant
from activities.models import Delegation, Invoice, LedgerEntry
from tests.conftest import PASSWORD, PASSWORD_HASH, Stack, acme_today, invoice_body
from workflows.invoice import InvoiceWorkflow
from workflows.types import Actor, ApproveCommand

EXTRA_CAST = {
    "manager": ["finance_manager"],
    "manager2": ["finance_manager"],
    "dual": ["ar_approver", "finance_manager"],  # may approve tier 1 or 2, never both
    "clerk": ["ar_preparer", "ar_approver"],  # prepares some invoices, approves others'
    "globex_reader": [],
}


def add_cast(stack: Stack) -> None:
    with writing(stack.store) as s:
        for username, roles in EXTRA_CAST.items():
            add_user(s, username, PASSWORD, "test", password_hash=PASSWORD_HASH)
            for role in roles:
                grant(s, username, role, "ACME", "test")
        grant(s, "globex_reader", "ar_approver", "GLOBEX", "test")
        grant(s, "globex_reader", "collector", "ACME", "test")


def amount_body(customer: str, unit_price: str, **over: Any) -> dict[str, Any]:
    return invoice_body(
        customer,
        lines=[
            {
                "description": "Implementation project",
                "quantity": "1",
                "unit_price": unit_price,
                "tax_rate": "0",
            }
        ],
        **over,
    )


async def pending(stack: Stack, unit_price: str, creator: str = "erp", submitter: str = "preparer") -> str:
    """An invoice of `unit_price` EUR (no tax), created and submitted, waiting for tier 1."""
    c_creator, c_submitter = await stack.clients(creator, submitter)
    r = await c_creator.post("/api/v1/invoices", json=amount_body(stack.customers["initech"], unit_price))
    assert r.status_code == 201, r.text
    invoice_id: str = r.json()["id"]
    r = await c_submitter.post(f"/api/v1/invoices/{invoice_id}/submit")
    assert r.status_code == 200, r.text
    return invoice_id


def counts(stack: Stack) -> tuple[int, int, str]:
    with stack.store.read.connect() as conn:
        entries = conn.execute(select(func.count()).select_from(LedgerEntry)).scalar_one()
        head = conn.execute(text("SELECT entry_hash FROM ledger_entry ORDER BY id DESC LIMIT 1")).scalar_one()
        rows = conn.execute(select(Invoice.approvals_json, Invoice.status, Invoice.approval_json)).all()
    return int(entries), str(head), json.dumps([list(r) for r in rows])


async def refused(
    client: httpx.AsyncClient, stack: Stack, invoice_id: str, status: int, code: str, **body: Any
) -> dict[str, Any]:
    """The approval is refused with `status` and `code`, and nothing changes in the store or ledger."""
    before = counts(stack)
    r = await client.post(f"/api/v1/invoices/{invoice_id}/approve", json=body or None)
    assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
    assert counts(stack) == before
    error: dict[str, Any] = r.json()["error"]
    return error


async def test_tiers_follow_the_matrix_and_each_is_approved_by_a_different_person(stack: Stack) -> None:
    add_cast(stack)
    approver, manager, controller, supervisor = await stack.clients(
        "approver", "manager", "controller", "supervisor"
    )
    small = await pending(stack, "8000.00")
    medium = await pending(stack, "40000.00")
    large = await pending(stack, "250000.00")

    r = await supervisor.get(f"/api/v1/invoices/{medium}")
    chain = r.json()["approval"]
    assert [(s["tier"], s["role"], s["status"]) for s in chain["steps"]] == [
        (1, "ar_approver", "waiting"),
        (2, "finance_manager", "later"),
    ]
    assert chain["matrix_version"].startswith("2026.1+") and chain["amount_in_entity_currency"] == "40000.00"

    r = await approver.post(
        f"/api/v1/invoices/{small}/approve", json={"comment": "checked against the order"}
    )
    assert r.json()["status"] == "approved"
    r = await approver.post(f"/api/v1/invoices/{medium}/approve", json={"tier": 1})
    assert r.json()["status"] == "pending_approval"
    r = await manager.post(f"/api/v1/invoices/{medium}/approve", json={"tier": 2})
    assert r.status_code == 200 and r.json()["status"] == "approved"
    steps = r.json()["approval"]["steps"]
    assert [(s["approved_by"], s["status"]) for s in steps] == [
        ("approver", "approved"),
        ("manager", "approved"),
    ]

    for who in ("approver", "manager"):
        client = await stack.client(who)
        r = await client.post(f"/api/v1/invoices/{large}/approve")
        assert r.status_code == 200, r.text
    r = await controller.post(f"/api/v1/invoices/{large}/approve")
    assert r.json()["status"] == "approved"
    history = (await controller.get(f"/api/v1/invoices/{large}/history")).json()
    approvals = [h for h in history if h["event"] in ("approve_tier", "approve")]
    assert [h["actor"] for h in approvals] == ["approver", "manager", "controller"]
    assert "finance_manager" in approvals[1]["actor_roles"] and approvals[1]["rule"].startswith("p, ")


async def test_segregation_of_duties_refusals_change_nothing(stack: Stack) -> None:
    add_cast(stack)
    clerk, dual, manager, globex_reader = await stack.clients("clerk", "dual", "manager", "globex_reader")
    # Self-approval: the clerk prepared (created and submitted) it.
    own = await pending(stack, "500.00", creator="clerk", submitter="clerk")
    error = await refused(clerk, stack, own, 403, "segregation_of_duties")
    assert "clerk" in error["message"]

    two_tier = await pending(stack, "40000.00")
    # Out of tier order: a finance manager cannot take tier 2 while tier 1 waits.
    await refused(manager, stack, two_tier, 409, "tier_out_of_order", tier=2)
    await refused(manager, stack, two_tier, 403, "no_authority")
    # Double approval: the same person on both tiers.
    r = await dual.post(f"/api/v1/invoices/{two_tier}/approve", json={"tier": 1})
    assert r.status_code == 200
    error = await refused(dual, stack, two_tier, 403, "segregation_of_duties", tier=2)
    assert error["details"]["rule"] == "distinct_approver_per_tier"
    # A role without authority in this legal entity (an approver in GLOBEX who only reads in ACME).
    error = await refused(globex_reader, stack, two_tier, 403, "forbidden")
    assert error["details"]["action"] == "invoice:approve"

    # Approval by an editor: dual edits a draft, the preparer submits, dual may not approve.
    erp, preparer = await stack.clients("erp", "preparer")
    r = await erp.post("/api/v1/invoices", json=amount_body(stack.customers["initech"], "900.00"))
    edited = r.json()["id"]
    with writing(stack.store) as s:
        grant(s, "dual", "ar_preparer", "ACME", "test")
    r = await (await stack.client("dual")).patch(f"/api/v1/invoices/{edited}", json={"po_number": "PO-9"})
    assert r.status_code == 200, r.text
    assert (await preparer.post(f"/api/v1/invoices/{edited}/submit")).status_code == 200
    error = await refused(dual, stack, edited, 403, "segregation_of_duties")
    assert error["details"]["rule"] == "editor_cannot_approve"


async def test_an_edit_after_a_tier_approval_voids_it_and_the_history_says_so(stack: Stack) -> None:
    add_cast(stack)
    approver, preparer = await stack.clients("approver", "preparer")
    invoice_id = await pending(stack, "40000.00")
    assert (await approver.post(f"/api/v1/invoices/{invoice_id}/approve")).status_code == 200
    r = await preparer.patch(f"/api/v1/invoices/{invoice_id}", json={"po_number": "PO-4712"})
    assert (
        r.json()["status"] == "draft" and r.json()["approvals"] == [] and r.json()["approval"]["steps"] == []
    )
    history = (await preparer.get(f"/api/v1/invoices/{invoice_id}/history")).json()
    assert history[-1]["reason"] == "edited; approvals voided: tier 1 by approver"


async def test_two_approvers_at_the_same_moment_one_counts_the_other_gets_409(stack: Stack) -> None:
    approver, approver2 = await stack.clients("approver", "approver2")
    invoice_id = await pending(stack, "1200.00")
    first, second = await asyncio.gather(
        approver.post(f"/api/v1/invoices/{invoice_id}/approve", json={"tier": 1}),
        approver2.post(f"/api/v1/invoices/{invoice_id}/approve", json={"tier": 1}),
    )
    assert sorted([first.status_code, second.status_code]) == [200, 409]
    loser = second if second.status_code == 409 else first
    assert loser.json()["error"]["code"] == "tier_already_approved"
    history = (await approver.get(f"/api/v1/invoices/{invoice_id}/history")).json()
    assert [h["event"] for h in history].count("approve") == 1


async def test_a_delegate_approves_on_behalf_and_both_names_are_recorded(stack: Stack) -> None:
    add_cast(stack)
    manager, approver2, preparer = await stack.clients("manager", "approver2", "preparer")
    today = acme_today()
    r = await manager.post(
        "/api/v1/delegations",
        json={
            "delegate": "approver2",
            "role": "finance_manager",
            "starts_on": today.isoformat(),
            "ends_on": (today + timedelta(days=14)).isoformat(),
            "reason": "annual leave",
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["in_force"] is True
    invoice_id = await pending(stack, "40000.00")
    approver = await stack.client("approver")
    assert (await approver.post(f"/api/v1/invoices/{invoice_id}/approve")).status_code == 200

    inbox = (await approver2.get("/api/v1/approvals/inbox")).json()
    mine = [i for i in inbox if i["invoice_id"] == invoice_id]
    assert mine and mine[0]["on_behalf_of"] == "manager" and mine[0]["tier"] == 2
    r = await approver2.post(f"/api/v1/invoices/{invoice_id}/approve")
    assert r.status_code == 200, r.text
    step = r.json()["approval"]["steps"][1]
    assert (step["approved_by"], step["on_behalf_of"]) == ("approver2", "manager")
    history = (await approver2.get(f"/api/v1/invoices/{invoice_id}/history")).json()
    assert "delegated:finance_manager:manager" in history[-1]["actor_roles"]
    assert "on behalf of manager" in history[-1]["reason"]
    with stack.store.read.connect() as conn:
        events = [
            r[0]
            for r in conn.execute(select(LedgerEntry.event).where(LedgerEntry.object_type == "delegation"))
        ]
    assert events == ["delegation_granted"]

    # The preparer, even with a delegation, cannot approve what they submitted.
    r = await approver.post(
        "/api/v1/delegations",
        json={
            "delegate": "preparer",
            "role": "ar_approver",
            "starts_on": today.isoformat(),
            "ends_on": today.isoformat(),
        },
    )
    assert r.status_code == 201
    own = await pending(stack, "700.00")
    error = await refused(preparer, stack, own, 403, "segregation_of_duties")
    assert error["details"]["rule"] == "submitter_cannot_approve"


async def test_an_expired_delegation_gives_no_authority(stack: Stack) -> None:
    add_cast(stack)
    with writing(stack.store) as s:
        s.add(
            Delegation(
                id=str(uuid.uuid4()),
                legal_entity="ACME",
                delegator="manager",
                delegate="approver2",
                role="finance_manager",
                starts_on=acme_today() - timedelta(days=20),
                ends_on=acme_today() - timedelta(days=1),
                reason="last month's leave",
            )
        )
    approver, approver2 = await stack.clients("approver", "approver2")
    invoice_id = await pending(stack, "40000.00")
    assert (await approver.post(f"/api/v1/invoices/{invoice_id}/approve")).status_code == 200
    # Tier 2 needs finance_manager: approver2's own roles do not have it and the delegation is over.
    error = await refused(approver2, stack, invoice_id, 403, "no_authority")
    assert "finance_manager" in error["message"]


async def test_delegations_refuse_bad_requests(stack: Stack) -> None:
    add_cast(stack)
    manager, preparer = await stack.clients("manager", "preparer")
    today = acme_today()
    base = {
        "delegate": "approver2",
        "role": "finance_manager",
        "starts_on": today.isoformat(),
        "ends_on": today.isoformat(),
    }
    for change, field in [
        ({"delegate": "manager"}, "delegate"),
        ({"role": "controller"}, "role"),
        ({"ends_on": (today - timedelta(days=3)).isoformat()}, "ends_on"),
        ({"delegate": "nobody"}, "delegate"),
    ]:
        r = await manager.post("/api/v1/delegations", json={**base, **change})
        assert r.status_code == 422 and r.json()["error"]["details"]["field"] == field, r.text
    r = await preparer.post("/api/v1/delegations", json={**base, "role": "ar_preparer"})
    assert r.status_code == 403


async def test_the_inbox_lists_what_the_caller_may_approve_now(stack: Stack) -> None:
    add_cast(stack)
    approver, manager, preparer = await stack.clients("approver", "manager", "preparer")
    small = await pending(stack, "300.00")
    medium = await pending(stack, "40000.00")
    ids = lambda items: {i["invoice_id"] for i in items}  # noqa: E731
    assert {small, medium} <= ids((await approver.get("/api/v1/approvals/inbox")).json())
    assert not {small, medium} & ids((await manager.get("/api/v1/approvals/inbox")).json())
    assert not {small, medium} & ids((await preparer.get("/api/v1/approvals/inbox")).json())
    r = await approver.post(f"/api/v1/invoices/{medium}/approve")
    assert r.status_code == 200
    assert medium in ids((await manager.get("/api/v1/approvals/inbox")).json())
    assert medium not in ids((await approver.get("/api/v1/approvals/inbox")).json())
    # The invoice says, for the caller, what they can do and why not.
    body = (await preparer.get(f"/api/v1/invoices/{small}")).json()
    reasons = {u["action"]: u["reason"] for u in body["unavailable_actions"]}
    assert "approve" not in body["actions"] and "may not invoice:approve" in reasons["approve"]
    body = (await approver.get(f"/api/v1/invoices/{medium}")).json()
    reasons = {u["action"]: u["reason"] for u in body["unavailable_actions"]}
    assert "approve" not in body["actions"] and "already approved" in reasons["approve"]
    assert "approve" in (await approver.get(f"/api/v1/invoices/{small}")).json()["actions"]


async def test_a_supervisor_reassigns_a_waiting_tier_to_a_named_approver(stack: Stack) -> None:
    supervisor, approver, approver2 = await stack.clients("supervisor", "approver", "approver2")
    invoice_id = await pending(stack, "900.00")
    r = await approver.post(
        f"/api/v1/invoices/{invoice_id}/reassign", json={"tier": 1, "assignee": "approver2", "reason": "mine"}
    )
    assert r.status_code == 403
    r = await supervisor.post(
        f"/api/v1/invoices/{invoice_id}/reassign", json={"tier": 1, "assignee": "collector", "reason": "x"}
    )
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "assignee"
    r = await supervisor.post(
        f"/api/v1/invoices/{invoice_id}/reassign",
        json={"tier": 1, "assignee": "approver2", "reason": "approver is on leave"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["approval"]["steps"][0]["assigned_to"] == "approver2"
    error = await refused(approver, stack, invoice_id, 403, "segregation_of_duties")
    assert error["details"]["rule"] == "reassigned"
    assert (await approver2.post(f"/api/v1/invoices/{invoice_id}/approve")).status_code == 200


async def test_a_changed_matrix_applies_to_documents_submitted_afterwards(stack: Stack) -> None:
    add_cast(stack)
    approver = await stack.client("approver")
    before = await pending(stack, "8000.00")
    matrix = stack.settings.approval_matrix_file
    text_now = Path(matrix).read_text()  # noqa: ASYNC240 (a small local file, in a test)
    Path(matrix).write_text(  # noqa: ASYNC240
        text_now.replace('version = "2026.1"', 'version = "2026.2"').replace(
            '{ up_to = "10000", role = "ar_approver" }', '{ up_to = "5000", role = "ar_approver" }'
        )
    )
    after = await pending(stack, "8000.00")
    supervisor = await stack.client("supervisor")
    old = (await supervisor.get(f"/api/v1/invoices/{before}")).json()["approval"]
    new = (await supervisor.get(f"/api/v1/invoices/{after}")).json()["approval"]
    assert old["matrix_version"].startswith("2026.1+") and len(old["steps"]) == 1
    assert new["matrix_version"].startswith("2026.2+") and [s["role"] for s in new["steps"]] == [
        "ar_approver",
        "finance_manager",
    ]
    # The invoice in flight keeps its version: one approval completes it.
    assert (await approver.post(f"/api/v1/invoices/{before}/approve")).json()["status"] == "approved"
    history = (await supervisor.get(f"/api/v1/invoices/{after}/history")).json()
    assert "2026.2+" in history[-1]["reason"]


async def test_a_client_talking_to_temporal_directly_is_refused_too(stack: Stack) -> None:
    add_cast(stack)
    invoice_id = await pending(stack, "40000.00", creator="clerk", submitter="clerk")
    with stack.store.read.connect() as conn:
        workflow_id = conn.execute(select(Invoice.workflow_id).where(Invoice.id == invoice_id)).scalar_one()
    handle = stack.temporal.get_workflow_handle(workflow_id)
    before = counts(stack)
    attempts = [
        (ApproveCommand(Actor("clerk", ["ar_approver"]), tier=1), "segregation_of_duties"),
        (ApproveCommand(Actor("manager", ["ar_approver"]), tier=1), "no_authority"),  # claims a role
        (ApproveCommand(Actor("approver", ["ar_approver"]), tier=2), "tier_out_of_order"),
    ]
    for command, code in attempts:
        try:
            await handle.execute_update(InvoiceWorkflow.approve, command)
        except WorkflowUpdateFailedError as exc:
            assert isinstance(exc.cause, ApplicationError) and exc.cause.type == code, exc.cause
        else:
            raise AssertionError(f"{command} was accepted")
    assert counts(stack) == before
