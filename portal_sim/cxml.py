"""cXML (Ariba-style network), the buyer's side:

    POST /cxml    InvoiceDetailRequest -> Response 201 (received; rejections follow as statuses)
                  GetPendingRequest    -> the StatusUpdateRequests waiting for the client
                  ProfileRequest       -> 200
    StatusUpdateRequests are also pushed to the client's callback URL when it has one.

cXML 1.2.063 has no "under query" and no "disputed" InvoiceStatus (its types are processing, canceled,
reconciled, rejected, paying, paid): the buyer says `processing` and structures its Comments with the
DTD's `type` attribute, "query" or "dispute", the reason code riding in an Extrinsic (QueryReasonCode,
DisputeReasonCode), as it does for a rejection (RejectionReasonCode).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Request, Response
from lxml import etree  # type: ignore[import-untyped, unused-ignore]  # no stubs ship with lxml

from portal_sim.buyer import Event, SimInvoice
from portal_sim.documents import XML_LANG, BadDocument, Line, Parsed, decimal_of, parse_xml, sub, text_of
from portal_sim.gate import Gate, Reply, since_param
from portal_sim.scenario import CxmlSection, Scenario
from portal_sim.simulator import Outgoing

CXML_DTD = "http://xml.cxml.org/schemas/cXML/1.2.063/cXML.dtd"

# How cXML says each status: the InvoiceStatus type (None: no word, nothing is sent).
CXML_WORD: dict[str, str | None] = {
    "received": None,  # the synchronous Response said it
    "in_process": "processing",
    "under_query": "processing",  # with Comments type="query"
    "disputed": "processing",  # with Comments type="dispute"
    "approved": "reconciled",
    "payment_scheduled": "paying",
    "paid": "paid",
    "rejected": "rejected",
}
# The structure of the Comments for the statuses cXML has no type for: (Comments@type, prefix).
CXML_COMMENTS: dict[str, tuple[str, str]] = {
    "under_query": ("query", "Under query: "),
    "disputed": ("dispute", "Disputed: "),
    "rejected": ("", ""),
}
# The Extrinsic that carries the buyer's reason code, per status.
CXML_REASON_EXTRINSIC: dict[str, str] = {
    "rejected": "RejectionReasonCode",
    "under_query": "QueryReasonCode",
    "disputed": "DisputeReasonCode",
}


# -- documents ------------------------------------------------------------------------------------------


def parse_invoice_detail(request: etree._Element) -> Parsed:
    """An InvoiceDetailRequest element."""
    head = request.find("InvoiceDetailRequestHeader")
    if head is None or not head.get("invoiceID"):
        raise BadDocument("InvoiceDetailRequestHeader@invoiceID is required")
    purpose = head.get("purpose", "standard")
    kind: Literal["invoice", "credit_note"] = (
        "credit_note" if purpose.lower().endswith("creditmemo") else "invoice"
    )
    bill_name, bill_vat = _bill_to(head)
    money = request.find(".//InvoiceDetailSummary//Money")
    lines = [_line(item) for item in request.findall("InvoiceDetailOrder/InvoiceDetailItem")]
    if not lines:
        raise BadDocument("an InvoiceDetailRequest needs at least one InvoiceDetailItem")
    preceding = head.find("InvoiceIDInfo")
    return Parsed(
        number=head.get("invoiceID", ""),
        kind=kind,
        currency=money.get("currency", "") if money is not None else "",
        po_number=_order_id(request),
        bill_to_name=bill_name,
        bill_to_vat=bill_vat,
        lines=lines,
        preceding=preceding.get("invoiceID", "") if preceding is not None else "",
    )


def _order_id(request: etree._Element) -> str:
    for tag in ("OrderIDInfo", "OrderReference"):
        found = request.find(f"InvoiceDetailOrder/InvoiceDetailOrderInfo/{tag}")
        if found is not None:
            return str(found.get("orderID", ""))
    return ""


def _bill_to(head: etree._Element) -> tuple[str, str]:
    name = vat = ""
    for partner in head.findall("InvoicePartner"):
        contact = partner.find("Contact")
        if contact is not None and contact.get("role") == "billTo":
            name = text_of(contact.find("Name"))
            for ref in partner.findall("IdReference"):
                if ref.get("domain") == "vatID":
                    vat = ref.get("identifier", "")
    return name, vat


def _line(item: etree._Element) -> Line:
    rate = item.find("Tax/TaxDetail")
    price = item.find("UnitPrice/Money")
    if price is None:
        raise BadDocument("InvoiceDetailItem without UnitPrice/Money")
    return Line(
        item=text_of(item.find("InvoiceDetailItemReference/ItemID/SupplierPartID")),
        description=text_of(item.find("InvoiceDetailItemReference/Description")),
        quantity=abs(decimal_of(item.get("quantity"), "InvoiceDetailItem@quantity")),
        unit_price=decimal_of(text_of(price), "UnitPrice"),
        tax_rate=(
            decimal_of(rate.get("percentageRate"), "TaxDetail@percentageRate")
            if rate is not None and rate.get("percentageRate")
            else None
        ),
    )


def cxml_root(payload_id: str, at: datetime) -> etree._Element:
    root = etree.Element("cXML")
    root.set("payloadID", payload_id)
    root.set("timestamp", at.isoformat(timespec="microseconds"))
    root.set("version", "1.2.063")
    root.set(XML_LANG, "en-US")
    return root


def cxml_bytes(root: etree._Element) -> bytes:
    data: bytes = etree.tostring(
        root, xml_declaration=True, encoding="UTF-8", doctype=f'<!DOCTYPE cXML SYSTEM "{CXML_DTD}">'
    )
    return data


def cxml_response(code: int, text: str, message: str = "", *, at: datetime) -> bytes:
    root = cxml_root(f"{uuid.uuid4()}@portal-sim", at)
    status = sub(sub(root, "Response"), "Status", message or None, code=str(code), text=text)
    status.set(XML_LANG, "en-US")
    return cxml_bytes(root)


def _credential(parent: etree._Element, identity: str, secret: str | None = None) -> None:
    cred = sub(parent, "Credential", domain="NetworkId")
    sub(cred, "Identity", identity)
    if secret is not None:
        sub(cred, "SharedSecret", secret)


def cxml_status_update(inv: SimInvoice, event: Event, section: CxmlSection, payload_id: str) -> bytes:
    word = CXML_WORD[event.status]
    assert word is not None
    root = cxml_root(payload_id, event.at)
    header = sub(root, "Header")
    _credential(sub(header, "From"), section.buyer_identity)
    _credential(sub(header, "To"), inv.client)
    sender = sub(header, "Sender")
    _credential(sender, section.buyer_identity, section.buyer_shared_secret)
    sub(sender, "UserAgent", "Cashcycle portal simulator")
    sur = sub(sub(root, "Request"), "StatusUpdateRequest")
    sub(sur, "DocumentReference", payloadID=inv.key)
    sub(sur, "Status", f"Invoice {word}", code="200", text="OK").set(XML_LANG, "en-US")
    status = sub(sur, "InvoiceStatus", type=word)
    sub(status, "InvoiceIDInfo", invoiceID=inv.parsed.number)
    if event.reason is not None and event.status in CXML_COMMENTS:
        kind, prefix = CXML_COMMENTS[event.status]
        comments = sub(status, "Comments", prefix + event.reason.message)
        comments.set(XML_LANG, "en")
        if kind:
            comments.set("type", kind)
        sub(sur, "Extrinsic", event.reason.code, name=CXML_REASON_EXTRINSIC[event.status])
    return cxml_bytes(root)


def status_message(inv: SimInvoice, event: Event, scenario: Scenario) -> Outgoing | None:
    """The StatusUpdateRequest for one status (none for `received`: the Response said it)."""
    if CXML_WORD[event.status] is None:
        return None
    client = next((c for c in scenario.cxml.clients if c.identity == inv.client), None)
    payload_id = f"{uuid.uuid4()}@portal-sim"
    return Outgoing(
        payload_id,
        cxml_status_update(inv, event, scenario.cxml, payload_id),
        url=client.callback_url if client else "",
        headers={"Content-Type": "text/xml; charset=UTF-8"},
    )


# -- HTTP -----------------------------------------------------------------------------------------------


def router(gate: Gate) -> APIRouter:
    sim = gate.sim
    api = APIRouter()

    def answer(code: int, text: str, message: str = "", *, at: datetime, http: int | None = None) -> Reply:
        return Reply(
            http or (200 if code < 300 else code), cxml_response(code, text, message, at=at), "text/xml"
        )

    async def invoice_detail(
        request: Request, root: etree._Element, identity: str, now: datetime
    ) -> Response:
        idr = root.find("Request/InvoiceDetailRequest")
        payload_id = root.get("payloadID", "")
        if not payload_id:
            bad = answer(400, "Bad Request", "payloadID is required", at=now)
            return await gate.finish("cxml", request, identity, bad)
        fingerprint = hashlib.sha256(etree.tostring(idr, method="c14n")).hexdigest()

        def take_invoice() -> Reply:
            try:
                doc = parse_invoice_detail(idr)
            except BadDocument as exc:
                return answer(400, "Bad Request", str(exc), at=now)
            supplier = sim.supplier_of("cxml", identity)
            inv, _ = sim.receive("cxml", identity, supplier, payload_id, doc, synchronous=False)
            assert inv is not None
            return answer(201, "Accepted", f"Invoice {doc.number} received (portal id {inv.id})", at=now)

        reply, replayed = sim.once("cxml", identity, payload_id, fingerprint, take_invoice)
        if reply is None:
            reply = answer(409, "Conflict", "payloadID already used for another document", at=now)
        head = idr.find("InvoiceDetailRequestHeader")
        note = "replayed" if replayed else f"invoice {head.get('invoiceID') if head is not None else None}"
        return await gate.finish("cxml", request, identity, reply, note, replayed=replayed)

    async def get_pending(
        request: Request, pending: etree._Element, identity: str, now: datetime
    ) -> Response:
        try:
            limit = max(1, int(pending.get("maxMessages") or 100))
        except ValueError:
            return await gate.finish(
                "cxml", request, identity, answer(400, "Bad Request", "maxMessages", at=now)
            )
        messages = sim.pending_messages(
            "cxml", identity, since_param(pending.get("lastReceivedTimestamp")), limit
        )
        out = cxml_root(f"{uuid.uuid4()}@portal-sim", now)
        response = sub(out, "Response")
        sub(response, "Status", code="200", text="OK").set(XML_LANG, "en-US")
        if messages:
            holder = sub(response, "GetPendingResponse")
            for message in messages:
                holder.append(parse_xml(message.content))
        reply = Reply(200, cxml_bytes(out), "text/xml")
        return await gate.finish("cxml", request, identity, reply, f"{len(messages)} pending")

    @api.post("/cxml")
    async def cxml_endpoint(request: Request) -> Response:
        """cXML requests: InvoiceDetailRequest, GetPendingRequest, ProfileRequest."""
        if (failure := gate.injected("cxml", request)) is not None:
            return failure
        now = sim.now()
        try:
            root = parse_xml(await request.body())
        except BadDocument as exc:
            return await gate.finish("cxml", request, "", answer(400, "Bad Request", str(exc), at=now))
        identity = (root.findtext("Header/Sender/Credential/Identity") or "").strip()
        secret = root.findtext("Header/Sender/Credential/SharedSecret") or ""
        if sim.cxml_client(identity, secret) is None:
            refused = answer(401, "Unauthorized", "Unknown sender or wrong shared secret", at=now)
            return await gate.finish("cxml", request, identity, refused)
        if (limited := gate.throttled("cxml", request, identity)) is not None:
            return limited
        if root.find("Request/InvoiceDetailRequest") is not None:
            return await invoice_detail(request, root, identity, now)
        pending = root.find("Request/GetPendingRequest")
        if pending is not None:
            return await get_pending(request, pending, identity, now)
        if root.find("Request/ProfileRequest") is not None:
            return await gate.finish("cxml", request, identity, answer(200, "OK", at=now))
        unsupported = answer(406, "Not Acceptable", "request type not supported", at=now)
        return await gate.finish("cxml", request, identity, unsupported)

    return api
