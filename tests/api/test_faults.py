"""Faults, for real: a worker process killed with SIGKILL in the middle of the work, and the mail server
down at delivery time. On SQLite and PostgreSQL.

The worker runs as a separate OS process (`python -m api.cli worker`), as in production; the API and the
store are the test's own (running_stack without a worker). Whatever happens to the worker, every invoice
ends in the status its commands lead to, with exactly the transitions they make in the ledger: none lost,
none doubled.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import select
from temporalio.testing import WorkflowEnvironment

from activities.db import reading
from activities.ledger import verify_chain
from activities.models import Invoice, InvoiceDelivery, LedgerEntry, Payment, PaymentAllocation
from api.mail_capture import start as start_mail_capture
from tests.conftest import ROOT, Stack, invoice_body, running_stack

INVOICES, PAYMENTS = "/api/v1/invoices", "/api/v1/payments"
N_INVOICES = 20
# What each kind of invoice goes through, and the ledger events that leaves.
EXPECTED: dict[str, list[str]] = {
    "paid": ["create", "submit", "approve", "deliver", "record_final_payment"],
    "partially_paid": ["create", "submit", "approve", "deliver", "record_partial_payment"],
    "void": ["create", "submit", "void"],
}
KINDS = ["paid", "paid", "partially_paid", "void"]


class WorkerProcesses:
    """Cashcycle workers as OS processes, stopped (or killed) by their own pid only."""

    def __init__(self, stack: Stack, env: WorkflowEnvironment, logs: Path) -> None:
        self.stack, self.logs = stack, logs
        self.environ = {
            **os.environ,
            "CASHCYCLE_ENVIRONMENT": "test",
            "CASHCYCLE_DATA_DIR": str(logs),
            "CASHCYCLE_DATABASE_URL": stack.settings.database_url,
            "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
            "TEMPORAL_NAMESPACE": env.client.namespace,
            "CASHCYCLE_TASK_QUEUE": stack.settings.task_queue,
            "CASHCYCLE_SMTP_HOST": stack.settings.smtp_host,
            "CASHCYCLE_SMTP_PORT": str(stack.settings.smtp_port),
        }
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = (self.logs / f"worker-{len(self.started) + 1}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "worker"],
            cwd=ROOT,
            env=self.environ,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.started.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def log_tail(self) -> str:
        logs = sorted(self.logs.glob("worker-*.log"))
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs)


class Client:
    """Sends commands as a real client does: a 503 (the workflow did not answer in time) or a dropped
    connection is retried with the same Idempotency-Key until an answer comes."""

    def __init__(self, http: httpx.AsyncClient, retried: Counter[str]) -> None:
        self.http, self.retried = http, retried

    async def send(self, method: str, url: str, key: str, json: Any = None) -> httpx.Response:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 150
        last = ""
        while True:
            try:
                r = await self.http.request(method, url, json=json, headers={"Idempotency-Key": key})
                if r.status_code != 503:
                    return r
                self.retried["503"] += 1
                last = r.text
            except httpx.TransportError as exc:
                self.retried["transport"] += 1
                last = repr(exc)
            assert loop.time() < deadline, f"{method} {url} ({key}) never answered; last: {last}"
            await asyncio.sleep(0.5)


async def wait_for_status(http: httpx.AsyncClient, invoice_id: str, status: str, within: float) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        current: str = (await http.get(f"{INVOICES}/{invoice_id}")).json()["status"]
        if current == status or loop.time() > deadline:
            return current
        await asyncio.sleep(0.2)


async def lifecycle(stack: Stack, run: str, i: int, retried: Counter[str]) -> tuple[str, str]:
    """One invoice through the commands of its kind; returns (invoice id, kind)."""
    kind = KINDS[i % len(KINDS)]
    erp, preparer, approver, cashier = [
        Client(await stack.client(u), retried)
        for u in ("erp", "preparer", "approver" if i % 2 else "approver2", "cashier")
    ]
    body = invoice_body(stack.customers["initech"], f"ERP-FAULT-{run}-{i}")
    r = await erp.send("POST", INVOICES, f"create-{i}", body)
    assert r.status_code in (200, 201), r.text
    invoice_id: str = r.json()["id"]
    total: str = r.json()["total"]
    r = await preparer.send("POST", f"{INVOICES}/{invoice_id}/submit", f"submit-{i}")
    assert r.status_code == 200, r.text
    if kind == "void":
        r = await preparer.send(
            "POST", f"{INVOICES}/{invoice_id}/void", f"void-{i}", {"reason": "sent twice"}
        )
        assert r.status_code == 200, r.text
        return invoice_id, kind
    r = await approver.send("POST", f"{INVOICES}/{invoice_id}/approve", f"approve-{i}", {"comment": "ok"})
    assert r.status_code == 200, r.text
    assert await wait_for_status(cashier.http, invoice_id, "submitted", within=150) == "submitted"
    amount = total if kind == "paid" else "100.00"
    r = await cashier.send(
        "POST",
        PAYMENTS,
        f"pay-{i}",
        {
            "customer_id": stack.customers["initech"],
            "amount": amount,
            "currency": "EUR",
            "received_on": "2026-11-20",
            "reference": f"BANK-{i}",
            "allocations": [{"invoice_id": invoice_id, "amount": amount}],
        },
    )
    assert r.status_code in (200, 201), r.text
    return invoice_id, kind


async def diagnose(stack: Stack, run: str, workers: WorkerProcesses) -> str:
    """The workers' logs and where each invoice workflow stands, for a failure message."""
    lines = [workers.log_tail()]
    for i in range(N_INVOICES):
        handle = stack.temporal.get_workflow_handle(f"invoice/ACME/ERP-FAULT-{run}-{i}")
        try:
            desc = await handle.describe()
        except Exception as exc:  # a workflow never started: say so and go on
            lines.append(f"#{i}: {exc!r}")
            continue
        raw = desc.raw_description
        task = raw.pending_workflow_task
        activities = [
            (a.activity_type.name, a.attempt, a.last_failure.message) for a in raw.pending_activities
        ]
        lines.append(
            f"#{i}: {desc.status.name if desc.status else None} "
            f"history={desc.history_length} wft=({task.state}, attempt {task.attempt}) {activities}"
        )
        if desc.status and desc.status.name == "RUNNING":
            events = []
            async for event in handle.fetch_history_events():
                kind = event.WhichOneof("attributes") or ""
                update = ""
                if kind == "workflow_execution_update_accepted_event_attributes":
                    accepted = event.workflow_execution_update_accepted_event_attributes
                    update = accepted.accepted_request.meta.update_id
                elif kind == "workflow_execution_update_completed_event_attributes":
                    update = event.workflow_execution_update_completed_event_attributes.meta.update_id
                events.append(kind.removesuffix("_event_attributes") + (f"({update})" if update else ""))
            lines.append("    " + " ".join(events))
    return "\n".join(lines)


def ledger_of(stack: Stack) -> list[LedgerEntry]:
    with reading(stack.store) as s:
        return list(
            s.exec(select(LedgerEntry).where(LedgerEntry.legal_entity == "ACME").order_by(LedgerEntry.seq))
        )  # type: ignore[arg-type]


async def test_a_worker_killed_mid_flow_loses_and_doubles_no_transition(
    db_url: str,
    temporal_env: WorkflowEnvironment,
    tmp_path: Path,
) -> None:
    async with running_stack(db_url, temporal_env, tmp_path, with_worker=False) as stack:
        # An activity lost with the killed worker is retried after its start-to-close timeout: 5 s, not
        # the default minute. And clients give up waiting (503) and retry after 5 s.
        stack.settings.delivery_timeout_seconds = 5
        stack.settings.record_timeout_seconds = 5
        stack.settings.update_timeout_seconds = 5
        workers = WorkerProcesses(stack, temporal_env, tmp_path)
        retried: Counter[str] = Counter()
        run = uuid.uuid4().hex[:8]  # workflow ids are the ERP's ids: unique per run on the shared server
        flows: list[asyncio.Task[tuple[str, str]]] = []
        for username in ("erp", "preparer", "approver", "approver2", "cashier", "supervisor"):
            await stack.token(username)  # log in once, as a real client does
        try:
            first = workers.start()
            flows = [asyncio.create_task(lifecycle(stack, run, i, retried)) for i in range(N_INVOICES)]

            # Kill the worker once deliveries have begun: more are in flight, and updates and payments
            # are waiting behind them.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 120
            while sum(e.event == "deliver" for e in ledger_of(stack)) < 2:
                assert loop.time() < deadline, "no delivery before the kill:\n" + workers.log_tail()
                assert first.poll() is None, "the worker died by itself:\n" + workers.log_tail()
                for flow in flows:
                    if flow.done() and flow.exception() is not None:
                        raise AssertionError(await diagnose(stack, run, workers)) from flow.exception()
                await asyncio.sleep(0.05)
            workers.kill(first)
            at_kill = Counter(e.event for e in ledger_of(stack))
            unfinished = sum(not f.done() for f in flows)
            await asyncio.sleep(1)
            workers.start()

            try:
                results = await asyncio.wait_for(asyncio.gather(*flows), timeout=240)
            except Exception as exc:
                raise AssertionError(await diagnose(stack, run, workers)) from exc
        finally:
            for flow in flows:
                flow.cancel()
            workers.stop_all()
        expected_deliveries = sum(1 for i in range(N_INVOICES) if KINDS[i % len(KINDS)] != "void")
        assert unfinished > 0 and at_kill["deliver"] < expected_deliveries, f"killed too late: {at_kill}"

        entries = ledger_of(stack)
        # The chain of the legal entity: contiguous, intact, one entry per business key.
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
        assert len({e.business_key for e in entries}) == len(entries)
        with reading(stack.store) as s:
            assert verify_chain(s, "ACME").intact
            invoices = {inv.id: inv for inv in s.exec(select(Invoice))}
            deliveries = Counter(d.invoice_id for d in s.exec(select(InvoiceDelivery)))
            allocations = Counter(a.invoice_id for a in s.exec(select(PaymentAllocation)))
            payments = len(list(s.exec(select(Payment))))
        by_invoice: dict[str, list[LedgerEntry]] = {}
        for e in entries:
            if e.object_type == "invoice":
                by_invoice.setdefault(e.object_id, []).append(e)

        assert len(invoices) == N_INVOICES
        for invoice_id, kind in results:
            inv = invoices[invoice_id]
            history = by_invoice[invoice_id]
            assert inv.status == kind, (inv.external_id, inv.status, [e.event for e in history])
            assert [e.event for e in history] == EXPECTED[kind], inv.external_id
            keys = [f"{inv.workflow_id}#{n}" for n in range(1, len(history) + 1)]
            assert [e.business_key for e in history] == keys
            assert [e.to_status for e in history][-1] == kind
            assert [e.from_status for e in history[1:]] == [e.to_status for e in history[:-1]]
            assert inv.transition_seq == len(history)
            assert deliveries[invoice_id] == (0 if kind == "void" else 1), inv.external_id
            assert allocations[invoice_id] == (0 if kind == "void" else 1), inv.external_id
            due = 0 if kind == "paid" else inv.total_minor - (10000 if kind == "partially_paid" else 0)
            assert inv.amount_due_minor == due, inv.external_id
        assert payments == sum(allocations.values())
        # Numbers are allocated when issued, gapless: a delivery replayed after the kill takes no second one.
        numbers = sorted(inv.number for inv in invoices.values() if inv.number is not None)
        assert numbers == [f"INV-2026-{n:06d}" for n in range(1, expected_deliveries + 1)]
        assert all(inv.number is None for inv in invoices.values() if inv.status == "void")

        # Mail: at least one per delivered invoice, and every copy of it with the delivery's Message-ID.
        # A duplicate e-mail IS possible: the delivery row is written after the SMTP server accepted the
        # message, so a worker killed between the two sends it again when the activity is retried. The
        # Message-ID (workflow id + transition seq) is the same on both, so the recipient can drop it.
        with reading(stack.store) as s:
            message_ids = {d.message_id: d.invoice_id for d in s.exec(select(InvoiceDelivery))}
        mails = Counter(m["Message-ID"] for m in stack.mails())
        assert set(mails) == set(message_ids)
        print(
            f"\n[{db_url.split(':')[0]}] ledger at the kill: {dict(at_kill)}; unfinished: {unfinished}; "
            f"client retries: {dict(retried)}; duplicate mails: {sum(mails.values()) - len(mails)}"
        )


async def test_with_the_mail_server_down_an_approved_invoice_waits_and_retries_until_it_is_back(
    db_url: str,
    temporal_env: WorkflowEnvironment,
    tmp_path: Path,
) -> None:
    stack_cm = running_stack(db_url, temporal_env, tmp_path)
    async with stack_cm as stack:
        stack_cm.mail.stop()
        back = False
        try:
            await mail_server_down_then_back(stack_cm, stack)
            back = True
        finally:
            if not back:  # the stack's teardown stops the mail server: give it one to stop
                stack_cm.mail = start_mail_capture(stack.settings.smtp_port, stack.outbox)


async def mail_server_down_then_back(stack_cm: running_stack, stack: Stack) -> None:
    erp, preparer, approver = await stack.clients("erp", "preparer", "approver")
    r = await erp.post(INVOICES, json=invoice_body(stack.customers["initech"]))
    assert r.status_code == 201, r.text
    inv = r.json()
    assert (await preparer.post(f"{INVOICES}/{inv['id']}/submit")).status_code == 200
    r = await approver.post(f"{INVOICES}/{inv['id']}/approve")
    assert r.status_code == 200 and r.json()["status"] == "approved", r.text

    handle = stack.temporal.get_workflow_handle(inv["workflow_id"])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        pending = (await handle.describe()).raw_description.pending_activities
        if pending and pending[0].attempt >= 3:
            break
        assert loop.time() < deadline, f"the delivery was not retried: {pending}"
        await asyncio.sleep(0.2)
    delivery = pending[0]
    assert delivery.activity_type.name == "deliver_invoice"
    assert "refused" in delivery.last_failure.message.lower(), delivery.last_failure.message
    # Backoff from 1 s, capped by the configured maximum interval (2 s in the test settings).
    interval = delivery.current_retry_interval.ToTimedelta()
    assert timedelta(seconds=1) <= interval <= timedelta(seconds=2.5), interval

    current = (await approver.get(f"{INVOICES}/{inv['id']}")).json()
    assert current["status"] == "approved" and current["delivered_at"] is None
    history = (await approver.get(f"{INVOICES}/{inv['id']}/history")).json()
    assert [h["event"] for h in history] == ["create", "submit", "approve"]
    assert stack.mails() == []

    stack_cm.mail = start_mail_capture(stack.settings.smtp_port, stack.outbox)
    assert (await stack.wait_status(inv["id"], "submitted", within=30))["status"] == "submitted"
    history = (await approver.get(f"{INVOICES}/{inv['id']}/history")).json()
    assert [h["event"] for h in history] == ["create", "submit", "approve", "deliver"]
    assert history[-1]["reason"] == "email to ap@initech.example"
    mails = stack.mails()
    assert len(mails) == 1 and mails[0]["To"] == "ap@initech.example"
    with reading(stack.store) as s:
        rows = list(s.exec(select(InvoiceDelivery).where(InvoiceDelivery.invoice_id == inv["id"])))
    assert len(rows) == 1 and rows[0].message_id == mails[0]["Message-ID"]
