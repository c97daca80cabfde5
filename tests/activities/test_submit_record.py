"""submit_invoice: the approval tiers read from the matrix in force, and the submission recorded with
them in the same transaction; a retry answers with the plan as recorded, whatever the matrix says since
(SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from sqlmodel import col, select

from activities.approval_matrix import MatrixFile
from activities.db import Store, reading
from activities.models import Invoice, LedgerEntry
from activities.transitions import TransitionActivities
from tests.activities.test_store import ERP, create, invoice_state, store, transition
from workflows.types import PlanRequest, SubmitRequest

__all__ = ["store"]  # the fixture, shared with test_store

MATRIX = """
version = "{version}"

[invoice]
tiers = [
  {{ up_to = "{limit}", role = "ar_approver" }},
  {{ role = "finance_manager" }},
]

[credit_memo]
tiers = [{{ role = "ar_approver" }}]

[write_off]
tiers = [{{ role = "ar_approver" }}]
"""


def write_matrix(path: Path, version: str, limit: str) -> None:
    path.write_text(MATRIX.format(version=version, limit=limit))


def test_the_submission_is_recorded_with_the_tiers_and_a_retry_keeps_them(
    store: Store, tmp_path: Path
) -> None:
    matrix_path = tmp_path / "matrix.toml"
    write_matrix(matrix_path, "v1", "10000")  # the default draft, 1,500.00 EUR: one tier
    activities = TransitionActivities(store, MatrixFile(matrix_path))
    create(store)
    state = replace(invoice_state(), status="pending_approval", transition_seq=2)
    request = SubmitRequest(
        PlanRequest("ACME", "invoice", state.draft.total_minor, "EUR", state.draft.exchange_rate),
        transition(state=state, event="submit", from_status="draft", actor=ERP, reason="please"),
    )

    first = activities.submit_invoice(request)
    assert first.plan.matrix_version.startswith("v1") and [t.role for t in first.plan.tiers] == [
        "ar_approver"
    ]
    assert first.reason == f"please [tiers 1:ar_approver (matrix {first.plan.matrix_version})]"

    # The matrix changes (1,500.00 now needs two tiers); the same activity is retried after its commit.
    write_matrix(matrix_path, "v2", "1000")
    again = activities.submit_invoice(request)
    assert again == first

    with reading(store) as session:
        entries = list(
            session.exec(
                select(LedgerEntry)
                .where(LedgerEntry.object_id == state.invoice_id)
                .order_by(col(LedgerEntry.seq))
            )
        )
        inv = session.get(Invoice, state.invoice_id)
    assert [e.event for e in entries] == ["create", "submit"]
    assert entries[1].reason == first.reason
    payload = json.loads(entries[1].payload)
    assert payload["tiers"] == ["ar_approver"] and payload["matrix_version"] == first.plan.matrix_version
    assert inv is not None and inv.status == "pending_approval"
    assert json.loads(inv.approval_json)["plan"]["matrix_version"] == first.plan.matrix_version

    # The next submission (a new seq) reads the matrix as it is now.
    resubmitted = replace(state, transition_seq=3)
    later = activities.submit_invoice(
        replace(
            request,
            transition=transition(
                state=resubmitted, event="submit", from_status="draft", actor=ERP, reason="again"
            ),
        )
    )
    assert later.plan.matrix_version.startswith("v2")
    assert [t.role for t in later.plan.tiers] == ["ar_approver", "finance_manager"]
