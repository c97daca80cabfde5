"""Cashcycle's data converter writes the bytes Temporal's default converter writes and reads them back
to the same values, for every dataclass that crosses the workflow boundary; it refuses what does not
fit the type (a string where a list is due, too, which Temporal's takes as a list of characters)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.converter import DataConverter

from activities.converter import DATA_CONVERTER, FAST_TYPES
from workflows import types as wtypes

FAST = DATA_CONVERTER.payload_converter
DEFAULT = DataConverter.default.payload_converter

# JSON text of any Unicode: the converters must agree on escapes too.
st.register_type_strategy(str, st.text(max_size=12))
st.register_type_strategy(float, st.floats(allow_nan=False, allow_infinity=False))


def test_every_boundary_dataclass_takes_the_fast_path() -> None:
    defined = {
        obj
        for obj in vars(wtypes).values()
        if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == wtypes.__name__
    }
    assert (
        defined == FAST_TYPES and wtypes.InvoiceState in FAST_TYPES and wtypes.TransitionRecord in FAST_TYPES
    )


@pytest.mark.parametrize("cls", sorted(FAST_TYPES, key=lambda c: c.__name__), ids=lambda c: c.__name__)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_same_bytes_and_same_values_as_temporals_converter(cls: type, data: st.DataObject) -> None:
    value = data.draw(st.from_type(cls))
    [ours] = FAST.to_payloads([value])
    [theirs] = DEFAULT.to_payloads([value])
    assert ours.data == theirs.data and dict(ours.metadata) == dict(theirs.metadata)
    assert FAST.from_payloads([ours], [cls]) == [value]
    assert DEFAULT.from_payloads([ours], [cls]) == [value]


def test_a_whole_transition_record_round_trips() -> None:
    actor = wtypes.Actor(
        username="approver", roles=["ar_approver"], rule="p, ar_approver, *, invoice:approve"
    )
    draft = wtypes.InvoiceDraft(
        customer_id="c1",
        currency="EUR",
        issue_date="2026-11-02",
        due_date="2026-12-02",
        po_number=None,
        lines=[wtypes.Line("Consulting – “Q4”", "10", "125.00", "20", 125000, 25000)],  # noqa: RUF001
        subtotal_minor=125000,
        tax_total_minor=25000,
        total_minor=150000,
        release_at="2026-11-02T00:00:00+00:00",
        payload_hash="ab" * 32,
    )
    state = wtypes.InvoiceState(
        invoice_id="i1",
        workflow_id="invoice/ACME/ERP-1",
        legal_entity="ACME",
        external_id="ERP-1",
        number="",
        status="approved",
        draft=draft,
        created_by="erp",
        editors=[],
        amount_paid_minor=0,
        payments=[],
        status_since="2026-11-02T10:00:00+00:00",
        transition_seq=2,
        approvals=[wtypes.Approval("approver", "2026-11-02T10:00:00+00:00", "ok", 1, "ar_approver", None)],
        plan=wtypes.ApprovalPlan("v1", "invoice", 150000, "EUR", [wtypes.TierRequirement(1, "ar_approver")]),
    )
    record = wtypes.TransitionRecord(
        legal_entity="ACME",
        object_type="invoice",
        object_id="i1",
        workflow_id="invoice/ACME/ERP-1",
        run_id="r1",
        transition_seq=3,
        event="approve",
        from_status="pending_approval",
        to_status="approved",
        actor=actor,
        reason="tier 1",
        at="2026-11-02T10:00:00+00:00",
        request_id="approve:1",
        state=state,
        authority=wtypes.Authority("approver", "ar_approver"),
    )
    [payload] = FAST.to_payloads([record])
    assert payload.data == DEFAULT.to_payloads([record])[0].data
    assert FAST.from_payloads([payload], [wtypes.TransitionRecord]) == [record]


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"username": 7, "roles": [], "rule": "x"}', "field username"),
        (b'{"username": "a", "roles": "admin", "rule": "x"}', "field roles"),
        (b'{"username": "a", "roles": [1], "rule": "x"}', "field roles"),
        (b'{"roles": [], "rule": "x"}', "username"),
        (b'["a", [], "x"]', "not dict|is list"),
    ],
)
def test_what_does_not_fit_the_type_is_refused(body: bytes, why: str) -> None:
    [payload] = DEFAULT.to_payloads([{"placeholder": 1}])
    payload.data = body
    with pytest.raises((TypeError, RuntimeError)) as fast_error:
        FAST.from_payloads([payload], [wtypes.Actor])
    assert any(part in str(fast_error.value) + str(fast_error.value.__cause__) for part in why.split("|"))


def test_other_values_are_left_to_temporals_converter() -> None:
    values: list[Any] = [None, "text", 42, {"a": [1, 2]}, b"\x00bytes"]
    ours = FAST.to_payloads(values)
    assert [p.data for p in ours] == [p.data for p in DEFAULT.to_payloads(values)]
    assert FAST.from_payloads(ours, [type(None), str, int, dict[str, list[int]], bytes]) == values
