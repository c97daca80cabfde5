"""Shared fixtures: a real Temporal dev server, real SQLite and PostgreSQL stores, a real worker, the API
served over HTTP by uvicorn, and a real SMTP server capturing mail.

One dev server serves the whole session; each stack gets its own task queue and database.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import secrets
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
import uvicorn
from sqlmodel import Session
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.converter import DATA_CONVERTER
from activities.db import Store, migrate, open_store, writing
from activities.directory import add_user, create_customer, ensure_legal_entity, grant, hash_password
from activities.models import Customer, CustomerBase, LegalEntity, NumberSequence
from activities.settings import Settings
from api.app import create_app
from api.cli import TOWER_DYNAMIC_CONFIG
from api.mail_capture import start as start_mail_capture
from worker import build_worker, matrix_file, smtp_config, workflow_runner
from workflows.invoice import SEARCH_ATTRIBUTES, InvoiceWorkflow

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SHARED = ROOT.parent / "shared"


def pytest_sessionstart(session: pytest.Session) -> None:
    """A user's clone has no ../shared, and the tests that read it skip, saying why. CI has it, and there
    a missing or misplaced ../shared must fail the run, not quietly skip the official validators."""
    if os.environ.get("CASHCYCLE_REQUIRE_SHARED") and not (SHARED / "data").is_dir():
        raise pytest.UsageError(
            f"CASHCYCLE_REQUIRE_SHARED is set but {SHARED / 'data'} is missing: the e-invoice validators, "
            "cXML and Peppol reference files are read from there"
        )


PG_ADMIN_DSN = os.environ.get("CASHCYCLE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
PASSWORD = "correct-horse-battery"
PASSWORD_HASH = hash_password(PASSWORD)  # hashed once: Argon2 is slow on purpose, and stacks seed ~13 users

# username -> roles in legal entity ACME (the demo's cast). Nobody holds two incompatible roles
# (policies/sod_conflicts.csv): the grants would be refused.
CAST: dict[str, list[str]] = {
    "erp": ["erp_integration"],
    "preparer": ["ar_preparer"],
    "preparer2": ["ar_preparer"],
    "approver": ["ar_approver"],
    "approver2": ["ar_approver"],
    "controller": ["controller"],
    "collector": ["collector"],
    "cashier": ["cash_applier"],
    "supervisor": ["ar_supervisor"],
    "compliance": ["compliance"],
    "admin": ["admin"],
    "outsider": [],
    "globex_approver": [],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=DATA_CONVERTER,  # the production one
        dev_server_extra_args=[
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
            *TOWER_DYNAMIC_CONFIG,
        ],
    )
    yield env
    await env.shutdown()


def _pg_available() -> bool:
    try:
        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


@pytest.fixture(scope="session")
def pg_server() -> str:
    if not _pg_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_DSN}; CI runs the store tests on it")
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN_DSN}")
    return PG_ADMIN_DSN


def new_pg_database(admin_dsn: str) -> tuple[str, str]:
    name = f"cashcycle_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin_dsn.rsplit("/", 1)[0]
    return name, f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)


def drop_pg_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated store on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        migrate(url)
        yield url
        return
    admin = request.getfixturevalue("pg_server")
    name, url = new_pg_database(admin)
    try:
        migrate(url)
        yield url
    finally:
        drop_pg_database(admin, name)


def acme_today() -> date:
    """Today in ACME's zone (Europe/Paris): the server dates delegations by the entity's day, which near
    midnight UTC is not the machine's."""
    return datetime.now(ZoneInfo("Europe/Paris")).date()


def own_case_numbers(s: Session) -> None:
    """Each store's dispute cases numbered apart from every other test's: a case's workflow id is its legal
    entity and number (`dispute/ACME/DSP-2026-000001`), and the tests share one Temporal server per worker
    process, where an earlier test's case (on a task queue nobody polls any more) still runs under the same
    id. Production has one store per Temporal namespace; tests have hundreds."""
    year = datetime.now(UTC).year
    for entity in ("ACME", "GLOBEX"):
        for series in (f"DSP-{year}", f"DSP-{year + 1}"):
            s.add(NumberSequence(legal_entity=entity, series=series, last_value=secrets.randbelow(900_000)))


def seed_cast(store: Store) -> dict[str, str]:
    """Legal entities ACME (EUR, Paris) and GLOBEX (USD), the cast, and three customers."""
    with writing(store) as s:
        ensure_legal_entity(
            s,
            LegalEntity(
                code="ACME",
                name="Acme Industries SAS",
                currency="EUR",
                timezone="Europe/Paris",
                country="FR",
                vat_id="FR12345678901",
                address="1 rue de la Paix, 75002 Paris",
            ),
        )
        ensure_legal_entity(
            s,
            LegalEntity(
                code="GLOBEX", name="Globex Corp", currency="USD", timezone="America/New_York", country="US"
            ),
        )
        for username, roles in CAST.items():
            add_user(s, username, PASSWORD, "test", password_hash=PASSWORD_HASH)
            for role in roles:
                grant(s, username, role, "ACME", "test")
        grant(s, "globex_approver", "ar_approver", "GLOBEX", "test")
        grant(s, "erp", "erp_integration", "GLOBEX", "test")
        own_case_numbers(s)
        ids = {}
        for key, entity, name, cur, terms, mail in [
            ("initech", "ACME", "Initech GmbH", "EUR", 30, "ap@initech.example"),
            ("umbrella", "ACME", "Umbrella Plc", "GBP", 45, "invoices@umbrella.example"),
            ("hooli", "GLOBEX", "Hooli Inc", "USD", 60, "ap@hooli.example"),
        ]:
            c: Customer = create_customer(
                s,
                entity,
                CustomerBase(
                    name=name,
                    currency=cur,
                    payment_terms_days=terms,
                    email=mail,
                    contact_name="Accounts Payable",
                ),
                "test",
                external_ref=key,
            )
            ids[key] = c.id
    return ids


@dataclass
class Stack:
    """A running Cashcycle: API over HTTP, a worker, a store, an SMTP capture."""

    base_url: str
    store: Store
    settings: Settings
    temporal: Client
    outbox: Path
    customers: dict[str, str]
    tokens: dict[str, str] = field(default_factory=dict)
    opened: list[httpx.AsyncClient] = field(default_factory=list)

    async def token(self, username: str) -> str:
        if username not in self.tokens:
            async with httpx.AsyncClient(base_url=self.base_url) as c:
                r = await c.post("/api/v1/auth/token", data={"username": username, "password": PASSWORD})
                r.raise_for_status()
                self.tokens[username] = r.json()["access_token"]
        return self.tokens[username]

    async def client(self, username: str) -> httpx.AsyncClient:
        token = await self.token(username)
        client = httpx.AsyncClient(
            base_url=self.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        self.opened.append(client)
        return client

    async def clients(self, *usernames: str) -> list[httpx.AsyncClient]:
        return [await self.client(u) for u in usernames]

    async def wait_status(self, invoice_id: str, status: str, within: float = 20) -> dict[str, Any]:
        """Poll the API until the invoice reaches `status` (for transitions the workflow makes alone)."""
        client = await self.client("supervisor")
        deadline = asyncio.get_running_loop().time() + within
        while True:
            body: dict[str, Any] = (await client.get(f"/api/v1/invoices/{invoice_id}")).json()
            if body.get("status") == status or asyncio.get_running_loop().time() > deadline:
                return body
            await asyncio.sleep(0.05)

    def mails(self) -> list[EmailMessage]:
        return [
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
            for p in sorted(self.outbox.glob("*.eml"))
        ]

    async def assert_replays(self, workflow_id: str) -> None:
        """The production worker runs workflow code unsandboxed (worker.workflow_runner): replay the
        history it wrote through Temporal's sandbox, with the default restrictions and nothing passed
        through, and through the production runner. A non-deterministic change, or workflow code that
        reads the clock, randomness or I/O where the sandbox catches it, fails here."""
        history = await self.temporal.get_workflow_handle(workflow_id).fetch_history()
        for runner in (SandboxedWorkflowRunner(), workflow_runner(sandboxed=False)):
            replayer = Replayer(
                workflows=[InvoiceWorkflow], workflow_runner=runner, namespace=self.temporal.namespace
            )
            result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
            assert result.replay_failure is None, f"{workflow_id} does not replay: {result.replay_failure!r}"


@pytest.fixture
async def stack(db_url: str, temporal_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    """A whole Cashcycle on a fresh database (SQLite and PostgreSQL), with a worker running."""
    async with running_stack(db_url, temporal_env, tmp_path) as s:
        yield s


class running_stack:
    def __init__(
        self, db_url: str, env: WorkflowEnvironment, tmp_path: Path, with_worker: bool = True
    ) -> None:
        self.db_url, self.env, self.tmp, self.with_worker = db_url, env, tmp_path, with_worker

    async def __aenter__(self) -> Stack:
        smtp_port = free_port()
        self.outbox = self.tmp / "outbox"
        self.mail = start_mail_capture(smtp_port, self.outbox)
        # Each stack reads its own copy of the approval matrix, so a test can change it.
        matrix = self.tmp / "approval_matrix.toml"
        matrix.write_text((ROOT / "policies" / "approval_matrix.toml").read_text())
        settings = Settings(
            environment="test",
            data_dir=self.tmp,
            database_url=self.db_url,
            task_queue=f"tq-{uuid.uuid4().hex[:8]}",
            smtp_host="127.0.0.1",
            smtp_port=smtp_port,
            update_timeout_seconds=20,
            delivery_retry_max_interval_seconds=2,
            approval_matrix_file=str(matrix),
        )
        self.store = open_store(settings.sqlalchemy_url)
        customers = seed_cast(self.store)
        self.executor = ThreadPoolExecutor(max_workers=16)
        port = free_port()
        app = create_app(settings, temporal=self.env.client)
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        self.server_task = asyncio.create_task(self.server.serve())
        while not self.server.started:  # noqa: ASYNC110 (uvicorn exposes a flag, not an event)
            await asyncio.sleep(0.02)
        self.stack = Stack(
            f"http://127.0.0.1:{port}", self.store, settings, self.env.client, self.outbox, customers
        )
        self.worker: Worker | None = None
        self.worker_task: asyncio.Task[None] | None = None
        if self.with_worker:
            await self.start_worker()
        return self.stack

    async def start_worker(self) -> None:
        self.worker = build_worker(
            self.env.client,
            self.store,
            smtp_config(self.stack.settings),
            self.stack.settings.task_queue,
            self.executor,
            matrix_file(self.stack.settings),
            self.stack.settings,
        )
        self.worker_task = asyncio.create_task(self.worker.run())

    async def stop_worker(self) -> None:
        if self.worker is not None:
            await self.worker.shutdown()
            assert self.worker_task is not None
            await self.worker_task
            self.worker, self.worker_task = None, None

    async def __aexit__(self, *exc: Any) -> None:
        for client in self.stack.opened:
            await client.aclose()
        await self.stop_worker()
        self.server.should_exit = True
        await self.server_task
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.mail.stop()
        self.store.dispose()


@contextmanager
def portal_simulator(tmp_path: Path, scenario: Any = None) -> Iterator[str]:
    """The portal simulator as its own process (`python -m portal_sim`, what `cashcycle portal-sim` runs;
    by default the demo scenario on a manual clock that the caller moves); yields its base URL, stops it
    on the way out."""
    from api.cli import wait_for_port
    from portal_sim import default_scenario

    scenario = scenario or default_scenario().model_copy(update={"clock": "manual", "name": "tests"})
    path = tmp_path / "scenario.json"
    path.write_text(scenario.model_dump_json())
    port = free_port()
    log_path = tmp_path / "portal-sim.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "portal_sim", "--port", str(port), "--scenario", str(path)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            try:
                wait_for_port(port, 15, proc)
            except SystemExit as exc:
                raise RuntimeError(
                    f"the portal simulator did not start: {exc}\n{log_path.read_text()}"
                ) from None
            assert httpx.get(f"{base}/_sim/health", timeout=5).status_code == 200
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def invoice_body(customer_id: str, external_id: str | None = None, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "external_id": external_id or f"ERP-{uuid.uuid4().hex[:10]}",
        "customer_id": customer_id,
        "currency": "EUR",
        "issue_date": "2026-11-02",
        "po_number": "PO-4711",
        "lines": [
            {
                "description": "Consulting, October",
                "quantity": "10",
                "unit_price": "125.00",
                "tax_rate": "20",
            },
            {"description": "Travel expenses", "quantity": "1", "unit_price": "310.55", "tax_rate": "20"},
        ],
    }
    body.update(over)
    return body
