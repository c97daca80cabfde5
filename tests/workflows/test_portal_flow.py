"""InvoiceWorkflow through a customer's portal, on the dev server, with the portal and the ledger as
fakes under the real activity names (the real adapters meet the real simulator in tests/api).

- a pass submitted, the portal's statuses arriving as signals (repeats counted once), accepted, paid;
- rejected: the preparers are told; fixed without touching amounts/tax/PO/customer, it goes straight back
  as pass 2 with the approvals standing; fixed with a changed amount, it is approved again first;
- refused at submission (a synchronous rejection) and stopped by a pre-submission check.
"""

from __future__ import annotations

from dataclasses import replace

from tests.workflows.conftest import (
    Invoices,
    actor,
    bounded,
    notified,
    payment,
    state_of,
    submit,
    wait_for_status,
    yesterday,
)
from workflows.invoice import InvoiceWorkflow
from workflows.types import Command, EditCommand, PortalUpdate


def update(invoices: Invoices, handle_state_key: str, status: str, **kw: str) -> PortalUpdate:
    return PortalUpdate(
        portal="ariba",
        status=status,
        at="2026-11-03T09:00:00+00:00",
        submission_key=handle_state_key,
        update_id=kw.pop("update_id", f"{handle_state_key}#{status}"),
        **kw,  # type: ignore[arg-type]
    )


async def approved_through_portal(invoices: Invoices) -> tuple[object, str]:
    invoices.fakes.portal = "ariba"
    handle = await invoices.start(release_at=yesterday())
    await submit(handle)
    await bounded(handle.execute_update(InvoiceWorkflow.approve, Command(actor("approver"))))
    state = await wait_for_status(handle, "submitted")
    assert (state.portal, state.submission_pass, state.portal_status) == ("ariba", 1, "received")
    return handle, f"{state.invoice_id}.pass-1"


async def test_statuses_arrive_as_signals_then_accepted_then_paid(invoices: Invoices) -> None:
    handle, key = await approved_through_portal(invoices)
    for status in ("received", "in_process", "in_process"):  # a repeat of what is known moves nothing
        await handle.signal(InvoiceWorkflow.portal_status, update(invoices, key, status))
    await handle.signal(InvoiceWorkflow.portal_status, update(invoices, key, "in_process"))  # a resend
    await handle.signal(InvoiceWorkflow.portal_status, update(invoices, key, "accepted"))
    state = await wait_for_status(handle, "accepted")
    assert state.portal_status == "accepted"
    assert invoices.fakes.events() == [
        "create",
        "submit",
        "approve",
        "deliver",
        "portal_status",
        "portal_accept",
    ]
    portal_records = [r.portal for r in invoices.fakes.records if r.portal is not None]
    assert [(p.status, p.submission_pass) for p in portal_records] == [
        ("received", 1),
        ("in_process", 1),
        ("accepted", 1),
    ]
    # An update about another pass is history: ignored.
    await handle.signal(InvoiceWorkflow.portal_status, update(invoices, "other.pass-9", "rejected"))
    await bounded(handle.execute_update(InvoiceWorkflow.apply_payment, payment(state.draft.total_minor)))
    final = await bounded(handle.result())
    assert final.status == "paid"


async def test_a_rejection_fixed_without_changing_the_approved_terms_goes_straight_back(
    invoices: Invoices,
) -> None:
    handle, key = await approved_through_portal(invoices)
    await handle.signal(
        InvoiceWorkflow.portal_status,
        update(invoices, key, "rejected", reason_code="REF", reason_text="PO line 2 unknown"),
    )
    state = await wait_for_status(handle, "portal_rejected")
    assert state.portal_reason == "REF: PO line 2 unknown"
    assert await notified(invoices) == ["portal_rejection"]

    fixed = await bounded(
        handle.execute_update(InvoiceWorkflow.fix, Command(actor("preparer"), "line 2 description per PO"))
    )
    assert (fixed.status, fixed.reopened) == ("draft", True)
    new_draft = replace(
        state.draft, lines=[replace(state.draft.lines[0], description="Consulting, October (PO line 1)")]
    )
    edited = await bounded(
        handle.execute_update(InvoiceWorkflow.edit, EditCommand(actor("preparer"), new_draft))
    )
    assert len(edited.approvals) == 1  # the approved terms are untouched: the approval stands
    resubmitted = await bounded(
        handle.execute_update(InvoiceWorkflow.submit, Command(actor("preparer")), id="resubmit-1")
    )
    assert resubmitted.status == "approved"
    state = await wait_for_status(handle, "submitted")
    assert state.submission_pass == 2
    assert [s.submission_pass for s in invoices.fakes.submissions] == [1, 2]
    events = invoices.fakes.events()
    assert events[3:] == ["deliver", "portal_reject", "fix", "edit", "resubmit", "deliver"]
    edit = next(r for r in invoices.fakes.records if r.event == "edit")
    assert "approvals stand" in edit.reason
    # The portal's word on pass 2 counts; pass 1's is history.
    await handle.signal(InvoiceWorkflow.portal_status, update(invoices, key, "accepted", update_id="late"))
    await handle.signal(
        InvoiceWorkflow.portal_status, update(invoices, f"{state.invoice_id}.pass-2", "accepted")
    )
    assert (await wait_for_status(handle, "accepted")).submission_pass == 2


async def test_a_fix_that_changes_an_amount_goes_back_through_approval(invoices: Invoices) -> None:
    handle, key = await approved_through_portal(invoices)
    await handle.signal(
        InvoiceWorkflow.portal_status,
        update(invoices, key, "rejected", reason_code="PRI", reason_text="price"),
    )
    state = await wait_for_status(handle, "portal_rejected")
    await bounded(handle.execute_update(InvoiceWorkflow.fix, Command(actor("preparer"), "price per PO")))
    line = replace(state.draft.lines[0], unit_price="120.00", net_minor=120000, tax_minor=24000)
    new_draft = replace(
        state.draft, lines=[line], subtotal_minor=120000, tax_total_minor=24000, total_minor=144000
    )
    edited = await bounded(
        handle.execute_update(InvoiceWorkflow.edit, EditCommand(actor("preparer"), new_draft))
    )
    assert edited.approvals == []
    pending = await bounded(
        handle.execute_update(InvoiceWorkflow.submit, Command(actor("preparer")), id="s2")
    )
    assert pending.status == "pending_approval"
    await bounded(handle.execute_update(InvoiceWorkflow.approve, Command(actor("approver2"))))
    state = await wait_for_status(handle, "submitted")
    assert state.submission_pass == 2 and state.draft.total_minor == 144000


async def test_a_rejection_at_submission_is_recorded_as_the_pass_it_was(invoices: Invoices) -> None:
    invoices.fakes.portal = "coupa"
    invoices.fakes.portal_answers = ["portal_rejected"]
    handle = await invoices.start(release_at=yesterday())
    await submit(handle)
    await bounded(handle.execute_update(InvoiceWorkflow.approve, Command(actor("approver"))))
    state = await wait_for_status(handle, "portal_rejected")
    assert state.submission_pass == 1 and state.portal_reason.startswith("REF: purchase order")
    assert invoices.fakes.events()[-2:] == ["deliver", "portal_reject"]


async def test_a_failed_pre_submission_check_keeps_it_from_leaving_and_says_why(invoices: Invoices) -> None:
    invoices.fakes.portal = "ariba"
    invoices.fakes.presubmission_problems = [
        "Initech requires its purchase order number (PO) on every invoice"
    ]
    handle = await invoices.start(release_at=yesterday())
    await submit(handle)
    await bounded(handle.execute_update(InvoiceWorkflow.approve, Command(actor("approver"))))
    state = await wait_for_status(handle, "portal_rejected")
    assert invoices.fakes.submissions == []  # nothing left
    assert state.submission_pass == 0
    assert "pre-submission check: Initech requires its purchase order" in state.portal_reason
    assert invoices.fakes.events()[-1] == "block_submission"
    assert await notified(invoices) == ["portal_rejection"]
    current = await state_of(handle)
    assert current.status == "portal_rejected"
