"""Page speed with a full store: the approver's inbox, the invoice page and the supervisor's control tower,
each beside the JSON API call that answers the same question, in the same run.

    make bench-pages
    .venv/bin/python bench/pages.py [--invoices 10000] [--requests 60] [--database-url URL] [--json FILE]

What it starts, in a temporary directory removed at the end (`--keep` keeps it): the Temporal dev server
as `cashcycle up` starts it and a worker process (the control tower joins the engine's own signals:
pending activities, task queue pollers), and the API application in this process.

What it seeds, fast and still real: the demo users (demo/company.py, every role in both legal entities),
two legal entities (Acme Industrie SAS in EUR, Acme Industrie UK Ltd in GBP) with their customers, and
`--invoices` open invoices written by the same recording code the invoice workflow calls
(activities.transitions.record_transition: the read model, the lines, the portal passes and a hash-chained
ledger entry per transition), drafts built by the API's own `build_draft`, tiers planned from
policies/approval_matrix.toml. No workflow is started for them: 10,000 workflows would take the machine an
hour, and the pages read the store. They are left pending approval at every tier (some assigned by the
supervisor to a named approver), approved and waiting for their issue date, delivered by mail, submitted
to a portal (received or in process) and rejected by the portal, over the last 40 days.

What it measures: server-side time of each request, from the moment the application is called until it
has sent the last byte of its answer (an ASGI wrapper around the app, through httpx.ASGITransport: no
network, no HTTP parsing), p50 and p95 over `--requests` requests per route after a few warm-up ones,
page and JSON alternating so that a load that comes or goes weighs on both:

    inbox         GET /inbox                       as approver    | GET /api/v1/approvals/inbox
    invoice page  GET /invoices/{id}               as supervisor  | GET /api/v1/invoices/{id}
    tower         GET /tower                       as supervisor  | GET /api/v1/workflows/stuck

(the invoice routes rotate over invoices of every status). The target is p95 under 150 ms for each
page. A route the application does not serve (404) prints "not available"; `--min-target` makes a page
over target exit 3.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from activities.approval_matrix import MatrixFile
from activities.approvals import plan_for
from activities.db import Store, migrate, open_store, writing
from activities.directory import add_user, create_customer, ensure_legal_entity, grant
from activities.models import Customer, CustomerBase, LegalEntity
from activities.numbering import issue_number
from activities.transitions import record_transition
from api.invoices import build_draft
from api.schemas import LineIn
from bench.lifecycle import BenchFailure, Processes, percentile, run_in_processes, wait_for_port
from demo.company import DEMO_CUSTOMERS, DEMO_ENTITY_ROW, DEMO_PASSWORD, DEMO_USERS, FX, PEOPLE, SIGNER
from workflows.types import (
    Actor,
    Approval,
    Assignment,
    InvoiceDraft,
    InvoiceState,
    PlanRequest,
    PortalEvent,
    TransitionRecord,
)

TARGET_MS = 150.0
SEED = 20261204
UK = LegalEntity(
    code="ACME-UK",
    name="Acme Industrie UK Ltd",
    currency="GBP",
    timezone="Europe/London",
    country="GB",
    vat_id="GB123456789",
    address="1 Temple Row, Birmingham B2 5LG, United Kingdom",
)
# Acme UK bills the demo's British customers, and a few on the continent in EUR.
UK_CUSTOMERS = [c for c in DEMO_CUSTOMERS if c.currency == "GBP"] + DEMO_CUSTOMERS[:4]
PORTAL = "demo-coupa"  # the portal the portal customers are reached through (no call is made to it)
# The open invoices' statuses, by weight: what an AR team's store holds on a busy day.
MIX = {
    "pending_approval": 45,
    "approved": 12,
    "submitted_mail": 18,
    "submitted_portal": 13,
    "portal_rejected": 12,
}
REJECTIONS = [
    ("price_mismatch", "Unit price differs from the purchase order"),
    ("po_unknown", "Purchase order not found"),
    ("quantity_exceeds_po", "Quantity exceeds what is left on the purchase order"),
]
SYSTEM = Actor("system", ["system"], "workflow")


# -- seeding: the store as the workflows would have left it --------------------------------------------


def rate_to(entity: LegalEntity, customer: Customer) -> Decimal:
    """The booking rate: units of the entity's currency per unit of the invoice's (the demo's rates)."""
    return (FX[entity.currency] / FX[customer.currency]).quantize(Decimal("0.000001"))


def seed_directory(store: Store) -> None:
    with writing(store) as session:
        ensure_legal_entity(session, LegalEntity.model_validate(DEMO_ENTITY_ROW.model_dump()))
        ensure_legal_entity(session, LegalEntity.model_validate(UK.model_dump()))
        for username, roles in DEMO_USERS:
            full_name, email = PEOPLE[username]
            add_user(session, username, DEMO_PASSWORD, "bench", full_name=full_name, email=email)
            for entity in (DEMO_ENTITY_ROW.code, UK.code):
                for role in roles:
                    grant(session, username, role, entity, "bench")


def seed_customers(store: Store) -> dict[str, list[Customer]]:
    """Each entity's customers: the demo's, and one behind a portal per entity."""
    found: dict[str, list[Customer]] = {}
    with writing(store) as session:
        for entity, customers in ((DEMO_ENTITY_ROW.code, DEMO_CUSTOMERS), (UK.code, UK_CUSTOMERS)):
            rows = []
            for c in customers:
                body = c.body()
                body.pop("legal_entity")
                ref = body.pop("external_ref")
                rows.append(create_customer(session, entity, CustomerBase(**body), "erp", ref))
            portal = dict(customers[0].body(), name=f"Initech ({entity})", portal=PORTAL)
            portal.pop("legal_entity")
            portal.pop("external_ref")
            rows.append(create_customer(session, entity, CustomerBase(**portal), "erp", f"PORTAL-{entity}"))
            for row in rows:
                session.expunge(row)
            found[entity] = rows
    return found


@dataclass
class Recorder:
    """One invoice's transitions, recorded as the workflow records them: each one's state, seq and time.
    `advance` moves its clock; `record` writes the next transition at that instant."""

    state: InvoiceState
    at: datetime
    run_id: str

    def advance(self, minutes: float) -> str:
        self.at += timedelta(minutes=minutes)
        return self.at.isoformat()

    def record(
        self,
        session: Session,
        event: str,
        to_status: str,
        actor: Actor,
        reason: str = "",
        portal_event: PortalEvent | None = None,
        **changes: Any,
    ) -> None:
        at = self.at.isoformat()
        first = self.state.transition_seq == 0
        before = self.state.status
        moved = first or to_status != before
        self.state = replace(
            self.state,
            status=to_status,
            transition_seq=self.state.transition_seq + 1,
            status_since=at if moved else self.state.status_since,
            **changes,
        )
        result = record_transition(
            session,
            TransitionRecord(
                legal_entity=self.state.legal_entity,
                object_type="invoice",
                object_id=self.state.invoice_id,
                workflow_id=self.state.workflow_id,
                run_id=self.run_id,
                transition_seq=self.state.transition_seq,
                event=event,
                from_status=None if first else before,
                to_status=to_status,
                actor=actor,
                reason=reason,
                at=at,
                request_id=f"bench-{self.state.external_id}-{self.state.transition_seq}",
                state=self.state,
                portal=portal_event,
            ),
        )
        if result.number and not self.state.number:
            self.state = replace(self.state, number=result.number)


def _draft(
    rng: random.Random, customer: Customer, entity: LegalEntity, issued: date, size: int
) -> InvoiceDraft:
    """A draft built by the API's own code; its total in one of the approval matrix's three tiers."""
    low, high = {0: (200, 8_000), 1: (11_000, 80_000), 2: (110_000, 400_000)}[size]
    total = Decimal(rng.randrange(low, high))
    domestic = customer.country == entity.country
    rate = "20" if domestic else "0"
    lines = [
        LineIn(
            description="Consulting, senior consultant (days)",
            quantity="1",
            unit_price=str((total * Decimal("0.6")).quantize(Decimal("0.01"))),
            tax_rate=rate,
        ),
        LineIn(
            description="Cashflow Analytics licence (seats)",
            quantity="4",
            unit_price=str((total * Decimal("0.06")).quantize(Decimal("0.01"))),
            tax_rate=rate,
        ),
    ]
    po = f"PO-{rng.randrange(10000, 99999)}"
    return build_draft(
        customer=customer,
        entity=entity,
        currency=customer.currency,
        issue_date=issued,
        due_date=None,
        po_number=po,
        lines=lines,
        body_hash=hashlib.sha256(f"{customer.id}{issued}{total}{po}".encode()).hexdigest(),
        exchange_rate=None if customer.currency == entity.currency else str(rate_to(entity, customer)),
    )


def seed_invoices(store: Store, customers: dict[str, list[Customer]], count: int) -> dict[str, list[str]]:
    """`count` open invoices; their ids by situation (for the invoice page's rotation)."""
    rng = random.Random(SEED)
    matrix = MatrixFile()
    entities = {DEMO_ENTITY_ROW.code: DEMO_ENTITY_ROW, UK.code: UK}
    now = datetime.now(UTC)
    ids: dict[str, list[str]] = {}
    started = time.monotonic()
    batch = 250
    for first in range(0, count, batch):
        with writing(store) as session:
            for n in range(first, min(first + batch, count)):
                code = DEMO_ENTITY_ROW.code if rng.random() < 0.7 else UK.code
                situation = rng.choices(list(MIX), weights=list(MIX.values()))[0]
                invoice_id = _one_invoice(
                    session, rng, n, entities[code], customers[code], situation, matrix, now
                )
                ids.setdefault(situation, []).append(invoice_id)
        done = min(first + batch, count)
        if done % 1000 == 0 or done == count:
            print(f"  {done}/{count} invoices recorded ({time.monotonic() - started:.0f} s)", flush=True)
    return ids


def _one_invoice(
    session: Session,
    rng: random.Random,
    n: int,
    entity: LegalEntity,
    pool: list[Customer],
    situation: str,
    matrix: MatrixFile,
    now: datetime,
) -> str:
    portal = situation in ("submitted_portal", "portal_rejected")
    customer = pool[-1] if portal else rng.choice(pool[:-1])
    start = now - timedelta(days=rng.uniform(0.05, 40))
    issued = start.date() if situation != "approved" else now.date() + timedelta(days=rng.randint(2, 30))
    draft = _draft(rng, customer, entity, issued, rng.choices([0, 1, 2], weights=[60, 30, 10])[0])
    external_id = f"BENCH-{n + 1:06d}"
    invoice_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    state = InvoiceState(
        invoice_id=invoice_id,
        workflow_id=f"invoice/{entity.code}/{external_id}",
        legal_entity=entity.code,
        external_id=external_id,
        number="",
        status="draft",
        draft=draft,
        created_by="erp",
        editors=[],
        approvals=[],
        amount_paid_minor=0,
        payments=[],
        status_since="",
        transition_seq=0,
    )
    recorder = Recorder(state, start, uuid.UUID(int=rng.getrandbits(128), version=4).hex)
    _lifecycle(session, recorder, rng, situation, matrix, customer)
    return invoice_id


def _lifecycle(
    session: Session, r: Recorder, rng: random.Random, situation: str, matrix: MatrixFile, customer: Customer
) -> None:
    """The transitions that lead to `situation`, in the order and with the actors the workflow records."""
    s = r.state
    r.record(session, "create", "draft", Actor("erp", ["erp_integration"], "invoice:create"))
    plan = plan_for(
        matrix,
        session,
        PlanRequest(s.legal_entity, "invoice", s.draft.total_minor, s.draft.currency, s.draft.exchange_rate),
    )
    at = r.advance(rng.uniform(5, 240))
    r.record(
        session,
        "submit",
        "pending_approval",
        Actor("preparer", ["ar_preparer"], "invoice:submit"),
        f"needs {len(plan.tiers)} tier(s)",
        plan=plan,
        submitters=["preparer"],
        submission=1,
        tier_since=at,
    )
    tiers = plan.tiers
    stop_at = rng.randrange(len(tiers)) if situation == "pending_approval" else len(tiers)
    for tier in tiers[:stop_at]:
        last = tier.level == len(tiers)
        approver = SIGNER[tier.role]
        at = r.advance(rng.uniform(10, 2 * 24 * 60))
        r.record(
            session,
            "approve" if last else "approve_tier",
            "approved" if last else "pending_approval",
            Actor(approver, [tier.role], "invoice:approve"),
            "OK",
            approvals=[*r.state.approvals, Approval(approver, at, "OK", tier.level, tier.role)],
            tier_since=at,
        )
    if situation == "pending_approval":
        waiting = tiers[stop_at]
        if rng.random() < 0.15:  # the supervisor handed the waiting tier to a named approver
            assignee = SIGNER[waiting.role]
            at = r.advance(30)
            r.record(
                session,
                "reassign_approval",
                "pending_approval",
                Actor("supervisor", ["ar_supervisor"], "invoice:reassign"),
                f"tier {waiting.level} to {assignee}: covering the queue",
                assignments=[Assignment(waiting.level, assignee, "supervisor", at, "covering the queue")],
            )
        return
    if situation == "approved":
        return  # its issue date is ahead: the workflow holds it until then
    r.state = replace(r.state, number=issue_number(session, s.invoice_id))
    at = r.advance(rng.uniform(0.1, 5))
    if situation == "submitted_mail":
        r.record(
            session,
            "deliver",
            "submitted",
            replace(SYSTEM, rule="workflow:deliver"),
            f"email to {customer.email}",
            delivered_at=at,
            portal="email",
        )
        return
    key, ref = f"{s.invoice_id}.pass-1", str(rng.randrange(10**6, 10**7))
    r.record(
        session,
        "deliver",
        "submitted",
        replace(SYSTEM, rule="workflow:submit"),
        f"pass 1 to portal {PORTAL} (coupa): received",
        PortalEvent(PORTAL, "coupa", 1, key, "received", at, ref),
        delivered_at=at,
        portal=PORTAL,
        submission_pass=1,
        portal_status="received",
    )
    said = r.advance(rng.uniform(5, 600))
    if situation == "submitted_portal":
        if rng.random() < 0.5:
            r.record(
                session,
                "portal_status",
                "submitted",
                replace(SYSTEM, rule="portal:status"),
                "in_process",
                PortalEvent(PORTAL, "coupa", 1, key, "in_process", said, ref),
                portal_status="in_process",
            )
        return
    code, text = rng.choice(REJECTIONS)
    r.record(
        session,
        "portal_reject",
        "portal_rejected",
        replace(SYSTEM, rule="portal:reject"),
        f"{code}: {text}",
        PortalEvent(PORTAL, "coupa", 1, key, "rejected", said, ref, code, text),
        portal_status="rejected",
        portal_reason=f"{code}: {text}",
    )


# -- measuring: server-side time per request, pages beside their JSON equivalents --------------------------


class ServerTimer:
    """ASGI wrapper: the time from the call into the application to the last byte of its answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.last = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()

        async def timed(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.last = time.perf_counter() - started

        await self.app(scope, receive, timed)


@dataclass
class Route:
    name: str
    user: str
    page: str  # path template; {id} rotates over invoice ids
    api: str


ROUTES = [
    Route("inbox", "approver", "/inbox", "/api/v1/approvals/inbox"),
    Route("invoice page", "supervisor", "/invoices/{id}", "/api/v1/invoices/{id}"),
    Route("control tower", "supervisor", "/tower", "/api/v1/workflows/stuck"),
]


@dataclass
class Figures:
    ms: list[float] = field(default_factory=list)
    status: int = 0
    size: int = 0
    error: str = ""

    def summary(self) -> dict[str, Any]:
        if self.error:
            return {"available": False, "error": self.error}
        return {
            "available": True,
            "p50_ms": round(statistics.median(self.ms), 1),
            "p95_ms": round(percentile(self.ms, 95), 1),
            "max_ms": round(max(self.ms), 1),
            "requests": len(self.ms),
            "bytes": self.size,
        }


async def login_page_session(http: httpx.AsyncClient, username: str) -> None:
    """Sign in through the login form (its CSRF token and cookie), as a browser does."""
    form = await http.get("/login")
    if form.status_code != 200:
        raise BenchFailure(f"GET /login: {form.status_code}")
    found = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    if not found:
        raise BenchFailure("the login page carries no csrf_token")
    r = await http.post(
        "/login", data={"username": username, "password": DEMO_PASSWORD, "csrf_token": found[1], "next": "/"}
    )
    if r.status_code not in (302, 303):
        raise BenchFailure(f"POST /login as {username}: {r.status_code} {r.text[:200]}")


async def api_token(http: httpx.AsyncClient, username: str) -> str:
    r = await http.post("/api/v1/auth/token", data={"username": username, "password": DEMO_PASSWORD})
    if r.status_code != 200:
        raise BenchFailure(f"token for {username}: {r.status_code} {r.text}")
    token: str = r.json()["access_token"]
    return token


async def measure_routes(app: ASGIApp, invoice_ids: list[str], requests: int, warmup: int) -> dict[str, Any]:
    timer = ServerTimer(app)
    transport = httpx.ASGITransport(app=timer)
    results: dict[str, Any] = {}
    users = sorted({r.user for r in ROUTES})
    browsers: dict[str, httpx.AsyncClient] = {}
    tokens: dict[str, str] = {}
    async with httpx.AsyncClient(transport=transport, base_url="http://bench.local", timeout=120) as api:
        for user in users:
            tokens[user] = await api_token(api, user)
            browsers[user] = httpx.AsyncClient(
                transport=transport, base_url="http://bench.local", timeout=120
            )
            await login_page_session(browsers[user], user)
        try:
            for route in ROUTES:
                page, json_ = Figures(), Figures()
                headers = {"Authorization": f"Bearer {tokens[route.user]}"}
                for i in range(warmup + requests):
                    invoice_id = invoice_ids[i % len(invoice_ids)]
                    for figures, path, client, extra in (
                        (page, route.page, browsers[route.user], {}),
                        (json_, route.api, api, headers),
                    ):
                        if figures.error:
                            continue
                        r = await client.get(path.format(id=invoice_id), headers=extra)
                        if r.status_code == 404 and "{id}" not in path:
                            figures.error = "not available (404: no such route yet)"
                            continue
                        if r.status_code != 200:
                            figures.error = f"HTTP {r.status_code}: {r.text[:200]}"
                            continue
                        if i >= warmup:
                            figures.ms.append(timer.last * 1000)
                            figures.size = max(figures.size, len(r.content))
                results[route.name] = {"page": page.summary(), "json": json_.summary(), "user": route.user}
                results[route.name]["paths"] = {"page": route.page, "json": route.api}
        finally:
            for client in browsers.values():
                await client.aclose()
    return results


@asynccontextmanager
async def running_app() -> AsyncIterator[ASGIApp]:
    """The API application in this process, its lifespan entered (store, Temporal client, policies)."""
    from activities.settings import Settings
    from api.app import create_app

    app = create_app(Settings())
    async with app.router.lifespan_context(app):
        yield app


def report(result: dict[str, Any]) -> None:
    print(
        f"\nServer-side time per request, {result['requests']} requests each after {result['warmup']} "
        f"warm-up ({result['invoices']} open invoices, {result['store']}); "
        f"target p95 < {TARGET_MS:.0f} ms for each page"
    )
    print(f"  {'':15} {'page p50 / p95':>18} {'JSON p50 / p95':>18}   page vs target")

    def cell(f: dict[str, Any]) -> str:
        return f"{f['p50_ms']:>7.1f} / {f['p95_ms']:>6.1f} ms" if f["available"] else f"{'not available':>18}"

    for name, r in result["routes"].items():
        page, api = r["page"], r["json"]
        verdict = ("ok" if page["p95_ms"] < TARGET_MS else "OVER") if page["available"] else "-"
        print(f"  {name:15} {cell(page):>18} {cell(api):>18}   {verdict}")
        for kind in ("page", "json"):
            if not r[kind]["available"] and "404" not in r[kind]["error"]:
                print(f"    {kind} {r['paths'][kind]}: {r[kind]['error']}")
    print(
        "  (page: "
        + ", ".join(f"{n} {r['paths']['page']} as {r['user']}" for n, r in result["routes"].items())
        + ")"
    )


async def run(args: argparse.Namespace, tmp: Path, procs: Processes) -> dict[str, Any]:
    from api.cli import free_port, temporal_dev_server_command

    tport, uport = free_port(), free_port()
    procs.spawn("temporal", temporal_dev_server_command(tmp, tport, uport, "default"))
    wait_for_port(tport, 60, procs)
    url = args.database_url or f"sqlite:///{tmp / 'cashcycle.db'}"
    settings_env = {
        "CASHCYCLE_DATA_DIR": str(tmp),
        "CASHCYCLE_DATABASE_URL": url,
        "TEMPORAL_ADDRESS": f"127.0.0.1:{tport}",
        "CASHCYCLE_TASK_QUEUE": f"bench-pages-{uuid.uuid4().hex[:8]}",
        "CASHCYCLE_ENVIRONMENT": "development",
        "CASHCYCLE_SECRET_KEY": secrets.token_urlsafe(48),
        "CASHCYCLE_SMTP_HOST": "127.0.0.1",
        "CASHCYCLE_SMTP_PORT": str(free_port()),  # nothing is sent: no invoice of the bench has a workflow
    }
    procs.env.update(settings_env)
    os.environ.update(settings_env)  # the application in this process reads the same settings

    migrate(url)
    store = open_store(url)
    try:
        print(
            f"seeding {args.invoices} open invoices through the recording code ({url.split(':')[0]})",
            flush=True,
        )
        started = time.monotonic()
        seed_directory(store)
        customers = seed_customers(store)
        ids = seed_invoices(store, customers, args.invoices)
        seeded_in = time.monotonic() - started
    finally:
        store.dispose()
    print("  " + ", ".join(f"{k} {len(v)}" for k, v in ids.items()) + f" ({seeded_in:.0f} s)", flush=True)
    procs.spawn("worker", [sys.executable, "-m", "api.cli", "worker"])
    # Invoices of every situation, in turn, for the invoice page.
    rotation = [i for group in zip(*ids.values(), strict=False) for i in group][: max(args.requests, 50)]
    async with running_app() as app:
        routes = await measure_routes(app, rotation, args.requests, args.warmup)
    procs.check_alive()
    return {
        "invoices": args.invoices,
        "by_situation": {k: len(v) for k, v in ids.items()},
        "store": "PostgreSQL" if url.startswith("postgres") else "SQLite",
        "seed_seconds": round(seeded_in, 1),
        "requests": args.requests,
        "warmup": args.warmup,
        "target_ms": TARGET_MS,
        "routes": routes,
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/pages.py", description=__doc__.split("\n", 1)[0])
    p.add_argument("--invoices", type=int, default=10_000, help="open invoices in the store (default 10000)")
    p.add_argument("--requests", type=int, default=60, help="timed requests per route and kind (default 60)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--database-url", default="", help="a PostgreSQL database to use (default: SQLite)")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, databases)")
    p.add_argument("--min-target", action="store_true", help="exit 3 when a page's p95 is over the target")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.invoices < 1 or args.requests < 1 or args.warmup < 0:
        raise SystemExit("--invoices and --requests must be positive, --warmup not negative")
    tmp = Path(tempfile.mkdtemp(prefix="cashcycle-bench-pages-"))
    # The child processes get the environment without CASHCYCLE_ settings (run_in_processes); this process
    # runs the application: only the bench's settings there too.
    for k in [k for k in os.environ if k.startswith("CASHCYCLE_")]:
        del os.environ[k]
    code, result = run_in_processes(tmp, lambda procs: run(args, tmp, procs), args.keep)
    if result is not None:
        report(result)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        over = [
            n
            for n, r in result["routes"].items()
            if r["page"]["available"] and r["page"]["p95_ms"] >= TARGET_MS
        ]
        if args.min_target and over:
            code = 3
    return code


if __name__ == "__main__":
    sys.exit(main())
