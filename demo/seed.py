"""Seeding the demo company (`cashcycle up --demo`, first start only).

Only the legal entity and the users are written straight into the store (there is no API for them:
access is administered with `cashcycle users`). Everything else goes through the HTTP API as the demo
users, the same path the ERP and the AR team take, so that every invoice is a real workflow with its
transitions in the evidence ledger: a demo that bypassed the workflows would show data that no workflow
could have produced.

Invoices are created in issue-date order, one at a time, so that their numbers are reproducible and
chronological; the moves that follow (submit, approve, void, payments) run concurrently, bounded by a
semaphore. Then the customers behind portals, and last the invoices left stuck for the control tower
(demo/stuck.py). The dispute cases (demo/disputes.py) are seeded meanwhile, on invoices of their own:
they start first so that their CAPAs' effectiveness checks (minutes after the preventive action, in the
demo's dispute policy) are recorded soon after the start.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable
from datetime import date
from decimal import Decimal
from typing import Any

import httpx

from activities import queries
from activities.db import open_store, reading, writing
from activities.directory import add_user, ensure_legal_entity, grant
from activities.models import LegalEntity, User
from demo.client import DemoApi, DemoSeedError, Progress, gather_all, quiet_http_log, wait_sent
from demo.company import (
    DEMO_CUSTOMERS,
    DEMO_ENTITY,
    DEMO_ENTITY_ROW,
    DEMO_OPERATOR,
    DEMO_PASSWORD,
    DEMO_USERS,
    PEOPLE,
    SIGNER,
)
from demo.disputes import seed_disputes
from demo.plan import (
    DEMO_STATUSES,
    SEED,
    VOID_REASONS,
    PlannedInvoice,
    Receipt,
    approver_for,
    demo_invoice_count,
    money,
    plan_invoices,
    plan_receipts,
)
from demo.portals import create_portal_customers, seed_portal_disputes, seed_portals
from demo.stuck import seed_stuck

CONCURRENCY = 8


def _seed_directory(db_url: str) -> bool:
    """The legal entity, users and roles (idempotent). False, and nothing written, when the store
    already holds invoices: a second `up --demo` must not seed the demo again."""
    store = open_store(db_url)
    try:
        with reading(store) as session:
            if queries.count_invoices(session) > 0:
                return False
        with writing(store) as session:
            ensure_legal_entity(session, LegalEntity.model_validate(DEMO_ENTITY_ROW.model_dump()))
            for username, roles in DEMO_USERS:
                if session.get(User, username) is None:
                    full_name, email = PEOPLE[username]
                    add_user(
                        session, username, DEMO_PASSWORD, DEMO_OPERATOR, full_name=full_name, email=email
                    )
                for role in roles:
                    grant(session, username, role, DEMO_ENTITY, DEMO_OPERATOR)
        return True
    finally:
        store.dispose()


async def _wait_delivered(api: DemoApi, inv: PlannedInvoice, within: float = 180.0) -> None:
    """After approval the workflow delivers by e-mail on its own; payments apply only once submitted."""
    inv.status = await wait_sent(api, inv.invoice_id, inv.number or inv.external_id, within)


async def _move(api: DemoApi, inv: PlannedInvoice, rng: random.Random) -> None:
    """Take a created draft to its planned pre-payment status, as the AR team would."""
    base = f"/api/v1/invoices/{inv.invoice_id}"
    key = f"demo-{inv.external_id}"

    async def act(user: str, action: str, body: dict[str, Any] | None = None, n: int = 1) -> None:
        state = await api.call(user, "POST", f"{base}/{action}", body, key=f"{key}-{action}-{n}")
        inv.status = state["status"]

    if inv.target == "void" and not inv.void_after_submit:
        await act("preparer", "void", {"reason": rng.choice(VOID_REASONS)})
        return
    if inv.rejected_first:
        # The approver sends it back for its purchase order; the preparer fixes it and, unless it is
        # to stay a draft, submits it again (the ledger shows the whole loop).
        await act("preparer", "submit")
        if inv.po_number is None:
            reason, comment = "PO number missing: the customer's AP rejects invoices without one", "PO added"
        else:
            reason, comment = "PO number does not match the customer's order confirmation", "PO corrected"
        await act(approver_for(inv), "reject", {"reason": reason})
        fixed_po = f"PO-{rng.randrange(10000, 99999)}"
        state = await api.call("preparer", "PATCH", base, {"po_number": fixed_po}, key=f"{key}-edit-1")
        inv.status = state["status"]
        if inv.target == "draft":
            return
        await act("preparer", "submit", {"comment": f"{comment}; resubmitted"}, n=2)
    elif inv.target == "draft":
        return
    else:
        await act("preparer", "submit")
    if inv.target == "pending_approval":
        return
    if inv.target == "void":
        await act("preparer", "void", {"reason": rng.choice(VOID_REASONS)})
        return
    # The tiers are the ones the workflow planned from the matrix at submission: follow its chain.
    state = await api.call("supervisor", "GET", base)
    for step in state["approval"]["steps"]:
        comment = rng.choice(["", "OK", "Checked against the PO", "Matches the delivery note"])
        await act(SIGNER[step["role"]], "approve", {"comment": comment, "tier": step["tier"]}, n=step["tier"])
    if inv.target != "approved":
        await _wait_delivered(api, inv)


async def _record_chain(api: DemoApi, chain: list[Receipt], customer_ids: dict[str, str], n: int) -> None:
    for k, receipt in enumerate(chain, start=1):
        amount = sum((a for _, a in receipt.allocations), Decimal(0))
        body = {
            "customer_id": customer_ids[receipt.customer.ref],
            "amount": money(amount),
            "currency": receipt.customer.currency,
            "received_on": receipt.received_on.isoformat(),
            "reference": receipt.reference,
            "allocations": [
                {"invoice_id": inv.invoice_id, "amount": money(a)} for inv, a in receipt.allocations
            ],
        }
        result = await api.call("erp", "POST", "/api/v1/payments", body, key=f"demo-receipt-{n}-{k}")
        by_id = {inv.invoice_id: inv for inv, _ in receipt.allocations}
        for alloc in result["allocations"]:
            by_id[alloc["invoice_id"]].status = alloc["invoice_status"]


async def seed_if_empty(base_url: str, db_url: str, progress: bool = False) -> bool:
    """Seed the demo company unless the store already holds invoices; True when it seeded.
    SystemExit with the reason when a request the demo relies on is refused."""
    quiet_http_log()
    try:
        return await _seed(base_url, db_url, Progress(progress))
    except DemoSeedError as exc:
        raise SystemExit(str(exc)) from None


async def _seed(base_url: str, db_url: str, out: Progress) -> bool:
    count = demo_invoice_count()
    if not await asyncio.to_thread(_seed_directory, db_url):
        out.say("the store already holds invoices: demo data is not seeded again")
        return False
    out.say(f"legal entity {DEMO_ENTITY} and {len(DEMO_USERS)} demo users ready")
    today = date.today()
    planned = plan_invoices(count, today)
    limits = httpx.Limits(max_connections=CONCURRENCY + 2)
    async with httpx.AsyncClient(base_url=base_url, timeout=90, limits=limits) as client:
        api = DemoApi(client, asyncio.Semaphore(CONCURRENCY))
        for username, _ in DEMO_USERS:
            await api.login(username)
        customer_ids: dict[str, str] = {}
        for customer in DEMO_CUSTOMERS:
            created = await api.call("erp", "POST", "/api/v1/customers", customer.body())
            customer_ids[customer.ref] = created["id"]
        out.say(f"customers: {len(customer_ids)} created by erp")
        portals = os.environ.get("CASHCYCLE_DEMO_PORTALS") == "1"
        portal_ids = await create_portal_customers(api) if portals else []
        stories: list[Awaitable[None]] = [seed_disputes(api, customer_ids, out, today)]
        if portals:
            stories.append(seed_portal_disputes(api, out, portal_ids))
        disputes = asyncio.create_task(gather_all(stories))
        try:
            await _seed_invoices(api, planned, customer_ids, portal_ids, out, today)
            await disputes
        finally:
            if not disputes.done():
                disputes.cancel()
                await asyncio.gather(disputes, return_exceptions=True)

    wrong = [
        f"{inv.number} is {inv.status}, planned {inv.target}" for inv in planned if inv.status != inv.target
    ]
    if wrong:
        raise DemoSeedError("demo seeding left invoices in unexpected statuses: " + "; ".join(wrong[:10]))
    counts = {s: sum(1 for inv in planned if inv.status == s) for s in DEMO_STATUSES}
    out.say(
        f"demo data ready: {len(planned)} invoices ("
        + ", ".join(f"{s} {n}" for s, n in counts.items() if n)
        + ")"
    )
    return True


async def _seed_invoices(
    api: DemoApi,
    planned: list[PlannedInvoice],
    customer_ids: dict[str, str],
    portal_ids: list[str],
    out: Progress,
    today: date,
) -> None:
    """The planned invoices and their receipts, the portals' invoices, the stuck ones."""
    await _create_and_move(api, planned, customer_ids, out)
    chains = plan_receipts(planned, random.Random(SEED + 1), today)
    if chains:
        tick = out.counter("receipts recorded by erp", len(chains))

        async def record(chain: list[Receipt], n: int) -> None:
            await _record_chain(api, chain, customer_ids, n)
            tick()

        await gather_all([record(chain, n) for n, chain in enumerate(chains, start=1)])

    if portal_ids:
        await seed_portals(api, out, portal_ids)
    await seed_stuck(api, customer_ids, out, today)


async def _create_and_move(
    api: DemoApi, planned: list[PlannedInvoice], customer_ids: dict[str, str], out: Progress
) -> None:
    """Create the invoices one at a time in issue-date order (reproducible, chronological numbers);
    each created invoice moves on concurrently while the next ones are created."""
    tick = out.counter("invoices created and moved", len(planned))
    failed = asyncio.Event()
    moves: list[asyncio.Task[None]] = []

    async def move(inv: PlannedInvoice, n: int) -> None:
        try:
            # One generator per invoice: its choices do not depend on how the tasks interleave.
            await _move(api, inv, random.Random(SEED * 1000 + n))
        except BaseException:
            failed.set()
            raise
        tick()

    try:
        for n, inv in enumerate(planned):
            if failed.is_set():
                break
            created = await api.call(
                "erp", "POST", "/api/v1/invoices", inv.body(customer_ids[inv.customer.ref])
            )
            inv.invoice_id, inv.status = created["id"], created["status"]
            inv.number = created["number"] or inv.external_id  # numbered when issued
            inv.total = Decimal(created["total"])
            moves.append(asyncio.create_task(move(inv, n)))
        await gather_all(list(moves))
    finally:
        for task in moves:
            task.cancel()
        await asyncio.gather(*moves, return_exceptions=True)
