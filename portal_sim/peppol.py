"""Peppol access point (AS4 behind a REST face), the buyer's side:

    POST /peppol/v1/documents   a UBL Invoice / CreditNote to deliver -> 202 with a message id
    GET  /peppol/v1/inbox       Invoice Responses (BIS 3, T111) for the caller; also pushed (HMAC-signed)

Statuses are UNCL4343 response codes (AB, IP, UQ, AP, PD, RE; none for "payment scheduled"). A query is
UQ with the reason (OPStatusReason) and the action PIN ("provide information"); a dispute is UQ with the
reason and the action CNP ("issue a partial credit note"), as the official use case 6c words it.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Literal

from fastapi import APIRouter, Request, Response
from lxml import etree  # type: ignore[import-untyped, unused-ignore]  # no stubs ship with lxml

from portal_sim.buyer import Event, SimInvoice
from portal_sim.documents import BadDocument, Line, Parsed, decimal_of, parse_xml, sub
from portal_sim.gate import Gate, Reply, bearer, json_reply, since_param
from portal_sim.scenario import Scenario
from portal_sim.simulator import Outgoing

# How Peppol says each status (None: no UNCL4343 code, nothing is sent).
PEPPOL_CODE: dict[str, str | None] = {
    "received": "AB",
    "in_process": "IP",
    "under_query": "UQ",
    "disputed": "UQ",  # with the action CNP: credit partially
    "approved": "AP",
    "payment_scheduled": None,  # no UNCL4343 code: Peppol buyers say nothing until PD
    "paid": "PD",
    "rejected": "RE",
}
# OPStatusAction per status that carries a reason: what the buyer asks the seller to do.
PEPPOL_ACTION = {"rejected": "NIN", "under_query": "PIN", "disputed": "CNP"}
# The buyer's reason codes, and the Peppol OPStatusReason they are sent under. Peppol has no code for a
# duplicate: buyers send OTH with an explanation (as Oracle's and others' mappings do).
REASON_TO_PEPPOL = {
    "po_missing": "REF",
    "po_unknown": "REF",
    "invoice_reference_unknown": "REF",
    "bill_to_mismatch": "REC",
    "item_not_on_po": "ITM",
    "price_mismatch": "PRI",
    "currency_mismatch": "PRI",
    "quantity_exceeds_po": "QTY",
    "tax_rate_mismatch": "LEG",
    "duplicate_invoice_number": "OTH",
    "missing_attachment": "OTH",
    "delivery_short": "DEL",
    "quality": "QUA",
    "other": "OTH",
}

NS_UBL = {
    "inv": "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
    "cn": "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2",
    "ar": "urn:oasis:names:specification:ubl:schema:xsd:ApplicationResponse-2",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
}
CAC, CBC = NS_UBL["cac"], NS_UBL["cbc"]
CUSTOMER = "cac:AccountingCustomerParty/cac:Party/"


# -- documents ------------------------------------------------------------------------------------------


def _find(el: etree._Element, path: str) -> str:
    return " ".join((el.findtext(path, default="", namespaces=NS_UBL) or "").split())


def parse_ubl(body: bytes) -> Parsed:
    """A UBL 2.1 Invoice or CreditNote (what the buyer reads of it)."""
    root = parse_xml(body)
    kind: Literal["invoice", "credit_note"]
    if root.tag == f"{{{NS_UBL['inv']}}}Invoice":
        kind, line_tag, qty_tag = "invoice", "cac:InvoiceLine", "cbc:InvoicedQuantity"
    elif root.tag == f"{{{NS_UBL['cn']}}}CreditNote":
        kind, line_tag, qty_tag = "credit_note", "cac:CreditNoteLine", "cbc:CreditedQuantity"
    else:
        raise BadDocument("not a UBL Invoice or CreditNote")
    lines = [_line(ln, qty_tag) for ln in root.findall(line_tag, NS_UBL)]
    if not _find(root, "cbc:ID") or not lines:
        raise BadDocument("a UBL invoice needs an ID and at least one line")
    return Parsed(
        number=_find(root, "cbc:ID"),
        kind=kind,
        currency=_find(root, "cbc:DocumentCurrencyCode"),
        po_number=_find(root, "cac:OrderReference/cbc:ID"),
        bill_to_name=_find(root, CUSTOMER + "cac:PartyLegalEntity/cbc:RegistrationName")
        or _find(root, CUSTOMER + "cac:PartyName/cbc:Name"),
        bill_to_vat=_find(root, CUSTOMER + "cac:PartyTaxScheme/cbc:CompanyID"),
        lines=lines,
        preceding=_find(root, "cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID"),
        buyer_name=_find(root, CUSTOMER + "cac:PartyName/cbc:Name"),
    )


def _line(ln: etree._Element, qty_tag: str) -> Line:
    rate = _find(ln, "cac:Item/cac:ClassifiedTaxCategory/cbc:Percent")
    return Line(
        item=_find(ln, "cac:Item/cac:SellersItemIdentification/cbc:ID"),
        description=_find(ln, "cac:Item/cbc:Name"),
        quantity=abs(decimal_of(_find(ln, qty_tag), qty_tag)),
        unit_price=decimal_of(_find(ln, "cac:Price/cbc:PriceAmount"), "PriceAmount"),
        tax_rate=decimal_of(rate, "Percent") if rate else None,
    )


def _endpoint(parent: etree._Element, tag: str, participant: str, name: str) -> None:
    scheme, _, value = participant.partition(":")
    party = sub(parent, f"{{{CAC}}}{tag}")
    sub(party, f"{{{CBC}}}EndpointID", value, schemeID=scheme)
    legal = sub(party, f"{{{CAC}}}PartyLegalEntity")
    sub(legal, f"{{{CBC}}}RegistrationName", name or participant)


def peppol_invoice_response(inv: SimInvoice, event: Event, response_id: str) -> bytes:
    """A Peppol Invoice Response (BIS 3, T111) for one status of one invoice."""
    code = PEPPOL_CODE[event.status]
    assert code is not None
    root = etree.Element(
        f"{{{NS_UBL['ar']}}}ApplicationResponse", nsmap={None: NS_UBL["ar"], "cac": CAC, "cbc": CBC}
    )
    sub(root, f"{{{CBC}}}CustomizationID", "urn:fdc:peppol.eu:poacc:trns:invoice_response:3")
    sub(root, f"{{{CBC}}}ProfileID", "urn:fdc:peppol.eu:poacc:bis:invoice_response:3")
    sub(root, f"{{{CBC}}}ID", response_id)
    sub(root, f"{{{CBC}}}IssueDate", event.at.date().isoformat())
    sub(root, f"{{{CBC}}}IssueTime", event.at.time().replace(microsecond=0).isoformat() + "Z")
    _endpoint(root, "SenderParty", inv.receiver, inv.parsed.bill_to_name)
    _endpoint(root, "ReceiverParty", inv.sender, inv.supplier)
    doc_response = sub(root, f"{{{CAC}}}DocumentResponse")
    response = sub(doc_response, f"{{{CAC}}}Response")
    sub(response, f"{{{CBC}}}ResponseCode", code)
    if code == "PD":
        sub(response, f"{{{CBC}}}EffectiveDate", event.at.date().isoformat())
    if event.reason is not None and event.status in PEPPOL_ACTION:
        status = sub(response, f"{{{CAC}}}Status")
        reason = REASON_TO_PEPPOL.get(event.reason.code, "OTH")
        sub(status, f"{{{CBC}}}StatusReasonCode", reason, listID="OPStatusReason")
        sub(status, f"{{{CBC}}}StatusReason", event.reason.message)
        action = sub(response, f"{{{CAC}}}Status")
        sub(action, f"{{{CBC}}}StatusReasonCode", PEPPOL_ACTION[event.status], listID="OPStatusAction")
    ref = sub(doc_response, f"{{{CAC}}}DocumentReference")
    sub(ref, f"{{{CBC}}}ID", inv.parsed.number)
    sub(ref, f"{{{CBC}}}DocumentTypeCode", "381" if inv.parsed.kind == "credit_note" else "380")
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return data


def status_message(inv: SimInvoice, event: Event, scenario: Scenario) -> Outgoing | None:
    """The Invoice Response for one status, with the access point's delivery headers (signed with the
    client's webhook secret when it has one)."""
    if PEPPOL_CODE[event.status] is None:
        return None
    client = next((c for c in scenario.peppol.clients if c.participant_id == inv.client), None)
    message_id = f"{uuid.uuid4()}"
    content = peppol_invoice_response(inv, event, message_id)
    headers = {
        "Content-Type": "application/xml",
        "X-Peppol-Message-Id": message_id,
        "X-Peppol-Sender-Id": inv.receiver,
        "X-Peppol-Receiver-Id": inv.sender,
        "X-Peppol-Received-At": event.at.isoformat(),
    }
    if client is not None and client.webhook_secret:
        digest = hmac.new(client.webhook_secret.encode(), content, hashlib.sha256).hexdigest()
        headers["X-Peppol-Signature"] = f"sha256={digest}"
    return Outgoing(message_id, content, url=client.callback_url if client else "", headers=headers)


# -- HTTP -----------------------------------------------------------------------------------------------


def router(gate: Gate) -> APIRouter:
    sim = gate.sim
    api = APIRouter(prefix="/peppol/v1")

    async def caller(request: Request) -> tuple[str, Response | None]:
        """The calling participant, or the answer that stops its request here: an injected fault, an
        unknown API key, the rate limit."""
        if (failure := gate.injected("peppol", request)) is not None:
            return "", failure
        client = sim.peppol_client(bearer(request))
        if client is None:
            unknown = json_reply(401, {"code": "unauthorized", "message": "unknown API key"})
            return "", await gate.finish("peppol", request, "", unknown)
        me = client.participant_id
        return me, gate.throttled("peppol", request, me)

    def addressing(me: str, sender: str, receiver: str) -> Reply | None:
        """403 when the key sends as someone else, 404 when the receiver is not on the network."""
        if sender != me:
            return json_reply(
                403, {"code": "sender_mismatch", "message": f"this API key sends as {me}, not {sender}"}
            )
        receivers = sim.scenario.peppol.receivers
        if not receiver or (receivers and receiver not in receivers):
            unknown = {
                "code": "receiver_unknown",
                "message": f"participant {receiver or '(none)'} is not registered in the SMP",
            }
            return json_reply(404, unknown)
        return None

    @api.post("/documents")
    async def peppol_send(request: Request) -> Response:
        """A UBL invoice or credit note to deliver to a Peppol participant: 202 with a message id."""
        me, stop = await caller(request)
        if stop is not None:
            return stop
        sender = request.headers.get("X-Peppol-Sender-Id", "")
        receiver = request.headers.get("X-Peppol-Receiver-Id", "")
        if (refused := addressing(me, sender, receiver)) is not None:
            return await gate.finish("peppol", request, me, refused)
        raw = await request.body()
        key = request.headers.get("Idempotency-Key", "") or f"auto-{uuid.uuid4()}"
        fingerprint = hashlib.sha256(raw).hexdigest()

        def take_document() -> Reply:
            try:
                doc = parse_ubl(raw)
            except BadDocument as exc:
                return json_reply(400, {"code": "invalid_document", "message": str(exc)})
            supplier = sim.supplier_of("peppol", me)
            inv, _ = sim.receive(
                "peppol", me, supplier, key, doc, synchronous=False, sender=me, receiver=receiver
            )
            assert inv is not None
            message_id = f"msg-{inv.id}-{uuid.uuid4().hex[:8]}"
            return json_reply(
                202,
                {"message_id": message_id, "received_at": inv.created_at.isoformat(), "status": "accepted"},
            )

        reply, replayed = sim.once("peppol", me, key, fingerprint, take_document)
        if reply is None:
            reused = {
                "code": "idempotency_key_reused",
                "message": "Idempotency-Key already used for another document",
            }
            reply = json_reply(409, reused)
        return await gate.finish(
            "peppol", request, me, reply, "replayed" if replayed else "", replayed=replayed
        )

    @api.get("/inbox")
    async def peppol_inbox(request: Request) -> Response:
        """Documents received for this participant (Invoice Responses), oldest first."""
        me, stop = await caller(request)
        if stop is not None:
            return stop
        messages = sim.pending_messages(
            "peppol", me, since_param(request.query_params.get("received_after")), 1000
        )
        documents = [
            {
                "message_id": m.id,
                "received_at": m.at.isoformat(),
                "sender": m.sender,
                "receiver": m.receiver,
                "document_type": "ApplicationResponse",
                "content": m.content.decode(),
            }
            for m in messages
        ]
        body = json_reply(200, {"documents": documents})
        return await gate.finish("peppol", request, me, body, f"{len(documents)} documents")

    return api
