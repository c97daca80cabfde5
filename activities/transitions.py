"""Recording invoice transitions: the ledger entry and the read model, in one database transaction.

Idempotent on (workflow id, transition seq): Temporal retries activities, and a retry after a crash
between commit and reply finds the entry and returns the same result.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, case
from sqlalchemy import select as sa_select
from sqlalchemy import update as sa_update
from sqlmodel import Session, col, delete
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.approval_matrix import MatrixFile
from activities.approvals import authority_refusal, plan_for
from activities.db import Store, writing
from activities.directory import roles_of
from activities.ledger import LedgerFacts, append_to_ledger, find_by_business_key
from activities.models import Invoice, InvoiceLine, Payment, PaymentAllocation, PortalSubmission
from activities.numbering import allocate_number, issue_number  # noqa: F401 (re-exported)
from workflows.approval import current_tier, preparers, submission_reason
from workflows.types import (
    ApprovalPlan,
    InvoiceState,
    RecordResult,
    SubmitRequest,
    SubmitResult,
    TierRequirement,
    TransitionRecord,
)


def _lines(state: InvoiceState) -> list[InvoiceLine]:
    return [
        InvoiceLine(
            invoice_id=state.invoice_id,
            line_no=i,
            description=line.description,
            quantity=line.quantity,
            unit_price=line.unit_price,
            tax_rate=line.tax_rate,
            net_minor=line.net_minor,
            tax_minor=line.tax_minor,
        )
        for i, line in enumerate(state.draft.lines, start=1)
    ]


def waiting_values(state: InvoiceState) -> dict[str, object]:
    """The tier waiting for approval, as the inbox reads it (Invoice.waiting_*): from the same rules the
    workflow's validator applies (workflows/approval.py)."""
    tier = current_tier(state)
    if tier is None:
        return {"waiting_role": "", "waiting_tier": 0, "waiting_since": None, "sod_barred": ""}
    barred = set(preparers(state))
    for a in state.approvals:
        barred.add(a.approver)
        if a.on_behalf_of:
            barred.add(a.on_behalf_of)
    return {
        "waiting_role": tier.role,
        "waiting_tier": tier.level,
        "waiting_since": datetime.fromisoformat(state.tier_since or state.status_since),
        "sod_barred": "|" + "|".join(sorted(barred)) + "|",
    }


def approval_sla(state: InvoiceState, event: str, waiting_since: object) -> Any:
    """The waiting tier's SLA state, as an SQL expression over the row's current values (so that a
    reminder stays shown until the tier moves): escalated, reminded since the tier started, or on time."""
    if current_tier(state) is None:
        return ""
    if state.escalated:
        return "escalated"
    if event == "remind_approvers":
        return "reminded"
    return case(
        (
            and_(col(Invoice.approval_sla) == "reminded", col(Invoice.waiting_since) == waiting_since),
            "reminded",
        ),
        else_="on_time",
    )


def _read_model_values(state: InvoiceState, at: datetime) -> dict[str, object]:
    d = state.draft
    return {
        **waiting_values(state),
        "status": state.status,
        "customer_id": d.customer_id,
        "currency": d.currency,
        "subtotal_minor": d.subtotal_minor,
        "tax_total_minor": d.tax_total_minor,
        "total_minor": d.total_minor,
        "amount_paid_minor": state.amount_paid_minor,
        "amount_due_minor": d.total_minor
        - state.amount_paid_minor
        - state.amount_credited_minor
        - state.amount_written_off_minor,
        "dispute_id": state.dispute_id,
        "disputed_minor": state.disputed_minor,
        "credited_minor": state.amount_credited_minor,
        "written_off_minor": state.amount_written_off_minor,
        "issue_date": date.fromisoformat(d.issue_date),
        "due_date": date.fromisoformat(d.due_date),
        "po_number": d.po_number,
        "transition_seq": state.transition_seq,
        "status_since": datetime.fromisoformat(state.status_since),
        "updated_at": at,
        "delivered_at": datetime.fromisoformat(state.delivered_at) if state.delivered_at else None,
        "approvals_json": json.dumps([asdict(a) for a in state.approvals]),
        "editors_json": json.dumps(state.editors),
        "submitters_json": json.dumps(state.submitters),
        "number": state.number or None,
        "exchange_rate": d.exchange_rate,
        "matrix_version": state.plan.matrix_version if state.plan else None,
        "approval_json": json.dumps(
            {
                "plan": asdict(state.plan) if state.plan else None,
                "assignments": [asdict(a) for a in state.assignments],
                "tier_since": state.tier_since,
                "escalated": state.escalated,
                "submission": state.submission,
            }
        ),
    }


def evidence_roles(session: Session, rec: TransitionRecord) -> list[str]:
    """The roles the actor held at that moment, from the store (a client's claim is not evidence)."""
    if rec.actor.username == "system":
        return list(rec.actor.roles)
    roles = roles_of(session, rec.actor.username, rec.legal_entity)
    if rec.authority is not None and rec.authority.on_behalf_of:
        roles.append(f"delegated:{rec.authority.role}:{rec.authority.on_behalf_of}")
    return roles


def record_transition(session: Session, rec: TransitionRecord) -> RecordResult:
    business_key = f"{rec.workflow_id}#{rec.transition_seq}"
    done = find_by_business_key(session, business_key)
    if done is not None:
        if (done.event, done.request_id) != (rec.event, rec.request_id):
            # Transition `seq` of this workflow is already recorded, as something else: the workflow and
            # the ledger disagree. Never report another transition as this one's record.
            raise ApplicationError(
                f"{business_key} is recorded as {done.event} ({done.request_id or 'no request'}), "
                f"not {rec.event} ({rec.request_id or 'no request'})",
                type="ledger_conflict",
                non_retryable=True,
            )
        number = session.execute(
            sa_select(col(Invoice.number)).where(col(Invoice.id) == rec.object_id)
        ).scalar_one()
        return RecordResult(number=number or "", ledger_seq=done.seq, entry_hash=done.entry_hash, at=done.at)

    state = rec.state
    at = datetime.fromisoformat(rec.at)
    if rec.authority is not None:
        # The approver's authority, checked against the store in the transaction that records it.
        refusal = authority_refusal(session, rec.legal_entity, rec.authority, at)
        if refusal is not None:
            raise ApplicationError(refusal, type="no_authority", non_retryable=True)
    number = state.number
    if rec.event == "create":
        session.add(
            Invoice(
                id=state.invoice_id,
                legal_entity=rec.legal_entity,
                external_id=state.external_id,
                workflow_id=rec.workflow_id,
                created_by=state.created_by,
                created_at=at,
                payload_hash=state.draft.payload_hash,  # the ERP's creation payload, for idempotent re-sends
                **_read_model_values(state, at),  # type: ignore[arg-type]
            )
        )
        session.flush()
        session.add_all(_lines(state))
    else:
        # The number is allocated by an activity as the invoice is issued: the store may know it before the
        # workflow does. Never lose it; and tell the workflow (RecordResult.number).
        if not number:
            stored = session.execute(
                sa_select(col(Invoice.number)).where(col(Invoice.id) == state.invoice_id)
            ).scalar_one_or_none()
            number = stored or ""
        session.execute(
            sa_update(Invoice)
            .where(Invoice.id == state.invoice_id)  # type: ignore[arg-type]
            .values(
                **{**_read_model_values(state, at), "number": number or None},
                approval_sla=approval_sla(state, rec.event, waiting_values(state)["waiting_since"]),
            )
            # Nothing in this session holds the invoice: no need to find and refresh it there.
            .execution_options(synchronize_session=False)
        )
        if rec.event == "edit":
            session.execute(delete(InvoiceLine).where(InvoiceLine.invoice_id == state.invoice_id))  # type: ignore[arg-type]
            session.flush()
            session.add_all(_lines(state))

    payload: dict[str, object] = {
        "number": number,
        "customer_id": state.draft.customer_id,
        "currency": state.draft.currency,
        "total_minor": state.draft.total_minor,
        "amount_paid_minor": state.amount_paid_minor,
        "draft_hash": state.draft.payload_hash,
        "approvals": [a.approver for a in state.approvals],
    }
    if state.plan is not None and rec.event in (
        "submit",
        "approve",
        "approve_tier",
        "reassign_approval",
        "remind_approvers",
        "escalate_approval",
    ):
        payload["matrix_version"] = state.plan.matrix_version
        payload["tiers"] = [t.role for t in state.plan.tiers]
        payload["amount_entity_minor"] = state.plan.amount_minor
    if rec.event in ("approve", "approve_tier") and state.approvals:
        last = state.approvals[-1]
        payload["tier"] = {
            "level": last.tier,
            "role": last.role,
            "approver": last.approver,
            "on_behalf_of": last.on_behalf_of,
        }
    if rec.payment is not None:
        p = rec.payment
        payload["payment"] = {
            "payment_id": p.payment_id,
            "amount_minor": p.amount_minor,
            "reference": p.reference,
        }
        if session.get(Payment, p.payment_id) is None:
            session.add(
                Payment(
                    id=p.payment_id,
                    legal_entity=rec.legal_entity,
                    customer_id=p.customer_id,
                    amount_minor=p.payment_total_minor,
                    currency=p.currency,
                    received_on=date.fromisoformat(p.received_on),
                    reference=p.reference,
                    created_at=at,
                )
            )
            session.flush()
        session.add(
            PaymentAllocation(
                payment_id=p.payment_id,
                invoice_id=state.invoice_id,
                amount_minor=p.amount_minor,
                applied_by=rec.actor.username,
                applied_at=at,
            )
        )

    if rec.portal is not None:
        payload["portal"] = _portal_submission(session, rec, at)
    if state.dispute_id or rec.event in ("dispute", "resolve_dispute", "resolve_dispute_paid_in_part"):
        payload["dispute"] = {"dispute_id": state.dispute_id, "disputed_minor": state.disputed_minor}
    if state.adjustments:
        payload["adjustments"] = {
            "applied": state.adjustments,
            "credited_minor": state.amount_credited_minor,
            "written_off_minor": state.amount_written_off_minor,
        }

    entry = append_to_ledger(
        session,
        LedgerFacts(
            legal_entity=rec.legal_entity,
            business_key=business_key,
            object_type=rec.object_type,
            object_id=rec.object_id,
            event=rec.event,
            from_status=rec.from_status,
            to_status=rec.to_status,
            actor=rec.actor.username,
            actor_roles=evidence_roles(session, rec),
            rule=rec.actor.rule,
            reason=rec.reason,
            workflow_id=rec.workflow_id,
            run_id=rec.run_id,
            request_id=rec.request_id,
            at=rec.at,
            payload=payload,
        ),
        looked_up=True,
    )
    return RecordResult(number=number, ledger_seq=entry.seq, entry_hash=entry.entry_hash, at=entry.at)


def _recorded_plan(session: Session, invoice_id: str) -> ApprovalPlan | None:
    """The approval plan the read model holds (the latest submission's)."""
    raw = session.execute(sa_select(col(Invoice.approval_json)).where(col(Invoice.id) == invoice_id)).scalar()
    plan = json.loads(raw or "{}").get("plan")
    if not plan:
        return None
    return ApprovalPlan(**{**plan, "tiers": [TierRequirement(**t) for t in plan["tiers"]]})


class TransitionActivities:
    """Activities that write the evidence ledger and the read model."""

    def __init__(self, store: Store, matrix: MatrixFile | None = None) -> None:
        self._store = store
        self._matrix = matrix or MatrixFile()

    @activity.defn
    def record_invoice_transition(self, rec: TransitionRecord) -> RecordResult:
        """Append the transition to the ledger and apply it to the invoice read model, atomically."""
        with writing(self._store) as session:
            return record_transition(session, rec)

    @activity.defn
    def submit_invoice(self, req: SubmitRequest) -> SubmitResult:
        """The approval tiers the invoice needs under the matrix in force now, and its submission recorded
        with them, in one transaction (one activity: each costs the invoice a round trip through Temporal).
        A retry after the commit answers with the plan as recorded, even if the matrix changed since."""
        rec = req.transition
        with writing(self._store) as session:
            plan = None
            if find_by_business_key(session, f"{rec.workflow_id}#{rec.transition_seq}") is not None:
                plan = _recorded_plan(session, rec.object_id)
            if plan is None:
                plan = plan_for(self._matrix, session, req.plan)
            reason = submission_reason(rec.reason, plan)
            recorded = record_transition(
                session, replace(rec, reason=reason, state=replace(rec.state, plan=plan))
            )
        return SubmitResult(plan=plan, recorded=recorded, reason=reason)


def _portal_submission(session: Session, rec: TransitionRecord, at: datetime) -> dict[str, object]:
    """The portal_submission read model follows each pass: created when it is sent, then each status the
    portal reports. Returns what the ledger entry records about it."""
    p = rec.portal
    assert p is not None
    said_at = datetime.fromisoformat(p.at) if p.at else at
    row = session.get(PortalSubmission, p.submission_key)
    if row is None:
        row = PortalSubmission(
            submission_key=p.submission_key,
            invoice_id=rec.object_id,
            legal_entity=rec.legal_entity,
            customer_id=rec.state.draft.customer_id,
            portal=p.portal,
            channel=p.channel,
            submission_pass=p.submission_pass,
            portal_ref=p.portal_ref,
            submitted_at=at,
            status=p.status or "received",
            status_at=said_at,
        )
    row.status, row.status_at = p.status or row.status, said_at
    if p.portal_ref:
        row.portal_ref = p.portal_ref
    if rec.event == "portal_accept" and row.accepted_at is None:
        row.accepted_at = said_at
    if rec.event == "portal_reject":
        row.rejected_at = said_at
        row.reason_code, row.reason_text = p.reason_code, p.reason_text
    session.add(row)
    session.flush()
    return {
        "portal": p.portal,
        "channel": p.channel,
        "submission_pass": p.submission_pass,
        "submission_key": p.submission_key,
        "status": p.status,
        "at": p.at,
        "portal_ref": p.portal_ref,
        "reason_code": p.reason_code,
        "reason_text": p.reason_text,
    }
