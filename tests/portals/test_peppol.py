"""The Peppol adapter's own concerns: the access point's answers, Invoice Responses pushed (signed) or
pulled from the inbox, and what the access point refuses before any buyer sees the document."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from activities.documents import InvoiceDocument
from activities.portals.base import PermanentError, Submission
from activities.portals.peppol import PeppolAdapter
from activities.portals.status import PortalStatus, ReasonCode
from tests.portals.conftest import CUSTOMER, DAY, PushReceiver, Sim, invoice, make_adapter, ubl_of


@pytest.fixture
def peppol(sim: Sim) -> Iterator[PeppolAdapter]:
    adapter = make_adapter("peppol", sim.url)
    assert isinstance(adapter, PeppolAdapter)
    yield adapter
    adapter.close()


def send(adapter: PeppolAdapter, doc: InvoiceDocument) -> None:
    adapter.submit(Submission(doc.id, 1, doc, ubl_of(doc)))


def test_invoice_responses_are_pushed_signed_and_parsed(
    peppol: PeppolAdapter, sim: Sim, receiver: PushReceiver
) -> None:
    send(peppol, invoice("INV-P-1"))
    sim.advance(0)
    [pushed] = receiver.bodies("/peppol")
    [update] = peppol.parse_push(pushed.body, pushed.headers)
    assert (update.status, update.portal_status, update.invoice_number) == (
        PortalStatus.RECEIVED,
        "AB",
        "INV-P-1",
    )
    assert update.update_id == pushed.headers["X-Peppol-Message-Id"]
    assert peppol.push_reply(None).status_code == 200


def test_a_push_with_a_bad_signature_is_refused(
    peppol: PeppolAdapter, sim: Sim, receiver: PushReceiver
) -> None:
    send(peppol, invoice("INV-P-2"))
    sim.advance(0)
    [pushed] = receiver.bodies("/peppol")
    tampered = pushed.body.replace(b">AB<", b">AP<")
    with pytest.raises(PermanentError, match="signature") as refused:
        peppol.parse_push(tampered, pushed.headers)
    assert peppol.push_reply(refused.value).status_code == 401
    unsigned = {k: v for k, v in pushed.headers.items() if k != "X-Peppol-Signature"}
    with pytest.raises(PermanentError, match="signature"):
        peppol.parse_push(pushed.body, unsigned)


def test_invoice_responses_can_be_pulled_from_the_inbox(peppol: PeppolAdapter, sim: Sim) -> None:
    send(peppol, invoice("INV-P-3", lines=(("WIDGET", "Widget", "1", "12.50", "19"),)))
    send(peppol, invoice("INV-P-4", lines=(("WIDGET", "Widget", "1", "12.50", "7"),)))
    sim.advance(60)
    first = peppol.poll(None)
    assert [(u.invoice_number, u.portal_status) for u in first if u.portal_status != "AB"] == [
        ("INV-P-3", "IP"),
        ("INV-P-4", "RE"),
    ]
    rejected = first[-1]
    assert rejected.reason is not None
    assert (rejected.reason.code, rejected.reason.portal_code, rejected.actions) == (
        ReasonCode.LEGAL,
        "LEG",
        ("NIN",),
    )
    cursor = max(u.at for u in first)
    assert peppol.poll(cursor) == []
    sim.advance(3600 + 3 * DAY)
    assert [u.portal_status for u in peppol.poll(cursor)] == ["AP", "PD"]


def test_a_customer_not_on_the_network_is_refused_at_once_as_receiver_unknown(peppol: PeppolAdapter) -> None:
    stranger = replace(CUSTOMER, endpoint_id="4000001000012")
    with pytest.raises(PermanentError) as refused:
        send(peppol, invoice("INV-P-5", customer=stranger))
    assert refused.value.http_status == 404
    assert refused.value.reason is not None and refused.value.reason.code is ReasonCode.RECEIVER_UNKNOWN


def test_nothing_is_sent_without_the_ubl_document(peppol: PeppolAdapter, sim: Sim) -> None:
    doc = invoice("INV-P-6")
    with pytest.raises(PermanentError, match="no UBL"):
        peppol.submit(Submission(doc.id, 1, doc))
    assert sim.invoices() == []


def test_a_retry_with_the_same_key_but_another_document_is_a_conflict(
    peppol: PeppolAdapter, sim: Sim
) -> None:
    doc = invoice("INV-P-7")
    send(peppol, doc)
    changed = invoice("INV-P-7", lines=(("WIDGET", "Widget", "9", "12.50", "19"),))
    with pytest.raises(PermanentError) as refused:
        peppol.submit(Submission(doc.id, 1, changed, ubl_of(changed)))
    assert refused.value.http_status == 409
    assert len(sim.invoices(number="INV-P-7")) == 1
