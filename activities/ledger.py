"""The evidence ledger: one hash chain per legal entity, appended inside the caller's transaction.

entry_hash = SHA-256( prev_hash || canonical JSON of the entry's fields ), hex.
Canonical JSON: keys sorted, no insignificant white space, UTF-8, integers only (no floats in evidence).
The business key (e.g. workflow id + transition seq) makes appending idempotent under activity retries.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select as sa_select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import Session, col, select

from activities.models import LedgerEntry, LedgerHead

GENESIS_HASH = "0" * 64


def _refuse_floats(value: Any) -> None:
    if isinstance(value, float):
        raise ValueError(f"float {value!r} in evidence: use integer minor units or a decimal string")
    if isinstance(value, dict):
        for item in value.values():
            _refuse_floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_floats(item)


def canonical_json(value: Any) -> str:
    """Deterministic JSON for hashing (RFC 8785 style for the value types the ledger holds).
    Floats are refused: their text form is not canonical across implementations."""
    _refuse_floats(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class LedgerFacts:
    """What a caller knows about the transition; seq and hashes are the ledger's business."""

    legal_entity: str
    business_key: str
    object_type: str
    object_id: str
    event: str
    from_status: str | None
    to_status: str | None
    actor: str
    actor_roles: list[str]
    rule: str
    reason: str
    workflow_id: str
    run_id: str
    request_id: str
    at: str
    payload: dict[str, Any]


def hashed_fields(entry: LedgerEntry) -> dict[str, Any]:
    """The fields covered by entry_hash (everything but the hashes and the surrogate id)."""
    return {
        "legal_entity": entry.legal_entity,
        "seq": entry.seq,
        "business_key": entry.business_key,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "event": entry.event,
        "from_status": entry.from_status,
        "to_status": entry.to_status,
        "actor": entry.actor,
        "actor_roles": json.loads(entry.actor_roles),
        "rule": entry.rule,
        "reason": entry.reason,
        "workflow_id": entry.workflow_id,
        "run_id": entry.run_id,
        "request_id": entry.request_id,
        "at": entry.at,
        "payload_hash": entry.payload_hash,
    }


def compute_entry_hash(prev_hash: str, entry: LedgerEntry) -> str:
    return sha256_hex(prev_hash + canonical_json(hashed_fields(entry)))


def find_by_business_key(session: Session, business_key: str) -> LedgerEntry | None:
    return session.exec(select(LedgerEntry).where(LedgerEntry.business_key == business_key)).first()


def _lock_head(session: Session, legal_entity: str) -> LedgerHead:
    """The entity's chain head, row-locked until the transaction ends (no fork under concurrent writers)."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(
            pg_insert(LedgerHead)
            .values(legal_entity=legal_entity, seq=0, entry_hash=GENESIS_HASH)
            .on_conflict_do_nothing(index_elements=["legal_entity"])
        )
        head: LedgerHead = session.execute(
            sa_select(LedgerHead).where(col(LedgerHead.legal_entity) == legal_entity).with_for_update()
        ).scalar_one()
        return head
    # SQLite: the write transaction already holds the database's write lock (BEGIN IMMEDIATE).
    head_or_none = session.get(LedgerHead, legal_entity)
    if head_or_none is None:
        head_or_none = LedgerHead(legal_entity=legal_entity, seq=0, entry_hash=GENESIS_HASH)
        session.add(head_or_none)
        session.flush()
    return head_or_none


def append_to_ledger(session: Session, facts: LedgerFacts) -> LedgerEntry:
    """Append one entry (or return the one already there for this business key)."""
    head = _lock_head(session, facts.legal_entity)
    # Checked under the head's lock, once: a concurrent retry of the same activity may have appended
    # meanwhile (callers on a hot path, like record_transition, look the key up before doing their work).
    existing = find_by_business_key(session, facts.business_key)
    if existing is not None:
        return existing
    entry = LedgerEntry(
        legal_entity=facts.legal_entity,
        seq=head.seq + 1,
        business_key=facts.business_key,
        object_type=facts.object_type,
        object_id=facts.object_id,
        event=facts.event,
        from_status=facts.from_status,
        to_status=facts.to_status,
        actor=facts.actor,
        actor_roles=canonical_json(sorted(facts.actor_roles)),
        rule=facts.rule,
        reason=facts.reason,
        workflow_id=facts.workflow_id,
        run_id=facts.run_id,
        request_id=facts.request_id,
        at=facts.at,
        payload=canonical_json(facts.payload),
        payload_hash=sha256_hex(canonical_json(facts.payload)),
        prev_hash=head.entry_hash,
        entry_hash="",
    )
    entry.entry_hash = compute_entry_hash(head.entry_hash, entry)
    session.add(entry)
    head.seq = entry.seq
    head.entry_hash = entry.entry_hash
    session.add(head)
    session.flush()
    return entry


@dataclass(frozen=True)
class Verification:
    legal_entity: str
    intact: bool
    entries: int
    head_hash: str
    broken_at: int | None = None
    problem: str = ""


def verify_chain(session: Session, legal_entity: str) -> Verification:
    """Recompute the chain of one legal entity from its first entry."""
    prev = GENESIS_HASH
    expected_seq = 1
    count = 0
    rows = session.exec(
        select(LedgerEntry).where(LedgerEntry.legal_entity == legal_entity).order_by(LedgerEntry.seq)  # type: ignore[arg-type]
    )
    for entry in rows:
        if entry.seq != expected_seq:
            return Verification(
                legal_entity,
                False,
                count,
                prev,
                expected_seq,
                f"missing entry: expected seq {expected_seq}, found {entry.seq}",
            )
        if entry.prev_hash != prev:
            return Verification(
                legal_entity, False, count, prev, entry.seq, "prev_hash does not match the chain"
            )
        if sha256_hex(entry.payload) != entry.payload_hash:
            return Verification(legal_entity, False, count, prev, entry.seq, "payload changed")
        if compute_entry_hash(prev, entry) != entry.entry_hash:
            return Verification(legal_entity, False, count, prev, entry.seq, "entry changed")
        prev = entry.entry_hash
        expected_seq += 1
        count += 1
    # The head is written in the same transaction as every entry: entries missing at the end of the
    # chain (which leave no gap behind them) show as a head ahead of the last entry.
    head = session.get(LedgerHead, legal_entity)
    head_seq, head_hash = (head.seq, head.entry_hash) if head is not None else (0, GENESIS_HASH)
    if head_seq > count:
        return Verification(
            legal_entity,
            False,
            count,
            prev,
            count + 1,
            f"missing entry: the chain head is at seq {head_seq}, the last entry at {count}",
        )
    if head_seq < count:
        return Verification(
            legal_entity,
            False,
            count,
            prev,
            head_seq + 1,
            f"entry appended behind the ledger's back: the chain head is at seq {head_seq}",
        )
    if head_hash != prev:
        return Verification(
            legal_entity, False, count, prev, count, "the last entry does not match the chain head"
        )
    return Verification(legal_entity, True, count, prev)
