"""Tiered approval inside the workflow, with no API in front: sequential tiers, distinct people, roles
verified by the recording activity (a client talking to Temporal directly cannot claim one),
delegation, edits voiding approvals, and the approval SLA on the time-skipping server."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from tests.workflows.conftest import (
    Invoices,
    actor,
    assert_left_no_trace,
    bounded,
    details,
    draft,
    in_ten_days,
    refused,
    state_of,
    submit,
)
from workflows.invoice import InvoiceWorkflow
from workflows.types import Actor, ApproveCommand, Command, EditCommand, InvoiceConfig, ReassignCommand

TWO_TIERS = ["ar_approver", "finance_manager"]


def approve(username: str, tier: int = 0, on_behalf_of: str | None = None) -> ApproveCommand:
    return ApproveCommand(actor(username), tier=tier, on_behalf_of=on_behalf_of)


async def test_two_tiers_need_two_different_people_in_order(invoices: Invoices) -> None:
    invoices.fakes.tiers = TWO_TIERS
    handle = await invoices.start(release_at=in_ten_days())
    await submit(handle)
    state = await bounded(handle.execute_update(InvoiceWorkflow.approve, approve("approver", tier=1)))
    assert state.status == "pending_approval" and [a.tier for a in state.approvals] == [1]
    state = await bounded(handle.execute_update(InvoiceWorkflow.approve, approve("manager", tier=2)))
    assert state.status == "approved"
    assert [(a.approver, a.tier, a.role) for a in state.approvals] == [
        ("approver", 1, "ar_approver"),
        ("manager", 2, "finance_manager"),
    ]
    assert invoices.fakes.events()[-2:] == ["approve_tier", "approve"]


async def test_a_higher_tier_cannot_be_approved_before_the_lower_one(invoices: Invoices) -> None:
    invoices.fakes.tiers = TWO_TIERS
    handle = await invoices.start(release_at=in_ten_days())
    await submit(handle)
    before = invoices.fakes.events()
    error = await refused(
        handle.execute_update(InvoiceWorkflow.approve, approve("manager", tier=2), id="skip-tier"),
        "tier_out_of_order",
    )
    assert details(error)["rule"] == "tiers_in_order"
    await assert_left_no_trace(handle, "skip-tier", invoices.fakes, before)
    # Without naming a tier, tier 1 needs ar_approver, which a finance manager does not hold.
    error = await refused(
        handle.execute_update(InvoiceWorkflow.approve, approve("manager"), id="wrong-role"), "no_authority"
    )
    await assert_left_no_trace(handle, "wrong-role", invoices.fakes, before)


async def test_nobody_approves_two_tiers_of_the_same_invoice(invoices: Invoices) -> None:
    invoices.fakes.tiers = ["ar_approver", "ar_approver"]
    handle = await invoices.start(release_at=in_ten_days())
    await submit(handle)
    await bounded(handle.execute_update(InvoiceWorkflow.approve, approve("approver", tier=1)))
    before = invoices.fakes.events()
    error = await refused(
        handle.execute_update(InvoiceWorkflow.approve, approve("approver", tier=2), id="again"),
        "segregation_of_duties",
    )
    assert details(error)["rule"] == "distinct_approver_per_tier"
    await assert_left_no_trace(handle, "again", invoices.fakes, before)


async def test_a_client_talking_to_temporal_cannot_claim_a_role_it_does_not_hold(invoices: Invoices) -> None:
    invoices.fakes.tiers = TWO_TIERS
    handle = await invoices.start(release_at=in_ten_days())
    await submit(handle)
    await bounded(handle.execute_update(InvoiceWorkflow.approve, approve("approver", tier=1)))
    before = invoices.fakes.events()
    forged = ApproveCommand(Actor("approver2", roles=["finance_manager"], rule="forged"), tier=2)
    error = await refused(handle.execute_update(InvoiceWorkflow.approve, forged, id="forged"), "no_authority")
    assert "approver2" in error.message
    # Refused by the store check while recording: the update ran but recorded nothing and changed nothing.
    assert invoices.fakes.events() == before
    state = await state_of(handle)
    assert state.status == "pending_approval" and [a.approver for a in state.approvals] == ["approver"]


async def test_two_approvers_on_the_same_tier_only_the_first_counts(invoices: Invoices) -> None:
    invoices.fakes.tiers = TWO_TIERS
    handle = await invoices.start(release_at=in_ten_days())
    await submit(handle)
    results = await asyncio.gather(
        bounded(handle.execute_update(InvoiceWorkflow.approve, approve("approver", tier=1))),
        bounded(handle.execute_update(InvoiceWorkflow.approve, approve("approver2", tier=1))),
        return_exceptions=True,
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1
    cause = getattr(failures[0], "cause", None)
    assert getattr(cause, "type", None) == "tier_already_approved"
    assert invoices.fakes.events().count("approve_tier") == 1


async def test_a_delegate_approves_with_both_names_recorded(invoices: Invoices) -> None:
    invoices.fakes.tiers = TWO_TIERS
    invoices.fakes.delegations.add(("manager", "approver2", "finance_manager"))
    handle = await invoices.start(release_at=in_ten_days())
    await submit(handle)
    await bounded(handle.execute_update(InvoiceWorkflow.approve, approve("approver", tier=1)))
    state = await bounded(
        handle.execute_update(InvoiceWorkflow.approve, approve("approver2", tier=2, on_behalf_of="manager"))
    )
    assert state.status == "approved"
    assert (state.approvals[1].approver, state.approvals[1].on_behalf_of) == ("approver2", "manager")
    assert invoices.fakes.records[-1].authority is not None
    assert invoices.fakes.records[-1].authority.on_behalf_of == "manager"


async def test_a_delegation_that_does_not_exist_is_refused(invoices: Invoices) -> None:
    invoices.fakes.tiers = TWO_TIERS
    handle = await invoices.start(release_at=in_ten_days())
    await submit(handle)
    await bounded(handle.execute_update(InvoiceWorkflow.approve, approve("approver", tier=1)))
    before = invoices.fakes.events()
    await refused(
        handle.execute_update(
            InvoiceWorkflow.approve, approve("approver2", 2, on_behalf_of="manager"), id="no-delegation"
        ),
        "no_authority",
    )
    assert invoices.fakes.events() == before


async def test_a_delegate_cannot_approve_what_they_prepared(invoices: Invoices) -> None:
    invoices.fakes.tiers = ["finance_manager"]
    invoices.fakes.delegations.add(("manager", "preparer", "finance_manager"))
    handle = await invoices.start(release_at=in_ten_days())
    await submit(handle)  # by preparer
    before = invoices.fakes.events()
    error = await refused(
        handle.execute_update(
            InvoiceWorkflow.approve, approve("preparer", 1, "manager"), id="delegate-preparer"
        ),
        "segregation_of_duties",
    )
    assert details(error)["rule"] in ("preparer_cannot_approve", "submitter_cannot_approve")
    await assert_left_no_trace(handle, "delegate-preparer", invoices.fakes, before)


async def test_an_edit_after_an_approval_voids_it_and_says_so(invoices: Invoices) -> None:
    invoices.fakes.tiers = TWO_TIERS
    handle = await invoices.start(release_at=in_ten_days())
    await submit(handle)
    await bounded(handle.execute_update(InvoiceWorkflow.approve, approve("approver", tier=1)))
    state = await bounded(
        handle.execute_update(
            InvoiceWorkflow.edit, EditCommand(actor("preparer2"), draft(release_at=in_ten_days()))
        )
    )
    assert state.status == "draft" and state.approvals == [] and state.plan is None
    assert invoices.fakes.records[-1].reason == "edited; approvals voided: tier 1 by approver"
    # The next submission starts from tier 1 again, and the editor is barred from approving.
    await bounded(handle.execute_update(InvoiceWorkflow.submit, Command(actor("preparer"))))
    await refused(
        handle.execute_update(InvoiceWorkflow.approve, approve("preparer2", tier=1)), "segregation_of_duties"
    )


SLA = InvoiceConfig(
    record_timeout_seconds=30,
    delivery_timeout_seconds=30,
    delivery_retry_max_interval_seconds=1,
    approval_reminder_seconds=24 * 3600,
    approval_escalation_seconds=72 * 3600,
)


async def test_a_waiting_tier_reminds_its_approvers_then_alerts_the_supervisor(timed: Invoices) -> None:
    timed.fakes.tiers = TWO_TIERS
    handle = await timed.start(release_at=in_ten_days(), config=SLA)
    await submit(handle)
    await timed.client_sleep(timedelta(hours=23))
    assert timed.fakes.notifications == []
    await timed.client_sleep(timedelta(hours=2))
    assert [n.kind for n in timed.fakes.notifications] == ["approval_reminder"]
    assert timed.fakes.notifications[0].role == "ar_approver"
    await timed.client_sleep(timedelta(hours=48))
    assert [n.kind for n in timed.fakes.notifications] == ["approval_reminder", "approval_escalation"]
    state = await state_of(handle)
    assert state.escalated and "escalate_approval" in timed.fakes.events()

    # The supervisor hands tier 1 to approver2: only approver2 may approve it now, and the clock restarts.
    state = await bounded(
        handle.execute_update(
            InvoiceWorkflow.reassign,
            ReassignCommand(actor("supervisor"), 1, "approver2", "approver is on leave"),
        )
    )
    assert state.assignments[-1].assignee == "approver2" and not state.escalated
    await refused(
        handle.execute_update(InvoiceWorkflow.approve, approve("approver", tier=1)), "segregation_of_duties"
    )
    await timed.client_sleep(timedelta(hours=25))
    assert timed.fakes.notifications[-1].assignee == "approver2"
    state = await bounded(handle.execute_update(InvoiceWorkflow.approve, approve("approver2", tier=1)))
    assert [a.approver for a in state.approvals] == ["approver2"]


async def test_only_a_supervisor_reassigns_and_only_the_waiting_tier(invoices: Invoices) -> None:
    invoices.fakes.tiers = TWO_TIERS
    handle = await invoices.start(release_at=in_ten_days())
    await submit(handle)
    await refused(
        handle.execute_update(
            InvoiceWorkflow.reassign, ReassignCommand(actor("approver"), 1, "approver2", "mine")
        ),
        "no_authority",
    )
    await refused(
        handle.execute_update(
            InvoiceWorkflow.reassign, ReassignCommand(actor("supervisor"), 2, "manager", "later")
        ),
        "tier_already_approved",
    )
    await refused(
        handle.execute_update(
            InvoiceWorkflow.reassign, ReassignCommand(actor("supervisor"), 1, "preparer", "x")
        ),
        "segregation_of_duties",
    )
