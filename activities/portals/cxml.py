"""cXML 1.2.063, the Ariba-style protocol: InvoiceDetailRequest out, StatusUpdateRequest back.

Out: one InvoiceDetailRequest per submission, POSTed to the portal's URL, authenticated by the shared
secret in the Header's Sender credential. Its payloadID is derived from the submission's idempotency key:
cXML networks de-duplicate on payloadID, so a retry of the same pass is the same document to them.

Back: the portal's synchronous Response (status code 2xx: received), then StatusUpdateRequest documents
carrying an InvoiceStatus (processing, reconciled, paying, paid, rejected, canceled), either pushed to
our endpoint (`parse_push`, answered with `push_reply`) or fetched with GetPendingRequest (`poll`).
A `processing` status with Comments typed "query" or "dispute" is under query or disputed (cXML has no
status of its own for either). The reason comes as the portal's code in an Extrinsic named
"RejectionReasonCode", "DisputeReasonCode" or "QueryReasonCode" when the portal sends one, and as prose
in Comments otherwise (see status.portal_reason).
"""

from __future__ import annotations

import hmac
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

import httpx
from lxml import etree  # type: ignore[import-untyped, unused-ignore]  # no stubs ship with lxml

from activities.documents import InvoiceDocument, Party
from activities.money import MoneyError, format_minor, tax_by_rate, tax_minor, to_minor
from activities.portals.base import (
    Channel,
    FollowUp,
    PermanentError,
    PortalError,
    PushReply,
    StatusUpdate,
    Submission,
    SubmitReceipt,
    TransientError,
    http_client,
    parse_instant,
    parse_xml,
    raise_for_throttling,
    short_text,
    transport_errors,
)
from activities.portals.config import CxmlPortal
from activities.portals.status import (
    PortalStatus,
    ReasonCode,
    StatusReason,
    UnmappedStatus,
    cxml_status,
    portal_reason,
)

log = logging.getLogger("cashcycle.portals.cxml")

CXML_VERSION = "1.2.063"
CXML_DTD = f"http://xml.cxml.org/schemas/cXML/{CXML_VERSION}/cXML.dtd"
INVOICE_DTD = f"http://xml.cxml.org/schemas/cXML/{CXML_VERSION}/InvoiceDetail.dtd"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
PAYLOAD_DOMAIN = "cashcycle"
REASON_EXTRINSICS = ("RejectionReasonCode", "DisputeReasonCode", "QueryReasonCode", "ReasonCode")
CONTENT_TYPE = "text/xml; charset=UTF-8"


def payload_id_for(submission_key: str) -> str:
    return f"{submission_key}@{PAYLOAD_DOMAIN}"


def submission_key_of(payload_id: str) -> str:
    """Our idempotency key back from a payloadID we minted ("" for anyone else's)."""
    suffix = f"@{PAYLOAD_DOMAIN}"
    return payload_id[: -len(suffix)] if payload_id.endswith(suffix) else ""


def cxml_timestamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Envelope:
    """Who speaks to whom. The shared secret is revealed only while the Header is built."""

    from_identity: str
    to_identity: str
    sender_identity: str
    shared_secret: str
    from_domain: str = "NetworkId"
    to_domain: str = "NetworkId"
    sender_domain: str = "NetworkId"
    user_agent: str = "Cashcycle"

    def __repr__(self) -> str:  # the dataclass repr would print the secret
        return f"Envelope(from={self.from_identity!r}, to={self.to_identity!r})"

    @classmethod
    def of(cls, config: CxmlPortal) -> Envelope:
        return cls(
            from_identity=config.from_identity,
            to_identity=config.to_identity,
            sender_identity=config.sender_identity or config.from_identity,
            shared_secret=config.shared_secret.get_secret_value(),
            from_domain=config.from_domain,
            to_domain=config.to_domain,
            sender_domain=config.sender_domain,
            user_agent=config.user_agent,
        )


# -- building documents ---------------------------------------------------------------------------------


def _sub(parent: etree._Element, tag: str, content: str | None = None, /, **attrs: str) -> etree._Element:
    el = etree.SubElement(parent, tag, attrs)
    if content is not None:
        el.text = content
    return el


def _lang(el: etree._Element, lang: str = "en") -> etree._Element:
    el.set(XML_LANG, lang)
    return el


def _credential(parent: etree._Element, domain: str, identity: str, secret: str | None = None) -> None:
    cred = _sub(parent, "Credential", domain=domain)
    _sub(cred, "Identity", identity)
    if secret is not None:
        _sub(cred, "SharedSecret", secret)


def _envelope(payload_id: str, timestamp: datetime) -> etree._Element:
    root = etree.Element("cXML")
    root.set("payloadID", payload_id)
    root.set("timestamp", cxml_timestamp(timestamp))
    root.set("version", CXML_VERSION)
    root.set(XML_LANG, "en-US")
    return root


def _header(root: etree._Element, env: Envelope) -> None:
    header = _sub(root, "Header")
    _credential(_sub(header, "From"), env.from_domain, env.from_identity)
    _credential(_sub(header, "To"), env.to_domain, env.to_identity)
    sender = _sub(header, "Sender")
    _credential(sender, env.sender_domain, env.sender_identity, env.shared_secret)
    _sub(sender, "UserAgent", env.user_agent)


def _serialise(root: etree._Element, dtd_url: str) -> bytes:
    doctype = f'<!DOCTYPE cXML SYSTEM "{dtd_url}">'
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", doctype=doctype)
    return data


def _money(parent: etree._Element, minor: int, currency: str) -> etree._Element:
    return _sub(parent, "Money", format_minor(minor, currency), currency=currency)


def _amount(parent: etree._Element, tag: str, minor: int, currency: str) -> None:
    _money(_sub(parent, tag), minor, currency)


def _decimal_text(value: str) -> str:
    """A decimal string as cXML numbers are written: plain digits, no exponent, no trailing zeros."""
    number = Decimal(value)
    text = format(number.normalize(), "f")
    return text if text != "-0" else "0"


def _partner(parent: etree._Element, role: str, party: Party) -> None:
    partner = _sub(parent, "InvoicePartner")
    contact = _sub(partner, "Contact", role=role)
    _lang(_sub(contact, "Name", party.name))
    if party.street and party.city and party.country:
        address = _sub(contact, "PostalAddress")
        _sub(address, "Street", party.street)
        _sub(address, "City", party.city)
        if party.postal_code:
            _sub(address, "PostalCode", party.postal_code)
        _sub(address, "Country", party.country, isoCountryCode=party.country)
    if party.email:
        _sub(contact, "Email", party.email)
    if party.vat_id:
        _sub(partner, "IdReference", identifier=party.vat_id, domain="vatID")
    if party.company_id:
        _sub(partner, "IdReference", identifier=party.company_id, domain="companyRegistrationNumber")


def _line_tax(parent: etree._Element, taxable: int, taxed: int, rate: str, currency: str) -> None:
    tax = _sub(parent, "Tax")
    _money(tax, taxed, currency)
    _lang(_sub(tax, "Description", f"VAT {_decimal_text(rate)}%"))
    detail = _sub(tax, "TaxDetail", purpose="tax", category="vat", percentageRate=_decimal_text(rate))
    _amount(detail, "TaxableAmount", taxable, currency)
    _amount(detail, "TaxAmount", taxed, currency)


def _payment_days(doc: InvoiceDocument) -> int | None:
    try:
        days = (date.fromisoformat(doc.due_date) - date.fromisoformat(doc.issue_date)).days
    except ValueError:
        return None
    return days if days >= 0 else None


def invoice_detail_request(
    doc: InvoiceDocument,
    *,
    payload_id: str,
    timestamp: datetime,
    envelope: Envelope,
    deployment_mode: str = "production",
) -> bytes:
    """The InvoiceDetailRequest for `doc` (line-level tax, one InvoiceDetailOrder for its PO).

    Credit notes are line-level credit memos: negative quantities and amounts, the corrected invoice in
    InvoiceIDInfo. Element order follows InvoiceDetail.dtd's content models."""
    credit = doc.kind == "credit_note"
    sign = -1 if credit else 1
    cur = doc.currency
    root = _envelope(payload_id, timestamp)
    _header(root, envelope)
    request = _sub(root, "Request", deploymentMode=deployment_mode)
    idr = _sub(request, "InvoiceDetailRequest")

    head = _sub(
        idr,
        "InvoiceDetailRequestHeader",
        invoiceID=doc.number,
        purpose="lineLevelCreditMemo" if credit else "standard",
        operation="new",
        invoiceDate=f"{doc.issue_date}T00:00:00+00:00",
    )
    _sub(head, "InvoiceDetailHeaderIndicator")
    _sub(head, "InvoiceDetailLineIndicator", isTaxInLine="yes")
    _partner(head, "billTo", doc.customer)
    _partner(head, "remitTo", doc.supplier)
    if credit and doc.preceding_invoice:
        _sub(head, "InvoiceIDInfo", invoiceID=doc.preceding_invoice)
    days = _payment_days(doc)
    if days is not None:
        _sub(head, "PaymentTerm", payInNumberOfDays=str(days))
    if doc.note:
        _lang(_sub(head, "Comments", doc.note))
    if doc.buyer_reference:
        _sub(head, "Extrinsic", doc.buyer_reference, name="buyerReference")

    order = _sub(idr, "InvoiceDetailOrder")
    info = _sub(order, "InvoiceDetailOrderInfo")
    _sub(info, "OrderIDInfo", orderID=doc.po_number)
    for line in doc.lines:
        # The line's own tax, for information (isTaxInLine): the invoice's tax is per rate, below.
        line_tax = tax_minor(line.net_minor, Decimal(line.tax_rate))
        item = _sub(
            order,
            "InvoiceDetailItem",
            invoiceLineNumber=str(line.line_no),
            quantity=_decimal_text(str(sign * Decimal(line.quantity))),
        )
        _sub(item, "UnitOfMeasure", line.unit_code)
        _sub(_sub(item, "UnitPrice"), "Money", _decimal_text(line.unit_price), currency=cur)
        ref = _sub(item, "InvoiceDetailItemReference", lineNumber=str(line.line_no))
        _sub(_sub(ref, "ItemID"), "SupplierPartID", line.item_id or str(line.line_no))
        _lang(_sub(ref, "Description", line.description))
        _amount(item, "SubtotalAmount", sign * line.net_minor, cur)
        _line_tax(item, sign * line.net_minor, sign * line_tax, line.tax_rate, cur)

    summary = _sub(idr, "InvoiceDetailSummary")
    _amount(summary, "SubtotalAmount", sign * doc.subtotal_minor, cur)
    tax = _sub(summary, "Tax")
    _money(tax, sign * doc.tax_total_minor, cur)
    _lang(_sub(tax, "Description", "Total tax"))
    # Per rate, as EN 16931 computes the invoice's tax (BR-CO-17): their sum is doc.tax_total_minor.
    taxable: dict[Decimal, int] = {}
    for line in doc.lines:
        rate = Decimal(line.tax_rate)
        taxable[rate] = taxable.get(rate, 0) + line.net_minor
    taxed = tax_by_rate((Decimal(line.tax_rate), line.net_minor) for line in doc.lines)
    for rate, base in taxable.items():
        detail = _sub(
            tax, "TaxDetail", purpose="tax", category="vat", percentageRate=_decimal_text(str(rate))
        )
        _amount(detail, "TaxableAmount", sign * base, cur)
        _amount(detail, "TaxAmount", sign * taxed[rate], cur)
    _amount(summary, "GrossAmount", sign * doc.total_minor, cur)
    _amount(summary, "NetAmount", sign * doc.total_minor, cur)
    _amount(summary, "DueAmount", sign * doc.amount_due_minor, cur)
    return _serialise(root, INVOICE_DTD)


def get_pending_request(
    *, payload_id: str, timestamp: datetime, envelope: Envelope, since: datetime | None, max_messages: int
) -> bytes:
    """GetPendingRequest for StatusUpdateRequest messages newer than `since`."""
    root = _envelope(payload_id, timestamp)
    _header(root, envelope)
    pending = _sub(_sub(root, "Request"), "GetPendingRequest", maxMessages=str(max_messages))
    if since is not None:
        pending.set("lastReceivedTimestamp", since.astimezone(UTC).isoformat(timespec="microseconds"))
    _sub(pending, "MessageType", "StatusUpdateRequest")
    return _serialise(root, CXML_DTD)


def response_document(code: int, text: str, message: str = "", *, timestamp: datetime | None = None) -> bytes:
    """A cXML Response with only a Status: our answer to a pushed StatusUpdateRequest."""
    root = _envelope(f"{uuid.uuid4()}@{PAYLOAD_DOMAIN}", timestamp or datetime.now(UTC))
    status = _sub(_sub(root, "Response"), "Status", message or None, code=str(code), text=text)
    _lang(status, "en-US")
    return _serialise(root, CXML_DTD)


# -- reading documents -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CxmlStatus:
    code: int
    text: str
    message: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300


def _text(el: etree._Element | None) -> str:
    return " ".join("".join(el.itertext()).split()) if el is not None else ""


def response_status(portal: str, root: etree._Element) -> CxmlStatus:
    status = root.find("Response/Status")
    if root.tag != "cXML" or status is None:
        raise PermanentError(portal, "the portal's answer is not a cXML Response")
    try:
        code = int(status.get("code", ""))
    except ValueError:
        raise PermanentError(portal, "the portal's cXML Status has no numeric code") from None
    return CxmlStatus(code, status.get("text", ""), _text(status))


def status_updates_from(
    portal: str, root: etree._Element, reason_codes: Mapping[str, str] | None = None
) -> list[StatusUpdate]:
    """The updates in one cXML document holding a StatusUpdateRequest (none for other documents)."""
    sur = root.find("Request/StatusUpdateRequest")
    if sur is None:
        return []
    payload_id = root.get("payloadID", "")
    at = parse_instant(root.get("timestamp", "")) if root.get("timestamp") else datetime.now(UTC)
    doc_ref = sur.find("DocumentReference")
    referenced = doc_ref.get("payloadID", "") if doc_ref is not None else ""
    status_el = sur.find("Status")
    code = int(status_el.get("code", "200")) if status_el is not None else 200
    status_text = _text(status_el) or (status_el.get("text", "") if status_el is not None else "")
    invoice_status = sur.find("InvoiceStatus")
    extrinsics = {e.get("name", ""): _text(e) for e in sur.findall("Extrinsic")}
    reason_code = next((extrinsics[n] for n in REASON_EXTRINSICS if extrinsics.get(n)), "")
    number = ""
    paid_minor: int | None = None
    if invoice_status is not None:
        word = invoice_status.get("type", "")
        all_comments = invoice_status.findall("Comments")
        status = cxml_status(word, [c.get("type", "") for c in all_comments])
        info = invoice_status.find("InvoiceIDInfo")
        number = info.get("invoiceID", "") if info is not None else ""
        comments = " ".join(_text(c) for c in all_comments).strip()
        partial = invoice_status.find("PartialAmount/Money")
        if partial is not None:
            try:
                paid_minor = to_minor(Decimal(_text(partial)), partial.get("currency", ""))
            except (ArithmeticError, MoneyError):
                paid_minor = None
        message = comments or status_text
        portal_status = word
    else:
        # A document status without an InvoiceStatus (as in the cXML samples): the network's own
        # acknowledgement of the referenced document, or its refusal.
        status = PortalStatus.RECEIVED if 200 <= code < 300 else PortalStatus.REJECTED
        message = status_text
        portal_status = f"Status {code}"
    reasons: tuple[StatusReason, ...] = ()
    if reason_code or status in (PortalStatus.REJECTED, PortalStatus.UNDER_QUERY, PortalStatus.DISPUTED):
        reasons = (portal_reason(reason_code, message, reason_codes),)
    return [
        StatusUpdate(
            portal=portal,
            channel=Channel.CXML,
            status=status,
            at=at,
            invoice_number=number,
            portal_ref=referenced,
            submission_key=submission_key_of(referenced),
            reasons=reasons,
            message=message,
            portal_status=portal_status,
            update_id=payload_id,
            paid_minor=paid_minor,
        )
    ]


def parse_status_update_request(
    portal: str, body: bytes, reason_codes: Mapping[str, str] | None = None
) -> list[StatusUpdate]:
    """A StatusUpdateRequest document as the portal sent it (credentials not checked here)."""
    root = parse_xml(portal, body, "StatusUpdateRequest")
    if root.tag != "cXML" or root.find("Request/StatusUpdateRequest") is None:
        raise PermanentError(portal, "not a cXML StatusUpdateRequest")
    try:
        return status_updates_from(portal, root, reason_codes)
    except (UnmappedStatus, ValueError) as exc:
        raise PermanentError(portal, f"StatusUpdateRequest: {short_text(str(exc), 160)}") from None


# -- the adapter -----------------------------------------------------------------------------------------


class CxmlAdapter:
    """A cXML portal (Ariba-style network or a buyer's own cXML endpoint)."""

    channel = Channel.CXML
    max_messages = 200

    def __init__(
        self,
        name: str,
        config: CxmlPortal,
        *,
        client: httpx.Client | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._name = name
        self._config = config
        self._client = client or http_client(config.http_options())
        self._now = now

    @property
    def name(self) -> str:
        return self._name

    @property
    def follow_up(self) -> FollowUp:
        return FollowUp(self._config.follow_up)

    def _post(self, body: bytes, what: str) -> tuple[etree._Element, httpx.Response]:
        with transport_errors(self._name, what):
            response = self._client.post(
                self._config.url, content=body, headers={"Content-Type": CONTENT_TYPE}
            )
        raise_for_throttling(self._name, what, response)
        try:
            root = parse_xml(self._name, response.content, what)
        except PermanentError:
            raise PermanentError(
                self._name,
                f"{what}: HTTP {response.status_code} without a cXML answer",
                http_status=response.status_code,
            ) from None
        return root, response

    def _refusal(self, what: str, status: CxmlStatus, http_status: int) -> PortalError:
        said = short_text(f"{status.code} {status.text} {status.message}".strip(), 200)
        if status.code >= 500:
            return TransientError(self._name, f"{what}: portal error ({said})", http_status=http_status)
        reasons: tuple[StatusReason, ...] = ()
        if status.code not in (401, 403):
            # A 4xx naming what is wrong with the document is a rejection; otherwise the fault is ours.
            found = portal_reason("", f"{status.text} {status.message}", self._config.extra_reason_codes())
            if found.code is not ReasonCode.OTHER:
                reasons = (found,)
        return PermanentError(
            self._name, f"{what}: refused ({said})", http_status=http_status, reasons=reasons
        )

    def submit(self, submission: Submission) -> SubmitReceipt:
        """POST the InvoiceDetailRequest. A 2xx cXML status means received; rejections follow as
        StatusUpdateRequest."""
        payload_id = payload_id_for(submission.idempotency_key)
        body = invoice_detail_request(
            submission.document,
            payload_id=payload_id,
            timestamp=self._now(),
            envelope=Envelope.of(self._config),
            deployment_mode=self._config.deployment_mode,
        )
        what = f"InvoiceDetailRequest {submission.document.number}"
        root, response = self._post(body, what)
        status = response_status(self._name, root)
        if not status.ok:
            raise self._refusal(what, status, response.status_code)
        stamp = root.get("timestamp")
        log.info("%s: %s received (cXML %s %s)", self._name, what, status.code, status.text)
        return SubmitReceipt(
            portal=self._name,
            channel=Channel.CXML,
            submission_key=submission.idempotency_key,
            portal_ref=payload_id,
            status=PortalStatus.RECEIVED,
            at=parse_instant(stamp) if stamp else self._now(),
            follow_up=self.follow_up,
            replayed=response.headers.get("Idempotent-Replayed", "").lower() == "true",
            message=status.message or status.text,
        )

    def poll(self, since: datetime | None) -> list[StatusUpdate]:
        """StatusUpdateRequests waiting at the portal, newer than `since`, by GetPendingRequest."""
        updates: dict[str, StatusUpdate] = {}
        cursor = since
        for _ in range(100):  # bounded: a portal that keeps answering full pages cannot hold the worker
            body = get_pending_request(
                payload_id=f"{uuid.uuid4()}@{PAYLOAD_DOMAIN}",
                timestamp=self._now(),
                envelope=Envelope.of(self._config),
                since=cursor,
                max_messages=self.max_messages,
            )
            root, response = self._post(body, "GetPendingRequest")
            status = response_status(self._name, root)
            if not status.ok:
                raise self._refusal("GetPendingRequest", status, response.status_code)
            messages = root.findall("Response/GetPendingResponse/cXML")
            fresh = 0
            for message in messages:
                try:
                    found = status_updates_from(self._name, message, self._config.extra_reason_codes())
                except (UnmappedStatus, ValueError) as exc:
                    log.warning("%s: skipped a pending message: %s", self._name, exc)
                    continue
                for update in found:
                    if update.update_id not in updates:
                        updates[update.update_id] = update
                        fresh += 1
            if len(messages) < self.max_messages or fresh == 0:
                break
            cursor = max(u.at for u in updates.values())
        return sorted(updates.values(), key=lambda u: u.at)

    def parse_push(self, body: bytes, headers: Mapping[str, str]) -> list[StatusUpdate]:
        """A StatusUpdateRequest the portal POSTed to us. When a push secret is configured, the
        document must come from the buyer's identity with that secret (constant-time comparison)."""
        root = parse_xml(self._name, body, "StatusUpdateRequest")
        expected = self._config.push_shared_secret
        if expected is not None:
            secret = root.findtext("Header/Sender/Credential/SharedSecret") or ""
            senders = {i.strip() for i in root.xpath("Header/From/Credential/Identity/text()")}
            if not hmac.compare_digest(secret.encode(), expected.get_secret_value().encode()):
                raise PermanentError(self._name, "push refused: wrong shared secret", http_status=401)
            if self._config.to_identity not in senders:
                raise PermanentError(
                    self._name, "push refused: not from the buyer's identity", http_status=401
                )
        return parse_status_update_request(self._name, body, self._config.extra_reason_codes())

    def push_reply(self, error: PortalError | None) -> PushReply:
        if error is None:
            return PushReply(200, response_document(200, "OK", timestamp=self._now()), CONTENT_TYPE)
        if isinstance(error, PermanentError) and error.http_status == 401:
            return PushReply(401, response_document(401, "Unauthorized", timestamp=self._now()), CONTENT_TYPE)
        if isinstance(error, PermanentError):
            body = response_document(400, "Bad Request", short_text(str(error), 200), timestamp=self._now())
            return PushReply(400, body, CONTENT_TYPE)
        return PushReply(
            500, response_document(500, "Internal Server Error", timestamp=self._now()), CONTENT_TYPE
        )

    def close(self) -> None:
        self._client.close()
