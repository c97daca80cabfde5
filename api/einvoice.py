"""E-invoice routes: an issued invoice as the UBL document (Peppol BIS Billing 3.0) its customer receives."""

from __future__ import annotations

import re

from fastapi import APIRouter, Response

from activities.einvoice import EInvoiceError, NotIssued, document_for, render_ubl
from api.deps import ContextDep, CurrentUser, SessionDep
from api.errors import Conflict, errors
from api.invoices import _invoice_or_404

router = APIRouter(prefix="/api/v1", tags=["e-invoices"])

_UNSAFE_IN_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


@router.get(
    "/invoices/{invoice_id}/ubl",
    response_class=Response,
    responses={
        200: {"content": {"application/xml": {}}, "description": "the UBL 2.1 Invoice"},
        **errors("not_found", "not_issued", "einvoice_incomplete"),
    },
)
async def invoice_ubl(invoice_id: str, ctx: ContextDep, session: SessionDep, user: CurrentUser) -> Response:
    """The issued invoice as a UBL 2.1 Invoice in the Peppol BIS Billing 3.0 profile of EN 16931, the
    document that goes to customers on the Peppol network. An invoice becomes a document when it is issued
    (it gets its number on delivery): before that, 409. Also 409, naming every missing item, when the legal
    entity's or the customer's master data lacks what the standard requires (address, Peppol endpoint,
    VAT id, a buyer reference or PO number)."""
    inv = _invoice_or_404(session, invoice_id, user.username, ctx)
    try:
        xml = render_ubl(document_for(session, inv.id))
    except NotIssued:
        raise Conflict(
            f"invoice {inv.id} is {inv.status} and has no number yet: its e-invoice exists once it is issued",
            code="not_issued",
            status=inv.status,
        ) from None
    except EInvoiceError as exc:
        raise Conflict(str(exc), code="einvoice_incomplete", status=inv.status) from None
    filename = _UNSAFE_IN_FILENAME.sub("_", inv.number or inv.id)
    return Response(
        content=xml,
        media_type="application/xml",
        headers={"Content-Disposition": f'inline; filename="{filename}.xml"'},
    )
