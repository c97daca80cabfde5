"""Tamper detection, located and named, and signed checkpoints. On SQLite and PostgreSQL.

Each test plays an attacker with write access to the database: triggers off, then a change, a deletion,
a swap, an insertion, or a whole chain rewritten consistently (every hash recomputed, the head moved).
Verification must say where and how, and the last one is only caught by a checkpoint signed before it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import DBAPIError
from sqlmodel import col, select

from activities.checkpoints import (
    checkpoint_message,
    checkpoint_refs,
    checkpoints_of,
    key_id,
    public_hex,
    sign_checkpoint,
    signing_key,
    trusted_public_keys,
    verify_and_record,
)
from activities.db import Store, open_store, reading, writing
from activities.ledger import (
    GENESIS_HASH,
    LedgerFacts,
    Verification,
    append_to_ledger,
    canonical_json,
    compute_entry_hash,
    sha256_hex,
    verify_chain,
)
from activities.models import LedgerCheckpoint, LedgerEntry, LedgerHead
from activities.settings import Settings
from tests.activities.test_ledger import disable_append_only, nth_facts

RFC8032_SEED = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
RFC8032_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = open_store(db_url)
    yield s
    s.dispose()


@pytest.fixture
def settings() -> Settings:
    return Settings(environment="test", ledger_signing_key=RFC8032_SEED)


def fill(store: Store, n: int = 8) -> None:
    for i in range(1, n + 1):
        with writing(store) as session:
            append_to_ledger(session, nth_facts(i))


def rows(store: Store) -> list[LedgerEntry]:
    with reading(store) as session:
        return list(
            session.exec(
                select(LedgerEntry).where(LedgerEntry.legal_entity == "ACME").order_by(col(LedgerEntry.seq))
            )
        )


def verify(store: Store, settings: Settings | None = None, **kw: int) -> Verification:
    with reading(store) as session:
        refs = checkpoint_refs(session, "ACME", trusted_public_keys(settings)) if settings else None
        return verify_chain(session, "ACME", kw.get("lo"), kw.get("hi"), checkpoints=refs)


def set_seq(store: Store, old: int, new: int) -> None:
    with writing(store) as session:
        session.execute(
            update(LedgerEntry)
            .where(col(LedgerEntry.legal_entity) == "ACME", col(LedgerEntry.seq) == old)
            .values(seq=new)
        )


def rehash_from(store: Store, start: int) -> None:
    """Recompute every hash from `start` on and move the head: a consistent rewrite."""
    with writing(store) as session:
        entries = list(
            session.exec(
                select(LedgerEntry).where(LedgerEntry.legal_entity == "ACME").order_by(col(LedgerEntry.seq))
            )
        )
        prev = GENESIS_HASH
        for e in entries:
            if e.seq >= start:
                e.payload_hash = sha256_hex(e.payload)
                e.prev_hash = prev
                e.entry_hash = compute_entry_hash(prev, e)
                session.add(e)
            prev = e.entry_hash
        session.flush()
        session.execute(
            update(LedgerHead).where(col(LedgerHead.legal_entity) == "ACME").values(entry_hash=prev)
        )


# --- tampering, located and named -------------------------------------------------------------------------


def test_an_intact_chain_says_intact_with_its_count_and_head(store: Store) -> None:
    fill(store)
    result = verify(store)
    assert (result.intact, result.entries, result.head_hash) == (True, 8, rows(store)[-1].entry_hash)
    assert result.summary == f"intact, 8 entries, head hash {result.head_hash}"


def test_an_amount_changed_in_the_database_is_detected_at_its_seq(store: Store) -> None:
    fill(store)
    disable_append_only(store)
    forged = canonical_json({"n": 5, "writer": "w", "total_minor": 1})
    with writing(store) as session:
        session.execute(update(LedgerEntry).where(col(LedgerEntry.seq) == 5).values(payload=forged))
    result = verify(store)
    assert (result.intact, result.broken_at, result.kind, result.entries) == (False, 5, "changed", 4)


def test_two_swapped_entries_are_detected_as_reordered_at_the_first(store: Store) -> None:
    fill(store)
    disable_append_only(store)
    set_seq(store, 3, 1000)
    set_seq(store, 6, 3)
    set_seq(store, 1000, 6)
    result = verify(store)
    assert (result.intact, result.broken_at, result.kind) == (False, 3, "reordered")
    assert "written at seq 6" in result.problem


def test_an_inserted_entry_is_detected_and_located_even_when_consistently_hashed(store: Store) -> None:
    fill(store)
    disable_append_only(store)
    for seq in range(8, 3, -1):  # make room at seq 4, one row at a time (the (entity, seq) key is unique)
        set_seq(store, seq, seq + 1)
    third = rows(store)[2]
    forged = LedgerEntry(**{**nth_facts(99).__dict__, "actor_roles": canonical_json(["admin"])})
    forged.payload = canonical_json({"n": 99})
    forged.payload_hash = sha256_hex(forged.payload)
    forged.seq, forged.prev_hash = 4, third.entry_hash
    forged.entry_hash = compute_entry_hash(third.entry_hash, forged)
    with writing(store) as session:
        session.add(forged)
        session.execute(update(LedgerHead).where(col(LedgerHead.legal_entity) == "ACME").values(seq=9))
    result = verify(store)
    assert (result.intact, result.broken_at, result.kind) == (False, 4, "inserted")
    assert result.entries == 3


def test_a_deleted_entry_is_detected_as_missing(store: Store) -> None:
    fill(store)
    disable_append_only(store)
    with writing(store) as session:
        session.execute(text("DELETE FROM ledger_entry WHERE seq = 2"))
    result = verify(store)
    assert (result.intact, result.broken_at, result.kind) == (False, 2, "missing")


def test_an_entry_appended_behind_the_ledgers_back_is_detected(store: Store) -> None:
    fill(store, 3)
    last = rows(store)[-1]
    extra = LedgerEntry(**{**nth_facts(4).__dict__, "actor_roles": canonical_json([])})
    extra.payload = canonical_json({"n": 4})
    extra.payload_hash = sha256_hex(extra.payload)
    extra.seq, extra.prev_hash = 4, last.entry_hash
    extra.entry_hash = compute_entry_hash(last.entry_hash, extra)
    with writing(store) as session:
        session.add(extra)
    result = verify(store)
    assert (result.intact, result.broken_at, result.kind) == (False, 4, "inserted")


def test_a_consistent_rewrite_of_the_whole_chain_passes_the_chain_but_not_the_checkpoint(
    store: Store, settings: Settings
) -> None:
    fill(store, 4)
    with writing(store) as session:
        first = sign_checkpoint(
            session, settings, "ACME", "on_demand", "compliance"
        )  # seq 4; entry 5 says so
    assert first.seq == 4
    for i in range(6, 9):
        with writing(store) as session:
            append_to_ledger(session, nth_facts(i))
    with writing(store) as session:
        second = sign_checkpoint(session, settings, "ACME", "schedule", "cashcycle")  # seq 8
    assert verify(store, settings).intact
    assert verify(store, settings).checkpoint_seq == 8

    disable_append_only(store)
    forged = canonical_json({"n": 6, "writer": "w", "total_minor": 1})
    with writing(store) as session:
        session.execute(update(LedgerEntry).where(col(LedgerEntry.seq) == 6).values(payload=forged))
    rehash_from(store, 6)
    assert verify(store).intact  # without the checkpoints, the rewrite is invisible
    result = verify(store, settings)
    assert (result.intact, result.broken_at, result.kind) == (False, 8, "rewritten")
    assert (
        f"checkpoint #{second.id}" in result.problem
        and f"after seq 4 (checkpoint #{first.id})" in result.problem
    )


def test_a_checkpoint_signed_with_an_untrusted_key_is_reported(store: Store, settings: Settings) -> None:
    fill(store, 3)
    other = Settings(environment="test", ledger_signing_key="11" * 32)
    with writing(store) as session:
        sign_checkpoint(session, other, "ACME", "on_demand", "intruder")
    result = verify(store, settings)
    assert (result.intact, result.kind, result.broken_at) == (False, "checkpoint", 3)
    # Trusting that key (a rotated one, say) makes it count again.
    rotated = Settings(
        environment="test",
        ledger_signing_key=RFC8032_SEED,
        ledger_trusted_keys=public_hex(signing_key(other).public_key()),
    )
    assert verify(store, rotated).intact


def test_a_range_is_verified_from_the_stored_hash_before_it(store: Store) -> None:
    fill(store, 10)
    part = verify(store, lo=4, hi=7)
    assert (part.intact, part.entries, part.head_hash) == (True, 4, rows(store)[6].entry_hash)
    disable_append_only(store)
    with writing(store) as session:
        session.execute(update(LedgerEntry).where(col(LedgerEntry.seq) == 9).values(reason="x"))
    assert verify(store, lo=4, hi=7).intact
    assert verify(store, lo=8).broken_at == 9


# --- checkpoints --------------------------------------------------------------------------------------------


def test_the_checkpoint_signature_is_ed25519_over_the_documented_message(
    store: Store, settings: Settings
) -> None:
    fill(store, 2)
    with writing(store) as session:
        cp = sign_checkpoint(session, settings, "ACME", "on_demand", "compliance")
    assert cp.public_key == RFC8032_PUBLIC  # the RFC 8032 test key's public half
    assert (
        cp.key_id == hashlib.sha256(bytes.fromhex(RFC8032_PUBLIC)).hexdigest()[:16] == key_id(RFC8032_PUBLIC)
    )
    message = checkpoint_message("ACME", 2, rows(store)[1].entry_hash, cp.signed_at, cp.key_id)
    assert message.decode().startswith('{"entry_hash":"')
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    Ed25519PublicKey.from_public_bytes(bytes.fromhex(cp.public_key)).verify(
        bytes.fromhex(cp.signature), message
    )
    # Making it is itself evidence: the next entry says which checkpoint, of which seq.
    entry = rows(store)[-1]
    assert (entry.seq, entry.event, entry.actor) == (3, "ledger_checkpoint", "compliance")
    assert f"checkpoint #{cp.id} of seq 2" in entry.reason


def test_checkpoints_are_append_only_in_the_database(store: Store, settings: Settings) -> None:
    fill(store, 1)
    with writing(store) as session:
        sign_checkpoint(session, settings, "ACME", "on_demand", "compliance")
    with pytest.raises(DBAPIError, match="append-only"), writing(store) as session:
        session.execute(update(LedgerCheckpoint).values(seq=99))
    with pytest.raises(DBAPIError, match="append-only"), writing(store) as session:
        session.execute(text("DELETE FROM ledger_checkpoint"))
    with reading(store) as session:
        assert [c.seq for c in checkpoints_of(session, "ACME")] == [1]


def test_an_empty_ledger_cannot_be_checkpointed(store: Store, settings: Settings) -> None:
    with pytest.raises(ValueError, match="no entries"), writing(store) as session:
        sign_checkpoint(session, settings, "ACME", "on_demand", "compliance")


def test_a_verification_run_is_recorded_on_the_chain_it_verified(store: Store, settings: Settings) -> None:
    fill(store, 3)
    run = verify_and_record(store, settings, "ACME", "compliance", request_id="req-9")
    assert run.result.intact and run.result.entries == 3
    entry = rows(store)[-1]
    assert (entry.seq, entry.event, entry.actor, entry.request_id) == (
        4,
        "ledger_verified",
        "compliance",
        "req-9",
    )
    assert entry.reason == run.result.summary
    assert verify(store).intact  # and the chain, run included, still verifies

    disable_append_only(store)
    with writing(store) as session:
        session.execute(update(LedgerEntry).where(col(LedgerEntry.seq) == 2).values(actor="mallory"))
    failed = verify_and_record(store, settings, "ACME", "compliance")
    assert not failed.result.intact
    assert rows(store)[-1].event == "ledger_verification_failed"


def test_development_key_is_derived_from_the_secret_and_stable() -> None:
    a = Settings(environment="development", secret_key="s" * 40)
    b = Settings(environment="development", secret_key="s" * 40)
    c = Settings(environment="development", secret_key="t" * 40)
    pub = [public_hex(signing_key(x).public_key()) for x in (a, b, c)]
    assert pub[0] == pub[1] != pub[2]


def test_a_malformed_signing_key_is_refused_with_a_clear_error() -> None:
    from activities.checkpoints import SigningKeyError

    with pytest.raises(SigningKeyError, match="32 bytes"):
        signing_key(Settings(environment="test", ledger_signing_key="abc"))
    with pytest.raises(SigningKeyError, match="public key"):
        trusted_public_keys(Settings(environment="test", ledger_trusted_keys="nothex"))


def test_nth_facts_helper_is_what_the_chain_holds(store: Store) -> None:
    fill(store, 1)
    assert isinstance(nth_facts(1), LedgerFacts)
    assert rows(store)[0].prev_hash == GENESIS_HASH


@pytest.mark.parametrize(
    "reason",
    [
        "plain",
        'a "quoted" word',
        "back\\slash",
        "line\nbreak",
        "Zürich € 東京",
        "sep\u2028arator",
        "tab\there",
        "",
    ],
)
def test_the_fast_verification_path_hashes_exactly_as_the_reference(store: Store, reason: str) -> None:
    from activities.ledger import _fast_row_hash, _row_hash

    facts = nth_facts(1)
    with writing(store) as session:
        append_to_ledger(session, LedgerFacts(**{**facts.__dict__, "reason": reason, "to_status": None}))
    with reading(store) as session:
        from activities.ledger import _stream_rows

        stream = _stream_rows(session, "ACME", 1, None)
        [row] = list(stream)
        stream.close()
    assert _fast_row_hash(row[18], row) == _row_hash(row[18], row) == row[19]
    assert verify(store).intact


def _process_writer(url: str, writer: str, count: int) -> None:
    s = open_store(url)
    for n in range(1, count + 1):
        with writing(s) as session:
            append_to_ledger(session, nth_facts(n, writer=writer))
    s.dispose()


def test_writer_processes_appending_at_once_on_postgresql_leave_no_gap_fork_or_duplicate(
    pg_server: str,
) -> None:
    """Several worker processes on one PostgreSQL chain: the production deployment."""
    from activities.db import migrate
    from tests.conftest import drop_pg_database, new_pg_database

    name, url = new_pg_database(pg_server)
    migrate(url)
    store = open_store(url)
    try:
        _run_writer_processes(store)
    finally:
        store.dispose()
        drop_pg_database(pg_server, name)


def _run_writer_processes(store: Store) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_process_writer, args=(store.url, f"proc-{w}", 40)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    entries = rows(store)
    assert [e.seq for e in entries] == list(range(1, 121))
    assert len({e.business_key for e in entries}) == 120
    prev = GENESIS_HASH
    for e in entries:
        assert e.prev_hash == prev, f"fork at seq {e.seq}"
        prev = e.entry_hash
    assert verify(store).intact


def test_the_scheduled_run_verifies_first_and_never_signs_a_broken_chain(
    store: Store, settings: Settings
) -> None:
    from activities.checkpoints import CheckpointActivities
    from workflows.types import CheckpointRequest

    fill(store, 3)
    with writing(store) as session:
        append_to_ledger(
            session, LedgerFacts(**{**nth_facts(1, writer="g").__dict__, "legal_entity": "GLOBEX"})
        )
    disable_append_only(store)
    with writing(store) as session:
        session.execute(
            update(LedgerEntry)
            .where(col(LedgerEntry.legal_entity) == "GLOBEX", col(LedgerEntry.seq) == 1)
            .values(actor="mallory")
        )
    run = CheckpointActivities(store, settings).sign_ledger_checkpoints(CheckpointRequest(trigger="schedule"))
    assert run.broken_chains == ["GLOBEX"] and len(run.checkpoint_ids) == 1
    with reading(store) as session:
        assert [c.seq for c in checkpoints_of(session, "ACME")] == [4]  # signed after its verification run
        assert checkpoints_of(session, "GLOBEX") == []
        globex = session.exec(
            select(LedgerEntry).where(LedgerEntry.legal_entity == "GLOBEX").order_by(col(LedgerEntry.seq))
        ).all()
    assert globex[-1].event == "ledger_verification_failed" and globex[-1].actor == "cashcycle"
    assert [e.event for e in rows(store)[3:]] == ["ledger_verified", "ledger_checkpoint"]
