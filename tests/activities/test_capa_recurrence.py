"""The effectiveness check's figures from the store: cases of the root cause opened, and invoices issued,
in the window before the preventive action was done and in the window after, for the customer (or every
customer, for the owning function's causes); and what the workflow's rule decides from them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from activities.capa import recurrence
from activities.db import Store, reading, writing
from activities.disputes import Dispute
from activities.models import Invoice
from tests.activities.test_portal_reports import HOOLI, INITECH, UMBRELLA, add_invoice, store  # noqa: F401
from workflows.capa_states import decide
from workflows.capa_types import RecurrenceRequest

SPLIT = datetime(2026, 6, 1, tzinfo=UTC)


def issued(into: Store, customer: str, days: float, entity: str = "ACME") -> None:
    invoice_id = add_invoice(into, entity, customer)
    with writing(into) as s:
        s.execute(
            update(Invoice).where(Invoice.id == invoice_id).values(delivered_at=SPLIT + timedelta(days=days))  # type: ignore[arg-type]
        )


def case(into: Store, customer: str, cause: str, days: float, entity: str = "ACME") -> None:
    opened = SPLIT + timedelta(days=days)
    n = uuid.uuid4().hex[:8]
    with writing(into) as s:
        s.add(
            Dispute(
                id=str(uuid.uuid4()),
                legal_entity=entity,
                case_number=f"DSP-{n}",
                workflow_id=f"dispute/{entity}/DSP-{n}",
                customer_id=customer,
                currency="EUR",
                source="manual",
                status="closed",
                claimed_code="x",
                reason=cause,
                reason_version="t",
                root_cause=cause,
                validity="valid",
                opened_by="collector",
                opened_at=opened,
                status_since=opened,
                updated_at=opened,
            )
        )


def request(customer: str, function: str = "billing") -> RecurrenceRequest:
    w = timedelta(days=90)
    return RecurrenceRequest(
        "ACME", "BIL", customer, function, (SPLIT - w).isoformat(), SPLIT.isoformat(), (SPLIT + w).isoformat()
    )


def test_cases_and_invoices_are_counted_per_window_and_scope(store: Store) -> None:  # noqa: F811
    for d in range(-80, 0, 4):  # 20 invoices before
        issued(store, INITECH, d)
    for d in range(1, 89, 4):  # 22 after
        issued(store, INITECH, d)
    issued(store, INITECH, -91)  # outside both windows
    issued(store, INITECH, 90)  # the window after ends before this instant
    issued(store, UMBRELLA, -10)
    issued(store, HOOLI, -10, entity="GLOBEX")
    for d in (-60, -30, -5, -1):
        case(store, INITECH, "BIL", d)
    case(store, INITECH, "BIL", 20)
    case(store, INITECH, "PRC", 21)  # another cause
    case(store, INITECH, "DOC", 22)  # another cause, same function (billing)
    case(store, UMBRELLA, "BIL", 23)  # another customer
    with reading(store) as s:
        f = recurrence(s, request(INITECH))
    assert (f.cases_before, f.invoices_before, f.cases_after, f.invoices_after) == (4, 20, 1, 22)
    # 20.00 -> 4.55 per 100 invoices, at least 20 issued after: effective.
    assert decide(4, 20, 1, 22, 20)[0] == "effective"
    with reading(store) as s:
        g = recurrence(s, request(""))
    # The function's scope: every ACME customer, billing's causes (BIL and DOC).
    assert (g.cases_before, g.invoices_before, g.cases_after, g.invoices_after) == (4, 21, 3, 22)
    assert decide(4, 21, 3, 22, 20)[0] == "ineffective"
    assert "every customer" in g.query and "BIL, DOC" in g.query
