"""Evidence packs: for one control and period, the complete population, a reproducible sample with the
automated attribute tests, and the proof that the ledger it came from is intact. One zip an auditor can
use as it is:

    README.txt          what each file is, and how to redraw the sample
    manifest.json       query and filters, generated at/by, generator and catalogue versions, record count,
                        control totals, SHA-256 of every file, each chain's head, checkpoint and verification
    population.csv      every item, in ledger order; each row carries its ledger seq and entry hash
    population.jsonl    the same rows as JSON Lines (canonical JSON)
    sample.csv          the sampled items with each attribute test's result
    sample_tests.jsonl  each sampled item with every test's result and reason
    verification.json   the verification of each chain the population comes from

The population files depend only on the request and the ledger: the same request twice gives
byte-identical population files (and, with the same seed, the same sample).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from activities.checkpoints import checkpoint_refs, held_roles, trusted_public_keys
from activities.controls import (
    Catalogue,
    Control,
    Item,
    TestContext,
    load_catalogue,
    prepare_context,
    run_tests,
)
from activities.db import Store, reading, writing
from activities.duties import load_conflicts
from activities.ledger import LedgerFacts, append_to_ledger, canonical_json, verify_chain
from activities.models import LedgerEntry, LedgerHead, LegalEntity
from activities.settings import Settings

GENERATOR = "cashcycle evidence pack 1"
FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # members' timestamps: the bytes depend on the content only
MAX_PERIOD_DAYS = 3660

POPULATION_COLUMNS = [
    "legal_entity",
    "seq",
    "entry_hash",
    "at",
    "event",
    "object_type",
    "object_id",
    "actor",
    "actor_roles",
    "rule",
    "reason",
    "from_status",
    "to_status",
    "workflow_id",
    "request_id",
    "amount_minor",
    "currency",
    "payload",
]


# Told what the build is doing and how far along it is (0-100), for those watching it (the compliance page).
Progress = Callable[[str, int], None]


def _silent(stage: str, percent: int) -> None:
    pass


class PackError(ValueError):
    """A pack request that cannot be served as asked (unknown control, bad period, ...)."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class PackRequest:
    control_id: str
    period_start: date
    period_end: date  # inclusive
    legal_entities: tuple[str, ...]
    requested_by: str
    sample_size: int | None = None
    seed: int | None = None


@dataclass(frozen=True)
class Pack:
    filename: str
    data: bytes
    manifest: dict[str, Any]


def _amount(event: str, payload: dict[str, Any]) -> tuple[int | None, str]:
    """The money an item is about (its control total), in minor units, with the currency."""
    currency = str(payload.get("currency") or "")
    payment = payload.get("payment")
    if isinstance(payment, dict) and isinstance(payment.get("amount_minor"), int):
        return payment["amount_minor"], currency
    total = payload.get("total_minor")
    if isinstance(total, int):
        return total, currency
    # A credit memo's or write-off's amount; a dispute case's original disputed amount.
    amount = payload.get("amount_minor")
    if isinstance(amount, int):
        return amount, currency
    amounts = payload.get("amounts")
    if isinstance(amounts, dict) and isinstance(amounts.get("original"), int):
        return amounts["original"], currency
    return None, currency


def _bounds(session: Session, entity: str, start: date, end: date) -> tuple[str, str, str]:
    """The period in UTC instants, from the legal entity's own calendar (its time zone)."""
    le = session.get(LegalEntity, entity)
    zone = ZoneInfo(le.timezone) if le is not None and le.timezone else ZoneInfo("UTC")
    lo = datetime.combine(start, time(0), zone).astimezone(UTC)
    hi = datetime.combine(end + timedelta(days=1), time(0), zone).astimezone(UTC)
    return lo.isoformat(), hi.isoformat(), str(zone)


def _csv(rows: list[list[Any]], header: list[str]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return buf.getvalue().encode("utf-8")


def build_pack(
    store: Store,
    settings: Settings,
    req: PackRequest,
    catalogue: Catalogue | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> Pack:
    told = progress or _silent
    catalogue = catalogue or load_catalogue()
    control = catalogue.controls.get(req.control_id)
    if control is None:
        known = ", ".join(sorted(catalogue.controls))
        raise PackError(f"unknown control {req.control_id!r}; the catalogue has {known}", "control_id")
    if req.period_end < req.period_start:
        raise PackError("period_end is before period_start", "period_end")
    if (req.period_end - req.period_start).days > MAX_PERIOD_DAYS:
        raise PackError(f"a period is at most {MAX_PERIOD_DAYS} days", "period_end")
    size = control.default_sample_size if req.sample_size is None else req.sample_size
    if size < 0:
        raise PackError("sample_size must be 0 or more", "sample_size")
    if not req.legal_entities:
        raise PackError("no legal entity to take the population from", "legal_entity")

    trusted = trusted_public_keys(settings)
    items: list[Item] = []
    chains: dict[str, Any] = {}
    bounds: dict[str, Any] = {}
    verifications: dict[str, Any] = {}
    with reading(store) as session:
        chosen = sorted(req.legal_entities)
        for n, entity in enumerate(chosen):
            told(f"verifying the ledger of {entity} and reading its population", 5 + 55 * n // len(chosen))
            lo, hi, zone = _bounds(session, entity, req.period_start, req.period_end)
            bounds[entity] = {"from_utc": lo, "before_utc": hi, "time_zone": zone}
            head = session.get(LedgerHead, entity)
            result = verify_chain(session, entity, checkpoints=checkpoint_refs(session, entity, trusted))
            verifications[entity] = {
                "intact": result.intact,
                "summary": result.summary,
                "entries": result.entries,
                "head_hash": result.head_hash,
                "broken_at": result.broken_at,
                "kind": result.kind,
                "checkpoint_id": result.checkpoint_id,
                "checkpoint_seq": result.checkpoint_seq,
            }
            chains[entity] = {
                "head_seq": head.seq if head else 0,
                "head_hash": head.entry_hash if head else "",
                "checkpoint": {"id": result.checkpoint_id, "seq": result.checkpoint_seq},
            }
            rows = session.execute(
                sa_select(LedgerEntry)
                .where(
                    col(LedgerEntry.legal_entity) == entity,
                    col(LedgerEntry.event).in_(control.events),
                    col(LedgerEntry.object_type).in_(control.object_types),
                    col(LedgerEntry.at) >= lo,
                    col(LedgerEntry.at) < hi,
                )
                .order_by(col(LedgerEntry.seq))
                .execution_options(yield_per=5000)
            ).scalars()
            items.extend(Item.from_row(r) for r in rows)

    # The population, in ledger order, each row traceable to its entry.
    told(f"writing the population ({len(items)} records)", 60)
    pop_rows: list[list[Any]] = []
    jsonl: list[str] = []
    totals: dict[str, int] = defaultdict(int)
    for it in items:
        amount, currency = _amount(it.event, it.payload)
        if amount is not None:
            totals[currency or "?"] += amount
        row = [
            it.legal_entity,
            it.seq,
            it.entry_hash,
            it.at,
            it.event,
            it.object_type,
            it.object_id,
            it.actor,
            ";".join(it.actor_roles),
            it.rule,
            it.reason,
            it.from_status,
            it.to_status,
            it.workflow_id,
            it.request_id,
            amount,
            currency,
            canonical_json(it.payload),
        ]
        pop_rows.append(row)
        record = dict(zip(POPULATION_COLUMNS, row, strict=True))
        record["actor_roles"] = list(it.actor_roles)
        record["payload"] = it.payload
        jsonl.append(canonical_json(record))
    population_csv = _csv(pop_rows, POPULATION_COLUMNS)
    population_jsonl = "".join(line + "\n" for line in jsonl).encode("utf-8")
    population_sha = hashlib.sha256(population_csv).hexdigest()

    told("drawing the sample", 70)
    # The sample: indices drawn from the population in ledger order, reproducibly from the seed.
    if req.seed is not None:
        seed, seed_source = req.seed, "requested"
    else:
        seed = int(hashlib.sha256(f"{control.id}|{population_sha}".encode()).hexdigest()[:12], 16)
        seed_source = "derived from the control id and the SHA-256 of population.csv"
    k = min(size, len(items))
    picked = sorted(random.Random(seed).sample(range(len(items)), k))
    sample = [items[i] for i in picked]

    told(f"running the attribute tests on {len(sample)} sampled items", 75)
    ctx = TestContext(conflicts=load_conflicts())
    histories: dict[tuple[str, str], list[Item]] = {}
    with reading(store) as session:
        for entity in {s.legal_entity for s in sample}:
            ids = sorted({s.object_id for s in sample if s.legal_entity == entity})
            for chunk in range(0, len(ids), 500):
                rows = session.execute(
                    sa_select(LedgerEntry)
                    .where(
                        col(LedgerEntry.legal_entity) == entity,
                        col(LedgerEntry.object_id).in_(ids[chunk : chunk + 500]),
                    )
                    .order_by(col(LedgerEntry.seq))
                ).scalars()
                for r in rows:
                    histories.setdefault((entity, r.object_id), []).append(Item.from_row(r))
            if "no_duties_conflict_created" in control.attributes:
                access = session.execute(
                    sa_select(LedgerEntry)
                    .where(
                        col(LedgerEntry.legal_entity) == entity,
                        col(LedgerEntry.event).in_(["role_granted", "role_revoked"]),
                    )
                    .order_by(col(LedgerEntry.seq))
                ).scalars()
                ctx.extra.setdefault("access_history", []).extend(Item.from_row(r) for r in access)
            # What the control's tests need beyond each object's own history (other objects, the store).
            prepare_context(session, control, entity, [s for s in sample if s.legal_entity == entity], ctx)

    sample_rows: list[list[Any]] = []
    sample_jsonl: list[str] = []
    summary: dict[str, Counter[str]] = {name: Counter() for name in control.attributes}
    for n, (index, it) in enumerate(zip(picked, sample, strict=True), start=1):
        outcomes = run_tests(control, it, histories.get((it.legal_entity, it.object_id), []), ctx)
        for o in outcomes:
            summary[o.test][o.result] += 1
        sample_rows.append(
            [n, index + 1, it.legal_entity, it.seq, it.entry_hash, it.object_id, it.event, it.actor]
            + [o.result for o in outcomes]
        )
        sample_jsonl.append(
            canonical_json(
                {
                    "sample_no": n,
                    "population_row": index + 1,
                    "legal_entity": it.legal_entity,
                    "seq": it.seq,
                    "entry_hash": it.entry_hash,
                    "object_id": it.object_id,
                    "event": it.event,
                    "actor": it.actor,
                    "tests": [{"test": o.test, "result": o.result, "detail": o.detail} for o in outcomes],
                    "passed": all(o.result != "fail" for o in outcomes),
                }
            )
        )
    sample_header = [
        "sample_no",
        "population_row",
        "legal_entity",
        "seq",
        "entry_hash",
        "object_id",
        "event",
        "actor",
        *control.attributes,
    ]
    files: dict[str, bytes] = {
        "population.csv": population_csv,
        "population.jsonl": population_jsonl,
        "sample.csv": _csv(sample_rows, sample_header),
        "sample_tests.jsonl": "".join(line + "\n" for line in sample_jsonl).encode("utf-8"),
        "verification.json": (json.dumps(verifications, indent=2, sort_keys=True) + "\n").encode("utf-8"),
    }
    generated_at = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    manifest: dict[str, Any] = {
        "generator": GENERATOR,
        "generated_at": generated_at,
        "generated_by": req.requested_by,
        "control": {
            "id": control.id,
            "name": control.name,
            "description": control.description,
            "frequency": control.frequency,
        },
        "catalogue": {"version": catalogue.version, "sha256": catalogue.sha256},
        "query": {
            "population": control.population,
            "source": "ledger_entry (the evidence ledger)",
            "filters": {
                "legal_entity": sorted(req.legal_entities),
                "event": list(control.events),
                "object_type": list(control.object_types),
                "at": "from_utc <= at < before_utc, per legal entity (its calendar days)",
                "period_start": req.period_start.isoformat(),
                "period_end": req.period_end.isoformat(),
            },
            "bounds": bounds,
            "order": "legal_entity, seq",
        },
        "record_count": len(items),
        "control_totals": {
            "records": len(items),
            "by_event": dict(sorted(Counter(it.event for it in items).items())),
            "by_legal_entity": dict(sorted(Counter(it.legal_entity for it in items).items())),
            "amount_minor_by_currency": dict(sorted(totals.items())),
        },
        "sample": {
            "size": k,
            "requested_size": size,
            "seed": seed,
            "seed_source": seed_source,
            "method": (
                "Python random.Random(seed).sample(range(record_count), size), sorted; population rows "
                "numbered from 1 in population.csv order"
            ),
            "attribute_tests": {name: dict(sorted(c.items())) for name, c in summary.items()},
            "exceptions": sum(c["fail"] for c in summary.values()),
        },
        "chains": chains,
        "verification": {e: v["summary"] for e, v in verifications.items()},
        "files": {
            name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
            for name, data in files.items()
        },
    }
    told("writing the zip", 95)
    manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
    readme = _readme(control, req, len(items), k, seed).encode("utf-8")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in [("README.txt", readme), ("manifest.json", manifest_bytes), *files.items()]:
            info = zipfile.ZipInfo(name, FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    filename = f"evidence-{control.id}-{req.period_start.isoformat()}-{req.period_end.isoformat()}.zip"
    return Pack(filename, buf.getvalue(), manifest)


def record_pack(store: Store, pack: Pack, requested_by: str, request_id: str = "") -> None:
    """The pack's production is evidence too: who took which population, with the files' hashes."""
    entities = pack.manifest["query"]["filters"]["legal_entity"]
    at = datetime.now(UTC).isoformat(timespec="microseconds")
    files = {name: meta["sha256"] for name, meta in pack.manifest["files"].items()}
    for entity in entities:
        with writing(store) as session:
            append_to_ledger(
                session,
                LedgerFacts(
                    legal_entity=entity,
                    business_key=f"pack#{entity}#{at}#{requested_by}",
                    object_type="evidence",
                    object_id=pack.manifest["control"]["id"],
                    event="evidence_pack",
                    from_status=None,
                    to_status=None,
                    actor=requested_by,
                    actor_roles=held_roles(session, requested_by, entity),
                    rule="evidence:export",
                    reason=f"{pack.filename}: {pack.manifest['record_count']} records, "
                    f"sample {pack.manifest['sample']['size']}",
                    workflow_id="",
                    run_id="",
                    request_id=request_id,
                    at=at,
                    payload={
                        "control_id": pack.manifest["control"]["id"],
                        "period_start": pack.manifest["query"]["filters"]["period_start"],
                        "period_end": pack.manifest["query"]["filters"]["period_end"],
                        "record_count": pack.manifest["record_count"],
                        "sample_seed": pack.manifest["sample"]["seed"],
                        "files": files,
                    },
                ),
            )


def _readme(control: Control, req: PackRequest, count: int, k: int, seed: int) -> str:
    return f"""Cashcycle evidence pack: {control.id} {control.name}
Period {req.period_start.isoformat()} to {req.period_end.isoformat()}
(inclusive, in each legal entity's calendar days)

{control.description}

Population: {control.population}
{count} records in population.csv and population.jsonl, in ledger order. Each row names the ledger
entry it comes from (legal_entity, seq, entry_hash): `cashcycle ledger verify --entity E` recomputes the
chain those hashes belong to, and verification.json holds the result at the time of this pack.

Sample: {k} items, drawn with seed {seed}:
    import random; sorted(random.Random({seed}).sample(range({count}), {k}))
gives the 0-based population rows (add 1 for the numbering in sample.csv). sample_tests.jsonl has every
automated attribute test's result with its reason.

manifest.json: the query and filters, when and by whom this was generated, the record count and control
totals, the SHA-256 of every file, and each chain's head and latest signed checkpoint.
"""
