"""The evidence ledger: one hash chain per legal entity, appended inside the caller's transaction.

entry_hash = SHA-256( prev_hash || canonical JSON of the entry's fields ), hex.
Canonical JSON: keys sorted, no insignificant white space, UTF-8, integers only (no floats in evidence).
The business key (e.g. workflow id + transition seq) makes appending idempotent under activity retries.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam
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


# The fields covered by entry_hash (everything but the hashes, the payload itself and the surrogate id), in
# the order verification reads them.
HASHED_KEYS = (
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


def hashed_fields(entry: LedgerEntry) -> dict[str, Any]:
    """The fields covered by entry_hash, as hashed (actor_roles as the list it encodes)."""
    fields = {key: getattr(entry, key) for key in HASHED_KEYS}
    fields["actor_roles"] = json.loads(entry.actor_roles)
    return fields


def compute_entry_hash(prev_hash: str, entry: LedgerEntry) -> str:
    return sha256_hex(prev_hash + canonical_json(hashed_fields(entry)))


_BY_BUSINESS_KEY = select(LedgerEntry).where(LedgerEntry.business_key == bindparam("business_key"))


def find_by_business_key(session: Session, business_key: str) -> LedgerEntry | None:
    return session.exec(_BY_BUSINESS_KEY, params={"business_key": business_key}).first()


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


def append_to_ledger(session: Session, facts: LedgerFacts, looked_up: bool = False) -> LedgerEntry:
    """Append one entry (or return the one already there for this business key).

    `looked_up`: the caller found no entry for the key earlier in this transaction. On SQLite, whose
    write transactions hold the database's write lock from their first statement (BEGIN IMMEDIATE, see
    activities/db.py), nobody can have appended it since, and the key is not looked up again."""
    head = _lock_head(session, facts.legal_entity)
    # Checked under the head's lock: a concurrent retry of the same activity may have appended meanwhile
    # (callers on a hot path, like record_transition, look the key up before doing their work).
    if not (looked_up and session.get_bind().dialect.name == "sqlite"):
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
class CheckpointRef:
    """A signed head-of-chain checkpoint as verification uses it (signature already checked, or not)."""

    id: int
    seq: int
    entry_hash: str
    signed_at: str
    trusted: bool  # signature valid under a configured public key


@dataclass(frozen=True)
class Verification:
    """The outcome of recomputing (part of) one chain.

    `kind` says how it breaks: "changed" (an entry's content no longer matches its hash, or a link was
    re-hashed), "missing" (a seq is absent), "reordered" (an entry sits at another seq than it was written
    at), "inserted" (an entry that was never appended sits in the chain), "rewritten" (the chain is
    consistent but does not match a signed checkpoint: rewritten wholesale), "checkpoint" (a checkpoint's
    signature is not valid under any trusted key)."""

    legal_entity: str
    intact: bool
    entries: int  # entries verified (up to the break)
    head_hash: str  # hash of the last entry verified
    broken_at: int | None = None
    problem: str = ""
    kind: str = ""
    from_seq: int = 1
    to_seq: int | None = None
    checkpoint_seq: int | None = None  # the latest checkpoint the chain was checked against
    checkpoint_id: int | None = None

    @property
    def summary(self) -> str:
        if self.intact:
            text = f"intact, {self.entries} entries, head hash {self.head_hash}"
            if self.checkpoint_seq is not None:
                text += f"; matches signed checkpoint #{self.checkpoint_id} at seq {self.checkpoint_seq}"
            return text
        return f"broken at seq {self.broken_at} ({self.kind}): {self.problem}"


_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def _row_hash(prev_hash: str, row: Any, seq: int | None = None) -> str:
    """entry_hash of a row as read (optionally as if it stood at another seq): the same bytes as
    `compute_entry_hash`, without building an ORM object (verification reads a million rows)."""
    fields = dict(zip(HASHED_KEYS, row[:17], strict=True))
    fields["actor_roles"] = json.loads(row[9])
    if seq is not None:
        fields["seq"] = seq
    return hashlib.sha256((prev_hash + _dumps(fields)).encode("utf-8")).hexdigest()


_COLUMN_NAMES = ", ".join((*HASHED_KEYS, "payload", "prev_hash", "entry_hash"))


class _RowStream:
    """The chain's rows in seq order, straight from the database driver (a server-side cursor on
    PostgreSQL): verification reads a million rows, and ORM row objects would cost more than the hashing."""

    def __init__(self, session: Session, legal_entity: str, lo: int, hi: int | None) -> None:
        dbapi: Any = session.connection().connection.dbapi_connection
        assert dbapi is not None
        postgres = session.get_bind().dialect.name == "postgresql"
        mark = "%s" if postgres else "?"
        sql = f"SELECT {_COLUMN_NAMES} FROM ledger_entry WHERE legal_entity = {mark} AND seq >= {mark}"  # noqa: S608
        params: list[object] = [legal_entity, lo]
        if hi is not None:
            sql += f" AND seq <= {mark}"
            params.append(hi)
        sql += " ORDER BY seq"
        if postgres:
            self.cursor: Any = dbapi.cursor(name=f"verify_{uuid.uuid4().hex}")
            self.cursor.itersize = 10_000
        else:
            self.cursor = dbapi.cursor()
        self.cursor.execute(sql, params)

    def __iter__(self) -> Any:
        while True:
            batch = self.cursor.fetchmany(10_000)
            if not batch:
                return
            yield from batch

    def close(self) -> None:
        self.cursor.close()


def _stream_rows(session: Session, legal_entity: str, lo: int, hi: int | None) -> _RowStream:
    return _RowStream(session, legal_entity, lo, hi)


def _fast_row_hash(prev_hash: str, row: Any) -> str:
    """`_row_hash` for a row as stored by `append_to_ledger` (actor_roles already canonical JSON), built
    as one f-string in sorted-key order when no value needs escaping; otherwise the reference encoding.
    A stored row that is not byte-exact canonical fails here and is then judged by `_row_hash`."""
    (le, seq, bk, ot, oid, ev, fs, ts, actor, roles, rule, reason, wf, run, req, at, ph) = row[:17]
    probe = f"{le}{bk}{ot}{oid}{ev}{fs or ''}{ts or ''}{actor}{rule}{reason}{wf}{run}{req}{at}{ph}"
    if '"' in probe or "\\" in probe or not probe.isprintable():
        return _row_hash(prev_hash, row)
    fsj = "null" if fs is None else f'"{fs}"'
    tsj = "null" if ts is None else f'"{ts}"'
    body = (
        f'{{"actor":"{actor}","actor_roles":{roles},"at":"{at}","business_key":"{bk}","event":"{ev}",'
        f'"from_status":{fsj},"legal_entity":"{le}","object_id":"{oid}","object_type":"{ot}",'
        f'"payload_hash":"{ph}","reason":"{reason}","request_id":"{req}","rule":"{rule}","run_id":"{run}",'
        f'"seq":{seq},"to_status":{tsj},"workflow_id":"{wf}"}}'
    )
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def verify_chain(
    session: Session,
    legal_entity: str,
    from_seq: int | None = None,
    to_seq: int | None = None,
    checkpoints: list[CheckpointRef] | None = None,
) -> Verification:
    """Recompute the chain of one legal entity (all of it, or seqs from_seq..to_seq), then check it
    against the chain head and against every signed checkpoint that falls in the range."""
    lo = max(from_seq or 1, 1)
    head = session.get(LedgerHead, legal_entity)
    head_seq, head_hash = (head.seq, head.entry_hash) if head is not None else (0, GENESIS_HASH)
    whole_tail = to_seq is None or to_seq >= head_seq
    hi = head_seq if to_seq is None else to_seq
    if lo > 1:
        prev_row = session.execute(
            sa_select(col(LedgerEntry.entry_hash)).where(
                col(LedgerEntry.legal_entity) == legal_entity, col(LedgerEntry.seq) == lo - 1
            )
        ).first()
        prev = prev_row[0] if prev_row is not None else None
    else:
        prev = GENESIS_HASH

    def broken(seq: int, kind: str, problem: str, count: int, last: str) -> Verification:
        return Verification(legal_entity, False, count, last, seq, problem, kind, lo, to_seq)

    wanted = {c.seq: c for c in checkpoints or [] if lo <= c.seq and (to_seq is None or c.seq <= to_seq)}
    seen_at_checkpoints: dict[int, str] = {}
    expected = lo
    count = 0
    last_hash = prev or ""
    rows = _stream_rows(session, legal_entity, lo, to_seq)
    try:
        for row in rows:
            seq = row[1]
            if seq != expected:
                return broken(
                    expected,
                    "missing",
                    f"missing entry: expected seq {expected}, found {seq} "
                    f"({seq - expected} entr{'y' if seq - expected == 1 else 'ies'} deleted)",
                    count,
                    last_hash,
                )
            if sha256_hex(row[17]) != row[16]:
                return broken(
                    seq, "changed", f"the payload of seq {seq} does not match its hash", count, last_hash
                )
            own = _fast_row_hash(row[18], row)
            if own != row[19]:
                own = _row_hash(row[18], row)  # the reference encoding decides
            if own != row[19] or (prev is not None and row[18] != prev):
                kind, problem, at = _diagnose(session, legal_entity, row, prev, own == row[19])
                return broken(at, kind, problem, count - (seq - at), last_hash)
            prev = last_hash = row[19]
            if seq in wanted:
                seen_at_checkpoints[seq] = row[19]
            expected += 1
            count += 1
    finally:
        rows.close()
    if expected <= hi and (to_seq is not None or head_seq >= expected):
        return broken(
            expected,
            "missing",
            f"missing entry: the chain head is at seq {head_seq}, the last entry at {expected - 1}",
            count,
            last_hash,
        )
    if whole_tail:
        if head_seq < expected - 1:
            return broken(
                head_seq + 1,
                "inserted",
                f"entry appended behind the ledger's back: the chain head is at seq {head_seq}",
                count,
                last_hash,
            )
        if count and head_hash != last_hash:
            return broken(
                expected - 1, "changed", "the last entry does not match the chain head", count, last_hash
            )
    # Checkpoints: a consistent rewrite of the whole chain recomputes every hash, so only a signature
    # made before it can tell. The earliest mismatch locates the rewrite after the last match.
    matched: CheckpointRef | None = None
    for cp_seq in sorted(wanted):
        cp = wanted[cp_seq]
        if not cp.trusted:
            return broken(
                cp_seq,
                "checkpoint",
                f"checkpoint #{cp.id} (seq {cp_seq}, signed {cp.signed_at}) has no valid signature "
                "under a trusted key",
                count,
                last_hash,
            )
        if seen_at_checkpoints.get(cp_seq) != cp.entry_hash:
            since = f" after seq {matched.seq} (checkpoint #{matched.id})" if matched else ""
            return broken(
                cp_seq,
                "rewritten",
                f"the chain at seq {cp_seq} does not match checkpoint #{cp.id} signed {cp.signed_at}: "
                f"entries were rewritten{since} at or before seq {cp_seq} and re-hashed",
                count,
                last_hash,
            )
        matched = cp
    return Verification(
        legal_entity,
        True,
        count,
        last_hash if count else (prev or GENESIS_HASH),
        from_seq=lo,
        to_seq=to_seq,
        checkpoint_seq=matched.seq if matched else None,
        checkpoint_id=matched.id if matched else None,
    )


def _diagnose(
    session: Session, legal_entity: str, row: Any, prev: str | None, self_ok: bool
) -> tuple[str, str, int]:
    """How the chain breaks at this row: it is consistent in itself or not, and it links to its
    predecessor or not. A second, targeted look at the chain tells a moved entry from a changed one."""
    seq = row[1]
    # Where was this entry written? After the entry whose hash it names as its predecessor.
    origin = session.execute(
        sa_select(col(LedgerEntry.seq)).where(
            col(LedgerEntry.legal_entity) == legal_entity, col(LedgerEntry.entry_hash) == row[18]
        )
    ).first()
    written_at = None
    if row[18] == GENESIS_HASH:
        written_at = 1
    elif origin is not None:
        written_at = origin[0] + 1
    if written_at is not None and written_at != seq and _row_hash(row[18], row, written_at) == row[19]:
        # Intact in itself, but written at another seq. Shifted one place up, with an entry linking to
        # the same predecessor in its place: something was inserted before it.
        occupant = session.execute(
            sa_select(col(LedgerEntry.prev_hash)).where(
                col(LedgerEntry.legal_entity) == legal_entity, col(LedgerEntry.seq) == written_at
            )
        ).first()
        if written_at < seq and occupant is not None and occupant[0] == row[18]:
            return (
                "inserted",
                f"an entry was inserted at seq {written_at}: the entry now at seq {seq} was written "
                f"at seq {written_at}",
                written_at,
            )
        return (
            "reordered",
            f"the entry at seq {seq} was written at seq {written_at}: entries were reordered",
            seq,
        )
    if not self_ok:
        return "changed", f"the entry at seq {seq} was changed: its content does not match its hash", seq
    if prev is not None and row[18] != prev:
        if origin is None:
            return (
                "changed",
                f"prev_hash of seq {seq} names no entry of the chain: seq {seq - 1} was changed and "
                "re-hashed (or this link was forged)",
                seq,
            )
        return (
            "reordered",
            f"seq {seq} follows seq {origin[0]}, not seq {seq - 1}: entries were reordered",
            seq,
        )
    return "changed", f"the entry at seq {seq} was changed", seq
