"""Peppol: the UBL invoice handed to our access point over its HTTP API, statuses back as Peppol
Invoice Responses (BIS 3 T111, UBL ApplicationResponse) from the customer.

    POST {base}/peppol/v1/documents     the UBL bytes; sender and receiver participant ids, document type
                                        and process in headers; Idempotency-Key: <submission key>
    GET  {base}/peppol/v1/inbox         documents received for us after `received_after` (JSON list)
    push                                the access point POSTs each Invoice Response to our endpoint,
                                        signed with HMAC-SHA256 over the body (X-Peppol-Signature)

The access point de-duplicates on the idempotency key (it becomes the AS4 MessageId, which AS4 receivers
de-duplicate on), so a retry of the same pass is not delivered twice. The UBL rendering itself is
activities.einvoice's: this adapter sends the bytes it is given.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time
from typing import Any

import httpx
from lxml import etree  # type: ignore[import-untyped, unused-ignore]  # no stubs ship with lxml

from activities.documents import Party
from activities.portals.base import (
    Channel,
    FollowUp,
    PermanentError,
    PortalError,
    PushReply,
    StatusUpdate,
    Submission,
    SubmitReceipt,
    http_client,
    parse_instant,
    parse_xml,
    raise_for_throttling,
    short_text,
    transport_errors,
)
from activities.portals.config import PeppolPortal
from activities.portals.status import (
    PEPPOL_REASON_CODES,
    PortalStatus,
    ReasonCode,
    StatusReason,
    UnmappedStatus,
    peppol_reason,
    peppol_status,
)

log = logging.getLogger("cashcycle.portals.peppol")

NS = {
    "ar": "urn:oasis:names:specification:ubl:schema:xsd:ApplicationResponse-2",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
}
BILLING_PROCESS = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
BIS3 = "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0::2.1"
DOCUMENT_TYPES = {
    "invoice": f"urn:oasis:names:specification:ubl:schema:xsd:Invoice-2::Invoice##{BIS3}",
    "credit_note": f"urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2::CreditNote##{BIS3}",
}
SIGNATURE_HEADER = "X-Peppol-Signature"


def participant_id(party: Party) -> str:
    """ "scheme:value", e.g. "0088:5790000435968" (ISO 6523 ICD / EAS code, then the identifier)."""
    return (
        f"{party.endpoint_scheme}:{party.endpoint_id}" if party.endpoint_id and party.endpoint_scheme else ""
    )


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _texts(el: etree._Element, path: str) -> list[str]:
    return [" ".join((t.text or "").split()) for t in el.findall(path, NS) if (t.text or "").strip()]


def _condition(el: etree._Element) -> str:
    """A Condition as "attribute: value" (e.g. "BT-13: PO0001", the field the buyer asks about)."""
    attribute = el.findtext("cbc:AttributeID", default="", namespaces=NS).strip()
    return f"{attribute}: {el.findtext('cbc:Description', default='', namespaces=NS).strip()}"


def _issued_at(root: etree._Element) -> datetime:
    day = root.findtext("cbc:IssueDate", default="", namespaces=NS).strip()
    clock = root.findtext("cbc:IssueTime", default="", namespaces=NS).strip()
    try:
        moment = time.fromisoformat(clock.replace("Z", "+00:00")) if clock else time(0, 0)
        issued = datetime.combine(date.fromisoformat(day), moment)
    except ValueError:
        return datetime.now(UTC)
    return (issued if issued.tzinfo else issued.replace(tzinfo=UTC)).astimezone(UTC)


def invoice_response_update(
    portal: str,
    root: etree._Element,
    *,
    received_at: datetime | None = None,
    message_id: str = "",
) -> StatusUpdate:
    """One Invoice Response (ApplicationResponse with a DocumentResponse) as a normalised update.
    Reasons are the OPStatusReason codes, each with the StatusReason text of its Status element;
    OPStatusAction codes are kept as `actions`; conditions (e.g. "BT-13: PO0001") join the message."""
    if root.tag != f"{{{NS['ar']}}}ApplicationResponse":
        raise PermanentError(portal, "not a UBL ApplicationResponse")
    response = root.find("cac:DocumentResponse/cac:Response", NS)
    if response is None:
        raise PermanentError(portal, "ApplicationResponse without a DocumentResponse")
    code = response.findtext("cbc:ResponseCode", default="", namespaces=NS).strip()
    reasons: list[StatusReason] = []
    actions: list[str] = []
    said: list[str] = []
    for st in response.findall("cac:Status", NS):
        text = " ".join(_texts(st, "cbc:StatusReason"))
        conditions = [_condition(c) for c in st.findall("cac:Condition", NS)]
        said += [text] if text else []
        said += conditions
        for reason_code in st.findall("cbc:StatusReasonCode", NS):
            value = (reason_code.text or "").strip()
            listed = reason_code.get("listID", "")
            if listed == "OPStatusAction" or (not listed and value not in PEPPOL_REASON_CODES):
                actions.append(value)
            else:
                reasons.append(peppol_reason(value, text or "; ".join(conditions)))
    try:
        status = peppol_status(code, actions)  # UQ asking for a credit note is a dispute
    except UnmappedStatus as exc:
        raise PermanentError(portal, str(exc)) from None
    message = "; ".join(s for s in said if s)
    if not reasons and status in (PortalStatus.REJECTED, PortalStatus.UNDER_QUERY, PortalStatus.DISPUTED):
        reasons.append(peppol_reason("", message))
    if reasons and all(r.code is ReasonCode.NO_ISSUE for r in reasons):
        reasons = []  # NON: "no issue", a status without a problem
    invoice = root.findtext("cac:DocumentResponse/cac:DocumentReference/cbc:ID", default="", namespaces=NS)
    response_id = root.findtext("cbc:ID", default="", namespaces=NS).strip()
    return StatusUpdate(
        portal=portal,
        channel=Channel.PEPPOL,
        status=status,
        at=received_at or _issued_at(root),
        invoice_number=invoice.strip(),
        reasons=tuple(reasons),
        actions=tuple(actions),
        message=message,
        portal_status=code,
        update_id=message_id or f"{response_id}:{code}:{invoice.strip()}",
    )


def parse_invoice_response(
    portal: str, body: bytes, *, received_at: datetime | None = None, message_id: str = ""
) -> StatusUpdate:
    return invoice_response_update(
        portal, parse_xml(portal, body, "Invoice Response"), received_at=received_at, message_id=message_id
    )


class PeppolAdapter:
    """Our Peppol access point, reached over its HTTP API (we are corner 1, the customer corner 4)."""

    channel = Channel.PEPPOL

    def __init__(
        self,
        name: str,
        config: PeppolPortal,
        *,
        client: httpx.Client | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._name = name
        self._config = config
        self._client = client or http_client(config.http_options(), base_url=config.base_url.rstrip("/"))
        self._now = now

    @property
    def name(self) -> str:
        return self._name

    @property
    def follow_up(self) -> FollowUp:
        return FollowUp(self._config.follow_up)

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._config.api_key.get_secret_value()}"}

    def submit(self, submission: Submission) -> SubmitReceipt:
        doc = submission.document
        what = f"{doc.kind.replace('_', ' ')} {doc.number} to the access point"
        if not submission.ubl:
            raise PermanentError(self._name, f"{what}: no UBL document was given to send")
        sender = self._config.sender_id or participant_id(doc.supplier)
        receiver = self._config.receiver_id or participant_id(doc.customer)
        if not sender or not receiver:
            # The fault is in our master data (endpoint ids), not in the customer's answer.
            raise PermanentError(self._name, f"{what}: the seller's or buyer's Peppol endpoint id is missing")
        headers = {
            **self._auth(),
            "Content-Type": "application/xml",
            "Accept": "application/json",
            "X-Peppol-Sender-Id": sender,
            "X-Peppol-Receiver-Id": receiver,
            "X-Peppol-Document-Type-Id": DOCUMENT_TYPES[doc.kind],
            "X-Peppol-Process-Id": BILLING_PROCESS,
            "Idempotency-Key": submission.idempotency_key,
        }
        with transport_errors(self._name, what):
            response = self._client.post("/peppol/v1/documents", content=submission.ubl, headers=headers)
        raise_for_throttling(self._name, what, response)
        body = self._json(response)
        said = short_text(f"{body.get('code', '')} {body.get('message', '')}".strip(), 200)
        if response.status_code in (200, 201, 202):
            stamp = body.get("received_at")
            return SubmitReceipt(
                portal=self._name,
                channel=Channel.PEPPOL,
                submission_key=submission.idempotency_key,
                portal_ref=str(body.get("message_id", "")),
                status=PortalStatus.RECEIVED,
                at=parse_instant(str(stamp)) if stamp else self._now(),
                follow_up=self.follow_up,
                replayed=response.headers.get("Idempotent-Replayed", "").lower() == "true",
            )
        reasons: tuple[StatusReason, ...] = ()
        if response.status_code == 404 or body.get("code") == "receiver_unknown":
            # Not registered on the network (SMP lookup failed): the customer cannot be reached there.
            reasons = (StatusReason(ReasonCode.RECEIVER_UNKNOWN, said, str(body.get("code", ""))),)
        detail = f"HTTP {response.status_code}" + (f" {said}" if said else "")
        raise PermanentError(
            self._name, f"{what}: refused ({detail})", http_status=response.status_code, reasons=reasons
        )

    def poll(self, since: datetime | None) -> list[StatusUpdate]:
        """Invoice Responses in our access point's inbox that arrived after `since` (its clock)."""
        params: dict[str, str] = {"document_type": "ApplicationResponse"}
        if since is not None:
            params["received_after"] = since.astimezone(UTC).isoformat(timespec="microseconds")
        what = "inbox"
        with transport_errors(self._name, what):
            response = self._client.get(
                "/peppol/v1/inbox", params=params, headers={**self._auth(), "Accept": "application/json"}
            )
        raise_for_throttling(self._name, what, response)
        if response.status_code != 200:
            raise PermanentError(
                self._name, f"{what}: HTTP {response.status_code}", http_status=response.status_code
            )
        documents = self._json(response).get("documents", [])
        updates: list[StatusUpdate] = []
        for item in documents if isinstance(documents, list) else []:
            if not isinstance(item, Mapping) or item.get("document_type", "ApplicationResponse") != (
                "ApplicationResponse"
            ):
                continue
            try:
                updates.append(
                    parse_invoice_response(
                        self._name,
                        str(item.get("content", "")).encode(),
                        received_at=parse_instant(str(item["received_at"])),
                        message_id=str(item.get("message_id", "")),
                    )
                )
            except (PermanentError, KeyError, ValueError) as exc:
                log.warning("%s: skipped inbox document %s: %s", self._name, item.get("message_id"), exc)
        return sorted(updates, key=lambda u: u.at)

    def parse_push(self, body: bytes, headers: Mapping[str, str]) -> list[StatusUpdate]:
        """An Invoice Response pushed by the access point; its HMAC signature is checked when a webhook
        secret is configured."""
        lower = {k.lower(): v for k, v in headers.items()}
        secret = self._config.webhook_secret
        if secret is not None:
            given = lower.get(SIGNATURE_HEADER.lower(), "")
            if not hmac.compare_digest(given.encode(), signature(secret.get_secret_value(), body).encode()):
                raise PermanentError(self._name, "push refused: bad or missing signature", http_status=401)
        stamp = lower.get("x-peppol-received-at", "")
        try:
            received = parse_instant(stamp) if stamp else None
        except ValueError:
            received = None
        return [
            parse_invoice_response(
                self._name, body, received_at=received, message_id=lower.get("x-peppol-message-id", "")
            )
        ]

    def push_reply(self, error: PortalError | None) -> PushReply:
        if error is None:
            return PushReply(200)
        if isinstance(error, PermanentError):
            return PushReply(error.http_status or 400, short_text(str(error), 200).encode())
        return PushReply(500)

    def close(self) -> None:
        self._client.close()

    def _json(self, response: httpx.Response) -> Mapping[str, Any]:
        try:
            body = response.json()
        except ValueError:
            return {}
        return body if isinstance(body, Mapping) else {}
