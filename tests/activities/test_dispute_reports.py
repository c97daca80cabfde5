"""The dispute figures (activities/dispute_reports.py) from cases recorded as the workflow records them
(read model and ledger, through record_dispute), on SQLite and PostgreSQL: a hand-computed November 2026
with a case spanning the period's end, a deduction paid after it (the ledger says what was open at the
end, not the read model), a case opened before the period and closed in it, a voided case, two
currencies (never converted), CAPAs; and an empty period."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from activities.capa import Capa
from activities.db import Store, reading, writing
from activities.dispute_reports import (
    CaseFacts,
    DisputeReport,
    cases_behind,
    dispute_report,
    slices,
)
from activities.disputes import record_dispute
from activities.models import Invoice
from tests.activities.test_portal_reports import HOOLI, INITECH, UMBRELLA, add_invoice, store  # noqa: F401
from workflows.dispute_types import Amounts, DisputeRecord, DisputeState
from workflows.types import Actor

NOV_1, NOV_30 = date(2026, 11, 1), date(2026, 11, 30)
NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
SYSTEM = Actor("system", ["system"], "test")


def at(month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


def issued(
    into: Store, customer: str, when: datetime, currency: str, total: int, entity: str = "ACME"
) -> str:
    invoice_id = add_invoice(into, entity, customer)
    with writing(into) as s:
        inv = s.get(Invoice, invoice_id)
        assert inv is not None
        inv.delivered_at, inv.currency, inv.total_minor = when, currency, total
        s.add(inv)
    return invoice_id


class Case:
    """A case recorded transition by transition, as DisputeWorkflow records it."""

    def __init__(
        self,
        into: Store,
        customer: str,
        currency: str,
        source: str,
        reason: str,
        opened: datetime,
        amount: int,
        entity: str = "ACME",
        sla_due: datetime | None = None,
    ) -> None:
        self.store = into
        number = f"DSP-T-{uuid.uuid4().hex[:8]}"
        self.state = DisputeState(
            dispute_id=str(uuid.uuid4()),
            workflow_id=f"dispute/{entity}/{number}",
            legal_entity=entity,
            case_number=number,
            customer_id=customer,
            currency=currency,
            source=source,
            status="open",
            claimed_code=reason,
            reason=reason,
            reason_version="test",
            description="",
            owner="collector",
            coordinator="",
            invoices=[],
            amounts=Amounts(original_minor=amount, open_minor=amount),
            opened_by="collector",
            opened_at=opened.isoformat(),
            status_since=opened.isoformat(),
            transition_seq=0,
            sla_due_at=sla_due.isoformat() if sla_due else "",
        )
        self.record("open", "open", opened, from_status=None)

    @property
    def id(self) -> str:
        return self.state.dispute_id

    def record(
        self, event: str, to: str, when: datetime, from_status: str | None = "", **changes: Any
    ) -> Case:
        prev = self.state.status
        seq = self.state.transition_seq + 1
        self.state = replace(
            self.state, status=to, transition_seq=seq, status_since=when.isoformat(), **changes
        )
        with writing(self.store) as s:
            record_dispute(
                s,
                DisputeRecord(
                    legal_entity=self.state.legal_entity,
                    dispute_id=self.id,
                    workflow_id=self.state.workflow_id,
                    run_id="run",
                    transition_seq=seq,
                    event=event,
                    from_status=prev if from_status == "" else from_status,
                    to_status=to,
                    actor=SYSTEM,
                    reason=event,
                    at=when.isoformat(),
                    request_id=f"{event}-{seq}",
                    state=self.state,
                ),
            )
        return self

    def amounts(self, **changes: int) -> Amounts:
        return replace(self.state.amounts, **changes)

    def close(self, when: datetime, root_cause: str, validity: str) -> Case:
        return self.record(
            "close", "closed", when, root_cause=root_cause, validity=validity, closed_at=when.isoformat()
        )


def capa(into: Store, opened: datetime, status: str, checks: list[tuple[str, datetime]]) -> None:
    n = uuid.uuid4().hex[:8]
    with writing(into) as s:
        s.add(
            Capa(
                id=str(uuid.uuid4()),
                legal_entity="ACME",
                capa_id=n,
                workflow_id=f"capa/ACME/{n}",
                root_cause="PRC",
                status=status,
                opened_by="collector",
                opened_at=opened,
                checks_json=json.dumps(
                    [
                        {"number": i + 1, "outcome": o, "after_to": t.isoformat()}
                        for i, (o, t) in enumerate(checks)
                    ]
                ),
                updated_at=opened,
            )
        )


def november(into: Store) -> dict[str, Case]:
    """ACME, November 2026 (amounts in minor units):

    invoices issued: Initech 8 x 10000 EUR (2, 3, 4, 5, 9, 10, 16, 23 Nov); Umbrella 2 x 50000 USD
      (24 Nov, 30 Nov 23:59:59); outside: Initech 31 Oct 23:59:59 and 1 Dec 00:00, one never delivered
    A  Initech  EUR manual     PRC  opened 2 Nov   3000, closed 12 Nov PRC valid       (10 days)
    B  Initech  EUR deduction  PRC  opened 5 Nov   2000, +1000 joins 20 Nov, 1000 paid 22 Nov: open 2000
                                    at the end; SLA due 25 Nov: past it now
    C  Umbrella USD deduction  DLV  opened 20 Oct  5000, invalid 10 Nov, 2000 recovered 15 Nov, closed
                                    16 Nov CUS invalid                                  (27 days)
    D  Umbrella USD manual     QLT  opened 28 Nov 12:00 10000, closed 1 Dec 06:00 QLT partly valid
                                    (spans the end: opened in the period, closed after it)
    E  Initech  EUR deduction  DLV  opened 25 Nov  500, paid 1 Dec 02:00 (open 500 at the end, 0 now)
    F  Initech  EUR manual     BIL  opened 3 Nov   1000, closed 4 Nov 12:00 BIL partly valid (1.5 days)
    G  Initech  EUR manual     BIL  opened 6 Nov   700, voided 6 Nov 01:00
    I  Initech  EUR manual     PRC  opened 1 Oct, closed 15 Oct: outside
    H  Hooli (GLOBEX) EUR manual PRC opened 10 Nov 400: another legal entity
    """
    for d in (2, 3, 4, 5, 9, 10, 16, 23):
        issued(into, INITECH, at(11, d, 9), "EUR", 10000)
    issued(into, UMBRELLA, at(11, 24, 9), "USD", 50000)
    issued(into, UMBRELLA, at(11, 30, 23, 59, 59), "USD", 50000)
    issued(into, INITECH, at(10, 31, 23, 59, 59), "EUR", 10000)
    issued(into, INITECH, at(12, 1), "EUR", 10000)
    add_invoice(into, "ACME", INITECH)  # never delivered
    issued(into, HOOLI, at(11, 10), "EUR", 9000, entity="GLOBEX")

    cases: dict[str, Case] = {}
    a = Case(into, INITECH, "EUR", "manual", "PRC", at(11, 2), 3000)
    a.record("resolve", "resolved", at(11, 11), amounts=a.amounts(open_minor=0, credited_minor=3000))
    cases["A"] = a.close(at(11, 12), "PRC", "valid")

    b = Case(into, INITECH, "EUR", "deduction", "PRC", at(11, 5), 2000, sla_due=at(11, 25))
    b.record("join", "open", at(11, 20), amounts=b.amounts(original_minor=3000, open_minor=3000))
    cases["B"] = b.record(
        "record_payment", "open", at(11, 22), amounts=b.amounts(open_minor=2000, paid_minor=1000)
    )

    c = Case(into, UMBRELLA, "USD", "deduction", "DLV", at(10, 20), 5000)
    c.record("resolve", "resolved", at(11, 10), sla_due_at="")
    c.record(
        "record_payment", "resolved", at(11, 15), amounts=c.amounts(open_minor=3000, recovered_minor=2000)
    )
    cases["C"] = c.close(at(11, 16), "CUS", "invalid")

    dd = Case(into, UMBRELLA, "USD", "manual", "QLT", at(11, 28, 12), 10000)
    dd.record("resolve", "resolved", at(11, 30), amounts=dd.amounts(open_minor=0, credited_minor=10000))
    cases["D"] = dd.close(at(12, 1, 6), "QLT", "partly_valid")

    e = Case(into, INITECH, "EUR", "deduction", "DLV", at(11, 25), 500, sla_due=at(12, 5))
    cases["E"] = e.record(
        "record_payment", "open", at(12, 1, 2), amounts=e.amounts(open_minor=0, paid_minor=500)
    )

    f = Case(into, INITECH, "EUR", "manual", "BIL", at(11, 3), 1000)
    f.record("resolve", "resolved", at(11, 4), amounts=f.amounts(open_minor=0, credited_minor=1000))
    cases["F"] = f.close(at(11, 4, 12), "BIL", "partly_valid")

    g = Case(into, INITECH, "EUR", "manual", "BIL", at(11, 6), 700)
    cases["G"] = g.record("void", "closed", at(11, 6, 1), closed_at=at(11, 6, 1).isoformat())

    i = Case(into, INITECH, "EUR", "manual", "PRC", at(10, 1), 100)
    i.record("resolve", "resolved", at(10, 14))
    cases["I"] = i.close(at(10, 15), "PRC", "valid")

    cases["H"] = Case(into, HOOLI, "EUR", "manual", "PRC", at(11, 10), 400, entity="GLOBEX")

    capa(into, at(11, 12), "open", [])
    capa(into, at(11, 4), "checked", [("inconclusive", at(11, 20))])
    capa(into, at(8, 1), "checked", [("effective", at(8, 30)), ("effective", at(11, 1))])
    return cases


def report(into: Store, entities: list[str], start: date = NOV_1, end: date = NOV_30) -> DisputeReport:
    with reading(into) as s:
        return dispute_report(s, entities, start, end, now=NOW)


def numbers(cases: list[CaseFacts]) -> list[str]:
    return [c.case_number for c in cases]


def test_the_dispute_figures_of_november(store: Store) -> None:  # noqa: F811
    k = november(store)
    r = report(store, ["ACME"])
    n = {name: c.state.case_number for name, c in k.items()}

    # Dispute rate: A B D E F G opened, of 10 invoices issued; by value per currency, never converted.
    dr = r.dispute_rate
    assert (dr.cases_opened, dr.invoices_issued, dr.rate) == (6, 10, "0.6000")
    assert [(x.currency, x.disputed_minor, x.invoiced_minor, x.rate) for x in dr.by_currency] == [
        ("EUR", 3000 + 3000 + 500 + 1000 + 700, 80000, "0.1025"),
        ("USD", 10000, 100000, "0.1000"),
    ]
    # Week by week (1 Nov is a Sunday), clipped to the period.
    assert r.granularity == "week"
    assert [(s.label, s.rate.cases_opened, s.rate.invoices_issued, s.rate.rate) for s in r.over_time] == [
        ("2026-11-01 to 2026-11-01", 0, 0, None),
        ("2026-11-02 to 2026-11-08", 4, 4, "1.0000"),
        ("2026-11-09 to 2026-11-15", 0, 2, "0.0000"),
        ("2026-11-16 to 2026-11-22", 0, 1, "0.0000"),
        ("2026-11-23 to 2026-11-29", 2, 2, "1.0000"),
        ("2026-11-30 to 2026-11-30", 0, 1, "0.0000"),
    ]

    # Cycle time of the cases closed in the period with a root cause: F 1.5, A 10, C 27 days.
    ct = r.cycle_time
    assert (ct.cases_closed, ct.p50_days, ct.p90_days, ct.mean_days, ct.max_days) == (
        3,
        "10.00",
        "27.00",
        "12.83",
        "27.00",
    )
    assert (ct.p50_case, ct.p90_case) == (k["A"].id, k["C"].id)
    assert numbers(cases_behind(r, "closed")) == [n["F"], n["A"], n["C"]]

    # Past SLA now: B (E's SLA is not due yet).
    assert (r.past_sla.as_of, r.past_sla.cases, r.past_sla.by_currency) == (NOW, 1, (("EUR", 1, 2000),))
    assert numbers(cases_behind(r, "past_sla")) == [n["B"]]

    # DDO, EUR: open at the end B 2000 + E 500 (paid after the end: the ledger says 500 was open) over
    # deducted in the period B 3000 + E 500, x 30 days = 21.43. USD: C was deducted in October, closed.
    assert [
        (
            x.currency,
            x.open_at_end_minor,
            x.cases_open_at_end,
            x.deducted_in_period_minor,
            x.cases_opened,
            x.days_in_period,
            x.ddo_days,
        )
        for x in r.ddo
    ] == [("EUR", 2500, 2, 3500, 2, 30, "21.43"), ("USD", 0, 0, 0, 0, 30, None)]
    assert Decimal(2500) / Decimal(3500) * 30 == Decimal("21.42857142857142857142857143")
    assert numbers(cases_behind(r, "deductions_open")) == [n["B"], n["E"]]

    # Validity: A valid, F partly valid, C invalid; G voided is not a closing with a validity.
    v = r.validity
    assert (v.closed, v.valid, v.partly_valid, v.invalid, v.voided, v.validity_rate) == (
        3,
        1,
        1,
        1,
        1,
        "0.6667",
    )
    assert [(x.currency, x.cases, x.deducted_minor, x.recovered_minor, x.rate) for x in r.recovery] == [
        ("USD", 1, 5000, 2000, "0.4000")
    ]

    # Pareto of the root causes of the cases opened in the period, by value, per currency.
    assert [
        (p.currency, p.rank, p.root_cause, p.cases, p.value_minor, p.share, p.cumulative_share)
        for p in r.pareto
    ] == [
        ("EUR", 1, "PRC", 1, 3000, "0.7500", "0.7500"),
        ("EUR", 2, "BIL", 1, 1000, "0.2500", "1.0000"),
        ("USD", 1, "QLT", 1, 10000, "1.0000", "1.0000"),
    ]

    assert [
        (
            c.customer_id,
            c.currency,
            c.cases_opened,
            c.disputed_minor,
            c.invoices_issued,
            c.invoiced_minor,
            c.count_rate,
            c.value_rate,
            c.cases_closed,
            c.closed_valid,
        )
        for c in r.by_customer
    ] == [
        (UMBRELLA, "USD", 1, 10000, 2, 100000, "0.5000", "0.1000", 1, 0),
        (INITECH, "EUR", 5, 8200, 8, 80000, "0.6250", "0.1025", 2, 2),
    ]
    assert r.by_customer[1].name == "Initech GmbH"
    assert [
        (x.reason, x.currency, x.cases_opened, x.disputed_minor, x.cases_closed, x.closed_valid)
        for x in r.by_reason
    ] == [
        ("QLT", "USD", 1, 10000, 0, 0),
        ("PRC", "EUR", 2, 6000, 1, 1),
        ("BIL", "EUR", 2, 1700, 1, 1),
        ("DLV", "EUR", 1, 500, 0, 0),
        ("DLV", "USD", 0, 0, 1, 0),
    ]

    # CAPA: two opened in November (one open, one checked); checks decided in November.
    assert (r.capa.opened, r.capa.by_status, r.capa.checks, r.capa.by_outcome) == (
        2,
        (("open", 1), ("checked", 1)),
        2,
        (("effective", 1), ("inconclusive", 1)),
    )

    # How it was produced: cases A-G read (not I: closed before; not H: GLOBEX), the ledger of the
    # deductions B, C, E up to the end (E's payment after it left out), the invoices issued.
    p = r.produced
    assert (p.cases_read, p.invoices_read, p.capas_read) == (7, 10, 3)
    assert p.entries_read == 3 + 4 + 1
    assert (p.from_utc, p.before_utc, p.generated_at) == (at(11, 1), at(12, 1), NOW)
    assert len(p.rows_sha256) == 64
    assert report(store, ["ACME"]).produced.rows_sha256 == p.rows_sha256


def test_legal_entities_are_apart_and_together(store: Store) -> None:  # noqa: F811
    november(store)
    g = report(store, ["GLOBEX"])
    assert (g.dispute_rate.cases_opened, g.dispute_rate.invoices_issued, g.dispute_rate.rate) == (
        1,
        1,
        "1.0000",
    )
    assert [(x.currency, x.disputed_minor, x.invoiced_minor) for x in g.dispute_rate.by_currency] == [
        ("EUR", 400, 9000)
    ]
    both = report(store, ["ACME", "GLOBEX"])
    assert (both.dispute_rate.cases_opened, both.dispute_rate.invoices_issued) == (7, 11)
    assert [(x.currency, x.disputed_minor, x.invoiced_minor) for x in both.dispute_rate.by_currency] == [
        ("EUR", 8600, 89000),
        ("USD", 10000, 100000),
    ]
    assert report(store, []).dispute_rate.cases_opened == 0


def test_an_empty_period(store: Store) -> None:  # noqa: F811
    november(store)
    r = report(store, ["ACME"], date(2026, 1, 1), date(2026, 6, 30))
    assert r.granularity == "month"
    assert [s.label for s in r.over_time] == [
        "2026-01",
        "2026-02",
        "2026-03",
        "2026-04",
        "2026-05",
        "2026-06",
    ]
    assert (r.dispute_rate.cases_opened, r.dispute_rate.invoices_issued, r.dispute_rate.rate) == (0, 0, None)
    assert r.dispute_rate.by_currency == ()
    assert (r.cycle_time.cases_closed, r.cycle_time.p50_days, r.cycle_time.p50_case) == (0, None, "")
    assert (r.validity.closed, r.validity.validity_rate) == (0, None)
    assert (r.recovery, r.pareto, r.by_customer, r.by_reason, r.ddo) == ((), (), (), (), ())
    assert (r.capa.opened, r.capa.checks) == (0, 0)
    # Past SLA is a figure of now: B is past its SLA whatever the period.
    assert r.past_sla.cases == 1
    assert r.produced.cases_read == 1 and r.produced.entries_read == 0


def test_slices() -> None:
    assert slices(date(2026, 1, 15), date(2026, 4, 30))[1] == [
        ("2026-01", date(2026, 1, 15), date(2026, 1, 31)),
        ("2026-02", date(2026, 2, 1), date(2026, 2, 28)),
        ("2026-03", date(2026, 3, 1), date(2026, 3, 31)),
        ("2026-04", date(2026, 4, 1), date(2026, 4, 30)),
    ]
    assert slices(date(2026, 11, 30), date(2026, 11, 30)) == (
        "week",
        [("2026-11-30 to 2026-11-30", date(2026, 11, 30), date(2026, 11, 30))],
    )
    assert timedelta(days=1)
