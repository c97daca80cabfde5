"""InvoiceWorkflow on a real Temporal server, with the ledger writer and the mailer replaced by fakes
registered under the real activity names.

- Durable timers on the time-skipping test server: an invoice approved ahead of its issue date waits
  for it, and one voided while waiting is never delivered.
- The workflow's own validators on the dev server, with no API in front: maker-checker, reasons,
  impossible transitions and payment allocations are refused with their typed error, and a refused
  command leaves no trace (no recorded transition, no update in the workflow history).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from tests.workflows.conftest import (
    TOTAL,
    Invoices,
    actor,
    assert_left_no_trace,
    bounded,
    delivered,
    details,
    draft,
    in_ten_days,
    payment,
    refused,
    state_of,
    submit,
    updates_in_history,
    wait_for_status,
)
from workflows.invoice import SA_STATUS, InvoiceWorkflow
from workflows.types import Command, EditCommand, InvoiceState


async def test_invoice_approved_before_its_release_instant_waits_for_it(
    time_env: WorkflowEnvironment, timed: Invoices
) -> None:
    release = await time_env.get_current_time() + timedelta(days=10)
    handle = await timed.start(release_at=release)
    await submit(handle)
    state = await bounded(handle.execute_update(InvoiceWorkflow.approve, Command(actor("approver"))))
    assert state.status == "approved"

    await time_env.sleep(timedelta(days=9))
    state = await state_of(handle)
    assert (state.status, state.delivered_at, timed.fakes.deliveries) == ("approved", None, [])

    await time_env.sleep(timedelta(days=1, hours=1))
    state = await wait_for_status(handle, "submitted")
    assert len(timed.fakes.deliveries) == 1
    assert state.delivered_at is not None and datetime.fromisoformat(state.delivered_at) >= release
    assert timed.fakes.events() == ["create", "submit", "approve", "deliver"]
    deliver = timed.fakes.records[-1]
    assert (deliver.actor.username, deliver.reason) == ("system", "email to ap@initech.example")
    assert (await handle.describe()).typed_search_attributes.get(SA_STATUS) == "submitted"


async def test_invoice_voided_while_waiting_for_its_release_is_never_delivered(
    time_env: WorkflowEnvironment, timed: Invoices
) -> None:
    release = await time_env.get_current_time() + timedelta(days=10)
    handle = await timed.start(release_at=release)
    await submit(handle)
    await bounded(handle.execute_update(InvoiceWorkflow.approve, Command(actor("approver"))))
    await time_env.sleep(timedelta(days=3))

    state = await bounded(
        handle.execute_update(
            InvoiceWorkflow.void, Command(actor("preparer"), "customer cancelled the order")
        )
    )
    assert state.status == "void"
    # Waiting for the result lets the test server skip past the release instant.
    final = await bounded(handle.result())
    assert final.status == "void"
    assert timed.fakes.deliveries == []
    assert timed.fakes.events() == ["create", "submit", "approve", "void"]
    history = await bounded(handle.fetch_history())
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    # The commands' records only (a regular activity each; the submission's also reads the tiers): no
    # delivery was ever scheduled.
    assert scheduled == ["submit_invoice", "record_invoice_transition", "record_invoice_transition"]


# -- validators (dev server, no API in front) ------------------------------------------------------


async def test_preparer_cannot_approve_own_invoice(invoices: Invoices) -> None:
    handle = await invoices.start(preparer="preparer", release_at=in_ten_days())
    await submit(handle)
    before = invoices.fakes.events()

    error = await refused(
        handle.execute_update(InvoiceWorkflow.approve, Command(actor("preparer")), id="approve-by-preparer"),
        "segregation_of_duties",
    )
    assert details(error)["rule"] == "preparer_cannot_approve"
    assert error.message == "preparer prepared this invoice and cannot approve it"
    await assert_left_no_trace(handle, "approve-by-preparer", invoices.fakes, before)
    assert "submit-1" in await updates_in_history(handle)  # an accepted update is there: the check can see

    state = await bounded(handle.execute_update(InvoiceWorkflow.approve, Command(actor("approver"))))
    assert (state.status, state.transition_seq) == ("approved", 3)


async def test_editor_cannot_approve_an_invoice_they_edited(invoices: Invoices) -> None:
    handle = await invoices.start(preparer="erp", release_at=in_ten_days())
    await bounded(
        handle.execute_update(
            InvoiceWorkflow.edit, EditCommand(actor("preparer2"), draft(release_at=in_ten_days()))
        )
    )
    await submit(handle)
    before = invoices.fakes.events()

    error = await refused(
        handle.execute_update(InvoiceWorkflow.approve, Command(actor("preparer2")), id="approve-by-editor"),
        "segregation_of_duties",
    )
    assert details(error)["rule"] == "editor_cannot_approve"
    await assert_left_no_trace(handle, "approve-by-editor", invoices.fakes, before)
    assert (await state_of(handle)).status == "pending_approval"


async def test_the_clerk_who_submitted_an_erp_invoice_cannot_approve_it(invoices: Invoices) -> None:
    handle = await invoices.start(preparer="erp", release_at=in_ten_days())
    await bounded(handle.execute_update(InvoiceWorkflow.submit, Command(actor("approver2"))))
    before = invoices.fakes.events()

    error = await refused(
        handle.execute_update(
            InvoiceWorkflow.approve, Command(actor("approver2")), id="approve-by-submitter"
        ),
        "segregation_of_duties",
    )
    assert details(error)["rule"] == "submitter_cannot_approve"
    await assert_left_no_trace(handle, "approve-by-submitter", invoices.fakes, before)


async def test_the_same_approver_cannot_approve_twice(invoices: Invoices) -> None:
    handle = await invoices.start(release_at=in_ten_days())
    await submit(handle)
    await bounded(handle.execute_update(InvoiceWorkflow.approve, Command(actor("approver"))))
    before = invoices.fakes.events()

    # One approval is enough in this version, so the second one finds the invoice approved already.
    error = await refused(
        handle.execute_update(InvoiceWorkflow.approve, Command(actor("approver")), id="approve-again"),
        "transition_refused",
    )
    assert details(error) == {"status": "approved", "event": "approve"}
    await assert_left_no_trace(handle, "approve-again", invoices.fakes, before)
    assert [a.approver for a in (await state_of(handle)).approvals] == ["approver"]


@pytest.mark.parametrize("reason", ["", "   "])
async def test_reject_without_a_reason_is_refused(invoices: Invoices, reason: str) -> None:
    handle = await invoices.start(release_at=in_ten_days())
    await submit(handle)
    before = invoices.fakes.events()

    error = await refused(
        handle.execute_update(
            InvoiceWorkflow.reject, Command(actor("approver"), reason), id="reject-no-reason"
        ),
        "invalid_command",
    )
    assert details(error) == {"field": "reason"}
    await assert_left_no_trace(handle, "reject-no-reason", invoices.fakes, before)

    state = await bounded(
        handle.execute_update(InvoiceWorkflow.reject, Command(actor("approver"), "wrong PO number"))
    )
    assert state.status == "draft"
    assert invoices.fakes.records[-1].reason == "wrong PO number"


async def test_void_without_a_reason_is_refused(invoices: Invoices) -> None:
    handle = await invoices.start(release_at=in_ten_days())
    before = invoices.fakes.events()
    error = await refused(
        handle.execute_update(InvoiceWorkflow.void, Command(actor("preparer"), ""), id="void-no-reason"),
        "invalid_command",
    )
    assert details(error) == {"field": "reason"}
    await assert_left_no_trace(handle, "void-no-reason", invoices.fakes, before)


async def test_approve_in_draft_is_refused_naming_the_status(invoices: Invoices) -> None:
    handle = await invoices.start(release_at=in_ten_days())
    before = invoices.fakes.events()

    error = await refused(
        handle.execute_update(InvoiceWorkflow.approve, Command(actor("approver")), id="approve-draft"),
        "transition_refused",
    )
    assert error.message == "cannot approve an invoice in status draft"
    assert details(error) == {"status": "draft", "event": "approve"}
    await assert_left_no_trace(handle, "approve-draft", invoices.fakes, before)


async def test_payment_before_delivery_is_refused(invoices: Invoices) -> None:
    handle = await invoices.start(release_at=in_ten_days())
    await submit(handle)
    before = invoices.fakes.events()

    error = await refused(
        handle.execute_update(InvoiceWorkflow.apply_payment, payment(1000), id="pay-pending"),
        "transition_refused",
    )
    assert details(error) == {"status": "pending_approval", "event": "record_payment"}
    await assert_left_no_trace(handle, "pay-pending", invoices.fakes, before)


async def test_payment_over_the_amount_due_is_refused(invoices: Invoices) -> None:
    handle = await delivered(invoices)
    before = invoices.fakes.events()
    error = await refused(
        handle.execute_update(InvoiceWorkflow.apply_payment, payment(TOTAL + 1), id="pay-too-much"),
        "over_allocation",
    )
    assert details(error) == {"amount_due_minor": TOTAL, "allocated_minor": TOTAL + 1}
    await assert_left_no_trace(handle, "pay-too-much", invoices.fakes, before)

    await bounded(handle.execute_update(InvoiceWorkflow.apply_payment, payment(100000)))
    before = invoices.fakes.events()
    error = await refused(
        handle.execute_update(InvoiceWorkflow.apply_payment, payment(50001), id="pay-rest-plus-one"),
        "over_allocation",
    )
    assert details(error)["amount_due_minor"] == 50000
    await assert_left_no_trace(handle, "pay-rest-plus-one", invoices.fakes, before)
    state = await state_of(handle)
    assert (state.status, state.amount_paid_minor) == ("partially_paid", 100000)


@pytest.mark.parametrize("amount", [0, -100])
async def test_payment_that_is_not_positive_is_refused(invoices: Invoices, amount: int) -> None:
    handle = await delivered(invoices)
    before = invoices.fakes.events()
    error = await refused(
        handle.execute_update(InvoiceWorkflow.apply_payment, payment(amount), id="pay-nothing"),
        "invalid_command",
    )
    assert details(error) == {"field": "amount"}
    await assert_left_no_trace(handle, "pay-nothing", invoices.fakes, before)


async def test_payment_in_another_currency_is_refused(invoices: Invoices) -> None:
    handle = await delivered(invoices, currency="EUR")
    before = invoices.fakes.events()
    error = await refused(
        handle.execute_update(InvoiceWorkflow.apply_payment, payment(1000, currency="USD"), id="pay-in-usd"),
        "currency_mismatch",
    )
    assert error.message == "payment in USD cannot pay an invoice in EUR"
    await assert_left_no_trace(handle, "pay-in-usd", invoices.fakes, before)
    assert (await state_of(handle)).amount_paid_minor == 0


async def test_the_same_payment_cannot_be_applied_twice(invoices: Invoices) -> None:
    handle = await delivered(invoices)
    state = await bounded(
        handle.execute_update(InvoiceWorkflow.apply_payment, payment(60000, payment_id="PAY-1"), id="pay-1")
    )
    assert (state.status, state.amount_paid_minor) == ("partially_paid", 60000)
    before = invoices.fakes.events()

    # The same payment under another update id (e.g. a retry without the Idempotency-Key).
    error = await refused(
        handle.execute_update(
            InvoiceWorkflow.apply_payment, payment(60000, payment_id="PAY-1"), id="pay-1-again"
        ),
        "already_applied",
    )
    assert "PAY-1" in error.message
    await assert_left_no_trace(handle, "pay-1-again", invoices.fakes, before)
    state = await state_of(handle)
    assert (state.amount_paid_minor, state.payments) == (60000, ["PAY-1"])


async def test_payments_settle_the_invoice_and_end_the_workflow(invoices: Invoices) -> None:
    handle = await delivered(invoices)
    await bounded(handle.execute_update(InvoiceWorkflow.apply_payment, payment(100000)))
    state = await bounded(handle.execute_update(InvoiceWorkflow.apply_payment, payment(TOTAL - 100000)))
    assert (state.status, state.amount_paid_minor) == ("paid", TOTAL)
    final = await bounded(handle.result())
    assert final.status == "paid"
    assert invoices.fakes.events() == [
        "create",
        "submit",
        "approve",
        "deliver",
        "record_partial_payment",
        "record_final_payment",
    ]
    assert [rec.transition_seq for rec in invoices.fakes.records] == [1, 2, 3, 4, 5, 6]
    assert len(invoices.fakes.deliveries) == 1


@pytest.fixture
async def idle_invoices(temporal_env: WorkflowEnvironment) -> AsyncIterator[Invoices]:
    """Invoices whose worker the test starts and stops itself."""
    invoices = Invoices(temporal_env.client)
    try:
        yield invoices
    finally:
        await invoices.terminate_running()


@pytest.mark.parametrize("arrival", ["while_the_worker_runs", "in_one_workflow_task"])
async def test_two_approvals_racing_only_one_wins(idle_invoices: Invoices, arrival: str) -> None:
    invoices = idle_invoices
    async with invoices.worker():
        handle = await invoices.start(release_at=in_ten_days())
        await submit(handle)

    async def approve(approver: str) -> InvoiceState:
        return await bounded(
            handle.execute_update(InvoiceWorkflow.approve, Command(actor(approver)), id=f"race-{approver}")
        )

    if arrival == "while_the_worker_runs":
        async with invoices.worker():
            results = await asyncio.gather(approve("approver"), approve("approver2"), return_exceptions=True)
    else:
        racing = asyncio.gather(approve("approver"), approve("approver2"), return_exceptions=True)
        # No worker yet: both updates wait at the server and reach the workflow in the same activation,
        # so both pass the validator against pending_approval and only the handler can refuse the loser.
        await asyncio.sleep(2)
        async with invoices.worker():
            results = await racing

    won = [r for r in results if isinstance(r, InvoiceState)]
    lost = [r for r in results if isinstance(r, WorkflowUpdateFailedError)]
    assert (len(won), len(lost)) == (1, 1), results
    assert isinstance(lost[0].cause, ApplicationError) and lost[0].cause.type == "transition_refused"
    assert invoices.fakes.events() == ["create", "submit", "approve"]
    async with invoices.worker():
        state = await state_of(handle)
    assert state.status == "approved"
    assert [a.approver for a in state.approvals] == [won[0].approvals[0].approver]


async def test_editing_a_pending_invoice_returns_it_to_draft_and_bars_the_editor_from_approving(
    invoices: Invoices,
) -> None:
    handle = await invoices.start(preparer="erp", release_at=in_ten_days())
    await submit(handle)
    changed = draft(release_at=in_ten_days(), unit_price="130.00", net_minor=130000)

    state = await bounded(
        handle.execute_update(InvoiceWorkflow.edit, EditCommand(actor("preparer2"), changed))
    )
    assert state.status == "draft"
    assert (state.draft.total_minor, state.editors, state.approvals) == (156000, ["preparer2"], [])
    edit = invoices.fakes.records[-1]
    assert (edit.event, edit.from_status, edit.to_status, edit.actor.username) == (
        "edit",
        "pending_approval",
        "draft",
        "preparer2",
    )

    await bounded(handle.execute_update(InvoiceWorkflow.submit, Command(actor("preparer"))))
    before = invoices.fakes.events()
    error = await refused(
        handle.execute_update(InvoiceWorkflow.approve, Command(actor("preparer2")), id="approve-by-editor"),
        "segregation_of_duties",
    )
    assert details(error)["rule"] == "editor_cannot_approve"
    await assert_left_no_trace(handle, "approve-by-editor", invoices.fakes, before)

    state = await bounded(handle.execute_update(InvoiceWorkflow.approve, Command(actor("approver"))))
    assert (state.status, state.draft.total_minor) == ("approved", 156000)
