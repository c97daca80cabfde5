"""The evidence ledger: a gapless hash chain per legal entity, idempotent on the business key, append-only
in the database, verifiable, and correct under concurrent writers. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.exc import DBAPIError
from sqlmodel import col, select

from activities.db import Store, open_store, reading, writing
from activities.ledger import (
    GENESIS_HASH,
    LedgerFacts,
    Verification,
    append_to_ledger,
    canonical_json,
    verify_chain,
)
from activities.models import LedgerEntry

# The fields the entry hash covers, spelled out here so that a change to the hashed set is a visible,
# deliberate change of the evidence format (old ledgers would stop verifying).
HASHED_FIELDS = (
    "legal_entity",
    "seq",
    "business_key",
    "object_type",
    "object_id",
    "event",
    "from_status",
    "to_status",
    "actor",
    "actor_roles",
    "rule",
    "reason",
    "workflow_id",
    "run_id",
    "request_id",
    "at",
    "payload_hash",
)


def ledger_facts(
    *,
    business_key: str = "invoice-ACME-ERP-1#1",
    legal_entity: str = "ACME",
    object_type: str = "invoice",
    object_id: str = "2f1c7e0a-0000-4000-8000-000000000001",
    event: str = "create",
    from_status: str | None = None,
    to_status: str | None = "draft",
    actor: str = "erp",
    actor_roles: tuple[str, ...] = ("erp_integration",),
    rule: str = "p, erp_integration, *, invoice:create",
    reason: str = "",
    workflow_id: str = "invoice-ACME-ERP-1",
    run_id: str = "run-1",
    request_id: str = "req-1",
    at: str = "2026-11-02T09:00:00+00:00",
    payload: dict[str, Any] | None = None,
) -> LedgerFacts:
    return LedgerFacts(
        legal_entity=legal_entity,
        business_key=business_key,
        object_type=object_type,
        object_id=object_id,
        event=event,
        from_status=from_status,
        to_status=to_status,
        actor=actor,
        actor_roles=list(actor_roles),
        rule=rule,
        reason=reason,
        workflow_id=workflow_id,
        run_id=run_id,
        request_id=request_id,
        at=at,
        payload=payload if payload is not None else {"number": "INV-2026-000001", "total_minor": 187266},
    )


def nth_facts(n: int, *, legal_entity: str = "ACME", writer: str = "w") -> LedgerFacts:
    """The n-th transition of a run of entries, each with its own business key and payload."""
    return ledger_facts(
        business_key=f"{writer}#{n}",
        legal_entity=legal_entity,
        event="submit",
        reason=f"comment {n}",
        payload={"n": n, "writer": writer},
    )


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = open_store(db_url)
    yield s
    s.dispose()


def append(store: Store, facts: LedgerFacts) -> LedgerEntry:
    with writing(store) as session:
        entry = append_to_ledger(session, facts)
        session.flush()
        session.expunge(entry)
    return entry


def chain(store: Store, legal_entity: str = "ACME") -> list[LedgerEntry]:
    with reading(store) as session:
        return list(
            session.exec(
                select(LedgerEntry)
                .where(LedgerEntry.legal_entity == legal_entity)
                .order_by(col(LedgerEntry.seq))
            )
        )


def verify(store: Store, legal_entity: str = "ACME") -> Verification:
    with reading(store) as session:
        return verify_chain(session, legal_entity)


def expected_entry_hash(prev_hash: str, entry: LedgerEntry) -> str:
    fields = {name: getattr(entry, name) for name in HASHED_FIELDS}
    fields["actor_roles"] = json.loads(entry.actor_roles)
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def disable_append_only(store: Store) -> None:
    """What an attacker with database access does first: switch the append-only triggers off."""
    with store.write.begin() as conn:
        if store.is_sqlite:
            conn.exec_driver_sql("DROP TRIGGER ledger_entry_no_update")
            conn.exec_driver_sql("DROP TRIGGER ledger_entry_no_delete")
        else:
            conn.exec_driver_sql("ALTER TABLE ledger_entry DISABLE TRIGGER USER")


def tamper(store: Store, statement: Any) -> None:
    disable_append_only(store)
    with writing(store) as session:
        session.execute(statement)


# --- canonical JSON -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b": 1, "a": 2}, '{"a":2,"b":1}'),
        ({"z": {"y": [3, 1, 2], "x": None}, "a": True}, '{"a":true,"z":{"x":null,"y":[3,1,2]}}'),
        ({"name": "Société Générale", "city": "Zürich €"}, '{"city":"Zürich €","name":"Société Générale"}'),
        (["line\nbreak", 'quote"', "back\\slash"], '["line\\nbreak","quote\\"","back\\\\slash"]'),
        ({"minor": 187266, "neg": -5, "big": 2**63}, '{"big":9223372036854775808,"minor":187266,"neg":-5}'),
        ([], "[]"),
        ({}, "{}"),
        # RFC 8785 string rules: control characters as \u00XX except the short forms, DEL and non-ASCII
        # (emoji included, no surrogate escapes) as they are, "/" not escaped.
        (
            ["\u0001\u001f", "\b\f\t", "\u007f", "a/b", "😀"],
            '["\\u0001\\u001f","\\b\\f\\t","\u007f","a/b","😀"]',
        ),
        ({"a": [{"c": 1, "b": [True, False]}], "A": None}, '{"A":null,"a":[{"b":[true,false],"c":1}]}'),
        ("", '""'),
    ],
)
def test_canonical_json_sorts_keys_drops_whitespace_and_keeps_unicode(value: Any, expected: str) -> None:
    assert canonical_json(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        1.5,
        {"amount": 10.0},
        [1, 2, 0.1],
        {"nested": {"deep": [math.inf]}},
        math.nan,
        {"x": -math.inf},
    ],
)
def test_canonical_json_refuses_floats_and_non_finite_numbers(value: Any) -> None:
    with pytest.raises(ValueError, match=r"float|JSON compliant|Out of range"):
        canonical_json(value)


def test_canonical_json_refuses_values_json_cannot_represent_exactly() -> None:
    with pytest.raises(TypeError):
        canonical_json({"rate": Decimal("0.2")})


# --- the chain ------------------------------------------------------------------------------------------


def test_appending_builds_a_gapless_chain_linked_by_hashes(store: Store) -> None:
    for n in range(1, 6):
        append(store, nth_facts(n))
    entries = chain(store)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    prev = GENESIS_HASH
    for entry in entries:
        assert entry.prev_hash == prev
        assert entry.payload == canonical_json({"n": entry.seq, "writer": "w"})
        assert entry.payload_hash == hashlib.sha256(entry.payload.encode()).hexdigest()
        assert entry.entry_hash == expected_entry_hash(prev, entry)
        prev = entry.entry_hash
    assert len({e.entry_hash for e in entries}) == 5


def test_entry_hash_of_a_fixed_entry_is_stable_across_versions(store: Store) -> None:
    """Golden vector: a ledger written today must verify with tomorrow's code."""
    entry = append(store, ledger_facts())
    assert entry.seq == 1 and entry.prev_hash == GENESIS_HASH
    assert entry.payload == '{"number":"INV-2026-000001","total_minor":187266}'
    assert entry.payload_hash == "c13f932862f1273ff32e0fc77ff9d2711c074966daa937733be1c322b374f028"
    assert entry.entry_hash == expected_entry_hash(GENESIS_HASH, entry)
    assert entry.entry_hash == "35c65878f3982fd1ffe067e6284e64d8cfdb209ef22ef798b5ac32d26069845a"


def test_actor_roles_are_stored_sorted_as_canonical_json(store: Store) -> None:
    entry = append(store, ledger_facts(actor_roles=("controller", "ar_approver")))
    assert entry.actor_roles == '["ar_approver","controller"]'


def test_appending_the_same_business_key_twice_returns_the_first_entry_and_appends_nothing(
    store: Store,
) -> None:
    first = append(store, ledger_facts(business_key="wf#1"))
    again = append(
        store,
        ledger_facts(business_key="wf#1", reason="a retry with other words", payload={"something": "else"}),
    )
    assert (again.id, again.seq, again.entry_hash) == (first.id, first.seq, first.entry_hash)
    assert again.reason == "" and again.payload == first.payload
    assert [e.seq for e in chain(store)] == [1]
    nxt = append(store, ledger_facts(business_key="wf#2"))
    assert nxt.seq == 2 and nxt.prev_hash == first.entry_hash


def test_two_legal_entities_have_independent_chains(store: Store) -> None:
    for n in range(1, 4):
        append(store, nth_facts(n, legal_entity="ACME", writer="acme"))
    for n in range(1, 3):
        append(store, nth_facts(n, legal_entity="GLOBEX", writer="globex"))
    append(store, nth_facts(4, legal_entity="ACME", writer="acme"))
    acme, globex = chain(store, "ACME"), chain(store, "GLOBEX")
    assert [e.seq for e in acme] == [1, 2, 3, 4]
    assert [e.seq for e in globex] == [1, 2]
    assert acme[0].prev_hash == globex[0].prev_hash == GENESIS_HASH
    assert globex[1].prev_hash == globex[0].entry_hash
    assert verify(store, "ACME").intact and verify(store, "GLOBEX").intact


def test_verify_chain_reports_an_intact_chain_with_its_length_and_head_hash(store: Store) -> None:
    for n in range(1, 8):
        append(store, nth_facts(n))
    result = verify(store)
    assert result.intact, result.problem
    assert result.entries == 7
    assert result.head_hash == chain(store)[-1].entry_hash
    assert result.broken_at is None and result.problem == ""


def test_verify_chain_of_an_entity_without_entries_is_intact_and_empty(store: Store) -> None:
    result = verify(store, "NOBODY")
    assert (result.intact, result.entries, result.head_hash) == (True, 0, GENESIS_HASH)


# --- tampering ------------------------------------------------------------------------------------------


def test_a_changed_reason_is_detected_at_its_seq(store: Store) -> None:
    for n in range(1, 6):
        append(store, nth_facts(n))
    tamper(store, update(LedgerEntry).where(col(LedgerEntry.seq) == 3).values(reason="approved, honest"))
    result = verify(store)
    assert not result.intact
    assert result.broken_at == 3
    assert result.entries == 2
    assert result.kind == "changed" and "was changed" in result.problem


def test_a_changed_payload_is_detected_at_its_seq(store: Store) -> None:
    for n in range(1, 6):
        append(store, nth_facts(n))
    tamper(
        store,
        update(LedgerEntry)
        .where(col(LedgerEntry.seq) == 2)
        .values(payload=canonical_json({"n": 2, "writer": "w", "total_minor": 1})),
    )
    result = verify(store)
    assert (result.intact, result.broken_at) == (False, 2)
    assert "payload" in result.problem


def test_a_payload_changed_together_with_its_hash_is_detected_at_its_seq(store: Store) -> None:
    for n in range(1, 6):
        append(store, nth_facts(n))
    forged = canonical_json({"n": 4, "writer": "someone else"})
    tamper(
        store,
        update(LedgerEntry)
        .where(col(LedgerEntry.seq) == 4)
        .values(payload=forged, payload_hash=hashlib.sha256(forged.encode()).hexdigest()),
    )
    result = verify(store)
    assert (result.intact, result.broken_at) == (False, 4)


def test_a_rehashed_entry_breaks_the_link_of_the_next_one(store: Store) -> None:
    for n in range(1, 6):
        append(store, nth_facts(n))
    entry = chain(store)[1]
    entry.reason = "rewritten"
    rehashed = expected_entry_hash(entry.prev_hash, entry)
    tamper(
        store,
        update(LedgerEntry).where(col(LedgerEntry.seq) == 2).values(reason="rewritten", entry_hash=rehashed),
    )
    result = verify(store)
    assert (result.intact, result.broken_at) == (False, 3)
    assert "prev_hash" in result.problem


def test_a_deleted_entry_is_detected_at_the_missing_seq(store: Store) -> None:
    for n in range(1, 6):
        append(store, nth_facts(n))
    tamper(store, delete(LedgerEntry).where(col(LedgerEntry.seq) == 3))
    result = verify(store)
    assert (result.intact, result.broken_at, result.entries) == (False, 3, 2)
    assert "missing" in result.problem


def test_a_deleted_last_entry_is_detected_against_the_chain_head(store: Store) -> None:
    for n in range(1, 6):
        append(store, nth_facts(n))
    tamper(store, delete(LedgerEntry).where(col(LedgerEntry.seq) == 5))
    result = verify(store)
    assert (result.intact, result.broken_at) == (False, 5)
    assert "missing" in result.problem


# --- append-only in the database ------------------------------------------------------------------------


def test_the_database_refuses_update_of_a_ledger_entry(store: Store) -> None:
    append(store, ledger_facts())
    with pytest.raises(DBAPIError, match="append-only"), writing(store) as session:
        session.execute(update(LedgerEntry).values(reason="changed"))
    with pytest.raises(DBAPIError, match="append-only"), writing(store) as session:
        entry = session.exec(select(LedgerEntry)).one()
        entry.actor = "someone_else"
        session.add(entry)
        session.flush()
    assert chain(store)[0].reason == "" and chain(store)[0].actor == "erp"
    assert verify(store).intact


def test_the_database_refuses_delete_of_a_ledger_entry(store: Store) -> None:
    append(store, ledger_facts())
    with pytest.raises(DBAPIError, match="append-only"), writing(store) as session:
        session.execute(delete(LedgerEntry))
    with pytest.raises(DBAPIError, match="append-only"), writing(store) as session:
        session.delete(session.exec(select(LedgerEntry)).one())
        session.flush()
    assert len(chain(store)) == 1


def test_the_database_refuses_truncating_the_ledger(store: Store) -> None:
    append(store, ledger_facts())
    # SQLite spells TRUNCATE as an unqualified DELETE (its truncate optimisation is off under triggers).
    statement = "DELETE FROM ledger_entry" if store.is_sqlite else "TRUNCATE ledger_entry"
    with pytest.raises(DBAPIError, match="append-only"), writing(store) as session:
        session.execute(text(statement))
    assert len(chain(store)) == 1


# --- concurrent writers ---------------------------------------------------------------------------------

THREADS, PER_THREAD = 4, 50


def test_concurrent_writers_on_one_entity_build_one_gapless_unforked_chain(store: Store) -> None:
    start = threading.Barrier(THREADS)

    def writer(w: int) -> list[int]:
        start.wait(timeout=60)
        seqs = []
        for n in range(1, PER_THREAD + 1):
            with writing(store) as session:
                seqs.append(append_to_ledger(session, nth_facts(n, writer=f"writer-{w}")).seq)
        return seqs

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = list(pool.map(writer, range(THREADS), timeout=600))

    total = THREADS * PER_THREAD
    for seqs in results:
        assert seqs == sorted(seqs)  # each writer sees its own appends in order
    assert sorted(s for seqs in results for s in seqs) == list(range(1, total + 1))
    entries = chain(store)
    assert [e.seq for e in entries] == list(range(1, total + 1))
    prev = GENESIS_HASH
    for entry in entries:
        assert entry.prev_hash == prev, f"fork at seq {entry.seq}"
        prev = entry.entry_hash
    assert {e.business_key for e in entries} == {
        f"writer-{w}#{n}" for w in range(THREADS) for n in range(1, PER_THREAD + 1)
    }
    result = verify(store)
    assert (result.intact, result.entries, result.head_hash) == (True, total, prev)


def test_concurrent_retries_of_the_same_business_key_append_it_once(store: Store) -> None:
    start = threading.Barrier(THREADS)

    def retry(_: int) -> tuple[int, str]:
        start.wait(timeout=60)
        with writing(store) as session:
            entry = append_to_ledger(session, ledger_facts(business_key="wf#1"))
            return entry.seq, entry.entry_hash

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = list(pool.map(retry, range(THREADS), timeout=600))
    assert len(set(results)) == 1
    assert [e.seq for e in chain(store)] == [1]
