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
