"""The Cashcycle worker: builds the activity objects with their clients and runs the Temporal worker.

Run it with `cashcycle worker` (production) or let `cashcycle up` start it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import uvloop
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.approval_matrix import MatrixFile
from activities.approvals import ApprovalActivities
from activities.capa import CapaActivities
from activities.checkpoints import CheckpointActivities
from activities.credit_memos import CreditMemoActivities
from activities.credit_notes import CreditNoteActivities
from activities.db import Store, migrate, open_store, reading, writing
from activities.delivery import MailDelivery, SmtpConfig, smtp_config
from activities.directory import record_policy_files
from activities.disputes import DisputeActivities, DisputeCommands
from activities.documents import InvoiceDocument
from activities.einvoice import document_for, render_ubl
from activities.invoice_commands import InvoiceCommandActivities
from activities.invoice_start import InvoiceStarter
from activities.portals.activity import PortalActivities
from activities.portals.base import FollowUp, PortalAdapter
from activities.settings import Settings, get_settings
from activities.submission import PortalPollActivities, SubmissionActivities, portal_adapters
from activities.temporal import (
    connect,
    ensure_checkpoint_schedule,
    ensure_portal_poll_schedules,
    ensure_search_attributes,
)
from activities.transitions import TransitionActivities
from workflows.capa import CapaWorkflow
from workflows.checkpoint import LedgerCheckpointWorkflow
from workflows.credit_memo import CreditMemoWorkflow
from workflows.dispute import DisputeWorkflow
from workflows.invoice import InvoiceWorkflow
from workflows.portal_poll import PortalPollWorkflow
from workflows.write_off import WriteOffWorkflow

log = logging.getLogger("cashcycle.worker")

# Every workflow type the worker runs. Each has committed histories that tests/workflows/test_replay.py
# replays against the current code (README: workflows that survive a release).
WORKFLOWS = (
    InvoiceWorkflow,
    LedgerCheckpointWorkflow,
    PortalPollWorkflow,
    CapaWorkflow,
    CreditMemoWorkflow,
    WriteOffWorkflow,
    DisputeWorkflow,
)

# Workflow modules that are pure (no I/O, no clock, no randomness, no mutable module state): with the
# sandbox on, it imports them once, with the worker, instead of executing them again for every workflow
# run. workflows/invoice.py itself stays sandboxed: it is the code whose determinism the sandbox guards.
PASSTHROUGH_WORKFLOW_MODULES = (
    "workflows.types",
    "workflows.states",
    "workflows.errors",
    "workflows.approval",
    "workflows.checkpoint",
    "workflows.capa_types",
    "workflows.capa_states",
    "workflows.portal_poll",
    "workflows.dispute_states",
    "workflows.dispute_types",
    "workflows.root_causes",
    "workflows.credit_memo_types",
    "workflows.credit_memo_states",
    "workflows.write_off_states",
    "workflows.credit_memo_approval",
    "workflows.credit_note_types",
)


def workflow_runner(sandboxed: bool) -> WorkflowRunner:
    """How the worker runs workflow code.

    Unsandboxed by default (`CASHCYCLE_WORKFLOW_SANDBOX=1` turns the sandbox on). While any workflow
    activation runs, Temporal's sandbox swaps builtins such as `__import__` and `isinstance` for
    thread-local proxies process-wide, so every thread pays for it, activities included, and it re-runs
    the workflow module for every workflow: measured with `make bench`, about 35 ms of the worker's CPU per
    invoice, a third of it. What it guards is guarded before the code ships instead: the source scan
    (tests/workflows/test_determinism.py: only the standard library, temporalio and workflows.*, no
    clock, randomness or I/O), the workflow tests, which run the workflows in the default sandbox, and
    the replay tests, which replay recorded histories of the whole lifecycle through the sandbox."""
    if not sandboxed:
        return UnsandboxedWorkflowRunner()
    restrictions = SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_WORKFLOW_MODULES)
    return SandboxedWorkflowRunner(restrictions=restrictions)


def matrix_file(settings: Settings) -> MatrixFile:
    return MatrixFile(Path(settings.approval_matrix_file)) if settings.approval_matrix_file else MatrixFile()


def build_worker(
    client: Client,
    store: Store,
    smtp: SmtpConfig,
    task_queue: str,
    executor: ThreadPoolExecutor,
    matrix: MatrixFile | None = None,
    settings: Settings | None = None,
    adapters: Mapping[str, PortalAdapter] | None = None,
) -> Worker:
    """The worker with every workflow and activity. `adapters`: the customer portals (default: those
    of the settings' portal configuration)."""
    transitions = TransitionActivities(store, matrix)
    settings = settings or get_settings()
    checkpoints = CheckpointActivities(store, settings)
    adapters = adapters if adapters is not None else portal_adapters(settings, smtp)
    submission = SubmissionActivities(store, adapters, MailDelivery(store, smtp))

    def document(invoice_id: str) -> InvoiceDocument:
        with reading(store) as session:
            return document_for(session, invoice_id)

    portals = PortalActivities(adapters, documents=document, render_ubl=render_ubl)
    polling = PortalPollActivities(store, client, adapters)
    approvals = ApprovalActivities(store, smtp, matrix, ui_base_url=settings.ui_base_url)
    capa = CapaActivities(store)
    invoice_commands = InvoiceCommandActivities(client)
    disputes = DisputeActivities(store, DisputeCommands(store, client, task_queue))
    # A rebill's corrected invoice starts through the code behind POST /api/v1/invoices.
    starter = InvoiceStarter(client, store, settings, task_queue)
    credit_memos = CreditMemoActivities(store, matrix, rebill_starter=starter.rebill)
    credit_notes = CreditNoteActivities(store, adapters, smtp)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        workflow_runner=workflow_runner(settings.workflow_sandbox),
        activities=[
            transitions.record_invoice_transition,
            submission.deliver_invoice,
            transitions.submit_invoice,
            approvals.notify_approval_sla,
            # For invoice workflows of the shape before 2026-11-23 (InvoiceWorkflow._one_activity_steps).
            approvals.plan_approval,
            submission.plan_delivery,
            checkpoints.sign_ledger_checkpoints,
            portals.submit_to_portal,
            polling.poll_and_route,
            capa.record_capa,
            capa.capa_recurrence,
            invoice_commands.send_invoice_command,
            disputes.record_dispute_transition,
            disputes.open_dispute_from_portal,
            credit_memos.record_resolution_transition,
            credit_memos.submit_resolution,
            credit_memos.issue_credit_memo,
            credit_memos.start_rebill_invoice,
            credit_notes.deliver_credit_note,
        ],
        activity_executor=executor,
        max_concurrent_activities=16,
        max_concurrent_local_activities=16,
    )


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    migrate(settings.sqlalchemy_url)
    store = open_store(settings.sqlalchemy_url)
    with writing(store) as session:
        record_policy_files(session)  # evidence of the policy files in force when this worker started
    client = await connect(settings.temporal_address or "127.0.0.1:7233", settings.temporal_namespace)
    await ensure_search_attributes(client)
    sid = await ensure_checkpoint_schedule(client, settings.task_queue, settings.checkpoint_cron)
    log.info("ledger checkpoints: schedule %s (%s UTC)", sid, settings.checkpoint_cron)
    smtp = smtp_config(settings)
    adapters = portal_adapters(settings, smtp)  # one set for the worker's life: each keeps its client
    pulled = [name for name, a in adapters.items() if a.follow_up is FollowUp.POLL]
    for sid in await ensure_portal_poll_schedules(
        client, settings.task_queue, pulled, settings.portal_poll_seconds
    ):
        log.info("portal status polling: schedule %s (every %g s)", sid, settings.portal_poll_seconds)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with ThreadPoolExecutor(max_workers=16) as executor:
        worker = build_worker(
            client, store, smtp, settings.task_queue, executor, matrix_file(settings), settings, adapters
        )
        async with worker:
            log.info("worker polling task queue %s on %s", settings.task_queue, settings.temporal_address)
            await stop.wait()
    for adapter in adapters.values():
        adapter.close()
    store.dispose()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per portal request and poll is noise
    uvloop.run(run_worker(get_settings()))
    # The worker has drained and the store is closed. Exit without interpreter finalisation: the Temporal
    # runtime's native threads can still call into Python while it tears down (seen as a fatal
    # PyGILState_Release at exit in about one stop in ten).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
