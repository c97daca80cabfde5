"""Invoice lifecycle throughput, against a bare Temporal baseline on the same server in the same run.

    .venv/bin/python bench/lifecycle.py [--n 200] [--concurrency 16] [--database-url URL] [--json FILE]
    make bench ARGS="--n 100"

The bench starts what `cashcycle up` starts, in a temporary directory: the Temporal dev server (SQLite
file, WAL pragmas, search attributes), an SQLite store (or --database-url), a local SMTP capture, and
the worker and the API as separate processes. Then:

- lifecycle: N invoices go from the ERP's creation to paid through the HTTP API (create as erp, submit
  as preparer, approve as approver, wait until the workflow has mailed it, pay the full amount as erp),
  at most --concurrency in flight. Figure: invoices/s from the first request to the last payment.
- baseline: a bare workflow defined here, with the same Temporal work per item as one invoice (4 updates:
  update-with-start, submit, approve, payment; 6 activities), run by one bare worker process on its own
  task queue and driven through the Temporal client directly, at the same concurrency; N workflows
  before the lifecycle and N after it. Figure: workflows/s over both.
- ratio = invoices/s / baseline workflows/s: the share of the Temporal floor that the application keeps;
  CPU ratio = baseline CPU per workflow / lifecycle CPU per invoice, what the ratio tends to when CPU bound.
- correctness: every invoice paid, 5 ledger entries each in order, the ledger chain intact, one mail each.

Every process and the temporary directory are removed at the end, on failure and on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx
import uvloop
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from bench.bare import BareWorkflow, bare_deliver, bare_record
from worker import workflow_runner

ENTITY = "BENCH"
PASSWORD = "bench-password-123"
USERS = {"erp": "erp_integration", "preparer": "ar_preparer", "approver": "ar_approver"}
# What one invoice's lifecycle costs in Temporal terms (see workflows/invoice.py): updates from the
# client, and 5 activity calls: record_invoice_transition for the creation (local), submit_invoice
# (reads the approval tiers and records the submission), the records of the approval and the payment,
# and deliver_invoice (mails the invoice and records its delivery); the last four are regular activities,
# as they follow updates or do I/O that must not block a workflow task. The baseline spends one empty
# regular activity per business step instead: 5 transitions and the delivery (--baseline-activities).
UPDATES_PER_ITEM = 4  # update-with-start (await_created), submit, approve, apply_payment
TRANSITIONS = ("create", "submit", "approve", "deliver", "record_final_payment")  # the ledger entries
ACTIVITIES_PER_ITEM = 6
# Child process entry points.
BARE_WORKER = "import sys; from bench.lifecycle import bare_worker_main as m; sys.exit(m(sys.argv[1:]))"
PROFILED = "import sys; from bench.lifecycle import profiled; sys.exit(profiled(sys.argv[1], sys.argv[2:]))"
TARGET_RATIO = 0.5
# Waiting for the delivery as an ERP integration would: GET the invoice 250 ms after the approval, then
# doubling the wait up to once a second. (It used to start at 50 ms and back off by 1.5x: some 5-8 GETs per
# invoice, each costing the API and this client about as much CPU as a command, for a delivery that takes
# a second or so under load.)
POLL_FIRST, POLL_FACTOR, POLL_MAX = 0.25, 2.0, 1.0


# -- the baseline: a bare workflow with the same shape as an invoice's lifecycle -----------------------


async def _run_bare_worker(address: str, namespace: str, task_queue: str, tuned: bool) -> None:
    client = await Client.connect(address, namespace=namespace)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # The same executor and limits as worker.build_worker; with --baseline tuned, its workflow runner too.
    with ThreadPoolExecutor(max_workers=16) as executor:
        worker = Worker(
            client,
            task_queue=task_queue,
            workflows=[BareWorkflow],
            activities=[bare_record, bare_deliver],
            activity_executor=executor,
            max_concurrent_activities=16,
            max_concurrent_local_activities=16,
            workflow_runner=workflow_runner(sandboxed=False) if tuned else SandboxedWorkflowRunner(),
        )
        async with worker:
            await stop.wait()


def bare_worker_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the bare worker process (started by the bench)."""
    p = argparse.ArgumentParser(prog="bench-bare-worker")
    p.add_argument("--address", required=True)
    p.add_argument("--namespace", default="default")
    p.add_argument("--task-queue", required=True)
    p.add_argument("--tuned", action="store_true", help="Cashcycle's worker runtime: no sandbox, uvloop")
    args = p.parse_args(argv)
    run = _run_bare_worker(args.address, args.namespace, args.task_queue, args.tuned)
    if args.tuned:
        uvloop.run(run)
    else:
        asyncio.run(run)
    return 0


def profiled(out: str, argv: Sequence[str]) -> int:
    """Run `cashcycle ARGV` under cProfile in every thread (activities and sync FastAPI dependencies run
    in thread pools, which a plain `python -m cProfile` does not see); write the merged stats to OUT.

    The clock is each thread's CPU time, not the wall clock: with a dozen threads on two cores, wall
    time charges every function with the time its thread waited for the GIL or for the other processes,
    which made C calls that release the GIL (sqlite3 execute, socket send, file seek) look like the
    hot spots."""
    import cProfile
    import pstats
    import threading

    from api.cli import main as cli_main

    profiles: list[cProfile.Profile] = []

    def start_in_thread(*_: object) -> None:
        prof = cProfile.Profile(time.thread_time)
        profiles.append(prof)
        prof.enable()  # replaces this hook for the rest of the thread's life

    threading.setprofile(start_in_thread)
    # The worker ends with os._exit (see worker.main): under the profiler, end with SystemExit instead,
    # so that the stats below are written.
    os._exit = sys.exit  # type: ignore[assignment]
    main_prof = cProfile.Profile(time.thread_time)
    main_prof.enable()
    try:
        return cli_main(list(argv))
    finally:
        main_prof.disable()
        stats = pstats.Stats(main_prof)
        for prof in profiles:
            with_stats = pstats.Stats(prof)
            stats.add(with_stats)
        stats.dump_stats(out)


# -- processes ------------------------------------------------------------------------------------------


class BenchFailure(Exception):
    """The bench could not run, or the run was not correct."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc); 0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    out: IO[bytes]


@dataclass
class Processes:
    logs: Path
    env: dict[str, str]
    children: list[Child] = field(default_factory=list)

    def spawn(self, name: str, command: list[str]) -> Child:
        log = self.logs / f"{name}.log"
        out = log.open("ab")
        # Own session: a Ctrl-C reaches the bench only, and the bench stops the children in order.
        proc = subprocess.Popen(
            command,
            env=self.env,
            cwd=Path(__file__).resolve().parent.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        child = Child(name, proc, log, out)
        self.children.append(child)
        return child

    def check_alive(self) -> None:
        for c in self.children:
            if c.proc.poll() is not None:
                raise BenchFailure(f"{c.name} exited with {c.proc.returncode}:\n{tail(c.log)}")

    def cpu(self) -> dict[str, float]:
        return {c.name: cpu_seconds(c.proc.pid) for c in self.children}

    def stop_all(self) -> None:
        # Reverse order of start: API and workers first, the Temporal server last.
        for c in reversed(self.children):
            if c.proc.poll() is None:
                c.proc.send_signal(signal.SIGTERM if c.name == "temporal" else signal.SIGINT)
        for c in reversed(self.children):
            try:
                c.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                c.proc.kill()
                c.proc.wait()
            c.out.close()


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_for_port(port: int, timeout: float, procs: Processes) -> None:
    from api.cli import wait_for_port as _wait

    deadline = time.monotonic() + timeout
    while True:
        procs.check_alive()
        try:
            _wait(port, 1)
            return
        except SystemExit:
            if time.monotonic() > deadline:
                raise BenchFailure(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f}s") from None


# -- the store --------------------------------------------------------------------------------------------


def seed(url: str) -> str:
    """Legal entity, the three users with their roles, one customer; returns the customer id."""
    from activities.db import migrate, open_store, writing
    from activities.directory import add_user, create_customer, ensure_legal_entity, grant
    from activities.models import CustomerBase, LegalEntity

    migrate(url)
    store = open_store(url)
    try:
        with writing(store) as s:
            ensure_legal_entity(
                s,
                LegalEntity(
                    code=ENTITY,
                    name="Bench Industries SAS",
                    currency="EUR",
                    timezone="Europe/Paris",
                    country="FR",
                    vat_id="FR00000000000",
                    address="1 rue du Banc, 75001 Paris",
                ),
            )
            for username, role in USERS.items():
                add_user(s, username, PASSWORD, "bench")
                grant(s, username, role, ENTITY, "bench")
            customer = create_customer(
                s,
                ENTITY,
                CustomerBase(
                    name="Initech GmbH",
                    currency="EUR",
                    payment_terms_days=30,
                    email="ap@initech.example",
                    contact_name="Accounts Payable",
                ),
                "bench",
                external_ref=f"bench-{uuid.uuid4().hex[:8]}",
            )
            return customer.id
    finally:
        store.dispose()


@dataclass
class Verdict:
    ok: bool
    line: str
    problems: list[str]


def verify(url: str, expected_ids: list[str], outbox: Path) -> Verdict:
    """Every invoice paid, its ledger entries exactly the five transitions in order, the chain intact,
    one mail each."""
    from sqlmodel import col, select

    from activities.db import open_store, reading
    from activities.ledger import verify_chain
    from activities.models import Invoice, LedgerEntry

    store = open_store(url)
    problems: list[str] = []
    try:
        with reading(store) as s:
            invoices = {inv.id: inv for inv in s.exec(select(Invoice).where(Invoice.legal_entity == ENTITY))}
            entries: dict[str, list[str]] = {}
            for e in s.exec(
                select(LedgerEntry)
                .where(LedgerEntry.legal_entity == ENTITY, LedgerEntry.object_type == "invoice")
                .order_by(col(LedgerEntry.seq))
            ):
                entries.setdefault(e.object_id, []).append(e.event)
            chain = verify_chain(s, ENTITY)
    finally:
        store.dispose()
    if len(invoices) != len(expected_ids):
        problems.append(f"{len(invoices)} invoices in the store, expected {len(expected_ids)}")
    unpaid = [
        i
        for i in expected_ids
        if i not in invoices or invoices[i].status != "paid" or invoices[i].amount_due_minor != 0
    ]
    if unpaid:
        problems.append(f"{len(unpaid)} invoices not paid, e.g. {unpaid[0]}")
    wrong = [i for i in expected_ids if tuple(entries.get(i, [])) != TRANSITIONS]
    if wrong:
        problems.append(
            f"{len(wrong)} invoices without exactly {len(TRANSITIONS)} ledger entries "
            f"{'/'.join(TRANSITIONS)}, e.g. {wrong[0]}: {entries.get(wrong[0])}"
        )
    if len(entries) != len(expected_ids):
        problems.append(f"ledger entries for {len(entries)} invoices, expected {len(expected_ids)}")
    if not chain.intact:
        problems.append(f"ledger chain broken at {chain.broken_at}: {chain.problem}")
    mails = len(list(outbox.glob("*.eml")))
    if mails != len(expected_ids):
        problems.append(f"{mails} mails captured, expected {len(expected_ids)}")
    total_entries = sum(len(v) for v in entries.values())
    line = (
        f"correctness: {len(expected_ids) - len(unpaid)}/{len(expected_ids)} invoices paid; "
        f"{total_entries} ledger entries = {len(TRANSITIONS)} per invoice ({', '.join(TRANSITIONS)}); "
        f"chain of {chain.entries} entries {'intact' if chain.intact else 'BROKEN'}; {mails} mails"
    )
    return Verdict(not problems, line, problems)


# -- measurement ----------------------------------------------------------------------------------------


@dataclass
class Run:
    """One timed part: items/s over the wall time, per-item latencies and per-step durations."""

    items: int
    wall: float
    latencies: list[float]
    steps: dict[str, list[float]]
    cpu: dict[str, float] = field(default_factory=dict)
    polls: int = 0  # GET requests while waiting for delivery

    @property
    def rate(self) -> float:
        return self.items / self.wall if self.wall > 0 else 0.0

    @property
    def cpu_per_item(self) -> float:
        """CPU seconds per item, all measured processes together."""
        return sum(self.cpu.values()) / self.items if self.items else 0.0

    @staticmethod
    def merged(runs: Sequence[Run]) -> Run:
        """Several timed runs of the same part as one: items, wall time and CPU added up."""
        steps: dict[str, list[float]] = {}
        cpu: dict[str, float] = {}
        for run in runs:
            for name, values in run.steps.items():
                steps.setdefault(name, []).extend(values)
            for name, seconds in run.cpu.items():
                cpu[name] = cpu.get(name, 0.0) + seconds
        return Run(
            sum(r.items for r in runs),
            sum(r.wall for r in runs),
            [x for r in runs for x in r.latencies],
            steps,
            cpu,
            sum(r.polls for r in runs),
        )


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(pct) - 1]


async def run_all(
    n: int, concurrency: int, one: Callable[[int, dict[str, list[float]]], Awaitable[None]], first: int = 0
) -> Run:
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    steps: dict[str, list[float]] = {}

    async def item(i: int) -> None:
        async with sem:
            t0 = time.perf_counter()
            await one(i, steps)
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    try:
        async with asyncio.TaskGroup() as tg:
            for i in range(first, first + n):
                tg.create_task(item(i))
    except ExceptionGroup as group:
        raise first_error(group) from None
    return Run(n, time.perf_counter() - t0, latencies, steps)


def first_error(group: ExceptionGroup[Exception]) -> Exception:
    exc: Exception = group
    while isinstance(exc, ExceptionGroup):
        exc = exc.exceptions[0]
    return exc


class Timer:
    def __init__(self, steps: dict[str, list[float]]) -> None:
        self.steps = steps
        self.t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.steps.setdefault(name, []).append(now - self.t)
        self.t = now


def expect(r: httpx.Response, status: int) -> dict[str, Any]:
    if r.status_code != status:
        raise BenchFailure(
            f"{r.request.method} {r.request.url.path}: {r.status_code}, expected {status}: {r.text[:500]}"
        )
    body: dict[str, Any] = r.json()
    return body


@dataclass
class Lifecycle:
    base_url: str
    customer_id: str
    tag: str
    concurrency: int
    issue_date: date
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)
    invoice_ids: list[str] = field(default_factory=list)
    polls: int = 0

    async def login(self) -> None:
        # One token per user: argon2 runs once per user, not per request.
        pool = self.concurrency * 2
        limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
        async with httpx.AsyncClient(base_url=self.base_url, timeout=60) as anon:
            for username in USERS:
                r = await anon.post("/api/v1/auth/token", data={"username": username, "password": PASSWORD})
                token = expect(r, 200)["access_token"]
                self.clients[username] = httpx.AsyncClient(
                    base_url=self.base_url,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=120,
                    limits=limits,
                )

    async def close(self) -> None:
        for c in self.clients.values():
            await c.aclose()

    async def one(self, i: int, steps: dict[str, list[float]]) -> None:
        erp, preparer, approver = self.clients["erp"], self.clients["preparer"], self.clients["approver"]
        t = Timer(steps)
        inv = expect(
            await erp.post(
                "/api/v1/invoices",
                json={
                    "external_id": f"BENCH-{self.tag}-{i:06d}",
                    "customer_id": self.customer_id,
                    "currency": "EUR",
                    "issue_date": self.issue_date.isoformat(),
                    "po_number": f"PO-{i}",
                    "lines": [
                        {
                            "description": "Consulting",
                            "quantity": "10",
                            "unit_price": "125.00",
                            "tax_rate": "20",
                        },
                        {
                            "description": "Travel expenses",
                            "quantity": "1",
                            "unit_price": "310.55",
                            "tax_rate": "20",
                        },
                    ],
                },
            ),
            201,
        )
        self.invoice_ids.append(inv["id"])
        path = f"/api/v1/invoices/{inv['id']}"
        t.lap("create")
        expect(await preparer.post(f"{path}/submit"), 200)
        t.lap("submit")
        status = expect(await approver.post(f"{path}/approve", json={"comment": "bench"}), 200)["status"]
        t.lap("approve")
        delay = POLL_FIRST
        while status != "submitted":
            await asyncio.sleep(delay)
            delay = min(delay * POLL_FACTOR, POLL_MAX)
            self.polls += 1
            status = expect(await erp.get(path), 200)["status"]
            if status not in ("approved", "submitted"):
                raise BenchFailure(f"invoice {inv['id']} went to {status} while waiting for delivery")
        t.lap("delivered (polled)")
        paid = expect(
            await erp.post(
                "/api/v1/payments",
                json={
                    "customer_id": self.customer_id,
                    "amount": inv["total"],
                    "currency": "EUR",
                    "received_on": date.today().isoformat(),
                    "reference": f"BANK-{self.tag}-{i}",
                    "allocations": [{"invoice_id": inv["id"], "amount": inv["total"]}],
                },
            ),
            201,
        )
        after = paid["allocations"][0]["invoice_status"]
        if after != "paid":
            raise BenchFailure(f"invoice {inv['id']} is {after} after paying")
        t.lap("payment")


@dataclass
class Baseline:
    client: Client
    task_queue: str
    tag: str
    activities: int = ACTIVITIES_PER_ITEM

    async def one(self, i: int, steps: dict[str, list[float]]) -> None:
        t = Timer(steps)
        key = f"bench-bare/{self.tag}/{i:06d}"
        start = WithStartWorkflowOperation(
            BareWorkflow.run,
            args=[key, self.activities],
            id=key,
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        await self.client.execute_update_with_start_workflow(
            BareWorkflow.await_created, start_workflow_operation=start
        )
        t.lap("create")
        handle = self.client.get_workflow_handle_for(BareWorkflow.run, key)
        await handle.execute_update(BareWorkflow.submit)
        t.lap("submit")
        await handle.execute_update(BareWorkflow.approve)
        t.lap("approve")
        recorded = await handle.execute_update(BareWorkflow.pay)
        t.lap("delivered + payment")
        if recorded != len(TRANSITIONS):
            raise BenchFailure(f"bare workflow {key} recorded {recorded} steps, expected {len(TRANSITIONS)}")


async def wait_healthy(base_url: str, procs: Processes, within: float) -> None:
    deadline = time.monotonic() + within
    last = ""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as c:
        while time.monotonic() < deadline:
            procs.check_alive()
            try:
                r = await c.get("/healthz")
                if r.status_code == 200:
                    return
                last = r.text
            except httpx.HTTPError as exc:
                last = repr(exc)
            await asyncio.sleep(0.3)
    raise BenchFailure(f"the API did not become healthy in {within:.0f}s: {last}")


def timed_cpu(procs: Processes, names: Sequence[str]) -> Callable[[], dict[str, float]]:
    """CPU seconds used by the named processes (and this one) from now until the returned call."""
    before = procs.cpu()
    self_before = time.process_time()

    def done() -> dict[str, float]:
        after = procs.cpu()
        used = {n: after.get(n, 0.0) - before.get(n, 0.0) for n in names}
        used["bench client"] = time.process_time() - self_before
        return used

    return done


async def measure(args: argparse.Namespace, tmp: Path, procs: Processes) -> dict[str, Any]:
    from api.cli import free_port, temporal_dev_server_command
    from api.mail_capture import start as start_mail_capture

    tag = uuid.uuid4().hex[:8]
    # Temporal dev server, exactly as `cashcycle up` starts it.
    tport, uport = free_port(), free_port()
    procs.spawn("temporal", temporal_dev_server_command(tmp, tport, uport, "default"))
    wait_for_port(tport, 60, procs)
    address = f"127.0.0.1:{tport}"

    outbox = tmp / "outbox"
    mport = free_port()
    mail = start_mail_capture(mport, outbox)
    try:
        url = args.database_url or f"sqlite:///{tmp / 'cashcycle.db'}"
        customer_id = seed(url)
        task_queue = f"bench-{tag}"
        procs.env.update(
            {
                "CASHCYCLE_DATA_DIR": str(tmp),
                "CASHCYCLE_DATABASE_URL": url,
                "TEMPORAL_ADDRESS": address,
                "CASHCYCLE_SMTP_HOST": "127.0.0.1",
                "CASHCYCLE_SMTP_PORT": str(mport),
                "CASHCYCLE_TASK_QUEUE": task_queue,
                "CASHCYCLE_ENVIRONMENT": "development",
                "CASHCYCLE_SECRET_KEY": secrets.token_urlsafe(48),
            }
        )
        api_port = free_port()
        if args.profile:
            prof = tmp / "profiles"
            prof.mkdir()
            run = [sys.executable, "-c", PROFILED]
            procs.spawn("worker", [*run, str(prof / "worker.prof"), "worker"])
            procs.spawn("api", [*run, str(prof / "api.prof"), "api", "--port", str(api_port)])
        else:
            procs.spawn("worker", [sys.executable, "-m", "api.cli", "worker"])
            procs.spawn("api", [sys.executable, "-m", "api.cli", "api", "--port", str(api_port)])
        bare_queue = f"bench-bare-{tag}"
        procs.spawn(
            "bare worker",
            [
                sys.executable,
                "-c",
                BARE_WORKER,
                "--address",
                address,
                "--task-queue",
                bare_queue,
                *(["--tuned"] if args.baseline == "tuned" else []),
            ],
        )
        wait_for_port(api_port, 60, procs)
        base_url = f"http://127.0.0.1:{api_port}"
        await wait_healthy(base_url, procs, 120)

        load_start = load_average()
        # -- baseline through the Temporal client, once before the lifecycle and once after: the machine
        # is shared, and a load that comes or goes during the run then weighs on both parts alike instead
        # of on one of them (the baseline alone used to range from 4 to 15 workflows/s between runs).
        client = await Client.connect(address)
        bare = Baseline(client, bare_queue, tag, args.baseline_activities)
        if args.warmup:
            await run_all(args.warmup, args.concurrency, bare.one, first=0)
        cpu = timed_cpu(procs, ["bare worker", "temporal"])
        baseline_before = await run_all(args.n, args.concurrency, bare.one, first=args.warmup)
        baseline_before.cpu = cpu()
        procs.check_alive()

        # -- lifecycle through the API
        life = Lifecycle(base_url, customer_id, tag, args.concurrency, date.today() - timedelta(days=10))
        await life.login()
        try:
            if args.warmup:
                await run_all(args.warmup, args.concurrency, life.one, first=0)
            cpu = timed_cpu(procs, ["api", "worker", "temporal"])
            life.polls = 0
            lifecycle = await run_all(args.n, args.concurrency, life.one, first=args.warmup)
            lifecycle.cpu = cpu()
            lifecycle.polls = life.polls
        finally:
            await life.close()
        procs.check_alive()
        verdict = verify(url, life.invoice_ids, outbox)

        # -- the baseline again
        cpu = timed_cpu(procs, ["bare worker", "temporal"])
        baseline_after = await run_all(args.n, args.concurrency, bare.one, first=args.warmup + args.n)
        baseline_after.cpu = cpu()
        procs.check_alive()
        load_end = load_average()
    finally:
        mail.stop()

    return report(args, url, lifecycle, [baseline_before, baseline_after], verdict, load_start, load_end)


# -- report ------------------------------------------------------------------------------------------------


def report(
    args: argparse.Namespace,
    url: str,
    lifecycle: Run,
    baselines: Sequence[Run],
    verdict: Verdict,
    load_start: str,
    load_end: str,
) -> dict[str, Any]:
    baseline = Run.merged(baselines)
    ratio = lifecycle.rate / baseline.rate if baseline.rate else 0.0
    # What the ratio tends to on a machine that the parts saturate, whatever else runs on it.
    cpu_ratio = baseline.cpu_per_item / lifecycle.cpu_per_item if lifecycle.cpu_per_item else 0.0
    store = "postgresql" if url.startswith("postgresql") else "sqlite"

    def steps(run: Run) -> str:
        return ", ".join(
            f"{name} {percentile(v, 50) * 1000:.0f}/{percentile(v, 95) * 1000:.0f}"
            for name, v in run.steps.items()
        )

    def cpu(run: Run) -> str:
        return ", ".join(f"{name} {seconds / run.items * 1000:.1f}" for name, seconds in run.cpu.items())

    lines = [
        f"machine: {os.cpu_count()} CPUs, load average {load_start} at start, {load_end} at end "
        "(other processes share the machine)",
        f"lifecycle: {args.n} invoices ERP create -> submit -> approve -> delivered by mail -> paid, "
        f"over HTTP (worker and API processes), concurrency {args.concurrency}, store {store}, "
        f"{args.warmup} untimed warm-up",
        f"lifecycle: {lifecycle.rate:.2f} invoices/s ({lifecycle.wall:.2f} s wall)",
        f"lifecycle: latency per invoice p50 {percentile(lifecycle.latencies, 50):.3f} s, "
        f"p95 {percentile(lifecycle.latencies, 95):.3f} s",
        f"lifecycle: steps p50/p95 ms: {steps(lifecycle)}; "
        f"{lifecycle.polls / lifecycle.items:.1f} GET polls per invoice while waiting for delivery",
        f"lifecycle: CPU ms per invoice: {cpu(lifecycle)}",
        f"baseline: bare workflow, {UPDATES_PER_ITEM} updates (update-with-start, submit, approve, "
        f"payment) and {args.baseline_activities} regular activities with no work (no local activities, no "
        f"search attributes), 1 worker process ("
        + (
            "tuned as Cashcycle's: no workflow sandbox, uvloop"
            if args.baseline == "tuned"
            else "Temporal's defaults: workflow sandbox, asyncio loop"
        )
        + f"), Temporal client directly, concurrency {args.concurrency}",
        f"baseline: {baseline.rate:.2f} workflows/s ({baseline.wall:.2f} s wall; "
        + ", ".join(f"{run.rate:.2f}" for run in baselines)
        + " workflows/s before and after the lifecycle)",
        f"baseline: latency per workflow p50 {percentile(baseline.latencies, 50):.3f} s, "
        f"p95 {percentile(baseline.latencies, 95):.3f} s",
        f"baseline: steps p50/p95 ms: {steps(baseline)}",
        f"baseline: CPU ms per workflow: {cpu(baseline)}",
        f"CPU ratio: {cpu_ratio:.2f} (baseline CPU ms per workflow {baseline.cpu_per_item * 1000:.1f} / "
        f"lifecycle CPU ms per invoice {lifecycle.cpu_per_item * 1000:.1f}, all processes): what the ratio "
        "tends to when the parts saturate the machine",
        f"ratio: {ratio:.2f} (invoices/s / baseline workflows/s; target >= {TARGET_RATIO}) "
        + ("met" if ratio >= TARGET_RATIO else "BELOW TARGET"),
        verdict.line + (" -- OK" if verdict.ok else " -- FAILED"),
    ]
    for line in lines:
        print(line, flush=True)
    for problem in verdict.problems:
        print(f"correctness FAILED: {problem}", flush=True)

    def part(run: Run) -> dict[str, Any]:
        return {
            "items": run.items,
            "wall_seconds": round(run.wall, 3),
            "per_second": round(run.rate, 3),
            "latency_p50_seconds": round(percentile(run.latencies, 50), 4),
            "latency_p95_seconds": round(percentile(run.latencies, 95), 4),
            "steps_p50_ms": {k: round(percentile(v, 50) * 1000, 1) for k, v in run.steps.items()},
            "steps_p95_ms": {k: round(percentile(v, 95) * 1000, 1) for k, v in run.steps.items()},
            "cpu_ms_per_item": {k: round(v / run.items * 1000, 2) for k, v in run.cpu.items()},
        }

    return {
        "bench": "lifecycle",
        "at": datetime.now(UTC).isoformat(),
        "n": args.n,
        "concurrency": args.concurrency,
        "warmup": args.warmup,
        "store": store,
        "cpus": os.cpu_count(),
        "load_average_start": load_start,
        "load_average_end": load_end,
        "lifecycle": part(lifecycle),
        "baseline": part(baseline),
        "baseline_shape": {
            "updates": UPDATES_PER_ITEM,
            "activities": args.baseline_activities,
            "activity_kind": "regular, no work",
            "worker": args.baseline,
        },
        "baseline_runs_per_second": [round(run.rate, 3) for run in baselines],
        "ratio": round(ratio, 3),
        "cpu_ratio": round(cpu_ratio, 3),
        "target_ratio": TARGET_RATIO,
        "ratio_met": ratio >= TARGET_RATIO,
        "correct": verdict.ok,
        "correctness": verdict.line,
        "problems": verdict.problems,
    }


# Calls that wait rather than work: left out of the "own time" listing (threads idle in them).
IDLE_CALLS = (
    "acquire' of '_thread.lock",
    "acquire' of '_thread.RLock",
    "get' of '_queue.SimpleQueue",
    "poll' of 'select.epoll",
    "select' of 'select",
    "time.sleep",
)


def print_profiles(prof_dir: Path, top: int) -> None:
    import io
    import pstats

    for name in ("api", "worker"):
        path = prof_dir / f"{name}.prof"
        if not path.exists():
            print(f"profile: no {path.name} (the process did not exit cleanly)")
            continue
        stats = pstats.Stats(str(path), stream=io.StringIO())
        raw: dict[tuple[str, int, str], Any] = stats.stats  # type: ignore[attr-defined]
        for key in [k for k in raw if any(idle in k[2] for idle in IDLE_CALLS)]:
            del raw[key]
        for order, restriction, title in (
            ("tottime", None, "own time, idle waits left out"),
            ("cumulative", r"/(activities|api|workflows)/|/worker\.py", "cumulative time, project code"),
        ):
            buf = io.StringIO()
            stats.stream = buf  # type: ignore[attr-defined]
            stats.sort_stats(order)
            stats.print_stats(*(x for x in (restriction, top) if x is not None))
            print(f"\n==== {name} process (all threads), by {title} ====")
            body = buf.getvalue()
            print(body[body.find("   ncalls") :].rstrip())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/lifecycle.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=200, help="invoices (and bare workflows) to time (default 200)")
    p.add_argument("--concurrency", type=int, default=16, help="items in flight at once (default 16)")
    p.add_argument("--warmup", type=int, default=4, help="untimed items before each part (default 4)")
    p.add_argument("--database-url", default="", help="PostgreSQL store instead of SQLite in the temp dir")
    p.add_argument("--json", type=Path, help="also write the result as JSON to this file")
    p.add_argument("--min-ratio", type=float, default=0.0, help="exit 3 when the ratio is below this")
    p.add_argument(
        "--profile",
        action="store_true",
        help="run the API and worker under cProfile (all threads) and print the top functions; "
        "slows them down, so the figures of a profiled run are not comparable",
    )
    p.add_argument(
        "--baseline-activities",
        type=int,
        choices=(5, 6),
        default=ACTIVITIES_PER_ITEM,
        help="the bare workflow's activities: 6, one per business step (5 transitions and the delivery; "
        "default), or 5, as many as the invoice workflow calls",
    )
    p.add_argument(
        "--baseline",
        choices=("default", "tuned"),
        default="default",
        help="the bare worker in Temporal's default configuration (the workflow sandbox on, asyncio's loop), "
        "or with the runtime choices of Cashcycle's worker (no sandbox, uvloop): what the application "
        "keeps of an equally tuned Temporal (default: default)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, databases)")
    return p


def run_in_processes(
    tmp: Path,
    measure: Callable[[Processes], Coroutine[Any, Any, dict[str, Any]]],
    keep: bool,
    after_stop: Callable[[dict[str, Any] | None], None] | None = None,
) -> tuple[int, dict[str, Any] | None]:
    """Run a benchmark whose processes (servers, workers) live in `tmp`: on a failure say what and show
    the end of each process's log; always stop them (Ctrl-C and SIGTERM included) and remove `tmp` unless
    kept. Returns the exit code (0, 1 on failure, 130 when interrupted) and the figures."""
    # Ctrl-C and SIGTERM unwind through the finally below (SIGINT too when started with it ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    logs = tmp / "logs"
    logs.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASHCYCLE_") and k != "TEMPORAL_ADDRESS"}
    procs = Processes(logs, env)
    code = 0
    result: dict[str, Any] | None = None
    try:
        result = asyncio.run(measure(procs))
    except Exception as exc:  # any failure: say what, show the logs, clean up
        print(
            f"bench FAILED: {exc if isinstance(exc, BenchFailure) else repr(exc)}",
            file=sys.stderr,
            flush=True,
        )
        for c in procs.children:
            print(f"---- last lines of {c.name} log ----\n{tail(c.log, 15)}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("interrupted; stopping", file=sys.stderr, flush=True)
        code = 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        procs.stop_all()
        if after_stop is not None:
            after_stop(result)
        if keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return code, result


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.n < 1 or args.concurrency < 1 or args.warmup < 0:
        raise SystemExit("--n and --concurrency must be positive, --warmup not negative")
    tmp = Path(tempfile.mkdtemp(prefix="cashcycle-bench-"))

    def profiles(result: dict[str, Any] | None) -> None:
        if args.profile and result is not None:
            print_profiles(tmp / "profiles", 30)

    code, result = run_in_processes(tmp, lambda procs: measure(args, tmp, procs), args.keep, profiles)
    if result is not None:
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        if not result["correct"]:
            code = 1
        elif result["ratio"] < args.min_ratio:
            code = 3
    return code


if __name__ == "__main__":
    sys.exit(main())
