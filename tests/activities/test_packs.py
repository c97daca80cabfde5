"""Evidence packs over a real ledger (SQLite and PostgreSQL): complete populations bounded by the legal
entity's calendar, reproducible samples, byte-identical population files, a manifest whose hashes match,
and attribute tests that catch a planted violation (an approval whose approver is the preparer)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import zipfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from activities.controls import CatalogueError, load_catalogue
from activities.db import Store, open_store, reading, writing
from activities.ledger import LedgerFacts, append_to_ledger
from activities.models import LedgerEntry, LegalEntity
from activities.packs import PackError, PackRequest, build_pack, record_pack
from activities.settings import Settings

SETTINGS = Settings(environment="test", ledger_signing_key="9d" * 32)
TIERS = ["ar_approver", "finance_manager"]


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = open_store(db_url)
    with writing(s) as session:
        session.add(LegalEntity(code="ACME", name="Acme SAS", currency="EUR", timezone="Europe/Paris"))
    yield s
    s.dispose()


def entry(
    store: Store,
    key: str,
    invoice: str,
    event: str,
    actor: str,
    at: str,
    roles: list[str],
    payload: dict[str, Any] | None = None,
) -> None:
    with writing(store) as session:
        append_to_ledger(
            session,
            LedgerFacts(
                legal_entity="ACME",
                business_key=key,
                object_type="invoice",
                object_id=invoice,
                event=event,
                from_status=None,
                to_status=None,
                actor=actor,
                actor_roles=roles,
                rule="",
                reason="",
                workflow_id=f"invoice/ACME/{invoice}",
                run_id="r",
                request_id="",
                at=at,
                payload={"currency": "EUR", "total_minor": 50_000_00, **(payload or {})},
            ),
        )


def invoice_lifecycle(
    store: Store,
    n: int,
    day: str,
    approvers: tuple[str, str] = ("approver", "manager"),
    preparer: str = "preparer",
) -> None:
    """An invoice of 50,000.00 EUR through two tiers and delivery, on one day (UTC times)."""
    inv = f"inv-{n}"
    entry(store, f"{inv}#1", inv, "create", "erp", f"{day}T08:00:00+00:00", ["erp_integration"])
    entry(
        store, f"{inv}#2", inv, "submit", preparer, f"{day}T08:10:00+00:00", ["ar_preparer"], {"tiers": TIERS}
    )
    for level, (who, role) in enumerate(zip(approvers, TIERS, strict=True), start=1):
        entry(
            store,
            f"{inv}#{2 + level}",
            inv,
            "approve" if level == 2 else "approve_tier",
            who,
            f"{day}T09:0{level}:00+00:00",
            [role],
            {"tiers": TIERS, "tier": {"level": level, "role": role, "approver": who}, "matrix_version": "v1"},
        )
    entry(store, f"{inv}#5", inv, "deliver", "cashcycle", f"{day}T10:00:00+00:00", [])


def unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def request(**kw: Any) -> PackRequest:
    base: dict[str, Any] = {
        "control_id": "OTC-01",
        "period_start": date(2026, 11, 1),
        "period_end": date(2026, 11, 30),
        "legal_entities": ("ACME",),
        "requested_by": "compliance",
    }
    return PackRequest(**{**base, **kw})


def test_the_population_is_every_approval_in_the_entitys_calendar_period_and_nothing_else(
    store: Store,
) -> None:
    invoice_lifecycle(store, 1, "2026-10-31")  # before
    for n in range(2, 6):
        invoice_lifecycle(store, n, f"2026-11-{n:02d}")
    invoice_lifecycle(store, 6, "2026-12-01")  # after
    # 2026-11-30T23:30Z is already 1 December in Paris: outside. 2026-10-31T23:30Z is 1 November: inside.
    entry(store, "edge-in", "inv-7", "approve_tier", "approver", "2026-10-31T23:30:00+00:00", ["ar_approver"])
    entry(
        store, "edge-out", "inv-8", "approve_tier", "approver", "2026-11-30T23:30:00+00:00", ["ar_approver"]
    )
    pack = build_pack(store, SETTINGS, request())
    files = unzip(pack.data)
    rows = list(csv.DictReader(io.StringIO(files["population.csv"].decode())))
    assert {r["object_id"] for r in rows} == {"inv-2", "inv-3", "inv-4", "inv-5", "inv-7"}
    assert len(rows) == 9 and pack.manifest["record_count"] == 9
    assert {r["event"] for r in rows} == {"approve_tier", "approve"}
    with reading(store) as session:
        for r in rows:  # each row traceable to its ledger entry
            e = session.exec(select(LedgerEntry).where(LedgerEntry.seq == int(r["seq"]))).one()
            assert (e.entry_hash, e.object_id, e.event) == (r["entry_hash"], r["object_id"], r["event"])
    lines = files["population.jsonl"].decode().splitlines()
    assert [json.loads(x)["seq"] for x in lines] == [int(r["seq"]) for r in rows]
    totals = pack.manifest["control_totals"]
    assert totals["by_event"] == {"approve": 4, "approve_tier": 5}
    assert totals["amount_minor_by_currency"] == {"EUR": 9 * 50_000_00}
    assert pack.manifest["query"]["bounds"]["ACME"]["from_utc"] == "2026-10-31T23:00:00+00:00"


def test_the_manifest_hashes_every_file_and_names_the_chain_head_and_verification(store: Store) -> None:
    for n in range(1, 4):
        invoice_lifecycle(store, n, "2026-11-10")
    pack = build_pack(store, SETTINGS, request())
    files = unzip(pack.data)
    manifest = json.loads(files["manifest.json"])
    assert set(files) == {
        "README.txt",
        "manifest.json",
        "population.csv",
        "population.jsonl",
        "sample.csv",
        "sample_tests.jsonl",
        "verification.json",
    }
    for name, meta in manifest["files"].items():
        assert hashlib.sha256(files[name]).hexdigest() == meta["sha256"]
        assert len(files[name]) == meta["bytes"]
    assert manifest["chains"]["ACME"]["head_seq"] == 15
    assert manifest["verification"]["ACME"].startswith("intact, 15 entries")
    assert manifest["generated_by"] == "compliance" and manifest["generator"]
    assert manifest["query"]["filters"]["event"] == ["approve_tier", "approve"]


def test_the_same_request_twice_gives_byte_identical_population_files_and_the_same_sample(
    store: Store,
) -> None:
    for n in range(1, 31):
        invoice_lifecycle(store, n, f"2026-11-{(n % 28) + 1:02d}")
    first = unzip(build_pack(store, SETTINGS, request(seed=42, sample_size=10)).data)
    second = unzip(build_pack(store, SETTINGS, request(seed=42, sample_size=10)).data)
    for name in ("population.csv", "population.jsonl", "sample.csv", "sample_tests.jsonl"):
        assert first[name] == second[name], name
    # The sample is what the documented method gives: an auditor can redraw it.
    rows = list(csv.DictReader(io.StringIO(first["sample.csv"].decode())))
    expected = sorted(random.Random(42).sample(range(60), 10))
    assert [int(r["population_row"]) - 1 for r in rows] == expected
    other = unzip(build_pack(store, SETTINGS, request(seed=43, sample_size=10)).data)
    assert other["sample.csv"] != first["sample.csv"]
    # Without a seed, one is derived from the population and recorded: still reproducible.
    a = build_pack(store, SETTINGS, request(sample_size=5))
    b = build_pack(store, SETTINGS, request(sample_size=5))
    assert a.manifest["sample"]["seed"] == b.manifest["sample"]["seed"]
    assert unzip(a.data)["sample.csv"] == unzip(b.data)["sample.csv"]


def test_attribute_tests_catch_an_approval_by_the_preparer(store: Store) -> None:
    invoice_lifecycle(store, 1, "2026-11-03")
    invoice_lifecycle(store, 2, "2026-11-04", approvers=("preparer", "manager"))  # planted: self-approval
    pack = build_pack(store, SETTINGS, request(sample_size=100))
    tests = [json.loads(x) for x in unzip(pack.data)["sample_tests.jsonl"].decode().splitlines()]
    assert len(tests) == 4  # the whole population
    by_item = {(t["object_id"], t["event"]): {o["test"]: o for o in t["tests"]} for t in tests}
    planted = by_item[("inv-2", "approve_tier")]["approver_not_preparer"]
    assert planted["result"] == "fail" and "preparer" in planted["detail"]
    clean = by_item[("inv-1", "approve_tier")]
    assert all(o["result"] == "pass" for o in clean.values()), clean
    assert pack.manifest["sample"]["attribute_tests"]["approver_not_preparer"] == {"fail": 1, "pass": 3}
    assert pack.manifest["sample"]["exceptions"] == 1


def test_attribute_tests_catch_out_of_order_tiers_missing_roles_and_delivery_before_approval(
    store: Store,
) -> None:
    inv = "inv-bad"
    entry(store, "b1", inv, "create", "erp", "2026-11-05T08:00:00+00:00", ["erp_integration"])
    entry(
        store, "b2", inv, "submit", "preparer", "2026-11-05T08:01:00+00:00", ["ar_preparer"], {"tiers": TIERS}
    )
    entry(store, "b3", inv, "deliver", "cashcycle", "2026-11-05T08:02:00+00:00", [])
    entry(
        store,
        "b4",
        inv,
        "approve_tier",
        "approver",
        "2026-11-05T08:03:00+00:00",
        ["collector"],
        {"tiers": TIERS, "tier": {"level": 2, "role": "finance_manager"}},
    )
    pack = build_pack(store, SETTINGS, request(sample_size=10))
    [item] = [json.loads(x) for x in unzip(pack.data)["sample_tests.jsonl"].decode().splitlines()]
    results = {o["test"]: o["result"] for o in item["tests"]}
    assert results["approver_held_tier_role"] == "fail"
    assert results["tier_in_matrix_order"] == "fail"
    assert results["approved_before_delivery"] == "fail"
    assert item["passed"] is False


def test_an_empty_population_still_gives_a_complete_pack(store: Store) -> None:
    pack = build_pack(store, SETTINGS, request(control_id="OTC-06"))
    files = unzip(pack.data)
    assert pack.manifest["record_count"] == 0 and pack.manifest["sample"]["size"] == 0
    assert files["population.csv"].decode().startswith("legal_entity,seq,entry_hash,")
    assert files["population.jsonl"] == b""


def test_bad_requests_are_refused_with_the_field(store: Store) -> None:
    with pytest.raises(PackError, match="unknown control") as exc:
        build_pack(store, SETTINGS, request(control_id="NOPE"))
    assert exc.value.field == "control_id"
    with pytest.raises(PackError, match="before") as exc:
        build_pack(store, SETTINGS, request(period_end=date(2026, 10, 1)))
    assert exc.value.field == "period_end"
    with pytest.raises(PackError, match="sample_size"):
        build_pack(store, SETTINGS, request(sample_size=-1))


def test_producing_a_pack_is_itself_recorded(store: Store) -> None:
    invoice_lifecycle(store, 1, "2026-11-03")
    pack = build_pack(store, SETTINGS, request())
    record_pack(store, pack, "compliance", "req-1")
    with reading(store) as session:
        last = session.exec(select(LedgerEntry).order_by(col(LedgerEntry.seq).desc())).first()
    assert last is not None and (last.event, last.actor, last.request_id) == (
        "evidence_pack",
        "compliance",
        "req-1",
    )
    assert (
        json.loads(last.payload)["files"]["population.csv"]
        == pack.manifest["files"]["population.csv"]["sha256"]
    )


def test_the_catalogue_covers_the_controls_the_domain_lists_and_refuses_unknown_tests(tmp_path: Path) -> None:
    catalogue = load_catalogue()
    names = {c.name for c in catalogue.controls.values()}
    for wanted in (
        "Invoice approval",
        "Credit memo approval",
        "Write-off approval",
        "Customer master changes",
        "Access and role changes",
        "Dispute resolution with root cause",
        "Cash application",
    ):
        assert wanted in names
    bad = tmp_path / "controls.toml"
    bad.write_text(
        'version = "x"\n[[control]]\nid = "X"\nname = "n"\ndescription = "d"\nfrequency = "daily"\n'
        'object_types = ["invoice"]\nevents = ["approve"]\npopulation = "p"\nattributes = ["made_up"]\n'
    )
    with pytest.raises(CatalogueError, match="made_up"):
        load_catalogue(bad)
