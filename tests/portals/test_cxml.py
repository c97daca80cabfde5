"""The cXML adapter's own concerns: pushed StatusUpdateRequests authenticated and answered, the same
statuses fetched with GetPendingRequest, credentials refused, payloadID as the idempotency key."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from lxml import etree  # type: ignore[import-untyped, unused-ignore]

from activities.portals.base import PermanentError, Submission
from activities.portals.config import CxmlPortal, portals_from_mapping
from activities.portals.cxml import CxmlAdapter, Envelope, invoice_detail_request, payload_id_for
from activities.portals.status import PortalStatus, ReasonCode
from tests.portals.conftest import DAY, PUSH_SECRET, PushReceiver, Sim, invoice, make_adapter, portal_configs


@pytest.fixture
def cxml(sim: Sim) -> Iterator[CxmlAdapter]:
    adapter = make_adapter("cxml", sim.url)
    assert isinstance(adapter, CxmlAdapter)
    yield adapter
    adapter.close()


def submit(adapter: CxmlAdapter, number: str, price: str = "12.50") -> None:
    doc = invoice(number, lines=(("WIDGET", "Widget", "1", price, "19"),))
    adapter.submit(Submission(doc.id, 1, doc))


def test_pushed_status_updates_are_parsed_and_answered_with_a_cxml_response(
    cxml: CxmlAdapter, sim: Sim, receiver: PushReceiver
) -> None:
    submit(cxml, "INV-PUSH-1")
    sim.advance(60)
    pushed = receiver.bodies("/cxml")
    assert len(pushed) == 1
    [update] = cxml.parse_push(pushed[0].body, pushed[0].headers)
    assert (update.status, update.portal_status, update.invoice_number) == (
        PortalStatus.IN_PROCESS,
        "processing",
        "INV-PUSH-1",
    )
    assert update.portal_ref == payload_id_for("inv-INV-PUSH-1.pass-1")
    assert update.submission_key == "inv-INV-PUSH-1.pass-1"
    reply = cxml.push_reply(None)
    root = etree.fromstring(reply.body)
    assert reply.status_code == 200 and root.find("Response/Status").get("code") == "200"


def test_a_push_with_the_wrong_shared_secret_is_refused_with_401(
    cxml: CxmlAdapter, sim: Sim, receiver: PushReceiver
) -> None:
    submit(cxml, "INV-PUSH-2")
    sim.advance(60)
    forged = receiver.bodies("/cxml")[0].body.replace(PUSH_SECRET.encode(), b"guess")
    with pytest.raises(PermanentError, match="wrong shared secret") as refused:
        cxml.parse_push(forged, {})
    reply = cxml.push_reply(refused.value)
    assert reply.status_code == 401
    assert etree.fromstring(reply.body).find("Response/Status").get("code") == "401"


def test_a_push_from_another_identity_is_refused(cxml: CxmlAdapter, sim: Sim, receiver: PushReceiver) -> None:
    submit(cxml, "INV-PUSH-3")
    sim.advance(60)
    forged = receiver.bodies("/cxml")[0].body.replace(
        b"<Identity>AN-INITECH</Identity>", b"<Identity>AN-X</Identity>"
    )
    with pytest.raises(PermanentError, match="not from the buyer"):
        cxml.parse_push(forged, {})


def test_malformed_pushes_are_refused_without_fetching_anything(cxml: CxmlAdapter) -> None:
    entity = (
        b'<?xml version="1.0"?><!DOCTYPE cXML [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<cXML><Header><Sender><Credential><SharedSecret>&x;</SharedSecret></Credential></Sender></Header></cXML>"
    )
    with pytest.raises(PermanentError) as refused:
        cxml.parse_push(entity, {})
    assert "root:" not in str(refused.value)
    assert cxml.push_reply(refused.value).status_code in (400, 401)
    with pytest.raises(PermanentError, match="not well-formed"):
        cxml.parse_push(b"<cXML", {})


def test_statuses_can_also_be_fetched_with_get_pending_request(cxml: CxmlAdapter, sim: Sim) -> None:
    submit(cxml, "INV-PEND-1")
    submit(cxml, "INV-PEND-2", price="99.00")
    sim.advance(60)
    first = cxml.poll(None)
    assert {(u.invoice_number, u.status) for u in first} == {
        ("INV-PEND-1", PortalStatus.IN_PROCESS),
        ("INV-PEND-2", PortalStatus.REJECTED),
    }
    rejected = next(u for u in first if u.status is PortalStatus.REJECTED)
    assert rejected.reason is not None and rejected.reason.code is ReasonCode.PRICES
    cursor = max(u.at for u in first)
    assert cxml.poll(cursor) == []
    sim.advance(3600 + DAY)
    later = cxml.poll(cursor)
    assert [u.status for u in later] == [PortalStatus.ACCEPTED, PortalStatus.PAYMENT_SCHEDULED]


def test_a_wrong_shared_secret_at_submission_is_permanent_and_no_rejection(sim: Sim) -> None:
    base = portal_configs(sim.url)["initech-ariba"].model_dump()
    config = portals_from_mapping({"x": {**base, "shared_secret": "wrong", "push_shared_secret": None}})["x"]
    assert isinstance(config, CxmlPortal)
    adapter = CxmlAdapter("x", config)
    try:
        with pytest.raises(PermanentError, match="refused") as failed:
            submit(adapter, "INV-AUTH-1")
    finally:
        adapter.close()
    assert failed.value.http_status == 401 and failed.value.reasons == ()


def test_the_same_pass_is_the_same_payload_id_whenever_it_is_built(sim: Sim) -> None:
    config = portal_configs(sim.url)["initech-ariba"]
    assert isinstance(config, CxmlPortal)
    doc = invoice()
    docs = [
        invoice_detail_request(
            doc,
            payload_id=payload_id_for("k.pass-1"),
            timestamp=datetime.now(UTC),
            envelope=Envelope.of(config),
        )
        for _ in range(2)
    ]
    assert {etree.fromstring(d).get("payloadID") for d in docs} == {"k.pass-1@cashcycle"}
    assert "shared" not in repr(Envelope.of(config)).lower() and "secret" not in repr(Envelope.of(config))
