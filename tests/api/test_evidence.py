"""Compliance verifies the ledger's chain through the API; nobody else without ledger:read."""

from __future__ import annotations

from sqlalchemy import text

from tests.conftest import Stack, invoice_body


async def test_compliance_verifies_an_intact_chain_and_sees_where_it_breaks(stack: Stack) -> None:
    erp, compliance, preparer = await stack.clients("erp", "compliance", "preparer")
    created = await erp.post("/api/v1/invoices", json=invoice_body(stack.customers["initech"]))
    assert created.status_code == 201
    r = await compliance.get("/api/v1/evidence/ledger/verify", params={"entity": "ACME"})
    assert r.status_code == 200, r.text
    [acme] = r.json()
    assert acme["intact"] is True and acme["entries"] >= 1
    assert acme["summary"] == f"intact, {acme['entries']} entries, head hash {acme['head_hash']}"

    r = await preparer.get("/api/v1/evidence/ledger/verify", params={"entity": "ACME"})
    assert r.status_code == 403 and r.json()["error"]["details"]["action"] == "ledger:read"

    # Tamper behind the application's back (triggers off), then verify again.
    with stack.store.write.begin() as conn:
        if stack.store.is_sqlite:
            conn.execute(text("DROP TRIGGER ledger_entry_no_update"))
        else:
            conn.execute(text("ALTER TABLE ledger_entry DISABLE TRIGGER USER"))
        conn.execute(
            text("UPDATE ledger_entry SET reason = 'rewritten' WHERE legal_entity = 'ACME' AND seq = 2")
        )
    r = await compliance.get("/api/v1/evidence/ledger/verify", params={"entity": "ACME"})
    [acme] = r.json()
    assert acme["intact"] is False and acme["broken_at_seq"] == 2
    assert acme["summary"].startswith("broken at seq 2")


async def test_compliance_signs_checkpoints_on_demand_through_the_workflow_and_exports_them(
    stack: Stack,
) -> None:
    erp, compliance, admin = await stack.clients("erp", "compliance", "admin")
    assert (
        await erp.post("/api/v1/invoices", json=invoice_body(stack.customers["initech"]))
    ).status_code == 201
    r = await compliance.post("/api/v1/evidence/checkpoints", json={"legal_entity": "ACME"})
    assert r.status_code == 201, r.text
    [cp] = r.json()
    assert cp["legal_entity"] == "ACME" and cp["signature_valid"] is True and cp["algorithm"] == "Ed25519"
    assert cp["requested_by"] == "compliance" and cp["trigger"] == "on_demand"
    # Anyone with the public key checks it offline, over the message as exported.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    Ed25519PublicKey.from_public_bytes(bytes.fromhex(cp["public_key"])).verify(
        bytes.fromhex(cp["signature"]), cp["message"].encode()
    )
    listed = (await compliance.get("/api/v1/evidence/checkpoints", params={"entity": "ACME"})).json()
    assert [c["id"] for c in listed] == [cp["id"]]
    r = await compliance.get("/api/v1/evidence/ledger/verify", params={"entity": "ACME"})
    [acme] = r.json()
    assert acme["intact"] and acme["checkpoint_id"] == cp["id"] and acme["checkpoint_seq"] == cp["seq"]
    assert acme["recorded_at_seq"] == acme["entries"] + 1  # the run itself, appended after what it verified
    r = await compliance.get("/api/v1/evidence/ledger/verify", params={"entity": "ACME", "from": 2, "to": 3})
    assert r.json()[0]["entries"] == 2 and r.json()[0]["from_seq"] == 2
    r = await compliance.get("/api/v1/evidence/ledger/verify", params={"entity": "ACME", "from": 3, "to": 2})
    assert r.status_code == 422
    # Signing needs evidence:checkpoint: admin does not hold it.
    r = await admin.post("/api/v1/evidence/checkpoints", json={"legal_entity": "ACME"})
    assert r.status_code == 403 and r.json()["error"]["details"]["action"] == "evidence:checkpoint"


async def test_compliance_pulls_an_evidence_pack_of_real_approvals_and_nobody_edits_the_ledger(
    stack: Stack,
) -> None:
    import csv
    import io
    import zipfile
    from datetime import UTC, datetime, timedelta

    erp, preparer, approver, compliance, admin = await stack.clients(
        "erp", "preparer", "approver", "compliance", "admin"
    )
    created = (await erp.post("/api/v1/invoices", json=invoice_body(stack.customers["initech"]))).json()
    assert (await preparer.post(f"/api/v1/invoices/{created['id']}/submit")).status_code == 200
    r = await approver.post(f"/api/v1/invoices/{created['id']}/approve", json={"comment": "ok"})
    assert r.status_code == 200, r.text
    today = datetime.now(UTC).date()
    body = {
        "control_id": "OTC-01",
        "period_start": (today - timedelta(days=1)).isoformat(),
        "period_end": (today + timedelta(days=1)).isoformat(),
        "seed": 7,
    }
    r = await compliance.post("/api/v1/evidence/packs", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip" and r.headers["x-record-count"] == "1"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        population = list(csv.DictReader(io.StringIO(zf.read("population.csv").decode())))
        tests = zf.read("sample_tests.jsonl").decode()
    assert [(p["object_id"], p["event"], p["actor"]) for p in population] == [
        (created["id"], "approve", "approver")
    ]
    assert '"passed":true' in tests
    again = await compliance.post("/api/v1/evidence/packs", json=body)
    assert again.headers["x-population-sha256"] == r.headers["x-population-sha256"]

    r = await preparer.post("/api/v1/evidence/packs", json=body)
    assert r.status_code == 403 and r.json()["error"]["details"]["action"] == "evidence:export"
    r = await compliance.post("/api/v1/evidence/packs", json={**body, "control_id": "NOPE"})
    assert r.status_code == 404
    r = await compliance.post("/api/v1/evidence/packs", json={**body, "period_end": "2000-01-01"})
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "period_end"
    controls = (await compliance.get("/api/v1/evidence/controls")).json()
    assert "OTC-01" in {c["id"] for c in controls}

    # Compliance reads and exports evidence, and can do nothing else.
    # (the policy table in tests/test_policy.py holds every role's actions; here, one door for real: the
    # customer is not even visible to compliance, so the ERP's command is refused as invalid for it)
    r = await compliance.post("/api/v1/invoices", json=invoice_body(stack.customers["initech"]))
    assert r.status_code in (403, 422) and "invoice" not in r.json()
    # No door changes the ledger, for admin either.
    for method in ("PUT", "PATCH", "DELETE"):
        for path in (
            "/api/v1/evidence/ledger",
            "/api/v1/evidence/ledger/verify",
            "/api/v1/evidence/checkpoints",
        ):
            r = await admin.request(method, path)
            assert r.status_code in (404, 405), (method, path, r.status_code)


async def test_the_daily_checkpoint_is_a_temporal_schedule_that_signs_every_chain(stack: Stack) -> None:
    import asyncio

    from activities.checkpoints import checkpoints_of
    from activities.db import reading
    from activities.temporal import ensure_checkpoint_schedule

    erp = await stack.client("erp")
    assert (
        await erp.post("/api/v1/invoices", json=invoice_body(stack.customers["initech"]))
    ).status_code == 201
    sid = await ensure_checkpoint_schedule(stack.temporal, stack.settings.task_queue, "0 1 * * *")
    handle = stack.temporal.get_schedule_handle(sid)
    try:
        desc = await handle.describe()
        assert desc.schedule.state.note.startswith("cron 0 1 * * * (UTC)")
        assert [c.hour[0].start for c in desc.schedule.spec.calendars] == [1]
        # A second start with another calendar brings the schedule in line (and keeps one schedule).
        assert (
            await ensure_checkpoint_schedule(stack.temporal, stack.settings.task_queue, "30 2 * * *") == sid
        )
        desc = await handle.describe()
        assert desc.schedule.state.note.startswith("cron 30 2 * * * (UTC)")
        assert [(c.hour[0].start, c.minute[0].start) for c in desc.schedule.spec.calendars] == [(2, 30)]
        await handle.trigger()  # what the calendar does at 02:30
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while True:
            with reading(stack.store) as session:
                made = checkpoints_of(session, "ACME")
            if made or loop.time() > deadline:
                break
            await asyncio.sleep(0.2)
        assert [(c.trigger, c.requested_by) for c in made] == [("schedule", "cashcycle")]
    finally:
        await handle.delete()
