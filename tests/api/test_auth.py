"""Authentication and authorisation at the API door: bearer tokens from /api/v1/auth/token, 401 for every
route without a valid token, role changes in the store taking effect on the next request, 403 naming what
is missing, and passwords kept as Argon2id hashes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError
from sqlalchemy import update
from sqlmodel import col, select

from activities.db import reading, writing
from activities.directory import add_user, grant, revoke
from activities.models import User
from api.security import issue_token
from tests.conftest import CAST, PASSWORD, Stack

TOKEN_ROUTE = ("POST", "/api/v1/auth/token")
# Customer portals push their statuses here with their own credentials (a cXML shared secret, an access
# point's signature), checked by the portal's adapter: tests/api/test_portal_lifecycle.py refuses a forged
# push. Not a user route, so no bearer token.
PORTAL_PUSH_ROUTE = ("POST", "/api/v1/portals/{portal}/inbound")
SOME_ID = "00000000-0000-4000-8000-000000000000"
HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


async def protected_routes(stack: Stack) -> list[tuple[str, str]]:
    """Every (method, path) under /api/v1 but the token and portal push routes, read from the running
    application's OpenAPI schema so that a route added tomorrow is covered without touching this test."""
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as client:
        schema = (await client.get("/openapi.json")).json()
    found = set()
    for template, operations in schema["paths"].items():
        if not template.startswith("/api/v1"):
            continue
        for method in operations:
            if method.upper() in HTTP_METHODS and (method.upper(), template) not in (
                TOKEN_ROUTE,
                PORTAL_PUSH_ROUTE,
            ):
                found.add((method.upper(), re.sub(r"\{[^}]+\}", SOME_ID, template)))
    return sorted(found)


async def call(stack: Stack, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as client:
        body: dict[str, Any] | None = {} if method in ("POST", "PUT", "PATCH") else None
        return await client.request(method, path, headers=headers, json=body)


async def login(stack: Stack, *, username: str = "erp", password: str = PASSWORD) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as client:
        return await client.post("/api/v1/auth/token", data={"username": username, "password": password})


def assert_unauthenticated(r: httpx.Response, where: str) -> None:
    assert r.status_code == 401, f"{where}: {r.status_code} {r.text}"
    error = r.json()["error"]
    assert error["code"] == "unauthenticated", where
    assert error["message"], where
    assert r.headers.get("www-authenticate") == "Bearer", where


# --- tokens ---------------------------------------------------------------------------------------------


async def test_token_route_exchanges_form_credentials_for_a_bearer_token(stack: Stack) -> None:
    r = await login(stack, username="approver")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"access_token", "token_type"} and body["token_type"] == "bearer"
    claims = jwt.decode(body["access_token"], stack.settings.secret_key, algorithms=["HS256"])
    assert claims["sub"] == "approver"
    lifetime = datetime.fromtimestamp(claims["exp"], UTC) - datetime.now(UTC)
    assert (
        timedelta(minutes=stack.settings.token_minutes - 1)
        < lifetime
        <= timedelta(minutes=stack.settings.token_minutes)
    )
    async with httpx.AsyncClient(
        base_url=stack.base_url, timeout=60, headers={"Authorization": f"Bearer {body['access_token']}"}
    ) as client:
        assert (await client.get(f"/api/v1/customers/{stack.customers['initech']}")).status_code == 200


async def test_wrong_password_and_unknown_user_get_the_same_401(stack: Stack) -> None:
    wrong_password = await login(stack, username="erp", password="not-the-password")
    unknown_user = await login(stack, username="nobody", password=PASSWORD)
    for r in (wrong_password, unknown_user):
        assert_unauthenticated(r, "login")
        assert "access_token" not in r.text
    assert wrong_password.json() == unknown_user.json()  # no hint which of the two was wrong


async def test_a_disabled_user_can_neither_log_in_nor_use_an_earlier_token(stack: Stack) -> None:
    client = await stack.client("collector")
    assert (await client.get("/api/v1/customers")).status_code == 200
    with writing(stack.store) as session:
        session.execute(update(User).where(col(User.username) == "collector").values(active=False))
    assert_unauthenticated(await client.get("/api/v1/customers"), "disabled user's token")
    r = await login(stack, username="collector")
    assert_unauthenticated(r, "disabled user's login")
    assert r.json() == (await login(stack, username="nobody")).json()


# --- every route is closed without a valid token --------------------------------------------------------


async def test_the_route_walk_finds_the_routes_it_must_protect(stack: Stack) -> None:
    routes = await protected_routes(stack)
    assert ("GET", "/api/v1/customers") in routes
    assert ("POST", f"/api/v1/invoices/{SOME_ID}/approve") in routes
    assert ("POST", "/api/v1/auth/token") not in routes
    assert len(routes) >= 10


async def test_every_api_route_but_the_token_route_answers_401_without_a_token(stack: Stack) -> None:
    for method, path in await protected_routes(stack):
        assert_unauthenticated(await call(stack, method, path, {}), f"{method} {path}")


async def test_every_api_route_answers_401_to_an_invalid_token(stack: Stack) -> None:
    secret = stack.settings.secret_key
    now = datetime.now(UTC)
    bad_tokens = {
        "expired": issue_token("controller", secret, minutes=-1),
        "signed with another secret": issue_token("controller", "another-secret-of-at-least-32-chars!", 60),
        "unsigned (alg none)": jwt.encode(
            {"sub": "controller", "exp": now + timedelta(hours=1)}, key=None, algorithm="none"
        ),
        "without expiry": jwt.encode({"sub": "controller"}, secret, algorithm="HS256"),
        "of an unknown user": issue_token("ghost", secret, 60),
        "not a JWT": "not-a-token",
    }
    for method, path in await protected_routes(stack):
        for why, token in bad_tokens.items():
            r = await call(stack, method, path, {"Authorization": f"Bearer {token}"})
            assert_unauthenticated(r, f"{method} {path} with a token {why}")
    good = {"Authorization": f"Bearer {issue_token('controller', secret, 60)}"}
    assert (await call(stack, "GET", "/api/v1/customers", good)).status_code == 200


async def test_an_expired_token_is_told_so(stack: Stack) -> None:
    token = issue_token("controller", stack.settings.secret_key, minutes=-1)
    r = await call(stack, "GET", "/api/v1/customers", {"Authorization": f"Bearer {token}"})
    assert_unauthenticated(r, "expired")
    assert "expired" in r.json()["error"]["message"]


# --- authorisation --------------------------------------------------------------------------------------


def new_customer(*, external_ref: str = "NEW-1") -> dict[str, Any]:
    return {
        "legal_entity": "ACME",
        "external_ref": external_ref,
        "name": "Wayne Enterprises",
        "currency": "EUR",
        "payment_terms_days": 30,
    }


async def test_a_refusal_names_the_missing_action_and_the_legal_entity(stack: Stack) -> None:
    approver = await stack.client("approver")
    r = await approver.post("/api/v1/customers", json=new_customer())
    assert r.status_code == 403, r.text
    error = r.json()["error"]
    assert error["code"] == "forbidden"
    assert (error["details"]["action"], error["details"]["legal_entity"]) == ("customer:create", "ACME")
    assert error["details"]["roles_held"] == ["ar_approver"]
    assert "customer:create" in error["message"] and "ACME" in error["message"]


async def test_a_role_granted_in_the_store_takes_effect_on_the_next_request_and_a_revoke_removes_it(
    stack: Stack,
) -> None:
    outsider = await stack.client("outsider")
    r = await outsider.post("/api/v1/customers", json=new_customer(external_ref="G-1"))
    assert r.status_code == 403, r.text
    assert (await outsider.get(f"/api/v1/customers/{stack.customers['initech']}")).status_code == 404

    with writing(stack.store) as session:  # another process (the CLI) grants the role; the API keeps running
        grant(session, "outsider", "master_data", "ACME", "admin")
    r = await outsider.post("/api/v1/customers", json=new_customer(external_ref="G-1"))
    assert r.status_code == 201, r.text
    assert (await outsider.get(f"/api/v1/customers/{stack.customers['initech']}")).status_code == 200

    with writing(stack.store) as session:
        revoke(session, "outsider", "master_data", "ACME", "admin")
    r = await outsider.post("/api/v1/customers", json=new_customer(external_ref="G-2"))
    assert r.status_code == 403, r.text
    assert (await outsider.get(f"/api/v1/customers/{stack.customers['initech']}")).status_code == 404


async def test_a_role_held_in_one_legal_entity_grants_nothing_in_another(stack: Stack) -> None:
    globex_approver = await stack.client("globex_approver")
    r = await globex_approver.get(f"/api/v1/customers/{stack.customers['initech']}")
    assert r.status_code == 404, r.text
    r = await globex_approver.get(f"/api/v1/customers/{stack.customers['hooli']}")
    assert r.status_code == 200, r.text


# --- passwords ------------------------------------------------------------------------------------------


def test_passwords_are_stored_as_argon2id_hashes(stack: Stack) -> None:
    with reading(stack.store) as session:
        users = {u.username: u.password_hash for u in session.exec(select(User))}
    assert set(users) == set(CAST)
    hasher = PasswordHasher()
    for username, stored in users.items():
        assert stored.startswith("$argon2id$"), username
        assert PASSWORD not in stored
        assert hasher.verify(stored, PASSWORD)
    # Salted: the same password twice gives two hashes. (The test cast shares one precomputed hash to
    # keep the suite fast, so two users are added here the way an administrator adds them.)
    with writing(stack.store) as session:
        first = add_user(session, "salt_one", PASSWORD, "test").password_hash
        second = add_user(session, "salt_two", PASSWORD, "test").password_hash
    assert first != second and hasher.verify(first, PASSWORD) and hasher.verify(second, PASSWORD)
    with pytest.raises(VerifyMismatchError):
        hasher.verify(users["erp"], "not-the-password")
