"""The invoice state machine, written out as the specification it implements.

The expected table below is typed in by hand from the domain (docs/domain.md), not derived from
`workflows.states`: a change to the table in the code must be a change to this page too.
"""

from __future__ import annotations

import itertools

import pytest

from workflows.states import (
    OPEN_RECEIVABLE,
    TERMINAL,
    TRANSITIONS,
    Event,
    Status,
    TransitionRefused,
    apply,
    can,
    events_from,
)

# (current status, event) -> next status; None is "not created yet". In the order of the code's table.
EXPECTED: dict[tuple[str | None, str], str] = {
    (None, "create"): "draft",
    ("draft", "edit"): "draft",
    ("draft", "submit"): "pending_approval",
    ("draft", "void"): "void",
    ("pending_approval", "edit"): "draft",
    ("pending_approval", "approve_tier"): "pending_approval",
    ("pending_approval", "approve"): "approved",
    ("pending_approval", "remind_approvers"): "pending_approval",
    ("pending_approval", "escalate_approval"): "pending_approval",
    ("pending_approval", "reassign_approval"): "pending_approval",
    ("pending_approval", "reject"): "draft",
    ("pending_approval", "void"): "void",
    ("approved", "deliver"): "submitted",
    ("approved", "void"): "void",
    ("submitted", "portal_reject"): "portal_rejected",
    ("submitted", "portal_accept"): "accepted",
    ("approved", "block_submission"): "portal_rejected",
    ("submitted", "portal_status"): "submitted",
    ("accepted", "portal_status"): "accepted",
    ("partially_paid", "portal_status"): "partially_paid",
    ("disputed", "portal_status"): "disputed",
    ("draft", "resubmit"): "approved",
    ("submitted", "record_partial_payment"): "partially_paid",
    ("submitted", "record_final_payment"): "paid",
    ("portal_rejected", "fix"): "draft",
    ("accepted", "record_partial_payment"): "partially_paid",
    ("accepted", "record_final_payment"): "paid",
    ("accepted", "dispute"): "disputed",
    ("accepted", "write_off"): "written_off",
    ("partially_paid", "record_partial_payment"): "partially_paid",
    ("partially_paid", "record_final_payment"): "paid",
    ("partially_paid", "dispute"): "disputed",
    ("partially_paid", "write_off"): "written_off",
    ("disputed", "resolve_dispute"): "accepted",
    ("disputed", "record_partial_payment"): "disputed",
    ("disputed", "record_final_payment"): "paid",
    ("disputed", "write_off"): "written_off",
    ("draft", "remind"): "draft",
    ("pending_approval", "remind"): "pending_approval",
    ("portal_rejected", "remind"): "portal_rejected",
    ("draft", "escalate"): "draft",
    ("pending_approval", "escalate"): "pending_approval",
    ("approved", "escalate"): "approved",
    ("submitted", "escalate"): "submitted",
    ("portal_rejected", "escalate"): "portal_rejected",
    # Disputes and adjustments (issue 11).
    ("disputed", "resolve_dispute_paid_in_part"): "partially_paid",
    ("submitted", "dispute"): "disputed",
    ("disputed", "dispute"): "disputed",
    ("submitted", "apply_credit"): "submitted",
    ("accepted", "apply_credit"): "accepted",
    ("partially_paid", "apply_credit"): "partially_paid",
    ("disputed", "apply_credit"): "disputed",
    ("submitted", "apply_final_credit"): "credited",
    ("accepted", "apply_final_credit"): "credited",
    ("partially_paid", "apply_final_credit"): "credited",
    ("disputed", "apply_final_credit"): "credited",
    ("submitted", "write_off_part"): "submitted",
    ("accepted", "write_off_part"): "accepted",
    ("partially_paid", "write_off_part"): "partially_paid",
    ("disputed", "write_off_part"): "disputed",
    ("submitted", "write_off"): "written_off",
}

STATUSES = [
    "draft",
    "pending_approval",
    "approved",
    "submitted",
    "portal_rejected",
    "accepted",
    "partially_paid",
    "paid",
    "disputed",
    "void",
    "written_off",
    "credited",
]
EVENTS = [
    "create",
    "edit",
    "submit",
    "approve_tier",
    "approve",
    "remind_approvers",
    "escalate_approval",
    "reassign_approval",
    "reject",
    "void",
    "deliver",
    "portal_reject",
    "portal_accept",
    "portal_status",
    "block_submission",
    "fix",
    "resubmit",
    "record_partial_payment",
    "record_final_payment",
    "dispute",
    "resolve_dispute",
    "resolve_dispute_paid_in_part",
    "write_off",
    "write_off_part",
    "apply_credit",
    "apply_final_credit",
    "remind",
    "escalate",
]

ALL_PAIRS = list(itertools.product([None, *STATUSES], EVENTS))
REFUSED_PAIRS = [pair for pair in ALL_PAIRS if pair not in EXPECTED]


def status_of(name: str | None) -> Status | None:
    return Status(name) if name is not None else None


def pair_id(pair: tuple[str | None, str]) -> str:
    return f"{pair[0] or 'not_created'}-{pair[1]}"


def test_the_statuses_and_events_are_the_specified_ones() -> None:
    assert [s.value for s in Status] == STATUSES
    assert [e.value for e in Event] == EVENTS


def test_the_table_holds_exactly_the_specified_transitions() -> None:
    actual = {(s.value if s else None, e.value): to.value for (s, e), to in TRANSITIONS.items()}
    assert actual == EXPECTED


@pytest.mark.parametrize(("pair", "target"), list(EXPECTED.items()), ids=[pair_id(p) for p in EXPECTED])
def test_allowed_transition_leads_to_its_target(pair: tuple[str | None, str], target: str) -> None:
    status, event = status_of(pair[0]), Event(pair[1])
    assert can(status, event)
    assert apply(status, event) == Status(target)


@pytest.mark.parametrize("pair", REFUSED_PAIRS, ids=[pair_id(p) for p in REFUSED_PAIRS])
def test_any_other_event_is_refused_naming_the_current_status(pair: tuple[str | None, str]) -> None:
    status, event = status_of(pair[0]), Event(pair[1])
    assert not can(status, event)
    with pytest.raises(TransitionRefused) as refused:
        apply(status, event)
    assert refused.value.status == status
    assert refused.value.event == event
    where = pair[0] if pair[0] is not None else "(not created)"
    assert str(refused.value) == f"cannot {pair[1]} an invoice in status {where}"


def test_every_status_and_event_pair_is_either_allowed_or_refused() -> None:
    assert len(ALL_PAIRS) == 13 * 28
    assert len(EXPECTED) + len(REFUSED_PAIRS) == len(ALL_PAIRS)


def test_paid_void_written_off_and_credited_are_the_terminal_statuses() -> None:
    assert {s.value for s in TERMINAL} == {"paid", "void", "written_off", "credited"}


@pytest.mark.parametrize("terminal", ["paid", "void", "written_off", "credited"])
def test_terminal_status_allows_no_event(terminal: str) -> None:
    assert events_from(Status(terminal)) == []
    for event in Event:
        with pytest.raises(TransitionRefused, match=f"in status {terminal}$"):
            apply(Status(terminal), event)


def test_the_customer_owes_money_once_the_invoice_is_delivered_until_it_is_settled() -> None:
    assert {s.value for s in OPEN_RECEIVABLE} == {"submitted", "accepted", "partially_paid", "disputed"}


def test_an_invoice_is_created_only_once() -> None:
    for status in Status:
        assert not can(status, Event.CREATE)
    assert [event for event in Event if can(None, event)] == [Event.CREATE]


def test_void_is_possible_only_before_delivery() -> None:
    assert {s.value for s in Status if can(s, Event.VOID)} == {"draft", "pending_approval", "approved"}


def test_only_a_pending_invoice_can_be_approved_or_rejected() -> None:
    assert [s.value for s in Status if can(s, Event.APPROVE)] == ["pending_approval"]
    assert [s.value for s in Status if can(s, Event.REJECT)] == ["pending_approval"]


def walk(events: list[str]) -> list[str]:
    status: Status | None = None
    seen = []
    for event in events:
        status = apply(status, Event(event))
        seen.append(status.value)
    return seen


def test_the_main_lifecycle_walks_from_draft_to_paid() -> None:
    events = ["create", "submit", "approve", "deliver", "record_partial_payment", "record_final_payment"]
    assert walk(events) == ["draft", "pending_approval", "approved", "submitted", "partially_paid", "paid"]


def test_a_rejected_invoice_goes_back_to_draft_and_can_be_resubmitted() -> None:
    assert walk(["create", "submit", "reject", "edit", "submit", "approve"]) == [
        "draft",
        "pending_approval",
        "draft",
        "draft",
        "pending_approval",
        "approved",
    ]


def test_a_portal_rejection_is_fixed_in_draft_and_approved_again() -> None:
    first_pass = ["create", "submit", "approve", "deliver", "portal_reject", "fix"]
    second_pass = ["submit", "approve", "deliver", "portal_accept"]
    assert walk(first_pass + second_pass) == [
        "draft",
        "pending_approval",
        "approved",
        "submitted",
        "portal_rejected",
        "draft",
        "pending_approval",
        "approved",
        "submitted",
        "accepted",
    ]


def test_a_dispute_is_resolved_back_to_accepted_or_written_off() -> None:
    prefix = ["create", "submit", "approve", "deliver", "portal_accept", "dispute"]
    assert walk([*prefix, "resolve_dispute", "record_final_payment"])[-3:] == ["disputed", "accepted", "paid"]
    assert walk([*prefix, "record_partial_payment", "write_off"])[-3:] == [
        "disputed",
        "disputed",
        "written_off",
    ]


# Events possible in each status, in the order of the code's table (what the UI offers, in that order).
EXPECTED_EVENTS: dict[str, list[str]] = {
    "draft": ["edit", "submit", "void", "resubmit", "remind", "escalate"],
    "pending_approval": [
        "edit",
        "approve_tier",
        "approve",
        "remind_approvers",
        "escalate_approval",
        "reassign_approval",
        "reject",
        "void",
        "remind",
        "escalate",
    ],
    "approved": ["deliver", "void", "block_submission", "escalate"],
    "submitted": [
        "portal_reject",
        "portal_accept",
        "portal_status",
        "record_partial_payment",
        "record_final_payment",
        "escalate",
        "dispute",
        "apply_credit",
        "apply_final_credit",
        "write_off_part",
        "write_off",
    ],
    "portal_rejected": ["fix", "remind", "escalate"],
    "accepted": [
        "portal_status",
        "record_partial_payment",
        "record_final_payment",
        "dispute",
        "write_off",
        "apply_credit",
        "apply_final_credit",
        "write_off_part",
    ],
    "partially_paid": [
        "portal_status",
        "record_partial_payment",
        "record_final_payment",
        "dispute",
        "write_off",
        "apply_credit",
        "apply_final_credit",
        "write_off_part",
    ],
    "paid": [],
    "disputed": [
        "portal_status",
        "resolve_dispute",
        "record_partial_payment",
        "record_final_payment",
        "write_off",
        "resolve_dispute_paid_in_part",
        "dispute",
        "apply_credit",
        "apply_final_credit",
        "write_off_part",
    ],
    "void": [],
    "written_off": [],
    "credited": [],
}


@pytest.mark.parametrize("status", STATUSES)
def test_events_from_lists_the_events_the_table_allows_in_that_status(status: str) -> None:
    assert [e.value for e in events_from(Status(status))] == EXPECTED_EVENTS[status]
    assert EXPECTED_EVENTS[status] == [event for (source, event) in EXPECTED if source == status]
