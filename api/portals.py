"""Where customer portals push their status updates (cXML StatusUpdateRequest, Peppol invoice responses).

No bearer token here: a portal is not a Cashcycle user. Each adapter authenticates its portal's push
(the cXML shared secret and buyer identity, the access point's signature) and refuses anything else; the
updates then go to the invoice workflows as signals, and the portal gets the answer its protocol expects.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from activities.portals.activity import portal_update
from activities.portals.base import PortalError
from activities.submission import route_updates
from api.deps import ContextDep
from api.errors import NotFound, errors

log = logging.getLogger("cashcycle.portals")
router = APIRouter(prefix="/api/v1/portals", tags=["portals"])


_PROTOCOL: dict[str, Any] = {
    "text/xml": {},
    "text/plain": {},
}  # cXML answers in cXML; Coupa-style and Peppol in status lines
_ERRORS = errors("not_found", "unavailable")
# A portal that does not push (Coupa-style: Cashcycle polls it) refuses a push with a bare 404.
_ERRORS[404]["content"] = {"text/plain": {}}


@router.post(
    "/{portal}/inbound",
    response_class=Response,
    responses={
        200: {"description": "accepted (cXML: a Response document)", "content": _PROTOCOL},
        204: {"description": "accepted (Coupa-style)"},
        400: {"description": "the push is malformed for the portal's protocol", "content": _PROTOCOL},
        401: {"description": "the push's credentials or signature are refused", "content": _PROTOCOL},
        **_ERRORS,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "the portal's own document: a cXML StatusUpdateRequest with its shared secret, a "
            "signed Peppol invoice response",
            "content": {
                "text/xml": {"schema": {"type": "string"}},
                "application/xml": {"schema": {"type": "string"}},
            },
        }
    },
)
async def portal_push(
    portal: Annotated[str, Path(max_length=64)], request: Request, ctx: ContextDep
) -> Response:
    """A status update pushed by the customer's portal; answered in the portal's own protocol."""
    adapter = ctx.portals().get(portal)
    if adapter is None or portal == "email":
        raise NotFound(f"no portal {portal} is configured")
    body = await request.body()
    try:
        updates = [portal_update(u) for u in adapter.parse_push(body, dict(request.headers))]
    except PortalError as exc:
        log.warning("portal %s: push refused: %s", portal, exc)
        reply = adapter.push_reply(exc)
    else:
        routed = await route_updates(ctx.store, ctx.temporal, updates)
        log.info("portal %s: %d update(s) pushed, %d routed", portal, len(updates), routed)
        reply = adapter.push_reply(None)
    return Response(reply.body, status_code=reply.status_code, media_type=reply.content_type)
