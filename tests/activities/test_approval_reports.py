"""Approval turnaround from ledger entries, on SQLite and PostgreSQL: a hand-computed dataset with every
way a tier can start and end (submission, the tier before approved, rejection, edit, void, approval after
the period, a start before it, a delegate, a tier still waiting), and the arithmetic (nearest-rank p50
and p90, mean and hours half up to 1 decimal, the histogram's buckets)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from activities.approval_reports import (
    ApprovalReport,
    Turnaround,
    approval_report,
    approvals_behind,
    bucket_label,
    nearest_rank,
    percentile_rank,
    turnaround,
    unapproved_behind,
)
from activities.db import Store, open_store, reading, writing
from activities.directory import ensure_legal_entity
from activities.ledger import LedgerFacts, append_to_ledger
from activities.models import LegalEntity

NOV_1, NOV_30 = date(2026, 11, 1), date(2026, 11, 30)
NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
ROLES = {1: "ar_approver", 2: "finance_manager", 3: "controller"}


def at(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


class Invoice:
    """Appends an invoice's approval events to its legal entity's ledger, as the workflow records them."""

    def __init__(self, store: Store, entity: str) -> None:
        self.store, self.entity, self.id, self.n = store, entity, str(uuid.uuid4()), 0

    def _append(self, event: str, when: datetime, actor: str, payload: dict[str, object]) -> None:
        self.n += 1
        with writing(self.store) as session:
            append_to_ledger(
                session,
                LedgerFacts(
                    legal_entity=self.entity,
                    business_key=f"invoice/{self.id}#{self.n}",
                    object_type="invoice",
                    object_id=self.id,
                    event=event,
                    from_status=None,
                    to_status=None,
                    actor=actor,
                    actor_roles=[],
                    rule="test",
                    reason="",
                    workflow_id=f"invoice/{self.id}",
                    run_id="",
                    request_id="",
                    at=when.isoformat(),
                    payload=payload,
                ),
            )

    def submit(self, when: datetime) -> Invoice:
        self._append("submit", when, "preparer", {"tiers": ["ar_approver"]})
        return self

    def approve(
        self, when: datetime, tier: int, approver: str, last: bool = True, on_behalf_of: str | None = None
    ) -> Invoice:
        payload = {
            "tier": {"level": tier, "role": ROLES[tier], "approver": approver, "on_behalf_of": on_behalf_of}
        }
        self._append("approve" if last else "approve_tier", when, approver, payload)
        return self

    def end(self, event: str, when: datetime) -> Invoice:
        self._append(event, when, "approver" if event == "reject" else "preparer", {})
        return self


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = open_store(db_url)
    with writing(s) as session:
        for code, name, cur in [("ACME", "Acme Industries SAS", "EUR"), ("GLOBEX", "Globex Corp", "USD")]:
            ensure_legal_entity(session, LegalEntity(code=code, name=name, currency=cur))
    yield s
    s.dispose()


@pytest.fixture
def dataset(store: Store) -> dict[str, Invoice]:
    """November 2026, ACME (tier turnaround in brackets):

      A  submitted 2 Nov 09:00, approved 11:00 by approver                         (t1 2 h)
      B  submitted 3 Nov 10:00, t1 approver 14:00, t2 manager 5 Nov 14:00          (t1 4 h, t2 48 h)
      C  submitted 4 Nov 08:00, rejected 09:00; again 6 Nov 08:00, approver2 20:00 (t1 12 h, submission 2)
      D  submitted 31 Oct 23:00 (before the period), approved 1 Nov 01:00          (t1 2 h)
      E  submitted 10 Nov 10:00, t1 approver 11:00, edited 11 Nov; again 12 Nov 10:00, t1 approver2
         10:30, t2 waiting since                                                    (t1 1 h, t1 0.5 h)
      F  submitted 30 Nov 20:00, approved 1 Dec 01:00 (after the period)           (not counted)
      G  submitted 20 Nov 10:00, voided 12:00                                      (ended unapproved)
      H  submitted 21 Nov 09:00, approver2 on behalf of approver 10:15            (t1 1.25 h)
    GLOBEX
      I  submitted 5 Nov 10:00, approved 13:00 by globex_approver                   (t1 3 h)
    """
    return {
        "A": Invoice(store, "ACME").submit(at(11, 2, 9)).approve(at(11, 2, 11), 1, "approver"),
        "B": Invoice(store, "ACME")
        .submit(at(11, 3, 10))
        .approve(at(11, 3, 14), 1, "approver", last=False)
        .approve(at(11, 5, 14), 2, "manager"),
        "C": Invoice(store, "ACME")
        .submit(at(11, 4, 8))
        .end("reject", at(11, 4, 9))
        .submit(at(11, 6, 8))
        .approve(at(11, 6, 20), 1, "approver2"),
        "D": Invoice(store, "ACME").submit(at(10, 31, 23)).approve(at(11, 1, 1), 1, "approver"),
        "E": Invoice(store, "ACME")
        .submit(at(11, 10, 10))
        .approve(at(11, 10, 11), 1, "approver", last=False)
        .end("edit", at(11, 11))
        .submit(at(11, 12, 10))
        .approve(at(11, 12, 10, 30), 1, "approver2", last=False),
        "F": Invoice(store, "ACME").submit(at(11, 30, 20)).approve(at(12, 1, 1), 1, "approver"),
        "G": Invoice(store, "ACME").submit(at(11, 20, 10)).end("void", at(11, 20, 12)),
        "H": Invoice(store, "ACME")
        .submit(at(11, 21, 9))
        .approve(at(11, 21, 10, 15), 1, "approver2", on_behalf_of="approver"),
        "I": Invoice(store, "GLOBEX").submit(at(11, 5, 10)).approve(at(11, 5, 13), 1, "globex_approver"),
    }


def report(store: Store, entities: list[str], start: date = NOV_1, end: date = NOV_30) -> ApprovalReport:
    with reading(store) as session:
        return approval_report(session, entities, start, end, now=NOW)


def test_turnaround_per_tier_and_per_approver_of_one_legal_entity(
    store: Store, dataset: dict[str, Invoice]
) -> None:
    r = report(store, ["ACME"])
    assert (r.approvals, r.invoices) == (8, 6)
    # 0.5 1 1.25 2 2 4 12 48: rank 4 and rank 8; mean 70.75 / 8 = 8.84375
    assert r.overall == Turnaround(8, "2.0", "48.0", "8.8", "48.0")
    # Tier 1, 0.5 1 1.25 2 2 4 12: rank ceil(3.5) = 4 and ceil(6.3) = 7; mean 22.75 / 7 = 3.25, half up
    assert [(t.tier, t.role, t.turnaround) for t in r.by_tier] == [
        (1, "ar_approver", Turnaround(7, "2.0", "12.0", "3.3", "12.0")),
        (2, "finance_manager", Turnaround(1, "48.0", "48.0", "48.0", "48.0")),
    ]
    assert [(a.approver, a.tiers, a.on_behalf, a.turnaround) for a in r.by_approver] == [
        ("approver", (1,), 0, Turnaround(4, "2.0", "4.0", "2.3", "4.0")),  # 1 2 2 4
        ("approver2", (1,), 1, Turnaround(3, "1.3", "12.0", "4.6", "12.0")),  # 0.5 1.25 12
        ("manager", (2,), 0, Turnaround(1, "48.0", "48.0", "48.0", "48.0")),
    ]
    assert [(b.label, b.count) for b in r.histogram] == [
        ("under 1 h", 1),
        ("1 h to 4 h", 4),
        ("4 h to 8 h", 1),
        ("8 h to 24 h", 1),
        ("24 h to 2 d", 0),
        ("2 d to 5 d", 1),
        ("5 d to 10 d", 0),
        ("10 d or more", 0),
    ]
    # C rejected, E edited, G voided; E's second tier 2 waits since 12 Nov 10:30 (453.5 h at NOW).
    u = r.unapproved
    assert (u.ended, u.rejected, u.waiting, u.oldest_waiting_hours) == (3, 1, 1, "453.5")

    inv = {v.id: k for k, v in dataset.items()}
    assert [(inv[a.invoice_id], a.submission, a.tier, a.approver, a.hours_text) for a in r.population] == [
        ("D", 1, 1, "approver", "2.0"),  # its start, 31 Oct, is before the period: the approval is in it
        ("A", 1, 1, "approver", "2.0"),
        ("B", 1, 1, "approver", "4.0"),
        ("B", 1, 2, "manager", "48.0"),  # from tier 1's approval
        ("C", 2, 1, "approver2", "12.0"),  # from the second submission, not the first (rejected)
        ("E", 1, 1, "approver", "1.0"),
        ("E", 2, 1, "approver2", "0.5"),
        ("H", 1, 1, "approver2", "1.3"),
    ]
    h = r.population[-1]
    assert (h.on_behalf_of, h.hours, h.started_at, h.approved_at) == (
        "approver",
        Decimal("1.25"),
        at(11, 21, 9),
        at(11, 21, 10, 15),
    )

    p = r.produced
    assert p.legal_entities == ("ACME",)
    assert (p.approved_from, p.approved_before, p.day_boundaries) == (at(11, 1), at(12, 1), "UTC")
    assert (p.invoices_read, p.entries_read) == (8, 22)  # A-H, F and G touched in the period too
    assert p.generated_at == NOW
    assert len(p.rows_sha256) == 64


def test_the_figures_behind_each_number_in_ascending_turnaround(
    store: Store, dataset: dict[str, Invoice]
) -> None:
    r = report(store, ["ACME"])
    tier1 = approvals_behind(r, tier=1)
    assert [a.hours_text for a in tier1] == ["0.5", "1.0", "1.3", "2.0", "2.0", "4.0", "12.0"]
    # The p50 and p90 are the approvals at their rank.
    assert tier1[percentile_rank(7, 50) - 1].hours_text == r.by_tier[0].turnaround.p50_hours
    assert tier1[percentile_rank(7, 90) - 1].hours_text == r.by_tier[0].turnaround.p90_hours
    assert [a.approver for a in approvals_behind(r, approver="approver2")] == ["approver2"] * 3
    assert [a.hours_text for a in approvals_behind(r, bucket_from=1)] == ["1.0", "1.3", "2.0", "2.0"]
    assert approvals_behind(r, tier=3) == []
    assert len(approvals_behind(r)) == 8

    inv = {v.id: k for k, v in dataset.items()}
    # Longest first.
    assert [(inv[u.invoice_id], u.tier, u.how, u.hours_text) for u in unapproved_behind(r, "ended")] == [
        ("E", 2, "edit", "13.0"),  # tier 2 started at tier 1's approval (10 Nov 11:00), edited 11 Nov 00:00
        ("G", 1, "void", "2.0"),
        ("C", 1, "reject", "1.0"),
    ]
    assert [inv[u.invoice_id] for u in unapproved_behind(r, "rejected")] == ["C"]
    waiting = unapproved_behind(r, "waiting")
    assert [(inv[u.invoice_id], u.tier, u.submission, u.ended_at, u.hours_text) for u in waiting] == [
        ("E", 2, 2, None, "453.5")
    ]


def test_legal_entities_are_kept_apart_and_an_empty_period_has_no_figures(
    store: Store, dataset: dict[str, Invoice]
) -> None:
    globex = report(store, ["GLOBEX"])
    assert (globex.approvals, globex.overall) == (1, Turnaround(1, "3.0", "3.0", "3.0", "3.0"))
    assert [a.approver for a in globex.by_approver] == ["globex_approver"]
    both = report(store, ["GLOBEX", "ACME"])
    assert (both.approvals, both.produced.legal_entities) == (9, ("ACME", "GLOBEX"))

    december = report(store, ["ACME"], date(2026, 12, 1), date(2026, 12, 31))
    assert (december.approvals, december.overall) == (1, Turnaround(1, "5.0", "5.0", "5.0", "5.0"))  # F

    empty = report(store, ["ACME"], date(2027, 1, 1), date(2027, 1, 31))
    assert (empty.approvals, empty.invoices, empty.overall) == (0, 0, Turnaround(0, None, None, None, None))
    assert (empty.by_tier, empty.by_approver, empty.population) == ((), (), ())
    assert sum(b.count for b in empty.histogram) == 0
    assert (empty.unapproved.waiting, empty.unapproved.oldest_waiting_hours) == (0, None)
    assert empty.produced.entries_read == 0
    assert report(store, []).approvals == 0
    with pytest.raises(ValueError):
        report(store, ["ACME"], NOV_30, NOV_1)


def test_percentiles_are_nearest_rank_and_buckets_are_named() -> None:
    values = [Decimal(v) for v in range(1, 11)]
    assert [nearest_rank(values, p) for p in (50, 90, 100)] == [Decimal(5), Decimal(9), Decimal(10)]
    assert nearest_rank([Decimal(7)], 50) == Decimal(7)
    assert [percentile_rank(n, 90) for n in (1, 2, 10, 11)] == [1, 2, 9, 10]
    assert turnaround([Decimal("0.05"), Decimal("0.04")]) == Turnaround(2, "0.0", "0.1", "0.0", "0.1")
    assert (bucket_label(0, 1), bucket_label(24, 48), bucket_label(240, None)) == (
        "under 1 h",
        "24 h to 2 d",
        "10 d or more",
    )
