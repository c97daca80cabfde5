"""The approver's inbox: what the user may approve now, longest waiting first, with filters, search and
pagination; approve from the list (behind a confirmation) or open the invoice to read it first. Credit
memos and write-offs waiting for the user come first, marked by kind, each linking its own page.

The list is the JSON inbox's (api.approvals.approval_inbox_page: the same query, the same rules); the
approve buttons post to the invoice page's command handler, which calls the API's command code."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from activities.db import reading
from api.approvals import INBOX_MAX_OFFSET, approval_inbox_page
from api.pages.common import PageUser, render
from api.pages.invoices import age

router = APIRouter()

PAGE_SIZES = (25, 50, 100)
SLA_LABELS = {"on_time": "on time", "reminded": "reminded", "escalated": "escalated"}
KINDS = {"invoice": "invoice", "credit_memo": "credit memo", "write_off": "write-off"}


@router.get("/inbox")
async def inbox(
    request: Request,
    user: PageUser,
    q: Annotated[str, Query(max_length=100)] = "",
    tier: Annotated[str, Query(max_length=2)] = "",
    sla: Annotated[str, Query(max_length=16)] = "",
    offset: Annotated[int, Query(ge=0, le=INBOX_MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> Response:
    """What the user may approve now (own roles, or delegations in force)."""
    tier_n = int(tier) if tier.isdigit() and 1 <= int(tier) <= 20 else None
    sla_state = sla if sla in SLA_LABELS else None
    with reading(user.ctx.store) as session:
        page = approval_inbox_page(
            user.ctx,
            session,
            user.username,
            search=q.strip() or None,
            tier=tier_n,
            sla=sla_state,
            limit=limit,
            offset=offset,
        )
    filters = {k: v for k, v in (("q", q.strip()), ("tier", tier), ("sla", sla_state or "")) if v}
    rows = [{"item": item, "age": age(item.waiting_since), "key": uuid.uuid4().hex} for item in page.items]
    return render(
        request,
        "approvals/inbox.html",
        {
            "rows": rows,
            "total": page.total,
            "offset": offset,
            "limit": limit,
            "q": q.strip(),
            "tier": tier_n,
            "sla": sla_state,
            "sla_labels": SLA_LABELS,
            "kinds": KINDS,
            "filtered": bool(filters),
            "base_query": urlencode(filters),
            "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        },
        user=user,
    )
