"""What disputes, credit memos and write-offs do to an invoice (InvoiceWorkflow.open_dispute, end_dispute,
apply_adjustment), with the ledger writer replaced by a fake: the invoice is disputed for the amount a case
holds and comes back when the case ends; credits and write-offs lower the amount due, the last one ends the
invoice; every refusal names why and leaves no trace. The activity the other workflows send these through
(activities/invoice_commands.py) turns refusals into typed, non-retryable errors."""

from __future__ import annotations

import uuid

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.invoice_commands import InvoiceCommandActivities
from tests.workflows.command_probe import CommandProbe
from tests.workflows.conftest import (
    TOTAL,
    Handle,
    Invoices,
    actor,
    assert_left_no_trace,
    bounded,
    delivered,
    details,
    in_ten_days,
    payment,
    refused,
    state_of,
    submit,
)
from workflows.invoice import InvoiceWorkflow
from workflows.types import Actor, AdjustmentCommand, DisputeLinkCommand, InvoiceCommandRequest, InvoiceState


def link(
    amount_minor: int = 0, dispute_id: str = "case-1", case_number: str = "DSP-2026-000001"
) -> DisputeLinkCommand:
    return DisputeLinkCommand(
        Actor("collector", ["collector"]), dispute_id, case_number, amount_minor, "price differs from PO"
    )


def credit(amount_minor: int, adjustment_id: str = "cm-1", kind: str = "credit_memo") -> AdjustmentCommand:
    return AdjustmentCommand(
        actor("approver"),
        adjustment_id,
        kind,
        amount_minor,
        document_number="CN-2026-000001" if kind == "credit_memo" else "",
        reason="agreed with the customer",
    )


async def dispute(handle: Handle, amount_minor: int, **kw: str) -> InvoiceState:
    return await bounded(handle.execute_update(InvoiceWorkflow.open_dispute, link(amount_minor, **kw)))


async def test_a_case_takes_part_of_the_invoice_and_gives_it_back(invoices: Invoices) -> None:
    handle = await delivered(invoices)
    state = await dispute(handle, 40000)
    assert (state.status, state.dispute_id, state.disputed_minor) == ("disputed", "case-1", 40000)
    # A deduction joining the same case: the amount it holds changes, the invoice stays disputed.
    state = await dispute(handle, 55000)
    assert (state.status, state.disputed_minor) == ("disputed", 55000)
    state = await bounded(handle.execute_update(InvoiceWorkflow.end_dispute, link()))
    assert (state.status, state.dispute_id, state.disputed_minor) == ("accepted", "", 0)
    assert invoices.fakes.events()[-3:] == ["dispute", "dispute", "resolve_dispute"]


async def test_a_case_ending_on_an_invoice_paid_in_part_leaves_it_partially_paid(invoices: Invoices) -> None:
    handle = await delivered(invoices)
    await dispute(handle, 30000)
    # Paid while disputed, beyond the undisputed part: the case holds no more than is due.
    state = await bounded(handle.execute_update(InvoiceWorkflow.apply_payment, payment(130000)))
    assert (state.status, state.disputed_minor) == ("disputed", TOTAL - 130000)
    state = await bounded(handle.execute_update(InvoiceWorkflow.end_dispute, link()))
    assert state.status == "partially_paid"


async def test_a_second_case_on_the_same_invoice_is_refused_naming_the_first(invoices: Invoices) -> None:
    handle = await delivered(invoices)
    await dispute(handle, 1000)
    before = invoices.fakes.events()
    error = await refused(
        handle.execute_update(
            InvoiceWorkflow.open_dispute, link(500, dispute_id="case-2", case_number="DSP-2"), id="second"
        ),
        "already_disputed",
    )
    assert "DSP-2026-000001" in error.message and details(error) == {"dispute_id": "case-1"}
    await assert_left_no_trace(handle, "second", invoices.fakes, before)


@pytest.mark.parametrize("amount", [TOTAL + 1, 0])
async def test_disputing_more_than_is_due_or_nothing_is_refused(invoices: Invoices, amount: int) -> None:
    handle = await delivered(invoices)
    before = invoices.fakes.events()
    code = "amount_exceeds_open" if amount else "invalid_command"
    await refused(handle.execute_update(InvoiceWorkflow.open_dispute, link(amount), id="too-much"), code)
    await assert_left_no_trace(handle, "too-much", invoices.fakes, before)
    assert (await state_of(handle)).status == "submitted"


async def test_an_invoice_not_yet_issued_cannot_be_disputed(invoices: Invoices) -> None:
    handle = await invoices.start(release_at=in_ten_days())
    await submit(handle)
    error = await refused(
        handle.execute_update(InvoiceWorkflow.open_dispute, link(1000)), "transition_refused"
    )
    assert details(error) == {"status": "pending_approval", "event": "dispute"}
    await refused(handle.execute_update(InvoiceWorkflow.end_dispute, link()), "not_disputed")
    await refused(handle.execute_update(InvoiceWorkflow.apply_adjustment, credit(1000)), "transition_refused")


async def test_credits_lower_the_amount_due_and_the_last_one_ends_the_invoice(invoices: Invoices) -> None:
    handle = await delivered(invoices)
    await dispute(handle, TOTAL)
    state = await bounded(handle.execute_update(InvoiceWorkflow.apply_adjustment, credit(50000)))
    assert (state.status, state.amount_credited_minor, state.disputed_minor) == ("disputed", 50000, 100000)
    before = invoices.fakes.events()
    error = await refused(
        handle.execute_update(InvoiceWorkflow.apply_adjustment, credit(50000), id="cm-1-again"),
        "already_applied",
    )
    assert "cm-1" in error.message
    await assert_left_no_trace(handle, "cm-1-again", invoices.fakes, before)
    await refused(
        handle.execute_update(InvoiceWorkflow.apply_adjustment, credit(100001, "cm-2"), id="over"),
        "amount_exceeds_open",
    )
    state = await bounded(handle.execute_update(InvoiceWorkflow.apply_adjustment, credit(100000, "cm-2")))
    assert (state.status, state.amount_credited_minor, state.adjustments) == (
        "credited",
        TOTAL,
        ["cm-1", "cm-2"],
    )
    final = await bounded(handle.result())
    assert final.status == "credited"
    assert invoices.fakes.events()[-3:] == ["dispute", "apply_credit", "apply_final_credit"]


async def test_write_offs_in_part_then_in_full(invoices: Invoices) -> None:
    handle = await delivered(invoices)
    await bounded(handle.execute_update(InvoiceWorkflow.apply_payment, payment(TOTAL - 700)))
    state = await bounded(
        handle.execute_update(InvoiceWorkflow.apply_adjustment, credit(200, "wo-1", "write_off"))
    )
    assert (state.status, state.amount_written_off_minor) == ("partially_paid", 200)
    state = await bounded(
        handle.execute_update(InvoiceWorkflow.apply_adjustment, credit(500, "wo-2", "write_off"))
    )
    assert state.status == "written_off"
    assert invoices.fakes.events()[-2:] == ["write_off_part", "write_off"]


async def test_the_command_activity_turns_refusals_into_typed_errors_and_finds_ended_invoices(
    invoices: Invoices, temporal_env: WorkflowEnvironment
) -> None:
    """The activity as a dispute workflow would run it: a refusal is non-retryable with the invoice's code;
    a case ending on an invoice credited in full gets its final state; the same update id applies once."""
    handle = await delivered(invoices)
    commands = InvoiceCommandActivities(temporal_env.client)
    queue = f"commands-{uuid.uuid4().hex[:8]}"

    async def send(req: InvoiceCommandRequest) -> InvoiceState:
        async with Worker(
            temporal_env.client,
            task_queue=queue,
            workflows=[CommandProbe],
            activities=[commands.send_invoice_command],
        ):
            try:
                return await bounded(
                    temporal_env.client.execute_workflow(
                        CommandProbe.run, req, id=f"probe-{uuid.uuid4().hex[:8]}", task_queue=queue
                    )
                )
            except WorkflowFailureError as exc:
                cause = exc.cause
                if isinstance(cause, ActivityError) and isinstance(cause.cause, ApplicationError):
                    raise cause.cause from None
                raise

    opened = InvoiceCommandRequest(handle.id, "open_dispute", "case-1:open", link=link(TOTAL))
    assert (await send(opened)).status == "disputed"
    assert (await send(opened)).disputed_minor == TOTAL  # the same update id: applied once
    with pytest.raises(ApplicationError) as failed:
        await send(InvoiceCommandRequest(handle.id, "open_dispute", "x", link=link(TOTAL + 1)))
    assert (failed.value.type, failed.value.non_retryable) == ("amount_exceeds_open", True)
    full = InvoiceCommandRequest(handle.id, "apply_adjustment", "cm-1:apply", adjustment=credit(TOTAL))
    assert (await send(full)).status == "credited"
    await bounded(handle.result())
    ended = await send(InvoiceCommandRequest(handle.id, "end_dispute", "case-1:end", link=link()))
    assert ended.status == "credited"
    with pytest.raises(ApplicationError) as failed:
        await send(InvoiceCommandRequest(handle.id, "apply_adjustment", "cm-2", adjustment=credit(1, "cm-2")))
    assert failed.value.type == "transition_refused"
