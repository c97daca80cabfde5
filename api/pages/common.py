"""What every page shares: templates, the signed-in user, CSRF, navigation by role, error pages.

Sessions: the browser holds `cashcycle_session`, an HTTP-only, SameSite=Lax cookie with a random secret
and its HMAC under the API's secret key; the store holds the secret's SHA-256 with the expiry
(activities/ui_sessions.py). Every page request looks the session up, in one query with its user's standing:
logout or a disabled user ends it at the next request, on every replica.

CSRF: every state-changing request carries a token derived from the session secret (hidden field
`csrf_token` in forms, header `X-CSRF-Token` from htmx, set once on <body>). The login form, before any
session exists, uses a double-submit cookie of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, unquote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from jinja2_fragments.fastapi import Jinja2Blocks
from starlette.datastructures import FormData

from activities import queries
from activities.db import reading
from activities.ui_sessions import token_hash
from api.deps import AppContext, ContextDep

UI = Path(__file__).resolve().parent.parent.parent / "ui"
templates = Jinja2Blocks(directory=str(UI / "templates"))

SESSION_COOKIE = "cashcycle_session"
LOGIN_COOKIE = "cashcycle_login"
FLASH_COOKIE = "cashcycle_flash"


def _mac(secret: str, purpose: str, value: str) -> str:
    return hmac.new(secret.encode(), f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def session_cookie_value(secret: str, token: str) -> str:
    return f"{token}.{_mac(secret, 'session', token)}"


def _session_token(secret: str, cookie: str | None) -> str | None:
    """The session secret of a cookie signed by this API; None for a missing, forged or truncated one."""
    if not cookie or "." not in cookie:
        return None
    token, mac = cookie.rsplit(".", 1)
    return token if hmac.compare_digest(mac, _mac(secret, "session", token)) else None


def csrf_for(secret: str, token: str) -> str:
    return _mac(secret, "csrf", token)


# -- navigation ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NavItem:
    label: str
    path: str
    actions: tuple[str, ...]  # shown to whoever may do any of these somewhere


NAV: tuple[NavItem, ...] = (
    NavItem("Inbox", "/inbox", ("invoice:approve",)),
    NavItem("Delegations", "/delegations", ("approval:delegate",)),
    NavItem("Control tower", "/tower", ("tower:read",)),
    NavItem("Disputes", "/disputes", ("dispute:read",)),
    NavItem("CAPA", "/capa", ("capa:read",)),
    NavItem("Figures", "/figures", ("report:read",)),
    NavItem("Compliance", "/compliance", ("ledger:read", "evidence:export", "access:read")),
)


# -- the signed-in user ----------------------------------------------------------------------------


class LoginRequired(Exception):
    """No valid session: the page answers with the login page (htmx: a full redirect)."""


class CsrfRefused(Exception):
    """A state-changing request without the token of its session: refused, nothing changed."""


@dataclass
class PageUserInfo:
    username: str
    csrf: str
    ctx: AppContext
    entities: list[str]  # where the user holds a role ("*": everywhere)
    _all_entities: list[str] | None = field(default=None, repr=False)

    def _where(self) -> list[str]:
        if "*" not in self.entities:
            return self.entities
        if self._all_entities is None:
            with reading(self.ctx.store) as session:
                self._all_entities = queries.legal_entity_codes(session)
        return self._all_entities

    def may(self, action: str, entity: str | None = None) -> bool:
        """Whether the policy allows `action` in `entity`, or in any entity where the user holds a role."""
        authorizer = self.ctx.authorizer
        if entity is not None:
            return authorizer.check(self.username, entity, action) is not None
        return any(authorizer.check(self.username, e, action) is not None for e in self._where())

    def nav(self) -> list[NavItem]:
        return [item for item in NAV if any(self.may(a) for a in item.actions)]


async def page_user(request: Request, ctx: ContextDep) -> PageUserInfo:
    token = _session_token(ctx.settings.secret_key, request.cookies.get(SESSION_COOKIE))
    if token is None:
        raise LoginRequired
    with reading(ctx.store) as session:
        standing = queries.ui_session(session, token_hash(token))
        if (
            standing is None
            or standing.ended
            or not standing.user_active
            or standing.expires_at <= datetime.now(UTC)
        ):
            raise LoginRequired
        ctx.authorizer.refresh(session, standing.policy_revision)
        entities = queries.entities_of(session, standing.username)
    user = PageUserInfo(standing.username, csrf_for(ctx.settings.secret_key, token), ctx, entities)
    request.state.page_user = user  # for an error page raised later in the request
    return user


PageUser = Annotated[PageUserInfo, Depends(page_user)]


async def csrf_form(request: Request, user: PageUser) -> FormData:
    """The posted form, once its CSRF token is checked against the session's (form field or header)."""
    form = await request.form()
    sent = form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    if not isinstance(sent, str) or not hmac.compare_digest(sent, user.csrf):
        raise CsrfRefused
    return form


CsrfForm = Annotated[FormData, Depends(csrf_form)]


# -- rendering -------------------------------------------------------------------------------------


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def flash(response: Response, message: str, kind: str = "success") -> Response:
    """A one-time message shown at the top of the next page (a confirmation of what just happened)."""
    response.set_cookie(
        FLASH_COOKIE,
        quote(json.dumps({"message": message, "kind": kind})),
        max_age=60,
        httponly=True,
        samesite="lax",
    )
    return response


def _take_flash(request: Request) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        value = json.loads(unquote(raw))
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("message"), str):
        return None
    return {"message": value["message"], "kind": str(value.get("kind", "success"))}


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    user: PageUserInfo | None = None,
    block: str | None = None,
    status_code: int = 200,
) -> Response:
    """A page, or for an htmx request naming `block`, that one block of the same template (so a partial
    update is the very markup the full page shows)."""
    ctx: dict[str, Any] = {"user": user, "nav": user.nav() if user else [], "csrf": user.csrf if user else ""}
    message = _take_flash(request)
    ctx["flash"] = message
    ctx.update(context or {})
    if block is not None and is_htmx(request):
        response = templates.TemplateResponse(
            request, template, ctx, block_name=block, status_code=status_code
        )
    else:
        response = templates.TemplateResponse(request, template, ctx, status_code=status_code)
    if message:
        response.delete_cookie(FLASH_COOKIE)
    return response


def redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def safe_next(path: str | None) -> str:
    """Where to go after login: a path of this site only (never another host: an open redirect)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


# -- errors as pages -------------------------------------------------------------------------------

ERROR_TITLES = {
    400: "The request could not be read",
    401: "Sign in to continue",
    403: "You may not do this",
    404: "Not found",
    405: "Not allowed here",
    409: "This cannot be done now",
    413: "Too large",
    422: "Check what you entered",
    503: "Cashcycle is unavailable",
}


def render_page_error(
    request: Request, status: int, code: str, message: str, details: dict[str, Any]
) -> Response:
    """The page for an error the JSON API would answer with the same status, code and message."""
    user = getattr(request.state, "page_user", None)
    title = ERROR_TITLES.get(status, "Something went wrong")
    fields = details.get("fields") if isinstance(details.get("fields"), list) else []
    context = {"status": status, "code": code, "message": message, "title": title, "fields": fields}
    context["instead"] = details.get("who_can_instead") or []
    if is_htmx(request):
        # An htmx form swaps this fragment into its own error slot (hx-target-error is not in htmx 2's
        # core, so pages put the error where the form's `hx-target` says and htmx is told to swap 4xx).
        return render(request, "_error.html", context, user=user, status_code=status)
    return render(request, "error.html", context, user=user, status_code=status)


def install(app: FastAPI) -> None:
    """Error pages, the login redirect, CSRF refusals and the security headers of every page."""
    app.state.render_page_error = render_page_error

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, _: LoginRequired) -> Response:
        target = "/login"
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method == "GET" and here != "/":
            target += "?next=" + quote(here, safe="")
        response = Response(status_code=200 if is_htmx(request) else 303)
        if is_htmx(request):
            response.headers["HX-Redirect"] = target
        else:
            response.headers["Location"] = target
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, _: CsrfRefused) -> Response:
        return render_page_error(
            request,
            403,
            "csrf_failed",
            "This form was not sent from a page of your current session (its security token is missing "
            "or out of date). Nothing was changed. Go back, reload the page and try again.",
            {},
        )

    @app.middleware("http")
    async def _headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        if not request.url.path.startswith(("/api/", "/healthz", "/openapi.json", "/docs", "/redoc")):
            response.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            )
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Referrer-Policy", "same-origin")
            response.headers.setdefault("X-Frame-Options", "DENY")
            if request.url.path != "/static" and not request.url.path.startswith("/static/"):
                response.headers.setdefault("Cache-Control", "no-store")
        return response


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)
