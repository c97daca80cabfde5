"""The invoice page: lines, totals and tax, PO and customer, the approval chain, portal passes, payments,
the documents, and the timeline of every transition from the ledger; approve and reject in place.

Approve and reject call the JSON API's own command functions (api/invoices.py approve_invoice and
reject_invoice: the same authorisation, the same workflow update). Each rendered form carries an
idempotency key of its own, so a double submit is one command.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlmodel import Session

from activities import disputes, queries
from activities.db import reading
from activities.delivery import document_context, render_invoice_pdf
from activities.einvoice import EInvoiceError, NotIssued, document_for, render_ubl
from activities.models import Invoice, LegalEntity
from activities.money import format_minor
from api.approvals import approval_chain, forbidden_reason, rules_state, who_may
from api.deps import AppContext, CurrentUserInfo
from api.errors import AppError, Conflict
from api.invoices import (
    _invoice_or_404,
    approve_invoice,
    command_option,
    present,
    reject_invoice,
)
from api.pages.common import CsrfForm, PageUser, flash, is_htmx, redirect, render, safe_next
from api.schemas import ApproveBody, ReasonBody
from workflows.types import Line

router = APIRouter()

_UNSAFE_IN_FILENAME = re.compile(r"[^A-Za-z0-9._-]")
MAX_TEXT = 2000


def age(since: datetime | None, now: datetime | None = None) -> str:
    """How long something has waited, as people say it: "3 d 4 h", "5 h 12 min", "8 min"."""
    if since is None:
        return ""
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    seconds = max(0, int(((now or datetime.now(UTC)) - since).total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"


def action_view(
    ctx: AppContext, session: Session, inv: Invoice, username: str, event: str, label: str, **extra: Any
) -> dict[str, Any]:
    """An action for the `action_button` macro, from the same evaluation as the API's actions and
    `unavailable_actions` (and a refused command's error body)."""
    option = command_option(ctx, session, inv, username, event)
    return {
        "event": event,
        "label": label,
        "url": f"/invoices/{inv.id}/{event}",
        "allowed": option.allowed,
        "reason": option.reason,
        "instead": option.who_can_instead,
        "code": option.code,
        "tier": option.tier,
        "on_behalf_of": option.on_behalf_of,
        **extra,
    }


def dispute_view(ctx: AppContext, session: Session, inv: Invoice, user: PageUser) -> dict[str, Any]:
    """The invoice's dispute: the open case holding it (a link), or the Dispute action that opens one
    (refused with why and who can instead when the user may not open cases)."""
    case = disputes.dispute_by_id(session, inv.dispute_id) if inv.dispute_id else None
    if case is not None and not user.may("dispute:read", inv.legal_entity):
        case = None
    action = None
    if case is None and inv.status in disputes.DISPUTABLE and user.may("invoice:read", inv.legal_entity):
        allowed = user.may("dispute:open", inv.legal_entity)
        action = {
            "label": "Dispute",
            "url": f"/disputes/new?invoice_id={inv.id}" if allowed else f"/invoices/{inv.id}/dispute",
            "allowed": allowed,
            "reason": "" if allowed else forbidden_reason(user.username, "dispute:open", inv.legal_entity),
            "instead": []
            if allowed
            else who_may(ctx, session, inv.legal_entity, "dispute:open", but=user.username),
        }
    return {
        "dispute_case": case,
        "disputed": format_minor(inv.disputed_minor, inv.currency) if inv.disputed_minor else "",
        "dispute_action": action,
    }


def invoice_context(
    ctx: AppContext, session: Session, inv: Invoice, user: PageUser, **more: Any
) -> dict[str, Any]:
    public = present(ctx, session, inv, user.username)
    chain = approval_chain(inv)
    customer = queries.customer_by_id(session, inv.customer_id)
    history = queries.invoice_history(session, inv.id)
    waiting = next((s for s in chain.steps if s.status == "waiting"), None)
    actions: list[dict[str, Any]] = []
    if inv.status == "pending_approval" or user.may("invoice:approve", inv.legal_entity):
        # An approver sees approve (and why not) whatever the status: "cannot approve an invoice in status
        # approved" is what the API would answer them.
        tier = f" tier {waiting.tier}" if waiting else ""
        actions.append(
            action_view(
                ctx,
                session,
                inv,
                user.username,
                "approve",
                f"Approve{tier}",
                style="primary",
                hx_target="#invoice",
                confirm=f"Approve invoice {inv.number or inv.external_id}"
                f" ({format_minor(inv.total_minor, inv.currency)} {inv.currency}){tier}?",
            )
        )
    if inv.status == "pending_approval":
        actions.append(
            action_view(
                ctx,
                session,
                inv,
                user.username,
                "reject",
                "Send back to draft",
                style="warning",
                hx_target="#invoice",
                confirm="Send this invoice back to its preparer?",
            )
        )
    return {
        **dispute_view(ctx, session, inv, user),
        "inv": public,
        "invoice_row": inv,
        "customer": customer,
        "chain": chain,
        "waiting": waiting,
        "waited": age(chain.waiting_since),
        "history": [
            {"entry": e, "roles": json.loads(e.actor_roles), "at": datetime.fromisoformat(e.at)}
            for e in history
        ],
        "passes": queries.portal_passes(session, inv.id) if inv.delivered_at else [],
        "payments": [
            {"p": p, "amount": format_minor(p.amount_minor, inv.currency)}
            for p in queries.payments_of_invoice(session, inv.id)
        ],
        "actions": actions,
        "issued": bool(inv.number),
        "form_key": uuid.uuid4().hex,
        "errors": [],
        "values": {},
        **more,
    }


@router.get("/invoices/{invoice_id}")
async def invoice_page(invoice_id: str, request: Request, user: PageUser) -> Response:
    """One invoice as its approvers, supervisors and preparers see it."""
    with reading(user.ctx.store) as session:
        inv = _invoice_or_404(session, invoice_id, user.username, user.ctx)
        context = invoice_context(user.ctx, session, inv, user)
    return render(request, "invoices/invoice.html", context, user=user)


async def _after_command(
    request: Request,
    user: PageUser,
    invoice_id: str,
    message: str,
    next_path: str,
    error: AppError | None = None,
    errors: list[dict[str, str]] | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    """The invoice again after a command: the updated block for htmx, else a redirect with the
    confirmation (or, refused, the page with the problem at the top)."""
    if error is None and not errors and not is_htmx(request):
        return flash(redirect(next_path), message)
    with reading(user.ctx.store) as session:
        inv = _invoice_or_404(session, invoice_id, user.username, user.ctx)
        problems = list(errors or [])
        if error is not None:
            problems.append({"field": "actions", "reason": error.message})
        context = invoice_context(
            user.ctx,
            session,
            inv,
            user,
            errors=problems,
            values=values or {},
            done=message if not problems else "",
        )
    status = error.status if error is not None else (422 if errors else 200)
    return render(request, "invoices/invoice.html", context, user=user, block="invoice", status_code=status)


def _text(form: Any, name: str) -> str:
    value = form.get(name)
    return value.strip()[: MAX_TEXT + 1] if isinstance(value, str) else ""


def _key(form: Any) -> str | None:
    key = form.get("idempotency_key")
    return key if isinstance(key, str) and re.fullmatch(r"[0-9a-f]{32}", key) else None


@router.post("/invoices/{invoice_id}/approve")
async def approve(invoice_id: str, request: Request, user: PageUser, form: CsrfForm) -> Response:
    """Approve the waiting tier (same command as POST /api/v1/invoices/{id}/approve)."""
    comment = _text(form, "comment")
    next_path = safe_next(_text(form, "next") or f"/invoices/{invoice_id}")
    if len(comment) > MAX_TEXT:
        return await _after_command(
            request,
            user,
            invoice_id,
            "",
            next_path,
            errors=[{"field": "comment", "reason": f"The comment must be {MAX_TEXT} characters or fewer"}],
            values={"comment": comment},
        )
    tier_text = _text(form, "tier")
    tier = int(tier_text) if tier_text.isdigit() and 1 <= int(tier_text) <= 20 else None
    try:
        done = await approve_invoice(
            invoice_id,
            user.ctx,
            CurrentUserInfo(user.username),
            _key(form),
            ApproveBody(comment=comment, tier=tier),
        )
    except AppError as exc:
        if not is_htmx(request) and next_path != f"/invoices/{invoice_id}":
            return flash(redirect(next_path), exc.message, "error")
        return await _after_command(request, user, invoice_id, "", next_path, error=exc)
    label = done.number or done.external_id
    if done.status == "approved":
        message = (
            f"Invoice {label} is approved. It goes to the customer on its issue date ({done.issue_date})."
        )
    else:
        step = next((s for s in done.approval["steps"] if s["status"] == "waiting"), None)
        then = f" It now waits for tier {step['tier']} ({step['role']})." if step else ""
        message = f"You approved invoice {label}.{then}"
    return await _after_command(request, user, invoice_id, message, next_path)


@router.post("/invoices/{invoice_id}/reject")
async def reject(invoice_id: str, request: Request, user: PageUser, form: CsrfForm) -> Response:
    """Send the invoice back to draft with a reason (same command as POST /api/v1/invoices/{id}/reject)."""
    reason = _text(form, "reason")
    next_path = safe_next(_text(form, "next") or f"/invoices/{invoice_id}")
    problems = []
    if not reason:
        problems.append({"field": "reason", "reason": "Say why the invoice goes back: the preparer reads it"})
    elif len(reason) > MAX_TEXT:
        problems.append({"field": "reason", "reason": f"The reason must be {MAX_TEXT} characters or fewer"})
    if problems:
        return await _after_command(
            request, user, invoice_id, "", next_path, errors=problems, values={"reason": reason}
        )
    try:
        done = await reject_invoice(
            invoice_id, ReasonBody(reason=reason), user.ctx, CurrentUserInfo(user.username), _key(form)
        )
    except AppError as exc:
        return await _after_command(
            request, user, invoice_id, "", next_path, error=exc, values={"reason": reason}
        )
    message = f"Invoice {done.number or done.external_id} went back to draft; its preparer is told why."
    return await _after_command(request, user, invoice_id, message, next_path)


def _issued_document(session: Session, inv: Invoice) -> None:
    if not inv.number:
        raise Conflict(
            f"invoice {inv.external_id} is {inv.status} and has no number yet: "
            "its documents exist once it is issued",
            code="not_issued",
            status=inv.status,
        )


@router.get("/invoices/{invoice_id}/invoice.pdf")
async def invoice_pdf(invoice_id: str, user: PageUser) -> Response:
    """The PDF the customer received (as the delivery renders it from the same read model)."""
    with reading(user.ctx.store) as session:
        inv = _invoice_or_404(session, invoice_id, user.username, user.ctx)
        _issued_document(session, inv)
        state = rules_state(inv)
        lines = [
            Line(ln.description, ln.quantity, ln.unit_price, ln.tax_rate, ln.net_minor, ln.tax_minor)
            for ln in queries.invoice_lines(session, inv.id)
        ]
        state = replace(state, draft=replace(state.draft, lines=lines))
        entity = session.get(LegalEntity, inv.legal_entity)
        customer = queries.customer_by_id(session, inv.customer_id)
        assert entity is not None and customer is not None
        pdf = render_invoice_pdf(document_context(state, entity, customer))
    filename = _UNSAFE_IN_FILENAME.sub("_", inv.number or inv.id)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{filename}.pdf"'},
    )


@router.get("/invoices/{invoice_id}/invoice.xml")
async def invoice_ubl(invoice_id: str, user: PageUser) -> Response:
    """The UBL e-invoice (the same bytes as GET /api/v1/invoices/{id}/ubl)."""
    with reading(user.ctx.store) as session:
        inv = _invoice_or_404(session, invoice_id, user.username, user.ctx)
        _issued_document(session, inv)
        try:
            xml = render_ubl(document_for(session, inv.id))
        except NotIssued:
            raise Conflict("the invoice has no number yet", code="not_issued", status=inv.status) from None
        except EInvoiceError as exc:
            raise Conflict(str(exc), code="einvoice_incomplete", status=inv.status) from None
    filename = _UNSAFE_IN_FILENAME.sub("_", inv.number or inv.id)
    return Response(
        xml,
        media_type="application/xml",
        headers={"Content-Disposition": f'inline; filename="{filename}.xml"'},
    )
