"""Coupa-style REST: OAuth2 client credentials, a JSON invoice per submission, statuses pulled.

    POST {base}/oauth2/token                         grant_type=client_credentials -> bearer token
    POST {base}/api/invoices                         Idempotency-Key: <submission key>; 201 or 422
    GET  {base}/api/invoices?updated_at[gt]=<since>  the invoices changed since, page by page

The token is cached until shortly before it expires; a 401 on a cached token (expired or revoked early)
refreshes it once and repeats the call. Validation rejections come back at once as 422 with the portal's
reason codes: they are PermanentErrors carrying the normalised reasons. Later statuses come with the
buyer's `dispute_reason` {code, comment}: "on_hold" is under query, "disputed" a dispute (or, for an
instance configured `disputed_status = "rejected"`, a rejection to fix and resubmit), "voided" rejected.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

from activities.documents import InvoiceDocument, Party
from activities.money import format_minor
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
    raise_for_throttling,
    short_text,
    transport_errors,
)
from activities.portals.config import CoupaPortal
from activities.portals.status import PortalStatus, StatusReason, UnmappedStatus, coupa_status, portal_reason

log = logging.getLogger("cashcycle.portals.coupa")

# Refresh this long before the portal says the token expires: our clock and the portal's differ, and a
# request takes time to arrive.
TOKEN_MARGIN_SECONDS = 30.0


def _party(party: Party) -> dict[str, str]:
    return {
        "name": party.name,
        "vat_id": party.vat_id,
        "country": party.country,
        "street": party.street,
        "city": party.city,
        "postal_code": party.postal_code,
    }


def invoice_json(doc: InvoiceDocument, submission_key: str) -> dict[str, Any]:
    """The invoice as the Coupa-style API takes it: amounts as decimal strings in the document currency."""
    cur = doc.currency
    return {
        "invoice_number": doc.number,
        "document_type": "Credit Note" if doc.kind == "credit_note" else "Invoice",
        "invoice_date": doc.issue_date,
        "due_date": doc.due_date,
        "currency": {"code": cur},
        "po_number": doc.po_number,
        "buyer_reference": doc.buyer_reference,
        "original_invoice_number": doc.preceding_invoice,
        "supplier": _party(doc.supplier),
        "bill_to": _party(doc.customer),
        "payment_terms": doc.payment_terms,
        "supplier_note": doc.note,
        "external_reference": submission_key,
        "invoice_lines": [
            {
                "line_num": line.line_no,
                "description": line.description,
                "item": line.item_id,
                "quantity": line.quantity,
                "uom": line.unit_code,
                "price": line.unit_price,
                "total": format_minor(line.net_minor, cur),
                "tax_rate": str(Decimal(line.tax_rate)),
                "tax_category": line.tax_category,
            }
            for line in doc.lines
        ],
        "net_total": format_minor(doc.subtotal_minor, cur),
        "tax_amount": format_minor(doc.tax_total_minor, cur),
        "gross_total": format_minor(doc.total_minor, cur),
    }


@dataclass(frozen=True)
class _Token:
    value: str = field(repr=False)  # a bearer token is a credential too
    expires_at: float = 0.0  # on our monotonic clock


class CoupaAdapter:
    """A Coupa-style portal reached over its REST API (statuses are polled: Coupa does not push)."""

    channel = Channel.COUPA
    follow_up = FollowUp.POLL

    def __init__(
        self,
        name: str,
        config: CoupaPortal,
        *,
        client: httpx.Client | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = name
        self._config = config
        self._client = client or http_client(config.http_options(), base_url=config.base_url.rstrip("/"))
        self._monotonic = monotonic
        self._token: _Token | None = None
        self._lock = threading.Lock()  # activities run in threads: one token fetch at a time

    @property
    def name(self) -> str:
        return self._name

    # -- token -------------------------------------------------------------------------------------

    def _fetch_token(self) -> _Token:
        what = "token request"
        with transport_errors(self._name, what):
            response = self._client.post(
                self._config.token_path,
                data={
                    "grant_type": "client_credentials",
                    "client_id": self._config.client_id,
                    "client_secret": self._config.client_secret.get_secret_value(),
                    "scope": self._config.scope,
                },
                headers={"Accept": "application/json"},
            )
        raise_for_throttling(self._name, what, response)
        if response.status_code in (400, 401, 403):
            # invalid_client and friends: the configuration is wrong, retrying will not help.
            said = f"HTTP {response.status_code} {self._oauth_error(response)}".strip()
            raise PermanentError(
                self._name, f"{what}: client credentials refused ({said})", http_status=response.status_code
            )
        if response.status_code != 200:
            raise PermanentError(
                self._name,
                f"{what}: unexpected HTTP {response.status_code}",
                http_status=response.status_code,
            )
        try:
            body = response.json()
            value = str(body["access_token"])
            lifetime = float(body.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise PermanentError(self._name, f"{what}: the answer holds no access token") from None
        return _Token(value, self._monotonic() + max(0.0, lifetime - TOKEN_MARGIN_SECONDS))

    @staticmethod
    def _oauth_error(response: httpx.Response) -> str:
        try:
            return short_text(str(response.json().get("error", "")), 60)
        except (ValueError, AttributeError):
            return ""

    def _token_value(self, stale: _Token | None = None) -> _Token:
        with self._lock:
            token = self._token
            if token is None or token is stale or token.expires_at <= self._monotonic():
                token = self._token = self._fetch_token()
            return token

    def _call(
        self, method: str, path: str, what: str, *, headers: Mapping[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One authenticated call; on 401 the token is renewed once and the call repeated (the same
        request, the same idempotency key: the portal did not act on a request it refused)."""
        token = self._token_value()
        for attempt in (1, 2):
            sent = {**(headers or {}), "Authorization": f"Bearer {token.value}", "Accept": "application/json"}
            with transport_errors(self._name, what):
                response = self._client.request(method, path, headers=sent, **kwargs)
            if response.status_code != 401:
                raise_for_throttling(self._name, what, response)
                return response
            if attempt == 1:
                log.info("%s: %s: token refused (expired?); renewing it once", self._name, what)
                token = self._token_value(stale=token)
        raise PermanentError(self._name, f"{what}: a fresh token was refused too (HTTP 401)", http_status=401)

    # -- the interface ----------------------------------------------------------------------------

    def submit(self, submission: Submission) -> SubmitReceipt:
        doc = submission.document
        what = f"invoice {doc.number} create"
        response = self._call(
            "POST",
            self._config.invoices_path,
            what,
            json=invoice_json(doc, submission.idempotency_key),
            headers={"Idempotency-Key": submission.idempotency_key},
        )
        if response.status_code in (200, 201):
            body = self._json(response, what)
            try:
                status = coupa_status(str(body.get("status", "new")))
            except UnmappedStatus as exc:
                raise PermanentError(self._name, f"{what}: {exc}") from None
            stamp = body.get("created_at")
            return SubmitReceipt(
                portal=self._name,
                channel=Channel.COUPA,
                submission_key=submission.idempotency_key,
                portal_ref=str(body.get("id", "")),
                status=status,
                at=parse_instant(str(stamp)) if stamp else datetime.now(UTC),
                follow_up=FollowUp.POLL,
                replayed=response.headers.get("Idempotent-Replayed", "").lower() == "true",
            )
        if response.status_code == 422:
            reasons, said = self._errors(response)
            raise PermanentError(self._name, f"{what}: rejected ({said})", http_status=422, reasons=reasons)
        raise PermanentError(
            self._name,
            f"{what}: refused (HTTP {response.status_code} {self._errors(response)[1]})",
            http_status=response.status_code,
        )

    def poll(self, since: datetime | None) -> list[StatusUpdate]:
        """The invoices changed after `since` (the portal's updated_at; newest first pages are not
        assumed), each with its current status: a pull sees the latest state, not every step."""
        updates: list[StatusUpdate] = []
        offset = 0
        size = self._config.page_size
        while True:
            params: dict[str, str | int] = {"limit": size, "offset": offset, "order_by": "updated_at"}
            if since is not None:
                params["updated_at[gt]"] = since.astimezone(UTC).isoformat(timespec="microseconds")
            response = self._call("GET", self._config.invoices_path, "invoice list", params=params)
            if response.status_code != 200:
                raise PermanentError(
                    self._name, f"invoice list: HTTP {response.status_code}", http_status=response.status_code
                )
            page = self._json_list(response, "invoice list")
            for item in page:
                update = self._update_from(item)
                if update is not None:
                    updates.append(update)
            if len(page) < size:
                return updates
            offset += size

    def _update_from(self, item: Mapping[str, Any]) -> StatusUpdate | None:
        word = str(item.get("status", ""))
        try:
            status = coupa_status(word)
        except UnmappedStatus as exc:
            log.warning("%s: invoice %s skipped: %s", self._name, item.get("id"), exc)
            return None
        if status is PortalStatus.DISPUTED and self._config.disputed_status == "rejected":
            status = PortalStatus.REJECTED  # this customer's instance sends invoices back as "disputed"
        reasons: tuple[StatusReason, ...] = ()
        dispute = item.get("dispute_reason")
        if isinstance(dispute, Mapping):
            reasons = (
                portal_reason(
                    str(dispute.get("code", "")),
                    str(dispute.get("comment", "")),
                    self._config.extra_reason_codes(),
                ),
            )
        updated = str(item.get("updated_at", ""))
        return StatusUpdate(
            portal=self._name,
            channel=Channel.COUPA,
            status=status,
            at=parse_instant(updated),
            invoice_number=str(item.get("invoice_number", "")),
            portal_ref=str(item.get("id", "")),
            submission_key=str(item.get("external_reference") or ""),
            reasons=reasons,
            message=reasons[0].text if reasons else "",
            portal_status=word,
            update_id=f"{item.get('id')}:{word}:{updated}",
        )

    def parse_push(self, body: bytes, headers: Mapping[str, str]) -> list[StatusUpdate]:
        raise PermanentError(self._name, "this portal does not push statuses; they are polled")

    def push_reply(self, error: PortalError | None) -> PushReply:
        return PushReply(404 if error else 204)

    def close(self) -> None:
        self._client.close()

    # -- reading answers ----------------------------------------------------------------------------

    def _json(self, response: httpx.Response, what: str) -> Mapping[str, Any]:
        try:
            body = response.json()
        except ValueError:
            raise PermanentError(self._name, f"{what}: the answer is not JSON") from None
        if not isinstance(body, Mapping):
            raise PermanentError(self._name, f"{what}: the answer is not a JSON object")
        return body

    def _json_list(self, response: httpx.Response, what: str) -> list[Mapping[str, Any]]:
        try:
            body = response.json()
        except ValueError:
            raise PermanentError(self._name, f"{what}: the answer is not JSON") from None
        if not isinstance(body, list):
            raise PermanentError(self._name, f"{what}: the answer is not a JSON list")
        return [item for item in body if isinstance(item, Mapping)]

    def _errors(self, response: httpx.Response) -> tuple[tuple[StatusReason, ...], str]:
        """The portal's validation errors: [{"code", "field", "message"}], as reasons and one line."""
        try:
            errors = response.json().get("errors", [])
        except (ValueError, AttributeError):
            return (), ""
        reasons: list[StatusReason] = []
        said: list[str] = []
        for error in errors if isinstance(errors, list) else []:
            if not isinstance(error, Mapping):
                continue
            code, message = str(error.get("code", "")), str(error.get("message", ""))
            reasons.append(portal_reason(code, message, self._config.extra_reason_codes()))
            said.append(f"{code}: {message}" if code else message)
        return tuple(reasons), short_text("; ".join(said), 300)
