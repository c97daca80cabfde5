"""The CAPA routes over HTTP, with the real worker, store and ledger: the board's list and filters, the owner
completing an action, an extension asked by the owner and decided by a supervisor (not by the owner, not by
someone without the role), each refusal with its status and nothing changed; the ledger's capa entries."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import select

from activities.capa import capa_id_of
from activities.db import reading
from activities.models import LedgerEntry, Notification
from tests.conftest import Stack
from workflows.capa import CapaWorkflow
from workflows.capa_types import CapaAction, CapaConfig, CapaInput, capa_workflow_id
from workflows.types import Actor

CAPA = "/api/v1/capa"


async def started(stack: Stack, case: str, customer: str, corrective_owner: str = "collector") -> str:
    now = datetime.now(UTC)
    wid = capa_workflow_id("ACME", case)
    await stack.temporal.start_workflow(
        CapaWorkflow.run,
        CapaInput(
            legal_entity="ACME",
            capa_id=case,
            dispute_id="",
            case_number=case,
            root_cause="BIL",
            customer_id=customer,
            function="billing",
            corrective=CapaAction(
                corrective_owner, (now + timedelta(days=10)).date().isoformat(), "credit it"
            ),
            preventive=CapaAction("preparer", (now + timedelta(days=1, hours=1)).isoformat(), "fix the rule"),
            opened_by=Actor("collector", ["collector"], "p, collector, *, dispute:close"),
            config=CapaConfig(),
        ),
        id=wid,
        task_queue=stack.settings.task_queue,
    )
    return capa_id_of(wid)


async def until_listed(client: Any, capa_id: str) -> dict[str, Any]:
    for _ in range(200):
        r = await client.get(f"{CAPA}/{capa_id}")
        if r.status_code == 200:
            body: dict[str, Any] = r.json()
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"CAPA {capa_id} never recorded")


async def test_capa_board_commands_and_refusals(stack: Stack) -> None:
    initech = stack.customers["initech"]
    supervisor, collector, preparer, cashier, outsider = await stack.clients(
        "supervisor", "collector", "preparer", "cashier", "outsider"
    )
    run = uuid.uuid4().hex[:6]  # one Temporal server for every test: ids of their own
    first = await started(stack, f"DSP-{run}-1", initech)
    second = await started(stack, f"DSP-{run}-2", stack.customers["umbrella"], corrective_owner="supervisor")
    body = await until_listed(supervisor, first)
    await until_listed(supervisor, second)
    assert body["status"] == "open" and body["corrective"]["owner"] == "collector"
    assert body["preventive"]["due"].endswith("+00:00") and body["checks"] == []

    # The board: soonest open due first (both preventive actions due tomorrow; filters narrow it).
    r = await supervisor.get(CAPA, params={"owner": "supervisor"})
    assert [c["id"] for c in r.json()["items"]] == [second] and r.json()["total"] == 1
    r = await supervisor.get(CAPA, params={"customer_id": initech, "status": "open"})
    assert [c["id"] for c in r.json()["items"]] == [first]
    assert (await supervisor.get(CAPA, params={"status": "closed"})).json()["total"] == 0
    assert (await cashier.get(CAPA)).status_code == 403
    assert (await outsider.get(f"{CAPA}/{first}")).status_code == 404
    assert (await supervisor.get(f"{CAPA}/{'0' * 8}-0000-0000-0000-{'0' * 12}")).status_code == 404

    # Only the owner completes, with a note.
    url = f"{CAPA}/{first}/actions/corrective"
    r = await preparer.post(f"{url}/complete", json={"note": "not mine"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "segregation_of_duties"
    r = await collector.post(f"{url}/complete", json={"note": ""})
    assert r.status_code == 422
    r = await collector.post(
        f"{url}/complete", json={"note": "credit note CN-1 issued"}, headers={"Idempotency-Key": "k1"}
    )
    assert r.status_code == 200, r.text
    assert (
        r.json()["corrective"]["status"] == "done"
        and r.json()["corrective"]["note"] == "credit note CN-1 issued"
    )
    again = await collector.post(
        f"{url}/complete", json={"note": "credit note CN-1 issued"}, headers={"Idempotency-Key": "k1"}
    )
    assert again.status_code == 200  # the same update: applied once
    r = await collector.post(f"{url}/complete", json={"note": "twice"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "transition_refused"

    # Extension of the preventive action: asked by its owner, decided by a supervisor only.
    url = f"{CAPA}/{first}/actions/preventive"
    old_due = body["preventive"]["due"]
    new_due = (datetime.fromisoformat(old_due) + timedelta(days=30)).isoformat()
    r = await collector.post(f"{url}/request-extension", json={"new_due": new_due, "reason": "x"})
    assert r.status_code == 403  # not the owner
    r = await preparer.post(f"{url}/request-extension", json={"new_due": "2020-01-01", "reason": "x"})
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "new_due"
    r = await preparer.post(f"{url}/request-extension", json={"new_due": new_due, "reason": "vendor late"})
    assert r.status_code == 200 and r.json()["preventive"]["extension"]["new_due"] == new_due
    r = await preparer.post(f"{url}/approve-extension", json={})
    assert r.status_code == 403 and r.json()["error"]["details"]["action"] == "capa:approve_extension"
    r = await supervisor.post(f"{url}/refuse-extension", json={})
    assert r.status_code == 422  # a refusal needs a reason
    assert (await supervisor.get(f"{CAPA}/{first}")).json()["preventive"]["due"] == old_due
    r = await supervisor.post(f"{url}/approve-extension", json={"reason": "ok"})
    assert r.status_code == 200, r.text
    assert r.json()["preventive"]["due"] == new_due and r.json()["preventive"]["extensions_approved"] == 1

    # The owner of the second CAPA's corrective action is a supervisor: not their own extension.
    url2 = f"{CAPA}/{second}/actions/corrective"
    later = (datetime.now(UTC) + timedelta(days=40)).date().isoformat()
    assert (
        await supervisor.post(f"{url2}/request-extension", json={"new_due": later, "reason": "r"})
    ).status_code == 200
    r = await supervisor.post(f"{url2}/approve-extension", json={})
    assert r.status_code == 403 and r.json()["error"]["code"] == "segregation_of_duties"

    with reading(stack.store) as s:
        entries = s.exec(
            select(LedgerEntry).where(LedgerEntry.object_id == first).order_by(LedgerEntry.seq)
        ).all()
        assert [e.event for e in entries if e.event != "remind"] == [
            "open",
            "complete_corrective",
            "request_extension",
            "approve_extension",
        ]
        assert entries[-1].actor == "supervisor" and "ar_supervisor" in json.loads(entries[-1].actor_roles)
        assert all(e.object_type == "capa" for e in entries)
        # Tomorrow's preventive action: its owner was told at once (within the lead time).
        reminders = s.exec(select(Notification).where(Notification.kind == "capa_reminder")).all()
        assert {n.recipient for n in reminders} >= {"preparer"}
