"""FastAPI dependencies as Annotated aliases: the app context, a read session, the current user."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Header, Request
from fastapi.security import OAuth2PasswordBearer
from sqlmodel import Session
from temporalio.client import Client

from activities import queries
from activities.db import Store, reading
from activities.settings import Settings
from api.errors import Forbidden, Unauthenticated
from api.security import Authorizer, read_token

if TYPE_CHECKING:
    from activities.portals.base import PortalAdapter


@dataclass
class AppContext:
    """Long-lived clients, built once in the lifespan."""

    settings: Settings
    store: Store
    temporal: Client
    authorizer: Authorizer
    _portals: dict[str, PortalAdapter] | None = field(default=None, repr=False)

    def portals(self) -> dict[str, PortalAdapter]:
        """The customer portals of the configuration (and "email"), each adapter with its HTTP client:
        built on first use, once per process (portal pushes and customer validation share them)."""
        if self._portals is None:
            from activities.submission import portal_adapters

            self._portals = portal_adapters(self.settings)
        return self._portals

    def close(self) -> None:
        for adapter in (self._portals or {}).values():
            adapter.close()
        self.store.dispose()


async def get_context(request: Request) -> AppContext:
    # async: FastAPI runs a plain `def` dependency in its thread pool, a hop per request for a lookup.
    ctx: AppContext = request.app.state.ctx
    return ctx


ContextDep = Annotated[AppContext, Depends(get_context)]


async def get_session(ctx: ContextDep) -> AsyncIterator[Session]:
    # async, like the handlers, which query the store in the event loop too (short indexed reads): a
    # plain `def` dependency would cost two thread-pool hops per request, to open and to close it.
    with reading(ctx.store) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

_bearer = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


@dataclass(frozen=True)
class CurrentUserInfo:
    username: str


async def get_current_user(
    ctx: ContextDep, token: Annotated[str | None, Depends(_bearer)]
) -> CurrentUserInfo:
    if not token:
        raise Unauthenticated(
            "missing bearer token: send Authorization: Bearer <token from /api/v1/auth/token>"
        )
    username = read_token(token, ctx.settings.secret_key)
    # A session of its own, closed here, not SessionDep (held until the response is sent): a command
    # then holds no pooled connection while it waits for its workflow, and a handler opening its own
    # session never needs a second connection per request (16 concurrent commands exhausted the
    # pool of 15 and every request waited for the 30 s pool timeout, then failed with a 500).
    with reading(ctx.store) as session:
        active, revision = queries.active_user_and_policy_revision(session, username)
        if not active:
            raise Unauthenticated("the token's user is unknown or disabled")
        ctx.authorizer.refresh(session, revision)
    return CurrentUserInfo(username)


CurrentUser = Annotated[CurrentUserInfo, Depends(get_current_user)]


# 1-200 printable ASCII characters, not all spaces (HTTP strips a header value's surrounding spaces).
IDEMPOTENCY_KEY = r"^[ -~]*[!-~][ -~]*$"


async def get_idempotency_key(
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=200,
            pattern=IDEMPOTENCY_KEY,
            description="1-200 printable ASCII characters: the same key again is the same command, applied "
            "once (it becomes the Temporal update id)",
        ),
    ] = None,
) -> str | None:
    return idempotency_key.strip() if idempotency_key is not None else None


IdempotencyKey = Annotated[str | None, Depends(get_idempotency_key)]


def entities_for(
    ctx: AppContext, session: Session, username: str, action: str, entity: str | None
) -> list[str]:
    """The legal entities where the caller may do `action` (or the one asked for, refused with 403 if not
    allowed there): the entity scope of the reading endpoints, evidence and reports. A role held in every
    entity ("*") covers every entity of the store. 403 naming the action when it is allowed nowhere."""
    if entity is not None:
        ctx.authorizer.require(username, entity, action)
        return [entity]
    entities = [
        e for e in queries.entities_of(session, username) if ctx.authorizer.check(username, e, action)
    ]
    if "*" in entities or not entities:
        entities = [
            e for e in queries.legal_entity_codes(session) if ctx.authorizer.check(username, e, action)
        ]
    if not entities:
        raise Forbidden(f"{username} may not {action} in any legal entity", code="forbidden", action=action)
    return entities
