"""The Coupa-style adapter's own concerns: the OAuth2 token (cached, renewed once on 401), client
credentials refused, polling by updated_at across pages."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from activities.portals.base import PermanentError, Submission
from activities.portals.config import CoupaPortal, portals_from_mapping
from activities.portals.coupa import CoupaAdapter, invoice_json
from activities.portals.status import PortalStatus
from tests.portals.conftest import COUPA_SECRET, PushReceiver, Sim, invoice, make_adapter, scenario


@pytest.fixture
def coupa(sim: Sim) -> Iterator[CoupaAdapter]:
    adapter = make_adapter("coupa", sim.url)
    assert isinstance(adapter, CoupaAdapter)
    yield adapter
    adapter.close()


def coupa_adapter(sim: Sim, **over: Any) -> CoupaAdapter:
    fields = {"channel": "coupa", "base_url": f"{sim.url}/coupa", "client_id": "nordlicht"}
    config = portals_from_mapping({"x": {**fields, "client_secret": COUPA_SECRET, **over}})["x"]
    assert isinstance(config, CoupaPortal)
    return CoupaAdapter("x", config)


def token_requests(sim: Sim) -> int:
    return sum(1 for r in sim.requests() if r["path"].endswith("/oauth2/token"))


def small(number: str) -> Submission:
    doc = invoice(number, lines=(("WIDGET", "Widget", "1", "12.50", "19"),))
    return Submission(doc.id, 1, doc)


def test_the_token_is_fetched_once_and_reused(coupa: CoupaAdapter, sim: Sim) -> None:
    coupa.submit(small("INV-T-1"))
    coupa.submit(small("INV-T-2"))
    coupa.poll(None)
    assert token_requests(sim) == 1


def test_an_expired_token_is_renewed_once_and_the_call_repeated(
    coupa: CoupaAdapter, sim: Sim, receiver: PushReceiver
) -> None:
    clients = [{"client_id": "nordlicht", "client_secret": COUPA_SECRET}]
    sim.load(scenario(receiver.url, coupa={"token_lifetime_seconds": 600, "clients": clients}))
    coupa.submit(small("INV-EXP-1"))
    sim.advance(700)  # the portal's clock: our cache still believes the token is good
    updates = coupa.poll(None)
    assert [u.invoice_number for u in updates] == ["INV-EXP-1"]
    log = [(r["path"], r["status"]) for r in sim.requests()]
    assert log.count(("/coupa/api/invoices", 401)) == 1
    assert token_requests(sim) == 2
    coupa.submit(small("INV-EXP-2"))  # the renewed token is kept
    assert token_requests(sim) == 2


def test_a_token_revoked_early_is_renewed_too(coupa: CoupaAdapter, sim: Sim) -> None:
    coupa.poll(None)
    sim.control("POST", "tokens/expire")
    assert coupa.submit(small("INV-REV-1")).status is PortalStatus.RECEIVED
    assert token_requests(sim) == 2


def test_refused_client_credentials_are_permanent_and_carry_no_reason(sim: Sim) -> None:
    adapter = coupa_adapter(sim, client_secret="wrong")
    try:
        with pytest.raises(PermanentError, match="client credentials refused") as failed:
            adapter.submit(small("INV-CRED-1"))
    finally:
        adapter.close()
    assert failed.value.http_status == 401 and failed.value.reasons == ()


def test_polling_follows_pages_and_the_updated_since_cursor(sim: Sim) -> None:
    adapter = coupa_adapter(sim, page_size=2)
    try:
        for n in range(5):
            adapter.submit(small(f"INV-PG-{n}"))
        first = adapter.poll(None)
        assert sorted(u.invoice_number for u in first) == [f"INV-PG-{n}" for n in range(5)]
        cursor = max(u.at for u in first)
        assert adapter.poll(cursor) == []
        sim.advance(60)
        moved = adapter.poll(cursor)
        assert {u.status for u in moved} == {PortalStatus.IN_PROCESS} and len(moved) == 5
        assert all(u.submission_key == f"inv-{u.invoice_number}.pass-1" for u in moved)
    finally:
        adapter.close()


def test_the_json_invoice_carries_amounts_as_decimal_strings() -> None:
    body = invoice_json(invoice(), "key-1")
    assert body["gross_total"] == "148.75" and body["tax_amount"] == "23.75"
    assert body["invoice_lines"][0] | {} == {
        "line_num": 1,
        "description": "Widget",
        "item": "WIDGET",
        "quantity": "10",
        "uom": "C62",
        "price": "12.50",
        "total": "125.00",
        "tax_rate": "19",
        "tax_category": "S",
    }
    assert body["external_reference"] == "key-1"
