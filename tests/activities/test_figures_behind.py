"""The invoices behind each number of the figures pages: the portal passes behind each portal figure (on
the dataset of tests/activities/test_portal_reports.py, whose figures are hand-computed there), the same
count as the number they stand behind, and the invoices' summaries for the lists."""

from __future__ import annotations

from activities.approval_reports import invoice_summaries
from activities.db import Store, reading
from activities.models import PortalSubmission
from activities.portal_reports import passes_behind, portal_report
from tests.activities import test_portal_reports as portal_data
from tests.activities.test_portal_reports import ARIBA, INITECH, NOV_1, NOV_30, NOW, UMBRELLA

# The portal report's store and dataset fixtures, shared.
store = portal_data.store
dataset = portal_data.dataset


def behind(store: Store, figure: str, **kw: str | None) -> list[PortalSubmission]:
    with reading(store) as session:
        return passes_behind(session, ["ACME"], NOV_1, NOV_30, None, None, figure, **kw)


def keys(rows: list[PortalSubmission]) -> list[tuple[str, int]]:
    return [(r.portal, r.submission_pass) for r in rows]


def test_each_portal_figure_lists_as_many_passes_as_it_counts(dataset: Store) -> None:
    with reading(dataset) as session:
        r = portal_report(session, ["ACME"], NOV_1, NOV_30, None, None, now=NOW)
    assert len(behind(dataset, "submitted")) == r.invoices_submitted == 6
    assert len(behind(dataset, "first_pass_accepted")) == r.first_pass_accepted == 2
    assert len(behind(dataset, "rejected")) == r.rejections.total == 4
    assert len(behind(dataset, "accepted")) == r.time_in_portal.accepted.count == 3
    assert len(behind(dataset, "open")) == r.time_in_portal.open.count == 2
    for reason in r.rejections.by_reason:
        assert len(behind(dataset, "rejected", reason=reason.code)) == reason.count
    for customer in r.rejections.by_customer:
        rows = behind(dataset, "rejected", rejected_customer=customer.customer_id)
        assert len(rows) == customer.count
    for p in r.by_portal:
        assert len(behind(dataset, "submitted", via=p.portal)) == p.invoices_submitted
        assert len(behind(dataset, "first_pass_accepted", via=p.portal)) == p.first_pass_accepted
        assert len(behind(dataset, "rejected", via=p.portal)) == p.rejections


def test_the_passes_are_those_of_the_figure_in_a_useful_order(dataset: Store) -> None:
    # Submission order; the first passes only (B's second pass is not one).
    assert [r.submission_pass for r in behind(dataset, "submitted")] == [1] * 6
    assert [r.submitted_at.day for r in behind(dataset, "submitted")] == [2, 3, 10, 11, 15, 30]
    # D's two REF rejections, both Umbrella's.
    assert keys(behind(dataset, "rejected", reason="REF")) == [("coupa-umbrella", 1), ("coupa-umbrella", 2)]
    assert {r.customer_id for r in behind(dataset, "rejected", reason="REF")} == {UMBRELLA}
    assert len(behind(dataset, "rejected", rejected_customer=INITECH)) == 2
    # Accepted: shortest time in portal first (F 2 h, A 12 h, B's second pass 30 h): rank k is the k-th.
    accepted = behind(dataset, "accepted")
    assert [(r.accepted_at - r.submitted_at).total_seconds() // 3600 for r in accepted if r.accepted_at] == [
        2,
        12,
        30,
    ]
    assert [r.submitted_at.day for r in behind(dataset, "open")] == [10, 13]
    assert len(behind(dataset, "submitted", via=ARIBA[0])) == 4


def test_invoice_summaries_name_the_customer(dataset: Store) -> None:
    rows = behind(dataset, "submitted")
    with reading(dataset) as session:
        found = invoice_summaries(session, [r.invoice_id for r in rows] + ["no-such-invoice"])
    assert set(found) == {r.invoice_id for r in rows}
    assert {s.customer_name for s in found.values()} == {"Initech GmbH", "Umbrella Plc"}
    assert all(s.legal_entity == "ACME" and s.total_minor == 12000 for s in found.values())
