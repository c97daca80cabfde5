"""Credit memo and write-off pages: the document (its invoice, its dispute case, the approval chain, the
timeline from the ledger, the credit note's downloads once issued) with approve / reject / cancel in place,
refusals explained (action_button: why not, who can instead); and a list of both.

Thin handlers: the reads and commands are the JSON API's (api/credit_memos.py), with the same rules."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlmodel import Session

from activities.credit_memos import list_resolutions
from activities.db import reading
from api.credit_memos import (
    CANCELLABLE,
    ResolutionPublic,
    action_option,
    command,
    credit_note_file,
    doc_or_404,
    history,
    permission,
    present,
)
from api.deps import AppContext
from api.errors import AppError
from api.pages.common import CsrfForm, PageUser, flash, is_htmx, redirect, render, safe_next
from api.pages.invoices import age
from api.schemas import ApproveBody, ReasonBody
from workflows.credit_memo_approval import NOUN
from workflows.credit_memo_types import CREDIT_MEMO, WRITE_OFF

router = APIRouter()
MAX_TEXT = 2000
PATHS = {CREDIT_MEMO: "credit-memos", WRITE_OFF: "write-offs"}
LABELS = {"approve": "Approve", "reject": "Reject", "cancel": "Cancel"}


def _action(
    ctx: AppContext, session: Session, row: Any, username: str, kind: str, verb: str
) -> dict[str, Any]:
    """An action for the `action_button` macro, from the API's own evaluation."""
    option = action_option(ctx, session, row, username, verb)
    return {
        "event": verb,
        "label": LABELS[verb],
        "url": f"/{PATHS[kind]}/{row.id}/{verb}",
        "allowed": option.allowed,
        "reason": option.reason,
        "instead": option.who_can_instead,
        "code": option.code,
        "tier": option.tier,
        "style": "primary" if verb == "approve" else "",
        "key": "a" if verb == "approve" else "",
    }


def document_context(
    ctx: AppContext,
    session: Session,
    kind: str,
    document_id: str,
    username: str,
    *,
    errors: list[dict[str, str]] | None = None,
    values: dict[str, str] | None = None,
    done: str = "",
) -> dict[str, Any]:
    row = doc_or_404(session, kind, document_id, username, ctx)
    doc: ResolutionPublic = present(ctx, session, row, username)
    verbs = []
    if row.status == "pending_approval":
        verbs = ["approve", "reject"]
    if row.status in CANCELLABLE[kind]:
        verbs.append("cancel")
    actions = [_action(ctx, session, row, username, kind, v) for v in verbs]
    waiting = next((s for s in doc.approval.steps if s.status == "waiting"), None)
    entries = history(session, kind, row)
    return {
        "kind": kind,
        "noun": NOUN[kind],
        "path": PATHS[kind],
        "doc": doc,
        "actions": actions,
        "waiting": waiting,
        "waited": age(doc.approval.waiting_since) if waiting else "",
        "history": entries,
        "errors": errors or [],
        "values": values or {},
        "done": done,
        "form_key": uuid.uuid4().hex,
        "title": f"{NOUN[kind].capitalize()} {doc.number or doc.id[:8]}",
    }


def _page(kind: str) -> Any:
    async def page(document_id: str, request: Request, user: PageUser) -> Response:
        with reading(user.ctx.store) as session:
            context = document_context(user.ctx, session, kind, document_id, user.username)
        return render(request, "credit_memos/document.html", context, user=user)

    page.__doc__ = f"One {NOUN[kind]}: its invoice, case, approval chain, timeline and actions."
    return page


router.add_api_route("/credit-memos/{document_id}", _page(CREDIT_MEMO), methods=["GET"])
router.add_api_route("/write-offs/{document_id}", _page(WRITE_OFF), methods=["GET"])


async def _after(
    request: Request,
    user: PageUser,
    kind: str,
    document_id: str,
    message: str,
    next_path: str,
    error: AppError | None = None,
    errors: list[dict[str, str]] | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    """The document again after a command: the block for htmx, else a redirect with the confirmation (or,
    refused, the page with the problem at the top)."""
    if error is None and not errors and not is_htmx(request):
        return flash(redirect(next_path), message)
    if error is not None and not is_htmx(request) and next_path != f"/{PATHS[kind]}/{document_id}":
        return flash(redirect(next_path), error.message, "error")
    problems = list(errors or [])
    if error is not None:
        problems.append({"field": "actions", "reason": error.message})
    with reading(user.ctx.store) as session:
        context = document_context(
            user.ctx,
            session,
            kind,
            document_id,
            user.username,
            errors=problems,
            values=values or {},
            done=message if not problems else "",
        )
    status = error.status if error is not None else (422 if errors else 200)
    return render(
        request, "credit_memos/document.html", context, user=user, block="document", status_code=status
    )


def _text(form: Any, name: str) -> str:
    value = form.get(name)
    return value.strip()[: MAX_TEXT + 1] if isinstance(value, str) else ""


def _key(form: Any) -> str | None:
    key = form.get("idempotency_key")
    return key if isinstance(key, str) and re.fullmatch(r"[0-9a-f]{32}", key) else None


def _approve_handler(kind: str) -> Any:
    async def approve(document_id: str, request: Request, user: PageUser, form: CsrfForm) -> Response:
        comment = _text(form, "comment")
        next_path = safe_next(_text(form, "next") or f"/{PATHS[kind]}/{document_id}")
        if len(comment) > MAX_TEXT:
            problem = {"field": "comment", "reason": f"The comment must be {MAX_TEXT} characters or fewer"}
            return await _after(
                request, user, kind, document_id, "", next_path, errors=[problem], values={"comment": comment}
            )
        tier_text = _text(form, "tier")
        tier = int(tier_text) if tier_text.isdigit() and 1 <= int(tier_text) <= 20 else 0
        body = ApproveBody(comment=comment, tier=tier or None)

        def arg(actor: Any, option: Any) -> Any:
            from workflows.credit_memo_types import ResolutionApproveCommand

            return ResolutionApproveCommand(actor, comment, tier=tier or option.tier or 0)

        try:
            done = await command(
                user.ctx, user.username, kind, document_id, "approve", arg, _key(form), body.tier or 0
            )
        except AppError as exc:
            return await _after(request, user, kind, document_id, "", next_path, error=exc)
        noun = NOUN[kind]
        if done.status == "pending_approval":
            step = next((s for s in done.approval.steps if s.status == "waiting"), None)
            then = f" It now waits for tier {step.tier} ({step.role})." if step else ""
            message = (
                f"You approved the {noun} on invoice {done.invoice_number or done.invoice_external_id}.{then}"
            )
        else:
            after = "issued and applied to the invoice" if kind == CREDIT_MEMO else "written off the invoice"
            message = f"The {noun} of {done.amount} {done.currency} is approved; it is being {after}."
        return await _after(request, user, kind, document_id, message, next_path)

    return approve


def _reason_handler(kind: str, verb: str) -> Any:
    async def handler(document_id: str, request: Request, user: PageUser, form: CsrfForm) -> Response:
        reason = _text(form, "reason")
        next_path = safe_next(_text(form, "next") or f"/{PATHS[kind]}/{document_id}")
        field = f"{verb}_reason"
        reason = _text(form, field) or reason
        problems = []
        if not reason:
            problems.append({"field": field, "reason": f"Say why you {verb} it: it is recorded and shown"})
        elif len(reason) > MAX_TEXT:
            problems.append({"field": field, "reason": f"The reason must be {MAX_TEXT} characters or fewer"})
        if problems:
            return await _after(
                request, user, kind, document_id, "", next_path, errors=problems, values={field: reason}
            )
        body = ReasonBody(reason=reason)

        def arg(actor: Any, _option: Any) -> Any:
            from workflows.credit_memo_types import ResolutionRejectCommand

            return ResolutionRejectCommand(actor, body.reason)

        try:
            await command(user.ctx, user.username, kind, document_id, verb, arg, _key(form))
        except AppError as exc:
            return await _after(
                request, user, kind, document_id, "", next_path, error=exc, values={field: reason}
            )
        done = "rejected" if verb == "reject" else "cancelled"
        message = f"The {NOUN[kind]} is {done}; the reason is recorded."
        return await _after(request, user, kind, document_id, message, next_path)

    return handler


for _kind in (CREDIT_MEMO, WRITE_OFF):
    router.add_api_route(
        f"/{PATHS[_kind]}/{{document_id}}/approve", _approve_handler(_kind), methods=["POST"]
    )
    for _verb in ("reject", "cancel"):
        router.add_api_route(
            f"/{PATHS[_kind]}/{{document_id}}/{_verb}", _reason_handler(_kind, _verb), methods=["POST"]
        )


@router.get("/credit-memos/{document_id}/credit-note.pdf")
async def credit_note_pdf_page(document_id: str, user: PageUser) -> Response:
    """The issued credit note's PDF."""
    with reading(user.ctx.store) as session:
        return credit_note_file(session, user.ctx, user.username, document_id, "pdf")


@router.get("/credit-memos/{document_id}/credit-note.xml")
async def credit_note_ubl_page(document_id: str, user: PageUser) -> Response:
    """The issued credit note's UBL."""
    with reading(user.ctx.store) as session:
        return credit_note_file(session, user.ctx, user.username, document_id, "ubl")


@router.get("/credit-memos")
async def documents_list(
    request: Request,
    user: PageUser,
    status: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    """Credit memos and write-offs the user may read, newest first (at most 200 of each)."""
    rows: list[dict[str, Any]] = []
    with reading(user.ctx.store) as session:
        for kind in (CREDIT_MEMO, WRITE_OFF):
            entities = [e for e in user._where() if user.may(permission(kind, "read"), e)]
            if not entities:
                continue
            for row in list_resolutions(session, kind, entities, status=status or None, limit=200):
                doc = present(user.ctx, session, row, user.username)
                rows.append({"doc": doc, "path": PATHS[kind], "noun": NOUN[kind]})
    rows.sort(key=lambda r: r["doc"].created_at or datetime.min, reverse=True)
    statuses = sorted({r["doc"].status for r in rows} | ({status} if status else set()))
    return render(
        request,
        "credit_memos/list.html",
        {"rows": rows, "status": status, "statuses": statuses},
        user=user,
    )
