"""Coupa-style REST, the buyer's side:

    POST /coupa/oauth2/token         client credentials (form or HTTP Basic) -> expiring bearer token
    POST /coupa/api/invoices         JSON invoice -> 201, or 422 with the buyer's reason codes at once
    GET  /coupa/api/invoices[/{id}]  ?updated_at[gt]=...&limit=&offset=  (statuses are pulled: no push)

Statuses in Coupa's words: new, pending_approval, on_hold (under query), disputed (the buyer contests
the invoice and wants it credited), approved, scheduled, paid, voided (the buyer will never pay it:
rejected). The buyer's reason rides in `dispute_reason` {code, comment} whatever the status.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from typing import Any

from fastapi import APIRouter, Request, Response

from portal_sim.buyer import SimInvoice
from portal_sim.documents import BadDocument, Line, Parsed, decimal_of
from portal_sim.gate import Gate, Reply, bearer, json_reply, since_param

COUPA_WORD = {
    "received": "new",
    "in_process": "pending_approval",
    "under_query": "on_hold",
    "disputed": "disputed",
    "approved": "approved",
    "payment_scheduled": "scheduled",
    "paid": "paid",
    "rejected": "voided",
}


def parse_coupa_invoice(body: Any) -> Parsed:
    if not isinstance(body, dict):
        raise BadDocument("the invoice must be a JSON object")
    number = str(body.get("invoice_number") or "")
    if not number:
        raise BadDocument("invoice_number is required")
    currency = body.get("currency")
    lines_in = body.get("invoice_lines")
    if not isinstance(lines_in, list) or not lines_in:
        raise BadDocument("invoice_lines must be a non-empty list")
    bill_to = body.get("bill_to") if isinstance(body.get("bill_to"), dict) else {}
    assert isinstance(bill_to, dict)
    return Parsed(
        number=number,
        kind="credit_note" if str(body.get("document_type", "")).lower() == "credit note" else "invoice",
        currency=str(currency.get("code", "")) if isinstance(currency, dict) else str(currency or ""),
        po_number=str(body.get("po_number") or ""),
        bill_to_name=str(bill_to.get("name") or ""),
        bill_to_vat=str(bill_to.get("vat_id") or ""),
        lines=[_line(i, ln) for i, ln in enumerate(lines_in, start=1)],
        preceding=str(body.get("original_invoice_number") or ""),
    )


def _line(i: int, ln: Any) -> Line:
    if not isinstance(ln, dict):
        raise BadDocument(f"invoice_lines[{i}] must be an object")
    rate = ln.get("tax_rate")
    return Line(
        item=str(ln.get("item") or ""),
        description=str(ln.get("description") or ""),
        quantity=abs(decimal_of(ln.get("quantity"), f"invoice_lines[{i}].quantity")),
        unit_price=decimal_of(ln.get("price"), f"invoice_lines[{i}].price"),
        tax_rate=decimal_of(rate, f"invoice_lines[{i}].tax_rate") if rate not in (None, "") else None,
    )


def coupa_json(inv: SimInvoice) -> dict[str, Any]:
    """The invoice as the Coupa-style API shows it."""
    return {
        "id": inv.id,
        "invoice_number": inv.parsed.number,
        "document_type": "Credit Note" if inv.parsed.kind == "credit_note" else "Invoice",
        "status": COUPA_WORD[inv.status],
        "po_number": inv.parsed.po_number,
        "currency": {"code": inv.parsed.currency},
        "external_reference": inv.external_reference,
        "created_at": inv.created_at.isoformat(),
        "updated_at": inv.updated_at.isoformat(),
        "dispute_reason": ({"code": inv.reason.code, "comment": inv.reason.message} if inv.reason else None),
    }


def _basic(request: Request) -> tuple[str, str]:
    """Client credentials from HTTP Basic ("", "" when absent or unreadable)."""
    value = request.headers.get("Authorization", "")
    if not value.lower().startswith("basic "):
        return "", ""
    try:
        client_id, _, secret = base64.b64decode(value[6:]).decode().partition(":")
    except (binascii.Error, ValueError):
        return "", ""  # not Basic credentials: refused as an unknown client
    return client_id, secret


def router(gate: Gate) -> APIRouter:
    sim = gate.sim
    api = APIRouter(prefix="/coupa")

    def authorised(request: Request) -> tuple[str | None, Reply | None]:
        client_id, expired = sim.token_client(bearer(request))
        if client_id is None or expired:
            why = "The access token expired" if expired else "The access token is invalid"
            header = f'Bearer error="invalid_token", error_description="{why}"'
            return None, json_reply(
                401, {"error": "invalid_token", "error_description": why}, {"WWW-Authenticate": header}
            )
        return client_id, None

    async def caller(request: Request) -> tuple[str, Response | None]:
        """The calling client, or the answer that stops its request here: an injected fault, a bad
        token, the rate limit."""
        if (failure := gate.injected("coupa", request)) is not None:
            return "", failure
        client_id, refused = authorised(request)
        if refused is not None or client_id is None:
            return "", await gate.finish("coupa", request, "", refused or json_reply(401, {}))
        return client_id, gate.throttled("coupa", request, client_id)

    @api.post("/oauth2/token")
    async def coupa_token(request: Request) -> Response:
        """OAuth2 client credentials (form fields or HTTP Basic)."""
        if (failure := gate.injected("coupa", request)) is not None:
            return failure
        form = await request.form()
        client_id, secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
        if not client_id:
            client_id, secret = _basic(request)
        if form.get("grant_type") != "client_credentials":
            unsupported = json_reply(400, {"error": "unsupported_grant_type"})
            return await gate.finish("coupa", request, client_id, unsupported)
        if sim.coupa_client(client_id, secret) is None:
            return await gate.finish(
                "coupa", request, client_id, json_reply(401, {"error": "invalid_client"})
            )
        if (limited := gate.throttled("coupa", request, client_id)) is not None:
            return limited
        token, lifetime = sim.issue_token(client_id)
        body = {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": int(lifetime),
            "scope": str(form.get("scope", "")),
        }
        return await gate.finish("coupa", request, client_id, json_reply(200, body), "token")

    @api.post("/api/invoices")
    async def coupa_create(request: Request) -> Response:
        """Create an invoice: 201, or 422 with the buyer's reason codes. Idempotency-Key per attempt."""
        client_id, stop = await caller(request)
        if stop is not None:
            return stop
        raw = await request.body()
        key = request.headers.get("Idempotency-Key", "") or f"auto-{uuid.uuid4()}"
        try:
            body = json.loads(raw)
        except ValueError:
            invalid = json_reply(400, {"errors": [{"code": "invalid_json", "message": "body is not JSON"}]})
            return await gate.finish("coupa", request, client_id, invalid)
        fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

        def take_invoice() -> Reply:
            try:
                doc = parse_coupa_invoice(body)
            except BadDocument as exc:
                return json_reply(400, {"errors": [{"code": "invalid", "message": str(exc)}]})
            supplier = sim.supplier_of("coupa", client_id)
            reference = str(body.get("external_reference") or "")
            inv, rejection = sim.receive(
                "coupa", client_id, supplier, key, doc, synchronous=True, external_reference=reference
            )
            if rejection is not None:
                return json_reply(422, {"errors": [rejection.as_json()]})
            assert inv is not None
            return json_reply(201, coupa_json(inv))

        reply, replayed = sim.once("coupa", client_id, key, fingerprint, take_invoice)
        if reply is None:
            reused = {
                "code": "idempotency_key_reused",
                "message": "Idempotency-Key already used for another invoice",
            }
            reply = json_reply(409, {"errors": [reused]})
        note = "replayed" if replayed else ""
        return await gate.finish("coupa", request, client_id, reply, note, replayed=replayed)

    @api.get("/api/invoices")
    async def coupa_list(request: Request) -> Response:
        """Invoices of this client, oldest change first; `updated_at[gt]` filters, limit/offset page."""
        client_id, stop = await caller(request)
        if stop is not None:
            return stop
        params = request.query_params
        try:
            limit = min(500, max(1, int(params.get("limit", "50"))))
            offset = max(0, int(params.get("offset", "0")))
        except ValueError:
            bad = json_reply(400, {"errors": [{"message": "limit and offset are integers"}]})
            return await gate.finish("coupa", request, client_id, bad)
        since = since_param(params.get("updated_at[gt]"))
        found = [coupa_json(i) for i in sim.client_invoices("coupa", client_id, since, limit, offset)]
        return await gate.finish(
            "coupa", request, client_id, json_reply(200, found), f"{len(found)} invoices"
        )

    @api.get("/api/invoices/{invoice_id}")
    async def coupa_get(invoice_id: int, request: Request) -> Response:
        client_id, stop = await caller(request)
        if stop is not None:
            return stop
        found = sim.client_invoice("coupa", client_id, invoice_id)
        reply = (
            json_reply(200, coupa_json(found))
            if found
            else json_reply(404, {"errors": [{"message": "not found"}]})
        )
        return await gate.finish("coupa", request, client_id, reply)

    return api
