"""CapaWorkflow on the time-skipping server: reminders on durable timers, extensions approved only by
someone who is not the owner and holds the approving role, and the effectiveness check after the window
(effective, inconclusive, and ineffective: the CAPA reopens and is checked again). The recording and the
recurrence count are fakes registered under the real activity names."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from activities.converter import DATA_CONVERTER
from tests.workflows.conftest import bounded, details, refused
from workflows.capa import CapaWorkflow
from workflows.capa_types import (
    CapaAction,
    CapaConfig,
    CapaInput,
    CapaState,
    CapaTransition,
    CompleteCommand,
    ExtensionDecision,
    ExtensionRequest,
    RecurrenceFigures,
    RecurrenceRequest,
    capa_workflow_id,
)
from workflows.types import Actor, RecordResult

Handle = WorkflowHandle[Any, CapaState]
DAY = 86400.0
ROLES = {"owner": "collector", "owner2": "ar_preparer", "supervisor": "ar_supervisor", "clerk": "ar_preparer"}
HISTORY = Path(__file__).parent / "histories" / "v3" / "capa_reopen.json"


def who(username: str, role: str | None = None) -> Actor:
    role = role or ROLES[username]
    return Actor(username, [role], f"p, {role}, *, capa")


@dataclass
class FakeCapa:
    records: list[CapaTransition] = field(default_factory=list)
    figures: list[RecurrenceFigures] = field(default_factory=list)  # answered in order
    asked: list[RecurrenceRequest] = field(default_factory=list)

    @activity.defn(name="record_capa")
    async def record_capa(self, rec: CapaTransition) -> RecordResult:
        # As the real one: the decider's role is the store's (here ROLES), not the command's claim.
        if rec.required_roles and ROLES.get(rec.actor.username) not in rec.required_roles:
            raise ApplicationError("no role in the store", type="no_authority", non_retryable=True)
        self.records.append(rec)
        return RecordResult("", len(self.records), f"{len(self.records):064x}", rec.at)

    @activity.defn(name="capa_recurrence")
    async def capa_recurrence(self, req: RecurrenceRequest) -> RecurrenceFigures:
        self.asked.append(req)
        return self.figures.pop(0)

    def events(self) -> list[str]:
        return [r.event for r in self.records]


@dataclass
class Capas:
    env: WorkflowEnvironment
    fakes: FakeCapa = field(default_factory=FakeCapa)
    task_queue: str = field(default_factory=lambda: f"capa-test-{uuid.uuid4().hex[:8]}")
    started: list[Handle] = field(default_factory=list)

    async def start(self, config: CapaConfig, corrective_in: float, preventive_in: float) -> Handle:
        now = await self.env.get_current_time()
        capa_id = f"DSP-2026-{uuid.uuid4().hex[:6]}"
        inp = CapaInput(
            legal_entity="ACME",
            capa_id=capa_id,
            dispute_id=str(uuid.uuid4()),
            case_number=capa_id,
            root_cause="BIL",
            customer_id="customer-initech",
            function="billing",
            corrective=CapaAction("owner", (now + timedelta(seconds=corrective_in)).isoformat(), "credit it"),
            preventive=CapaAction(
                "owner2", (now + timedelta(seconds=preventive_in)).isoformat(), "fix the rule"
            ),
            opened_by=who("owner"),
            config=config,
        )
        handle: Handle = await self.env.client.start_workflow(
            CapaWorkflow.run, inp, id=capa_workflow_id("ACME", capa_id), task_queue=self.task_queue
        )
        self.started.append(handle)
        return handle

    async def terminate_running(self) -> None:
        """Leave nothing waiting on the shared server: its clock skips only when no task is outstanding."""
        for handle in self.started:
            if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                await handle.terminate("test finished")

    async def sleep(self, seconds: float) -> None:
        await self.env.sleep(timedelta(seconds=seconds))


@pytest.fixture
async def capas(own_time_env: WorkflowEnvironment) -> AsyncIterator[Capas]:
    c = Capas(own_time_env)
    async with Worker(
        own_time_env.client,
        task_queue=c.task_queue,
        workflows=[CapaWorkflow],
        activities=[c.fakes.record_capa, c.fakes.capa_recurrence],
    ):
        try:
            yield c
        finally:
            await c.terminate_running()


CONFIG = CapaConfig(
    reminder_lead_seconds=3 * DAY,
    overdue_reminder_seconds=2 * DAY,
    max_overdue_reminders=2,
    effectiveness_window_seconds=90 * DAY,
    reopen_due_seconds=30 * DAY,
)


async def state(handle: Handle) -> CapaState:
    s = await bounded(handle.query(CapaWorkflow.state))
    assert s is not None
    return s


async def opened(capas: Capas, corrective_in: float = 10 * DAY, preventive_in: float = 20 * DAY) -> Handle:
    handle = await capas.start(CONFIG, corrective_in, preventive_in)
    await capas.sleep(1)
    assert (await state(handle)).status == "open"
    return handle


def complete(username: str, note: str = "done") -> CompleteCommand:
    return CompleteCommand(who(username), note)


def reminders(fakes: FakeCapa) -> list[tuple[str, str]]:
    return [(r.action, r.reason.split(":")[0]) for r in fakes.records if r.event == "remind"]


async def test_owners_are_reminded_before_and_at_the_due_date_then_while_overdue(capas: Capas) -> None:
    handle = await opened(capas)
    await capas.sleep(6 * DAY)  # day 6: nothing yet (corrective due day 10, reminded from day 7)
    assert reminders(capas.fakes) == []
    await capas.sleep(1.5 * DAY)  # day 7.5
    assert reminders(capas.fakes) == [("corrective", "due_soon")]
    await capas.sleep(3 * DAY)  # day 10.5: due
    assert reminders(capas.fakes) == [("corrective", "due_soon"), ("corrective", "due")]
    await bounded(handle.execute_update(CapaWorkflow.complete_corrective, complete("owner", "credited")))
    await capas.sleep(20 * DAY)  # day 30.5: preventive reminded before, at, and twice overdue; no more
    assert reminders(capas.fakes)[2:] == [
        ("preventive", "due_soon"),
        ("preventive", "due"),
        ("preventive", "overdue"),
        ("preventive", "overdue"),
    ]
    assert {r.state.preventive.owner for r in capas.fakes.records if r.action == "preventive"} == {"owner2"}


async def test_only_the_owner_completes_an_action_and_says_what_was_done(capas: Capas) -> None:
    handle = await opened(capas)
    error = await refused(
        handle.execute_update(CapaWorkflow.complete_corrective, complete("supervisor")),
        "segregation_of_duties",
    )
    assert "owner" in error.message
    await refused(
        handle.execute_update(CapaWorkflow.complete_corrective, complete("owner", " ")), "invalid_command"
    )
    assert capas.fakes.events() == ["open"]


async def test_the_due_date_moves_only_by_an_extension_a_non_owner_supervisor_approves(capas: Capas) -> None:
    handle = await opened(capas)
    first_due = (await state(handle)).corrective.due
    later = (datetime.fromisoformat(first_due) + timedelta(days=14)).isoformat()
    ask = ExtensionRequest(who("owner"), "corrective", later, "waiting on the customer's credit note")
    # Only the owner asks.
    await refused(
        handle.execute_update(
            CapaWorkflow.request_extension, ExtensionRequest(who("clerk"), "corrective", later, "x")
        ),
        "segregation_of_duties",
    )
    s = await bounded(handle.execute_update(CapaWorkflow.request_extension, ask))
    assert s.corrective.due == first_due and s.corrective.extension is not None
    # The owner never approves their own extension, even holding the role.
    error = await refused(
        handle.execute_update(
            CapaWorkflow.approve_extension, ExtensionDecision(who("owner", "ar_supervisor"), "corrective")
        ),
        "segregation_of_duties",
    )
    assert details(error)["rule"] == "segregation_of_duties"
    # Someone else without an approving role: refused.
    await refused(
        handle.execute_update(CapaWorkflow.approve_extension, ExtensionDecision(who("clerk"), "corrective")),
        "no_authority",
    )
    # Claiming the role is not enough: the store (the recording activity) says who holds it.
    await refused(
        handle.execute_update(
            CapaWorkflow.approve_extension, ExtensionDecision(who("clerk", "ar_supervisor"), "corrective")
        ),
        "no_authority",
    )
    s = await state(handle)
    assert s.corrective.due == first_due and s.corrective.extension is not None
    s = await bounded(
        handle.execute_update(
            CapaWorkflow.approve_extension, ExtensionDecision(who("supervisor"), "corrective", "fair")
        )
    )
    assert (
        s.corrective.due == later and s.corrective.extension is None and s.corrective.extensions_approved == 1
    )
    assert capas.fakes.events() == ["open", "request_extension", "approve_extension"]
    # A refused request leaves the due date where it was.
    later2 = (datetime.fromisoformat(later) + timedelta(days=7)).isoformat()
    await bounded(
        handle.execute_update(
            CapaWorkflow.request_extension, ExtensionRequest(who("owner"), "corrective", later2, "again")
        )
    )
    s = await bounded(
        handle.execute_update(
            CapaWorkflow.refuse_extension, ExtensionDecision(who("supervisor"), "corrective", "no more")
        )
    )
    assert s.corrective.due == later and s.corrective.extension is None
    # Reminders follow the new due date: none at the old one.
    await capas.sleep(12 * DAY)
    assert ("corrective", "due") not in reminders(capas.fakes)


def figures(cb: int, ib: int, ca: int, ia: int) -> RecurrenceFigures:
    return RecurrenceFigures(cb, ib, ca, ia, "test")


async def done_and_checked(capas: Capas, handle: Handle) -> CapaState:
    await bounded(handle.execute_update(CapaWorkflow.complete_corrective, complete("owner", "credited")))
    s = await bounded(
        handle.execute_update(CapaWorkflow.complete_preventive, complete("owner2", "rule fixed"))
    )
    assert s.status == "checking" and s.check_due_at
    await capas.sleep(89 * DAY)
    assert (await state(handle)).status == "checking"
    await capas.sleep(2 * DAY)
    return await state(handle)


async def test_an_effective_check_closes_the_capa_with_its_figures(capas: Capas) -> None:
    capas.fakes.figures = [figures(8, 100, 2, 120)]  # 8.00 -> 1.67 per 100 invoices
    handle = await opened(capas)
    s = await done_and_checked(capas, handle)
    assert s.status == "closed"
    [check] = s.checks
    assert (check.outcome, check.rate_before, check.rate_after, check.scope) == (
        "effective",
        "8.00",
        "1.67",
        "customer",
    )
    req = capas.fakes.asked[0]
    split = datetime.fromisoformat(req.split)
    assert (
        datetime.fromisoformat(req.after_to) - split
        == timedelta(days=90)
        == split - datetime.fromisoformat(req.before_from)
    )
    assert (req.root_cause, req.customer_id) == ("BIL", "customer-initech")
    assert capas.fakes.events()[-3:] == ["complete_preventive", "check", "close"]
    assert capas.fakes.records[-2].check == check


async def test_too_few_invoices_make_the_check_inconclusive(capas: Capas) -> None:
    capas.fakes.figures = [figures(8, 100, 0, 19)]
    handle = await opened(capas)
    s = await done_and_checked(capas, handle)
    assert s.status == "closed" and s.checks[0].outcome == "inconclusive"
    assert "fewer than 20" in s.checks[0].why


async def test_a_recurring_root_cause_reopens_the_capa_and_it_is_checked_again(capas: Capas) -> None:
    # Rate 4.00 -> 3.00 per 100: fell by a quarter, not a half. Then 4.00 -> 1.00: effective.
    capas.fakes.figures = [figures(4, 100, 3, 100), figures(3, 100, 1, 100)]
    handle = await opened(capas)
    s = await done_and_checked(capas, handle)
    assert s.status == "open" and s.reopened == 1
    assert s.checks[0].outcome == "ineffective" and (s.checks[0].rate_before, s.checks[0].rate_after) == (
        "4.00",
        "3.00",
    )
    assert s.preventive.status == "open" and s.corrective.status == "done"
    due = datetime.fromisoformat(s.preventive.due)
    assert timedelta(days=29) < due - datetime.fromisoformat(s.checks[0].after_to) <= timedelta(days=31)
    assert capas.fakes.events()[-2:] == ["check", "reopen"]
    # No check is pending until the preventive action is done again.
    await capas.sleep(100 * DAY)
    assert len(capas.fakes.asked) == 1
    s = await bounded(
        handle.execute_update(CapaWorkflow.complete_preventive, complete("owner2", "rule fixed again"))
    )
    assert s.status == "checking"
    await capas.sleep(91 * DAY)
    s = await state(handle)
    assert s.status == "closed" and [c.outcome for c in s.checks] == ["ineffective", "effective"]
    assert await bounded(handle.result()) == s
    await replays_and_maybe_records(handle)


async def replays_and_maybe_records(handle: Handle) -> None:
    """The run's history replays on the current code; CASHCYCLE_RECORD_HISTORIES=1 saves it as the golden
    history of CapaWorkflow (tests/workflows/test_replay.py replays every committed one)."""
    history = await handle.fetch_history()
    await Replayer(workflows=[CapaWorkflow], data_converter=DATA_CONVERTER).replay_workflow(history)
    if os.environ.get("CASHCYCLE_RECORD_HISTORIES") == "1":
        HISTORY.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
