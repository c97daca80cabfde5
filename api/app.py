"""The FastAPI application: lifespan (migrations, store, Temporal client, Casbin), routes, error mapping."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Form
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from activities.db import Store, migrate, open_store, reading, writing
from activities.directory import authenticate, record_policy_files
from activities.settings import Settings, get_settings
from activities.temporal import connect
from api import (
    access,
    approvals,
    capa,
    credit_memos,
    customers,
    disputes,
    einvoice,
    evidence,
    invoices,
    pages,
    payments,
    portals,
    reports,
    tower,
    tower_actions,
)
from api.deps import AppContext, ContextDep, SessionDep
from api.errors import Unauthenticated, error_body, errors, install
from api.openapi import openapi_document
from api.schemas import USERNAME, Health, Token
from api.security import POLICIES, Authorizer, issue_token


class BodyLimit:
    """Refuse request bodies over the limit with a 413 before they are read into memory."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        seen = 0
        too_large = False
        started = False

        async def limited() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            # A body streamed without Content-Length (chunked) is cut off above; the app then answers
            # whatever it makes of a disconnect (FastAPI: 400 "error parsing the body"). Send the 413 instead.
            nonlocal started
            if too_large:
                if not started:
                    started = True
                    await self._too_large(send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, guarded)
        except Exception:
            if too_large and not started:
                await self._too_large(send)
                return
            raise

    async def _too_large(self, send: Send) -> None:
        body = json.dumps(error_body("body_too_large", f"request body over {self.max_bytes} bytes")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


system = APIRouter(tags=["system"])


@system.post("/api/v1/auth/token", response_model=Token, responses=errors("unauthenticated"))
def login(
    username: Annotated[str, Form(pattern=USERNAME)],
    password: Annotated[str, Form(min_length=1, max_length=1024)],
    ctx: ContextDep,
    session: SessionDep,
) -> Token:
    """Exchange a username and password (form fields, as OAuth2's password flow sends them; other fields
    of that flow are ignored) for a bearer token."""
    # A plain `def`, run in the thread pool: Argon2 verification is deliberately slow CPU work. As an
    # `async def` it blocked the event loop, and 16 concurrent logins held every pooled connection while
    # the next one waited for the pool on the loop itself: the whole API froze for 30 s, then 500s.
    user = authenticate(session, username, password)
    if user is None:
        raise Unauthenticated("wrong username or password")
    return Token(access_token=issue_token(user.username, ctx.settings.secret_key, ctx.settings.token_minutes))


async def worker_seen(client: Client, task_queue: str) -> bool:
    """True when a worker polled the workflow task queue in the last minute."""
    resp = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    recent = datetime.now(UTC) - timedelta(minutes=1)
    return any(p.last_access_time.ToDatetime(tzinfo=UTC) >= recent for p in resp.pollers)


HEALTH_CHECK_SECONDS = 5.0  # each dependency answers within this, or counts as down (probes time out soon)


def _ping_store(store: Store) -> None:
    with reading(store) as session:
        session.execute(text("SELECT 1"))


@system.get("/healthz", response_model=Health, responses={503: {"model": Health}})
async def healthz(ctx: ContextDep) -> Any:
    """200 only when the API, the store, Temporal and at least one worker are reachable."""
    checks: dict[str, Any] = {"api": "ok"}
    try:
        # In a thread: a store that hangs must not stall the event loop, and with it every request.
        await asyncio.wait_for(asyncio.to_thread(_ping_store, ctx.store), HEALTH_CHECK_SECONDS)
        checks["store"] = "ok"
    except Exception as exc:  # health reports every failure, whatever it is
        checks["store"] = f"error: {exc.__class__.__name__}"
    try:
        seen = await asyncio.wait_for(
            worker_seen(ctx.temporal, ctx.settings.task_queue), HEALTH_CHECK_SECONDS
        )
        checks["worker"] = "ok" if seen else "no worker polling"
        checks["temporal"] = "ok"
    except Exception as exc:
        checks["temporal"] = f"error: {exc.__class__.__name__}"
        checks["worker"] = "unknown"
    healthy = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if healthy else "unavailable", checks=checks).model_dump()
    return JSONResponse(body, status_code=200 if healthy else 503)


def create_app(settings: Settings | None = None, temporal: Client | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        migrate(settings.sqlalchemy_url)
        store = open_store(settings.sqlalchemy_url)
        with writing(store) as session:
            record_policy_files(session, POLICIES)  # evidence of the policy in force from now on
        client = temporal or await connect(
            settings.temporal_address or "127.0.0.1:7233", settings.temporal_namespace
        )
        ctx = app.state.ctx = AppContext(
            settings=settings, store=store, temporal=client, authorizer=Authorizer()
        )
        try:
            yield
        finally:
            ctx.close()

    app = FastAPI(
        title="Cashcycle",
        version="1.0.0",
        lifespan=lifespan,
        description="Accounts-receivable workflows with approval controls. Every change of an invoice is a "
        "transition of its Temporal workflow, recorded in a hash-chained evidence ledger.",
    )
    install(app)
    app.include_router(system)
    app.include_router(customers.router)
    app.include_router(invoices.router)
    app.include_router(einvoice.router)
    app.include_router(payments.router)
    app.include_router(credit_memos.router)
    app.include_router(disputes.router)
    app.include_router(capa.router)
    app.include_router(evidence.router)
    app.include_router(reports.router)
    app.include_router(access.router)
    app.include_router(approvals.router)
    app.include_router(portals.router)
    app.include_router(tower.router)
    app.include_router(tower_actions.router)
    # The web UI: pages (not in the OpenAPI document) and their static files.
    pages.install(app)
    app.include_router(pages.router)
    app.mount("/static", pages.static, name="static")
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
    return app
