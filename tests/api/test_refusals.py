"""Refusals explained, the same everywhere: for a table of users and invoices, the invoice JSON's
`unavailable_actions`, the 403 (or 409) body of the refused command and the invoice page give the same
reason, the same code and the same people who may act instead; and a refused command changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from activities.db import writing
from activities.directory import add_user, grant
from tests.api.test_approvals import amount_body, counts
from tests.conftest import PASSWORD, PASSWORD_HASH, Stack, acme_today
from tests.ui.pages import page_refusal

EXTRA = {
    "manager": ["finance_manager"],
    "manager2": ["finance_manager"],
    "clerk": ["ar_preparer", "ar_approver"],  # prepares some invoices, approves others'
}


@dataclass(frozen=True)
class Case:
    """`user` tries `action` on `invoice`: refused with `code`, a reason containing `says`, and these
    people may act instead."""

    name: str
    user: str
    invoice: str
    action: str
    status: int
    code: str
    says: str
    instead: list[str]


CASES = [
    Case(
        "the preparer on their own invoice",
        "clerk",
        "clerks_own",
        "approve",
        403,
        "segregation_of_duties",
        "clerk prepared this invoice and cannot approve it",
        ["approver", "approver2"],
    ),
    Case(
        "the approver of tier 1 trying tier 2",
        "approver",
        "tier2_waiting",
        "approve",
        403,
        "segregation_of_duties",
        "approver has already approved this invoice; each tier needs a different person",
        ["approver2", "manager", "manager2"],  # approver2 holds manager's finance_manager by delegation
    ),
    Case(
        "a user without the role",
        "collector",
        "tier1_waiting",
        "approve",
        403,
        "forbidden",
        "collector may not invoice:approve in legal entity ACME: no role held there grants invoice:approve",
        ["approver", "approver2", "clerk"],
    ),
    Case(
        "a user without the role, rejecting",
        "collector",
        "tier1_waiting",
        "reject",
        403,
        "forbidden",
        "collector may not invoice:reject in legal entity ACME: no role held there grants invoice:reject",
        ["approver", "approver2", "clerk", "controller", "manager", "manager2"],
    ),
    Case(
        "a delegate whose own earlier approval bars them",
        "approver",
        "tier2_lent_to_approver",
        "approve",
        403,
        "segregation_of_duties",
        "approver has already approved this invoice; each tier needs a different person",
        ["approver2", "manager", "manager2"],
    ),
    Case(
        "a delegate on an invoice their delegator prepared",
        "approver2",
        "prepared_by_manager_lender",
        "approve",
        403,
        "segregation_of_duties",
        "approver2's delegator manager submitted this invoice and cannot approve it",
        ["manager2"],
    ),
]

WRONG_STATUS = "cannot approve an invoice in status submitted"


async def submit(stack: Stack, unit_price: str, creator: str, submitter: str) -> str:
    c_creator, c_submitter = await stack.clients(creator, submitter)
    r = await c_creator.post("/api/v1/invoices", json=amount_body(stack.customers["initech"], unit_price))
    assert r.status_code == 201, r.text
    invoice_id: str = r.json()["id"]
    r = await c_submitter.post(f"/api/v1/invoices/{invoice_id}/submit")
    assert r.status_code == 200, r.text
    return invoice_id


async def setting(stack: Stack) -> dict[str, str]:
    """The cast and the invoices of the table."""
    with writing(stack.store) as s:
        for username, roles in EXTRA.items():
            add_user(s, username, PASSWORD, "test", password_hash=PASSWORD_HASH)
            for role in roles:
                grant(s, username, role, "ACME", "test")
        # A finance manager who also prepares (in another entity's sense: here a submitter) would be a
        # conflict; "manager" submits as an ar_preparer would not, so give the submitter role by a grant
        # that the conflicts file allows.
        grant(s, "manager", "ar_preparer", "ACME", "test")
    manager, approver = await stack.clients("manager", "approver")
    today = acme_today()
    r = await manager.post(
        "/api/v1/delegations",
        json={
            "delegate": "approver2",
            "role": "finance_manager",
            "starts_on": today.isoformat(),
            "ends_on": (today + timedelta(days=7)).isoformat(),
            "reason": "annual leave",
        },
    )
    assert r.status_code == 201, r.text
    r = await manager.post(
        "/api/v1/delegations",
        json={
            "delegate": "approver",
            "role": "finance_manager",
            "starts_on": today.isoformat(),
            "ends_on": (today + timedelta(days=7)).isoformat(),
        },
    )
    assert r.status_code == 201, r.text
    invoices = {
        "clerks_own": await submit(stack, "5000.00", "clerk", "clerk"),
        "tier1_waiting": await submit(stack, "6000.00", "erp", "preparer"),
        "tier2_waiting": await submit(stack, "40000.00", "erp", "preparer"),
        "tier2_lent_to_approver": await submit(stack, "45000.00", "erp", "preparer"),
        "prepared_by_manager_lender": await submit(stack, "50000.00", "erp", "manager"),
        "approved": await submit(stack, "7000.00", "erp", "preparer"),
    }
    for key in ("tier2_waiting", "tier2_lent_to_approver", "approved"):
        r = await approver.post(f"/api/v1/invoices/{invoices[key]}/approve", json={"tier": 1})
        assert r.status_code == 200, r.text
    clerk = await stack.client("clerk")
    r = await clerk.post(
        f"/api/v1/invoices/{invoices['prepared_by_manager_lender']}/approve", json={"tier": 1}
    )
    assert r.status_code == 200, r.text
    return invoices


def unavailable(body: dict[str, Any], action: str) -> dict[str, Any]:
    found = [u for u in body["unavailable_actions"] if u["action"] == action]
    assert len(found) == 1, body["unavailable_actions"]
    assert action not in body["actions"]
    return found[0]


async def command(client: httpx.AsyncClient, invoice_id: str, action: str) -> httpx.Response:
    body = {"reason": "not what was ordered"} if action == "reject" else {"comment": "looks right"}
    return await client.post(f"/api/v1/invoices/{invoice_id}/{action}", json=body)


async def test_refusals_say_the_same_in_the_json_the_error_and_the_page(stack: Stack) -> None:
    invoices = await setting(stack)
    for case in CASES:
        invoice_id = invoices[case.invoice]
        client = await stack.client(case.user)
        listed = unavailable((await client.get(f"/api/v1/invoices/{invoice_id}")).json(), case.action)
        assert case.says in listed["reason"], (case.name, listed)
        assert (listed["code"], listed["who_can_instead"]) == (case.code, case.instead), case.name

        before = counts(stack)
        r = await command(client, invoice_id, case.action)
        assert r.status_code == case.status, (case.name, r.text)
        error = r.json()["error"]
        assert counts(stack) == before, f"{case.name}: a refused command changed something"
        assert (error["code"], error["message"]) == (listed["code"], listed["reason"]), case.name
        assert error["details"]["who_can_instead"] == listed["who_can_instead"], case.name

        shown = await page_refusal(stack, case.user, invoice_id, case.action)
        assert shown.reason == listed["reason"], case.name
        assert shown.instead == listed["who_can_instead"], case.name
        assert shown.disabled, case.name


async def test_an_invoice_in_the_wrong_status_is_refused_alike(stack: Stack) -> None:
    invoices = await setting(stack)
    invoice_id = invoices["approved"]
    approver2 = await stack.client("approver2")
    await stack.wait_status(invoice_id, "submitted")  # approved, then sent at once (issued in the past)
    body = (await approver2.get(f"/api/v1/invoices/{invoice_id}")).json()
    assert body["status"] == "submitted"
    # Not an action of this status: neither offered nor listed as refused.
    assert "approve" not in body["actions"]
    assert "approve" not in [u["action"] for u in body["unavailable_actions"]]
    before = counts(stack)
    r = await command(approver2, invoice_id, "approve")
    assert r.status_code == 409, r.text
    assert (r.json()["error"]["code"], r.json()["error"]["message"]) == ("transition_refused", WRONG_STATUS)
    assert counts(stack) == before
    shown = await page_refusal(stack, "approver2", invoice_id, "approve")
    assert shown.reason == WRONG_STATUS and shown.instead == [] and shown.disabled


async def test_who_can_instead_follows_a_revoked_delegation(stack: Stack) -> None:
    invoices = await setting(stack)
    collector, manager = await stack.clients("collector", "manager")
    invoice_id = invoices["tier2_waiting"]
    listed = unavailable((await collector.get(f"/api/v1/invoices/{invoice_id}")).json(), "approve")
    assert listed["who_can_instead"] == ["approver2", "manager", "manager2"]
    for d in (await manager.get("/api/v1/delegations")).json():
        if d["delegate"] == "approver2":
            r = await manager.post(f"/api/v1/delegations/{d['id']}/revoke")
            assert r.status_code == 200, r.text
    listed = unavailable((await collector.get(f"/api/v1/invoices/{invoice_id}")).json(), "approve")
    assert listed["who_can_instead"] == ["manager", "manager2"]
