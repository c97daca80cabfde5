"""The control tower's workflow updates, `remind` and `escalate`, and the approval SLA as the tower reads
it on the time-skipping server: days pass in seconds, the tier's clock is the workflow's own, and the
rule of policies/sla.toml holds against the server's time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from activities.stuck import DEFAULT_SLA_FILE, Facts, evaluate, load_sla
from tests.workflows.conftest import (
    Invoices,
    actor,
    assert_left_no_trace,
    bounded,
    in_ten_days,
    refused,
    state_of,
    submit,
)
from workflows.invoice import InvoiceWorkflow
from workflows.types import ApproveCommand, InvoiceConfig, ReassignCommand, SupervisorCommand

SUPERVISOR = actor("supervisor")


def remind(reason: str = "month-end close") -> SupervisorCommand:
    return SupervisorCommand(SUPERVISOR, reason, sla_rule="approval_tier_1")


def escalate(reason: str = "customer waiting", to: str = "controller") -> SupervisorCommand:
    return SupervisorCommand(SUPERVISOR, reason, sla_rule="approval_tier_1", escalate_to=to)


async def test_a_supervisor_reminds_the_tiers_approvers_and_escalates_recorded_as_the_slas_events(
    invoices: Invoices,
) -> None:
    handle = await invoices.start(release_at=in_ten_days())
    await submit(handle)
    state = await bounded(handle.execute_update(InvoiceWorkflow.remind, remind(), id="remind-1"))
    assert state.status == "pending_approval" and not state.escalated
    reminder = invoices.fakes.notifications[-1]
    assert (reminder.kind, reminder.tier, reminder.role) == ("supervisor_reminder", 1, "ar_approver")
    assert reminder.note == "supervisor: month-end close"
    rec = invoices.fakes.records[-1]
    assert (rec.event, rec.actor.username, rec.to_status) == (
        "remind_approvers",
        "supervisor",
        "pending_approval",
    )
    assert "month-end close" in rec.reason and "tier 1 (ar_approver)" in rec.reason
    state = await bounded(handle.execute_update(InvoiceWorkflow.escalate, escalate(), id="escalate-1"))
    assert state.escalated
    note = invoices.fakes.notifications[-1]
    assert (note.kind, note.role) == ("supervisor_escalation", "controller")
    assert invoices.fakes.records[-1].event == "escalate_approval"
    assert "escalated to controller" in invoices.fakes.records[-1].reason
    # The same update id again is the same command: answered, not applied twice.
    await bounded(handle.execute_update(InvoiceWorkflow.remind, remind(), id="remind-1"))
    assert invoices.fakes.events().count("remind_approvers") == 1


async def test_a_draft_is_reminded_to_its_preparers(invoices: Invoices) -> None:
    handle = await invoices.start(release_at=in_ten_days())
    await bounded(handle.execute_update(InvoiceWorkflow.remind, remind("please send it"), id="r"))
    note = invoices.fakes.notifications[-1]
    assert (note.kind, note.tier, note.role) == ("supervisor_reminder", 0, "")
    assert invoices.fakes.records[-1].event == "remind"
    assert "the preparers" in invoices.fakes.records[-1].reason


async def test_remind_and_escalate_are_refused_without_a_trace(invoices: Invoices) -> None:
    handle = await invoices.start(release_at=in_ten_days())
    await submit(handle)
    before = invoices.fakes.events()
    cases = [
        (InvoiceWorkflow.remind, SupervisorCommand(SUPERVISOR, "  "), "invalid_command"),
        (InvoiceWorkflow.escalate, SupervisorCommand(SUPERVISOR, "why", escalate_to=""), "invalid_command"),
        (InvoiceWorkflow.remind, SupervisorCommand(actor("approver"), "nudge"), "no_authority"),
    ]
    for i, (update, cmd, code) in enumerate(cases):
        await refused(handle.execute_update(update, cmd, id=f"refused-{i}"), code)
        await assert_left_no_trace(handle, f"refused-{i}", invoices.fakes, before)
    assert invoices.fakes.notifications == []


async def test_nothing_to_remind_once_the_invoice_has_left(invoices: Invoices) -> None:
    handle = await invoices.start(release_at=in_ten_days())
    await submit(handle)
    await bounded(handle.execute_update(InvoiceWorkflow.approve, ApproveCommand(actor("approver"))))
    before = invoices.fakes.events()
    error = await refused(
        handle.execute_update(InvoiceWorkflow.remind, remind(), id="late"), "transition_refused"
    )
    assert error.details[0]["status"] == "approved"
    await assert_left_no_trace(handle, "late", invoices.fakes, before)
    # Approved and waiting for its issue date: an escalation is possible (nothing is being delivered).
    state = await bounded(handle.execute_update(InvoiceWorkflow.escalate, escalate(), id="esc"))
    assert state.status == "approved" and invoices.fakes.records[-1].event == "escalate"


async def test_the_approval_sla_runs_out_on_the_servers_clock_and_the_tower_sees_it(timed: Invoices) -> None:
    """Days pass on the time-skipping server: the tier waits, the workflow's own reminder fires, and the
    rule of policies/sla.toml, evaluated against the server's time, calls it stuck after two business days
    (a calendar that skips weekends may need up to four days)."""
    assert timed.env is not None
    config = InvoiceConfig(approval_reminder_seconds=3 * 86400, approval_escalation_seconds=30 * 86400)
    handle = await timed.start(release_at=in_ten_days(), config=config)
    await submit(handle)
    sla = load_sla(DEFAULT_SLA_FILE)

    async def verdict() -> str | None:
        state = await state_of(handle)
        now = (await timed.env.get_current_time()).astimezone(UTC)  # type: ignore[union-attr]
        tier_since = datetime.fromisoformat(state.tier_since)
        facts = Facts(
            invoice_id=state.invoice_id,
            legal_entity="ACME",
            status=state.status,
            status_since=datetime.fromisoformat(state.status_since),
            issue_date=date.fromisoformat(state.draft.issue_date),
            tier=1,
            tier_role="ar_approver",
            tier_since=tier_since,
        )
        found = evaluate(sla, facts, "FR", "Europe/Paris", now)
        return found.rule.id if found else None

    assert await verdict() is None
    await timed.client_sleep(timedelta(hours=12))
    assert await verdict() is None
    await timed.client_sleep(timedelta(days=4))
    assert await verdict() == "approval_tier_1"
    assert "remind_approvers" in timed.fakes.events()  # the workflow's own SLA timer fired meanwhile
    # A reassignment restarts the tier's clock: not stuck any more.
    await bounded(
        handle.execute_update(InvoiceWorkflow.reassign, ReassignCommand(SUPERVISOR, 1, "approver2", "cover"))
    )
    assert await verdict() is None
