"""Evidence ledger figures on PostgreSQL, each against a baseline measured in the same run.

    .venv/bin/python bench/ledger.py [--appends 2000] [--verify 1000000] [--pack 100000] [--json FILE]
    make bench-ledger

- append: chained appends (`append_to_ledger`, one transaction each, head row lock) by 1 and by 4
  concurrent writer processes; baseline: the same rows inserted by the same writers into an unchained
  copy of the table (no head, no lock, no hash). Figures: entries/s and the ratio.
- verify: `verify_chain` over N entries of one chain (target: 1,000,000 in under 10 s); baseline: reading
  the same rows with the same query and nothing else. Figures: seconds, entries/s.
- pack: an evidence pack (OTC-01) over a population of M approvals (target: 100,000 in under 10 s);
  baseline: reading the population rows. Figures: seconds.

The bench creates its own database on the server (--admin-url, default the machine's local PostgreSQL) and
drops it at the end. The big chains are written with COPY (hashes computed here with the ledger's own
functions), so that setting up a million entries takes seconds, not the hours of a million transactions.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlmodel import col, select  # noqa: E402

from activities.db import migrate, open_store, reading, writing  # noqa: E402
from activities.ledger import (  # noqa: E402
    GENESIS_HASH,
    LedgerFacts,
    append_to_ledger,
    canonical_json,
    compute_entry_hash,
    sha256_hex,
    verify_chain,
)
from activities.models import LedgerEntry, LegalEntity  # noqa: E402
from activities.packs import PackRequest, build_pack  # noqa: E402
from activities.settings import Settings  # noqa: E402

COPY_COLUMNS = (
    "legal_entity, seq, business_key, object_type, object_id, event, from_status, to_status, actor, "
    "actor_roles, rule, reason, workflow_id, run_id, request_id, at, payload, payload_hash, prev_hash, "
    "entry_hash"
)


def facts(writer: str, n: int, entity: str = "APPEND") -> LedgerFacts:
    return LedgerFacts(
        legal_entity=entity,
        business_key=f"{writer}#{n}",
        object_type="invoice",
        object_id=f"{writer}-{n // 5}",
        event="approve",
        from_status="pending_approval",
        to_status="approved",
        actor="approver",
        actor_roles=["ar_approver"],
        rule="p, ar_approver, *, invoice:approve",
        reason="tier 1 (ar_approver): ok",
        workflow_id=f"invoice/APPEND/{writer}-{n // 5}",
        run_id="run",
        request_id=f"approve:approver:{writer}-{n}",
        at=datetime.now(UTC).isoformat(),
        payload={"currency": "EUR", "total_minor": 123456, "tier": {"level": 1, "role": "ar_approver"}},
    )


def _append_worker(url: str, writer: str, count: int, chained: bool, out: Any, ready: Any) -> None:
    store = open_store(url)
    with reading(store) as session:  # connect before the clock starts
        session.execute(text("SELECT 1"))
    ready.wait()
    start = time.perf_counter()
    for n in range(count):
        f = facts(writer, n)
        if chained:
            with writing(store) as session:
                append_to_ledger(session, f)
        else:
            with writing(store) as session:
                session.execute(
                    text(
                        "INSERT INTO bench_unchained (business_key, object_id, payload, at) "
                        "VALUES (:k, :o, :p, :a)"
                    ),
                    {"k": f.business_key, "o": f.object_id, "p": canonical_json(f.payload), "a": f.at},
                )
    out.put(time.perf_counter() - start)
    store.dispose()


def bench_append(url: str, total: int) -> dict[str, Any]:
    with writing(open_store(url)) as session:
        session.execute(
            text(
                "CREATE TABLE IF NOT EXISTS bench_unchained (id bigserial primary key, "
                "business_key text unique, object_id text, payload text, at text)"
            )
        )
    ctx = multiprocessing.get_context("spawn")
    results: dict[str, Any] = {}
    for writers in (1, 4):
        for chained in (False, True):
            queue = ctx.Queue()
            ready = ctx.Barrier(writers + 1)
            tag = uuid.uuid4().hex[:6]
            procs = [
                ctx.Process(
                    target=_append_worker, args=(url, f"{tag}-{w}", total // writers, chained, queue, ready)
                )
                for w in range(writers)
            ]
            for p in procs:
                p.start()
            ready.wait()  # every writer has started and connected: from here, appends only
            start = time.perf_counter()
            for p in procs:
                p.join()
            wall = time.perf_counter() - start
            for _ in procs:
                queue.get()
            rate = (total // writers) * writers / wall
            results[f"{'chained' if chained else 'baseline'}_{writers}"] = round(rate, 1)
        results[f"ratio_{writers}"] = round(results[f"chained_{writers}"] / results[f"baseline_{writers}"], 2)
    with reading(open_store(url)) as session:
        v = verify_chain(session, "APPEND")
    results["chain_after_concurrent_appends"] = v.summary
    assert v.intact, v.summary
    return results


def write_chain(dsn: str, entity: str, count: int, day: date, event: str = "approve") -> None:
    """A valid chain of `count` entries, hashed with the ledger's functions, written with COPY."""
    prev = GENESIS_HASH
    at_base = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=8)
    with psycopg.connect(dsn) as conn:
        with conn.cursor() as cur, cur.copy(f"COPY ledger_entry ({COPY_COLUMNS}) FROM STDIN") as copy:
            for seq in range(1, count + 1):
                level = 1 + seq % 2
                payload = canonical_json(
                    {
                        "currency": "EUR",
                        "total_minor": 100_000 + seq,
                        "tiers": ["ar_approver", "finance_manager"],
                        "tier": {"level": level, "role": ["ar_approver", "finance_manager"][level - 1]},
                    }
                )
                e = LedgerEntry(
                    legal_entity=entity,
                    seq=seq,
                    business_key=f"{entity}#{seq}",
                    object_type="invoice",
                    object_id=f"inv-{seq // 2}",
                    event=event,
                    from_status="pending_approval",
                    to_status="approved",
                    actor=f"approver{seq % 7}",
                    actor_roles=canonical_json(["ar_approver"]),
                    rule="p, ar_approver, *, invoice:approve",
                    reason="ok",
                    workflow_id=f"invoice/{entity}/inv-{seq // 2}",
                    run_id="run",
                    request_id=f"r{seq}",
                    at=(at_base + timedelta(microseconds=seq)).isoformat(),
                    payload=payload,
                    payload_hash=sha256_hex(payload),
                    prev_hash=prev,
                    entry_hash="",
                )
                e.entry_hash = compute_entry_hash(prev, e)
                prev = e.entry_hash
                copy.write_row(
                    (
                        e.legal_entity,
                        e.seq,
                        e.business_key,
                        e.object_type,
                        e.object_id,
                        e.event,
                        e.from_status,
                        e.to_status,
                        e.actor,
                        e.actor_roles,
                        e.rule,
                        e.reason,
                        e.workflow_id,
                        e.run_id,
                        e.request_id,
                        e.at,
                        e.payload,
                        e.payload_hash,
                        e.prev_hash,
                        e.entry_hash,
                    )
                )
        conn.execute(
            "INSERT INTO ledger_head (legal_entity, seq, entry_hash) VALUES (%s, %s, %s)",
            (entity, count, prev),
        )
        conn.commit()
        conn.execute("ANALYZE ledger_entry")


def bench_verify(url: str, dsn: str, count: int) -> dict[str, Any]:
    start = time.perf_counter()
    write_chain(dsn, "VERIFY", count, date(2026, 10, 1))
    setup = time.perf_counter() - start
    store = open_store(url)
    with reading(store) as session:
        start = time.perf_counter()
        rows = session.execute(
            select(col(LedgerEntry.seq), col(LedgerEntry.entry_hash), col(LedgerEntry.payload))
            .where(col(LedgerEntry.legal_entity) == "VERIFY")
            .order_by(col(LedgerEntry.seq))
            .execution_options(yield_per=5000)
        )
        n = sum(1 for _ in rows)
        baseline = time.perf_counter() - start
    with reading(store) as session:
        start = time.perf_counter()
        result = verify_chain(session, "VERIFY")
        elapsed = time.perf_counter() - start
    assert result.intact and result.entries == count == n, result.summary
    return {
        "entries": count,
        "setup_s": round(setup, 1),
        "verify_s": round(elapsed, 2),
        "verify_entries_per_s": round(count / elapsed),
        "baseline_read_s": round(baseline, 2),
        "target_s": 10.0,
        "met": elapsed < 10.0 if count >= 1_000_000 else None,
    }


def bench_pack(url: str, dsn: str, count: int) -> dict[str, Any]:
    day = date(2026, 9, 15)
    write_chain(dsn, "PACK", count, day)
    store = open_store(url)
    with writing(store) as session:
        session.add(LegalEntity(code="PACK", name="Pack bench", currency="EUR", timezone="Europe/Paris"))
    with reading(store) as session:
        start = time.perf_counter()
        rows = session.execute(
            select(LedgerEntry)
            .where(col(LedgerEntry.legal_entity) == "PACK", col(LedgerEntry.event).in_(["approve"]))
            .order_by(col(LedgerEntry.seq))
            .execution_options(yield_per=5000)
        ).scalars()
        n = sum(1 for _ in rows)
        baseline = time.perf_counter() - start
    settings = Settings(environment="test")
    req = PackRequest(
        control_id="OTC-01",
        period_start=date(2026, 9, 1),
        period_end=date(2026, 9, 30),
        legal_entities=("PACK",),
        requested_by="bench",
        seed=1,
    )
    start = time.perf_counter()
    pack = build_pack(store, settings, req)
    elapsed = time.perf_counter() - start
    assert pack.manifest["record_count"] == count == n
    return {
        "population": count,
        "pack_s": round(elapsed, 2),
        "zip_bytes": len(pack.data),
        "baseline_read_s": round(baseline, 2),
        "target_s": 10.0,
        "met": elapsed < 10.0 if count >= 100_000 else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--appends", type=int, default=2000, help="entries per append run")
    ap.add_argument("--verify", type=int, default=1_000_000, help="entries in the chain to verify")
    ap.add_argument("--pack", type=int, default=100_000, help="population of the pack")
    ap.add_argument("--json", help="write the figures to this file too")
    args = ap.parse_args(argv)
    name = f"cashcycle_bench_{uuid.uuid4().hex[:8]}"
    admin = args.admin_url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = admin.rsplit("/", 1)[0] + f"/{name}"
    url = dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    figures: dict[str, Any] = {}
    try:
        migrate(url)
        figures["append"] = bench_append(url, args.appends)
        print("append (entries/s):", json.dumps(figures["append"]), flush=True)
        figures["verify"] = bench_verify(url, dsn, args.verify)
        print("verify:", json.dumps(figures["verify"]), flush=True)
        figures["pack"] = bench_pack(url, dsn, args.pack)
        print("pack:", json.dumps(figures["pack"]), flush=True)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
