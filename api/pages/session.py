"""Signing in and out of the web UI, and the home page (the first area the user's roles open)."""

from __future__ import annotations

import hmac
import re
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from activities.db import writing
from activities.directory import authenticate
from activities.ui_sessions import end_ui_session, open_ui_session
from api.deps import ContextDep
from api.pages.common import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    CsrfForm,
    PageUser,
    _session_token,
    csrf_for,
    flash,
    new_login_nonce,
    redirect,
    render,
    safe_next,
    session_cookie_value,
)
from api.schemas import USERNAME

router = APIRouter()


@router.get("/")
async def home(user: PageUser) -> Response:
    """The first area the user's roles open (an approver's inbox, a supervisor's tower...)."""
    nav = user.nav()
    return redirect(nav[0].path if nav else "/account")


@router.get("/account")
async def account(request: Request, user: PageUser) -> Response:
    """Who is signed in, with which roles where; a user without any page of their own lands here."""
    return render(request, "account.html", {"entities": user.entities}, user=user)


def _login_page(
    request: Request, secret: str, next_path: str, error: str = "", username: str = "", status: int = 200
) -> Response:
    nonce = request.cookies.get(LOGIN_COOKIE) or new_login_nonce()
    response = render(
        request,
        "login.html",
        {
            "login_csrf": csrf_for(secret, "login:" + nonce),
            "next": next_path,
            "error": error,
            "username": username,
        },
        status_code=status,
    )
    response.set_cookie(LOGIN_COOKIE, nonce, max_age=3600, httponly=True, samesite="strict", path="/login")
    return response


@router.get("/login")
async def login_form(request: Request, ctx: ContextDep, next: str = "/") -> Response:
    return _login_page(request, ctx.settings.secret_key, safe_next(next))


@router.post("/login")
def login(
    request: Request,
    ctx: ContextDep,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """Check the password like /api/v1/auth/token does, open a session, set its cookie."""
    # A plain `def`, in the thread pool: Argon2 verification is deliberately slow (see api/app.py login).
    secret = ctx.settings.secret_key
    nonce = request.cookies.get(LOGIN_COOKIE) or ""
    if not nonce or not hmac.compare_digest(csrf_token, csrf_for(secret, "login:" + nonce)):
        return _login_page(
            request,
            secret,
            safe_next(next),
            "The sign-in form had expired. Enter your username and password again.",
            username,
            403,
        )
    user = None
    if re.fullmatch(USERNAME, username) and password:
        with writing(ctx.store) as session:
            user = authenticate(session, username, password)
            token = open_ui_session(session, user.username, ctx.settings.session_minutes) if user else ""
    if user is None:
        return _login_page(
            request, secret, safe_next(next), "Wrong username or password.", username, status=401
        )
    response = redirect(safe_next(next))
    response.set_cookie(
        SESSION_COOKIE,
        session_cookie_value(secret, token),
        max_age=ctx.settings.session_minutes * 60,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request, ctx: ContextDep, user: PageUser, form: CsrfForm) -> Response:
    """End the session in the store (every copy of its cookie stops working) and clear the cookie."""
    token = _session_token(ctx.settings.secret_key, request.cookies.get(SESSION_COOKIE))
    if token is not None:
        with writing(ctx.store) as session:
            end_ui_session(session, token)
    response = redirect("/login")
    response.delete_cookie(SESSION_COOKIE)
    return flash(response, f"{user.username} signed out.")
