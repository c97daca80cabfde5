"""The portal figures from `portal_submission` rows, on SQLite and PostgreSQL: a hand-computed dataset with
every case a pass can be in (accepted first time, rejected then accepted, still open, rejected twice,
accepted then withdrawn, outside the period on either side, another legal entity), and the arithmetic
(rates half up to 4 places, hours to 1, median of even and odd counts, nearest-rank p90)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from activities.db import Store, open_store, reading, writing
from activities.directory import ensure_legal_entity
from activities.models import Customer, Invoice, LegalEntity, PortalSubmission
from activities.portal_reports import (
    AcceptedTime,
    PortalFigures,
    PortalReport,
    duration_stats,
    portal_report,
    rate,
)

NOV_1, NOV_30 = date(2026, 11, 1), date(2026, 11, 30)
NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
INITECH, UMBRELLA, HOOLI = (
    "c0000000-0000-4000-8000-00000000000a",
    "c0000000-0000-4000-8000-00000000000b",
    "c0000000-0000-4000-8000-00000000000c",
)
ARIBA = ("ariba-initech", "cxml")
COUPA = ("coupa-umbrella", "coupa")
PEPPOL = ("peppol-hooli", "peppol")


def at(month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


def add_invoice(store: Store, entity: str, customer_id: str) -> str:
    """A bare invoice read-model row: the report reads only its id (through the foreign key)."""
    invoice_id = str(uuid.uuid4())
    now = at(11, 1)
    with writing(store) as session:
        session.add(
            Invoice(
                id=invoice_id,
                legal_entity=entity,
                external_id=f"ERP-{invoice_id[:8]}",
                status="submitted",
                customer_id=customer_id,
                currency="EUR",
                subtotal_minor=10000,
                tax_total_minor=2000,
                total_minor=12000,
                amount_due_minor=12000,
                issue_date=date(2026, 11, 1),
                due_date=date(2026, 12, 1),
                workflow_id=f"invoice-{entity}-{invoice_id}",
                created_by="erp",
                payload_hash="0" * 64,
                status_since=now,
                created_at=now,
                updated_at=now,
            )
        )
    return invoice_id


def add_pass(
    store: Store,
    invoice_id: str,
    n: int,
    via: tuple[str, str],
    submitted: datetime,
    *,
    accepted: datetime | None = None,
    rejected: datetime | None = None,
    reason: str = "",
) -> None:
    with reading(store) as session:
        invoice = session.get(Invoice, invoice_id)
        assert invoice is not None
        entity, customer_id = invoice.legal_entity, invoice.customer_id
    status = "rejected" if rejected else "accepted" if accepted else "in_process"
    with writing(store) as session:
        session.add(
            PortalSubmission(
                submission_key=f"{invoice_id}.pass-{n}",
                invoice_id=invoice_id,
                legal_entity=entity,
                customer_id=customer_id,
                portal=via[0],
                channel=via[1],
                submission_pass=n,
                portal_ref=f"{via[0]}-{invoice_id[:8]}-{n}",
                submitted_at=submitted,
                status=status,
                status_at=rejected or accepted or submitted,
                reason_code=reason,
                reason_text=f"reason {reason}" if reason else "",
                accepted_at=accepted,
                rejected_at=rejected,
            )
        )


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = open_store(db_url)
    with writing(s) as session:
        for code, name, cur in [("ACME", "Acme Industries SAS", "EUR"), ("GLOBEX", "Globex Corp", "USD")]:
            ensure_legal_entity(session, LegalEntity(code=code, name=name, currency=cur))
        for cid, entity, name, portal in [
            (INITECH, "ACME", "Initech GmbH", ARIBA[0]),
            (UMBRELLA, "ACME", "Umbrella Plc", COUPA[0]),
            (HOOLI, "GLOBEX", "Hooli Inc", PEPPOL[0]),
        ]:
            session.add(
                Customer(
                    id=cid, legal_entity=entity, name=name, currency="EUR", portal=portal, created_by="test"
                )
            )
    yield s
    s.dispose()


@pytest.fixture
def dataset(store: Store) -> Store:
    """November 2026 (hours after submission in brackets):

    ACME, in the period (the cohort: A B C D F I)
      A  Initech  pass 1 accepted (12 h)                               first-pass accepted
      B  Initech  pass 1 rejected PRI; pass 2 accepted (30 h)
      C  Umbrella pass 1 still open, submitted 10 Nov 08:00            open 504 h at NOW
      D  Umbrella pass 1 rejected REF; pass 2 rejected REF; pass 3 open (13 Nov, 440 h at NOW)
      F  Initech  pass 1 at 30 Nov 23:59:59 (the last second), accepted (2 h 0 min 1 s)
      I  Initech  pass 1 accepted, then withdrawn (rejected OTH): not accepted
    ACME, outside
      E  Initech  pass 1 31 Oct 23:59:59 rejected DUP; pass 2 2 Nov accepted (first pass outside)
      H  Initech  pass 1 1 Dec 00:00:00 accepted
    GLOBEX
      G  Hooli    pass 1 rejected LEG; pass 2 accepted (5 h)
    """
    a = add_invoice(store, "ACME", INITECH)
    add_pass(store, a, 1, ARIBA, at(11, 2, 9), accepted=at(11, 2, 21))
    b = add_invoice(store, "ACME", INITECH)
    add_pass(store, b, 1, ARIBA, at(11, 3, 10), rejected=at(11, 3, 16), reason="PRI")
    add_pass(store, b, 2, ARIBA, at(11, 5, 10), accepted=at(11, 6, 16))
    c = add_invoice(store, "ACME", UMBRELLA)
    add_pass(store, c, 1, COUPA, at(11, 10, 8))
    d = add_invoice(store, "ACME", UMBRELLA)
    add_pass(store, d, 1, COUPA, at(11, 11), rejected=at(11, 11, 6), reason="REF")
    add_pass(store, d, 2, COUPA, at(11, 12), rejected=at(11, 12, 6), reason="REF")
    add_pass(store, d, 3, COUPA, at(11, 13))
    f = add_invoice(store, "ACME", INITECH)
    add_pass(store, f, 1, ARIBA, at(11, 30, 23, 59, 59), accepted=at(12, 1, 2, 0, 0))
    i = add_invoice(store, "ACME", INITECH)
    add_pass(store, i, 1, ARIBA, at(11, 15), accepted=at(11, 15, 10), rejected=at(11, 16), reason="OTH")
    e = add_invoice(store, "ACME", INITECH)
    add_pass(store, e, 1, ARIBA, at(10, 31, 23, 59, 59), rejected=at(11, 1, 1), reason="DUP")
    add_pass(store, e, 2, ARIBA, at(11, 2), accepted=at(11, 2, 1))
    h = add_invoice(store, "ACME", INITECH)
    add_pass(store, h, 1, ARIBA, at(12, 1), accepted=at(12, 1, 1))
    g = add_invoice(store, "GLOBEX", HOOLI)
    add_pass(store, g, 1, PEPPOL, at(11, 5), rejected=at(11, 5, 3), reason="LEG")
    add_pass(store, g, 2, PEPPOL, at(11, 6), accepted=at(11, 6, 5))
    return store


def report(
    store: Store,
    entities: list[str],
    start: date = NOV_1,
    end: date = NOV_30,
    portal: str | None = None,
    customer_id: str | None = None,
) -> PortalReport:
    with reading(store) as session:
        return portal_report(session, entities, start, end, portal, customer_id, now=NOW)


def test_the_figures_of_one_legal_entity(dataset: Store) -> None:
    r = report(dataset, ["ACME"])
    assert (r.invoices_submitted, r.first_pass_accepted, r.first_pass_acceptance_rate) == (6, 2, "0.3333")
    assert r.passes == 9
    assert r.rejections.total == 4
    assert [(x.code, x.name, x.count) for x in r.rejections.by_reason] == [
        ("REF", "REFERENCES", 2),
        ("OTH", "OTHER", 1),  # ties by code
        ("PRI", "PRICES", 1),
    ]
    assert r.rejections.by_reason[0].label == "References incorrect (purchase order missing or wrong)"
    assert [(c.customer_id, c.name, c.count) for c in r.rejections.by_customer] == [
        (INITECH, "Initech GmbH", 2),  # ties by name
        (UMBRELLA, "Umbrella Plc", 2),
    ]
    assert r.by_portal == (
        PortalFigures("ariba-initech", "cxml", 4, 2, "0.5000", 2),
        PortalFigures("coupa-umbrella", "coupa", 2, 0, "0.0000", 2),
    )
    # Accepted passes: F 2 h 0 min 1 s, A 12 h, B#2 30 h (I was withdrawn): mean 14.667, odd median.
    assert r.time_in_portal.accepted == AcceptedTime(3, "14.7", "12.0", "30.0")
    assert (r.time_in_portal.open.count, r.time_in_portal.open.oldest_hours) == (2, "504.0")


def test_how_the_report_was_produced(dataset: Store) -> None:
    r = report(dataset, ["ACME"])
    p = r.produced
    assert p.legal_entities == ("ACME",)
    assert (p.period_start, p.period_end, p.portal, p.customer_id) == (NOV_1, NOV_30, None, None)
    assert p.day_boundaries == "UTC"
    assert (p.submitted_from, p.submitted_before) == (at(11, 1), at(12, 1))
    assert p.generated_at == NOW
    assert (p.first_passes_read, p.passes_read, p.customers_read) == (6, 9, 2)
    assert "first pass" in p.query
    assert len(p.rows_sha256) == 64
    assert report(dataset, ["ACME"]).produced.rows_sha256 == p.rows_sha256  # same rows, same hash
    assert report(dataset, ["ACME", "GLOBEX"]).produced.rows_sha256 != p.rows_sha256


def test_two_legal_entities_and_an_even_number_of_accepted_passes(dataset: Store) -> None:
    r = report(dataset, ["GLOBEX", "ACME"])
    assert (r.invoices_submitted, r.first_pass_accepted, r.first_pass_acceptance_rate) == (7, 2, "0.2857")
    assert (r.passes, r.rejections.total) == (11, 5)
    assert [(x.code, x.count) for x in r.rejections.by_reason] == [
        ("REF", 2),
        ("LEG", 1),
        ("OTH", 1),
        ("PRI", 1),
    ]
    assert [(c.name, c.count) for c in r.rejections.by_customer] == [
        ("Initech GmbH", 2),
        ("Umbrella Plc", 2),
        ("Hooli Inc", 1),
    ]
    assert r.by_portal[-1] == PortalFigures("peppol-hooli", "peppol", 1, 0, "0.0000", 1)
    # 2.0003, 5, 12, 30 h: median (5 + 12) / 2; mean 12.2500694 rounds up; p90 rank ceil(3.6) = 4.
    assert r.time_in_portal.accepted == AcceptedTime(4, "12.3", "8.5", "30.0")
    assert r.produced.legal_entities == ("ACME", "GLOBEX")


def test_filters_select_invoices_by_their_first_pass(dataset: Store) -> None:
    coupa = report(dataset, ["ACME"], portal="coupa-umbrella")
    assert (coupa.invoices_submitted, coupa.first_pass_accepted, coupa.first_pass_acceptance_rate) == (
        2,
        0,
        "0.0000",
    )
    assert (coupa.passes, coupa.rejections.total) == (4, 2)
    assert coupa.time_in_portal.accepted == AcceptedTime(0, None, None, None)
    assert (coupa.time_in_portal.open.count, coupa.time_in_portal.open.oldest_hours) == (2, "504.0")

    initech = report(dataset, ["ACME"], customer_id=INITECH)
    assert (initech.invoices_submitted, initech.first_pass_accepted) == (4, 2)
    assert initech.first_pass_acceptance_rate == "0.5000"
    assert [(x.code, x.count) for x in initech.rejections.by_reason] == [("OTH", 1), ("PRI", 1)]
    assert initech.time_in_portal.open.count == 0 and initech.time_in_portal.open.oldest_hours is None
    assert initech.produced.customer_id == INITECH

    # Hooli is GLOBEX's customer: asking about it with ACME only finds nothing.
    assert report(dataset, ["ACME"], customer_id=HOOLI).invoices_submitted == 0


def test_period_bounds_are_inclusive_utc_days(dataset: Store) -> None:
    # 1 Dec alone: H (submitted at 00:00:00), not F (23:59:59 the day before, accepted on 1 Dec).
    dec_1 = report(dataset, ["ACME"], date(2026, 12, 1), date(2026, 12, 1))
    assert (dec_1.invoices_submitted, dec_1.first_pass_accepted, dec_1.passes) == (1, 1, 1)
    # 31 Oct alone: E, with its second pass of 2 Nov (every pass of the cohort's invoices counts).
    oct_31 = report(dataset, ["ACME"], date(2026, 10, 31), date(2026, 10, 31))
    assert (oct_31.invoices_submitted, oct_31.first_pass_accepted, oct_31.passes) == (1, 0, 2)
    assert [(x.code, x.name) for x in oct_31.rejections.by_reason] == [("DUP", "DUPLICATE")]
    assert oct_31.time_in_portal.accepted == AcceptedTime(1, "1.0", "1.0", "1.0")


def test_an_empty_period_has_no_rate(dataset: Store) -> None:
    for r in (report(dataset, ["ACME"], date(2027, 1, 1), date(2027, 1, 31)), report(dataset, [])):
        assert (r.invoices_submitted, r.first_pass_accepted, r.first_pass_acceptance_rate) == (0, 0, None)
        assert (r.passes, r.rejections.total, r.rejections.by_reason, r.by_portal) == (0, 0, (), ())
        assert r.time_in_portal.accepted == AcceptedTime(0, None, None, None)
        assert (r.time_in_portal.open.count, r.time_in_portal.open.oldest_hours) == (0, None)
        assert (r.produced.passes_read, r.produced.customers_read) == (0, 0)
    assert asdict(report(dataset, []))["produced"]["legal_entities"] == ()


def test_a_rejection_without_a_code_or_with_an_unknown_one_is_still_counted(store: Store) -> None:
    x = add_invoice(store, "ACME", INITECH)
    add_pass(store, x, 1, ARIBA, at(11, 2), rejected=at(11, 2, 1))
    y = add_invoice(store, "ACME", INITECH)
    add_pass(store, y, 1, ARIBA, at(11, 2), rejected=at(11, 2, 1), reason="ZZZ")
    r = report(store, ["ACME"])
    assert [(x.code, x.name, x.label, x.count) for x in r.rejections.by_reason] == [
        ("", "UNSPECIFIED", "No reason given", 1),
        ("ZZZ", "UNKNOWN", "ZZZ", 1),
    ]


def test_the_period_must_not_end_before_it_starts(store: Store) -> None:
    with pytest.raises(ValueError, match="before"):
        report(store, ["ACME"], NOV_30, NOV_1)


@pytest.mark.parametrize(
    ("accepted", "submitted", "expected"),
    [
        (2, 3, "0.6667"),
        (1, 3, "0.3333"),
        (1, 32, "0.0313"),  # 0.03125: half up, not to even
        (3, 32, "0.0938"),  # 0.09375
        (0, 5, "0.0000"),
        (7, 7, "1.0000"),
        (0, 0, None),
    ],
)
def test_the_rate_has_four_decimals_rounded_half_up(
    accepted: int, submitted: int, expected: str | None
) -> None:
    assert rate(accepted, submitted) == expected


def hours(*values: str) -> list[Decimal]:
    return [Decimal(v) for v in values]


def test_duration_statistics() -> None:
    assert duration_stats([]) == AcceptedTime(0, None, None, None)
    assert duration_stats(hours("7")) == AcceptedTime(1, "7.0", "7.0", "7.0")
    # even: the median is the mean of the middle two; p90 is the ceil(0.9 n)-th smallest value
    assert duration_stats(hours("4", "1", "3", "2")) == AcceptedTime(4, "2.5", "2.5", "4.0")
    assert duration_stats(hours(*map(str, range(10, 0, -1)))) == AcceptedTime(10, "5.5", "5.5", "9.0")
    assert duration_stats(hours(*map(str, range(1, 12)))) == AcceptedTime(11, "6.0", "6.0", "10.0")
    # hours to one decimal, half up: 15 minutes is 0.25 h -> 0.3
    assert duration_stats(hours("0.25")) == AcceptedTime(1, "0.3", "0.3", "0.3")
    assert duration_stats(hours("0.25", "0.3")) == AcceptedTime(2, "0.3", "0.3", "0.3")


def test_hours_are_measured_to_the_microsecond() -> None:
    from activities.portal_reports import hours_between

    start = at(11, 2)
    assert hours_between(start, start + timedelta(minutes=15)) == Decimal("0.25")
    assert hours_between(start, start + timedelta(hours=2, seconds=1)) == Decimal(7201) / Decimal(3600)
