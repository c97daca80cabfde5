"""Credit memos and write-offs in the store: their tables, the activities that record their transitions
(ledger object_type `credit_memo` / `write_off`, idempotent on workflow id + seq), the submission (approval
tiers from the matrix; a write-off's automatic tolerance), the issue of a credit note (number and documents
in one transaction), a rebill's corrected invoice, and the facts segregation of duties needs from the store:
who applied cash for the customer in the period, and each approver's decided total per customer and period.

The period is the calendar month in the legal entity's zone, at the moment of the decision.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, LargeBinary, Text, func
from sqlalchemy import update as sa_update
from sqlmodel import Field, Session, SQLModel, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.approval_matrix import MatrixFile
from activities.approvals import authority_refusal, plan_for
from activities.db import Store, writing
from activities.directory import roles_of
from activities.ledger import LedgerFacts, append_to_ledger, find_by_business_key
from activities.models import Invoice, LegalEntity, PaymentAllocation
from activities.money import exponent, format_minor
from workflows.approval import Refusal
from workflows.credit_memo_approval import SodFacts, barred_people, current_tier, resolution_refusal
from workflows.credit_memo_types import (
    CREDIT_MEMO,
    WRITE_OFF,
    IssueRequest,
    IssueResult,
    RebillRequest,
    RebillResult,
    ResolutionPlanRequest,
    ResolutionPlanResult,
    ResolutionRecord,
    ResolutionRecorded,
    ResolutionState,
)
from workflows.credit_note_types import CreditNoteDocument, CreditNoteLine
from workflows.types import Actor, PlanRequest

DISPUTES_POLICY = Path(__file__).resolve().parent.parent / "policies" / "disputes.toml"
# Statuses of a document someone decided (approved its last tier) that still stands.
DECIDED = {
    CREDIT_MEMO: ("approved", "issued", "applied", "on_account"),
    WRITE_OFF: ("approved", "written_off"),
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class ResolutionBase(SQLModel):
    """What a credit memo and a write-off both hold (the read model of their workflow's state)."""

    id: str = Field(primary_key=True, max_length=36)
    legal_entity: str = Field(foreign_key="legal_entity.code", index=True, max_length=32)
    workflow_id: str = Field(max_length=200, unique=True)
    invoice_id: str = Field(foreign_key="invoice.id", index=True, max_length=36)
    customer_id: str = Field(foreign_key="customer.id", index=True, max_length=36)
    dispute_id: str = Field(default="", max_length=36, index=True)
    dispute_owner: str = Field(default="", max_length=64)
    currency: str = Field(max_length=3)
    amount_minor: int = Field(sa_type=BigInteger)
    entity_amount_minor: int = Field(default=0, sa_type=BigInteger)  # in the entity's currency (tiers)
    entity_currency: str = Field(default="", max_length=3)
    reason: str = Field(default="", sa_type=Text)
    status: str = Field(index=True, max_length=32)
    proposed_by: str = Field(max_length=64)
    created_at: datetime
    status_since: datetime
    updated_at: datetime
    transition_seq: int = 0
    matrix_version: str | None = Field(default=None, max_length=64)
    approval_json: str = Field(default="{}", sa_type=Text)  # plan, tier bounds, approvals, cash appliers
    # The waiting tier, for the approvers' inbox (as on the invoice): role, level, since, who is barred.
    waiting_role: str = Field(default="", max_length=64)
    waiting_tier: int = 0
    waiting_since: datetime | None = None
    sod_barred: str = Field(default="", sa_type=Text)
    # The decision: who approved the last tier (or rejected, cancelled), when, in which period (the
    # cumulative limit sums decided amounts per approver, customer and period).
    decided_by: str = Field(default="", max_length=64)
    decided_at: datetime | None = None
    decided_period: str = Field(default="", max_length=7)
    decision_reason: str = Field(default="", sa_type=Text)
    applied_minor: int = Field(default=0, sa_type=BigInteger)


class CreditMemo(ResolutionBase, table=True):
    """A credit memo (or a rebill's full credit), and once issued its credit note."""

    __tablename__ = "credit_memo"

    kind: str = Field(default="credit", max_length=16)  # credit | rebill
    lines_json: str = Field(default="[]", sa_type=Text)
    number: str | None = Field(default=None, max_length=32, unique=True)
    issue_date: date | None = None
    ubl: str | None = Field(default=None, sa_type=Text)  # the UBL CreditNote as issued
    pdf: bytes | None = Field(default=None, sa_type=LargeBinary)
    ubl_sha256: str = Field(default="", max_length=64)
    pdf_sha256: str = Field(default="", max_length=64)
    channel: str = Field(default="", max_length=64)
    delivered_at: datetime | None = None
    rebill_invoice_id: str | None = Field(default=None, max_length=36, index=True)
    rebill_json: str = Field(default="", sa_type=Text)


class WriteOff(ResolutionBase, table=True):
    __tablename__ = "write_off"

    auto_rule: str = Field(default="", max_length=200)


def table_for(kind: str) -> type[CreditMemo] | type[WriteOff]:
    return CreditMemo if kind == CREDIT_MEMO else WriteOff


# -- the period and the facts segregation of duties needs --------------------------------------------


def period_bounds(session: Session, legal_entity: str, at: datetime) -> tuple[str, datetime, datetime]:
    """The calendar month containing `at` in the entity's zone: ("2026-03", start, end) as UTC instants."""
    entity = session.get(LegalEntity, legal_entity)
    zone = ZoneInfo(entity.timezone if entity else "UTC")
    local = at.astimezone(zone)
    start = datetime(local.year, local.month, 1, tzinfo=zone)
    end = datetime(local.year + (local.month == 12), local.month % 12 + 1, 1, tzinfo=zone)
    return f"{local.year:04d}-{local.month:02d}", start.astimezone(UTC), end.astimezone(UTC)


def cash_appliers(session: Session, legal_entity: str, customer_id: str, at: datetime) -> list[str]:
    """Who applied cash to this customer's invoices in the period (payment_allocation.applied_by)."""
    _, start, end = period_bounds(session, legal_entity, at)
    rows = session.exec(
        select(PaymentAllocation.applied_by)
        .join(Invoice, col(Invoice.id) == col(PaymentAllocation.invoice_id))
        .where(
            Invoice.legal_entity == legal_entity,
            Invoice.customer_id == customer_id,
            col(PaymentAllocation.applied_at) >= start,
            col(PaymentAllocation.applied_at) < end,
        )
        .distinct()
    )
    return sorted(u for u in rows if u != "system")


def decided_total(
    session: Session, kind: str, legal_entity: str, customer_id: str, username: str, period: str, but: str
) -> int:
    """The approver's total (entity currency) of documents of `kind` they decided for the customer in the
    period, still standing, except document `but`."""
    table = table_for(kind)
    total = session.exec(
        select(func.coalesce(func.sum(table.entity_amount_minor), 0)).where(
            table.legal_entity == legal_entity,
            table.customer_id == customer_id,
            table.decided_by == username,
            table.decided_period == period,
            col(table.status).in_(DECIDED[kind]),
            table.id != but,
        )
    ).one()
    return int(total)


def sod_facts(session: Session, state: ResolutionState, username: str, at: datetime) -> SodFacts:
    period, _, _ = period_bounds(session, state.legal_entity, at)
    entity = session.get(LegalEntity, state.legal_entity)
    return SodFacts(
        cash_appliers=cash_appliers(session, state.legal_entity, state.customer_id, at),
        decided_minor=decided_total(
            session, state.kind, state.legal_entity, state.customer_id, username, period, state.id
        ),
        period=period,
        exponent=exponent(entity.currency if entity else state.currency),
    )


def refusal_in_store(session: Session, state: ResolutionState, actor: Actor, at: datetime) -> Refusal | None:
    """The approval rules with the store's facts and the roles the store says the actor holds."""
    held = Actor(actor.username, roles_of(session, actor.username, state.legal_entity), actor.rule)
    return resolution_refusal(state, held, 0, sod_facts(session, state, actor.username, at))


# -- reading the state back from the read model ------------------------------------------------------


def state_of(row: CreditMemo | WriteOff) -> ResolutionState:
    """The parts of the document the approval rules look at, rebuilt from the read model."""
    from workflows.types import Approval, ApprovalPlan, Line, TierRequirement

    extra: dict[str, Any] = json.loads(row.approval_json or "{}")
    plan_data = extra.get("plan")
    plan = (
        ApprovalPlan(**{**plan_data, "tiers": [TierRequirement(**t) for t in plan_data["tiers"]]})
        if plan_data
        else None
    )
    is_memo = isinstance(row, CreditMemo)
    return ResolutionState(
        kind=CREDIT_MEMO if is_memo else WRITE_OFF,
        id=row.id,
        workflow_id=row.workflow_id,
        legal_entity=row.legal_entity,
        status=row.status,
        invoice_id=row.invoice_id,
        customer_id=row.customer_id,
        currency=row.currency,
        amount_minor=row.amount_minor,
        reason=row.reason,
        proposed_by=row.proposed_by,
        dispute_id=row.dispute_id,
        dispute_owner=row.dispute_owner,
        status_since=row.status_since.isoformat(),
        transition_seq=row.transition_seq,
        plan=plan,
        tier_bounds=list(extra.get("tier_bounds", [])),
        cash_appliers=list(extra.get("cash_appliers", [])),
        approvals=[Approval(**a) for a in extra.get("approvals", [])],
        decided_by=row.decided_by,
        decision_reason=row.decision_reason,
        auto_rule=getattr(row, "auto_rule", ""),
        lines=[Line(**ln) for ln in json.loads(row.lines_json)] if isinstance(row, CreditMemo) else [],
        number=(row.number or "") if isinstance(row, CreditMemo) else "",
        applied_minor=row.applied_minor,
        rebill_invoice_id=(row.rebill_invoice_id or "") if isinstance(row, CreditMemo) else "",
    )


def _waiting_values(state: ResolutionState) -> dict[str, object]:
    tier = current_tier(state)
    if tier is None:
        return {"waiting_role": "", "waiting_tier": 0, "waiting_since": None, "sod_barred": ""}
    return {
        "waiting_role": tier.role,
        "waiting_tier": tier.level,
        "waiting_since": datetime.fromisoformat(state.status_since),
        "sod_barred": "|" + "|".join(sorted(barred_people(state))) + "|",
    }


def _read_model_values(state: ResolutionState, at: datetime) -> dict[str, object]:
    values: dict[str, object] = {
        **_waiting_values(state),
        "status": state.status,
        "transition_seq": state.transition_seq,
        "status_since": datetime.fromisoformat(state.status_since),
        "updated_at": at,
        "applied_minor": state.applied_minor,
        "decision_reason": state.decision_reason,
        "approval_json": json.dumps(
            {
                "plan": asdict(state.plan) if state.plan else None,
                "tier_bounds": state.tier_bounds,
                "cash_appliers": state.cash_appliers,
                "approvals": [asdict(a) for a in state.approvals],
            }
        ),
    }
    if state.plan is not None:
        values.update(
            matrix_version=state.plan.matrix_version,
            entity_amount_minor=state.plan.amount_minor,
            entity_currency=state.plan.currency,
        )
    if state.kind == CREDIT_MEMO:
        values.update(
            rebill_invoice_id=state.rebill_invoice_id or None,
            channel=state.channel,
            delivered_at=datetime.fromisoformat(state.delivered_at) if state.delivered_at else None,
        )
    else:
        values["auto_rule"] = state.auto_rule
    return values


def _refuse(refusal: Refusal) -> ApplicationError:
    return ApplicationError(refusal.message, {"rule": refusal.rule}, type=refusal.code, non_retryable=True)


def record_resolution(session: Session, rec: ResolutionRecord) -> ResolutionRecorded:
    """Append the transition to the ledger and apply it to the read model (one transaction). An approval is
    checked again against the store first: the role held, cash applied for the customer in the period, the
    cumulative limit of the deciding tier."""
    business_key = f"{rec.workflow_id}#{rec.transition_seq}"
    table = table_for(rec.object_type)
    done = find_by_business_key(session, business_key)
    if done is not None:
        if (done.event, done.request_id) != (rec.event, rec.request_id):
            raise ApplicationError(
                f"{business_key} is recorded as {done.event}, not {rec.event}",
                type="ledger_conflict",
                non_retryable=True,
            )
        row = session.get(table, rec.object_id)
        number = (row.number or "") if isinstance(row, CreditMemo) else ""
        return ResolutionRecorded(ledger_seq=done.seq, entry_hash=done.entry_hash, at=done.at, number=number)

    state = rec.state
    at = datetime.fromisoformat(rec.at)
    payload: dict[str, Any] = {
        "invoice_id": state.invoice_id,
        "customer_id": state.customer_id,
        "currency": state.currency,
        "amount_minor": state.amount_minor,
        "dispute_id": state.dispute_id,
        "approvals": [a.approver for a in state.approvals],
    }
    if rec.authority is not None:
        a = rec.authority
        why = authority_refusal(session, rec.legal_entity, _authority(a), at)
        if why is not None:
            raise ApplicationError(why, {"rule": "tier_role"}, type="no_authority", non_retryable=True)
        before = replace(state, status="pending_approval", approvals=state.approvals[:-1])
        refusal = refusal_in_store(session, before, rec.actor, at)
        if refusal is not None:
            raise _refuse(refusal)
        payload["tier"] = {"level": a.tier, "role": a.role, "approver": a.username, "decides": a.decides}
    if state.plan is not None and rec.event in ("submit", "approve", "approve_tier"):
        payload["matrix_version"] = state.plan.matrix_version
        payload["tiers"] = [t.role for t in state.plan.tiers]
        payload["tier_bounds"] = state.tier_bounds
        payload["amount_entity_minor"] = state.plan.amount_minor
    if state.auto_rule:
        payload["auto_rule"] = state.auto_rule

    values = _read_model_values(state, at)
    if rec.event in ("approve", "reject", "cancel") or (rec.event == "write_off" and state.auto_rule):
        period, _, _ = period_bounds(session, rec.legal_entity, at)
        values.update(decided_by=state.decided_by, decided_at=at, decided_period=period)
    if rec.from_status is None:
        extra: dict[str, Any] = {}
        if table is CreditMemo:
            extra = {
                "kind": "rebill" if state.rebill is not None else "credit",
                "lines_json": json.dumps([asdict(ln) for ln in state.lines]),
                "rebill_json": json.dumps(asdict(state.rebill)) if state.rebill else "",
            }
        session.add(
            table(
                id=state.id,
                legal_entity=rec.legal_entity,
                workflow_id=rec.workflow_id,
                invoice_id=state.invoice_id,
                customer_id=state.customer_id,
                dispute_id=state.dispute_id,
                dispute_owner=state.dispute_owner,
                currency=state.currency,
                amount_minor=state.amount_minor,
                reason=state.reason,
                proposed_by=state.proposed_by,
                created_at=at,
                **extra,
                **values,  # type: ignore[arg-type]
            )
        )
        session.flush()
    else:
        session.execute(
            sa_update(table)
            .where(col(table.id) == state.id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    if rec.event == "rebill":
        payload["rebill_invoice_id"] = state.rebill_invoice_id
        payload["original_invoice_id"] = state.invoice_id
    if rec.event == "deliver":
        payload["channel"] = state.channel
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
            actor_roles=list(rec.actor.roles)
            if rec.actor.username == "system"
            else roles_of(session, rec.actor.username, rec.legal_entity),
            rule=rec.rule or rec.actor.rule,
            reason=rec.reason,
            workflow_id=rec.workflow_id,
            run_id=rec.run_id,
            request_id=rec.request_id,
            at=rec.at,
            payload=payload,
        ),
        looked_up=True,
    )
    return ResolutionRecorded(
        ledger_seq=entry.seq, entry_hash=entry.entry_hash, at=entry.at, number=state.number
    )


def _authority(a: Any) -> Any:
    from workflows.types import Authority

    return Authority(a.username, a.role, a.on_behalf_of)


# -- the automatic write-off tolerance ---------------------------------------------------------------


def write_off_tolerance(path: Path, legal_entity: str) -> Decimal | None:
    """The entity's tolerance (entity currency) from `[write_off.tolerance]`; None: no automatic write-off."""
    if not path.exists():
        return None
    data = tomllib.loads(path.read_text())
    value = data.get("write_off", {}).get("tolerance", {}).get(legal_entity)
    return Decimal(str(value)) if value is not None else None


class CreditMemoActivities:
    """Recording, submission, issue and rebill of credit memos and write-offs."""

    def __init__(
        self,
        store: Store,
        matrix: MatrixFile | None = None,
        disputes_policy: Path = DISPUTES_POLICY,
        rebill_starter: Any = None,
    ) -> None:
        self._store = store
        self._matrix = matrix or MatrixFile()
        self._policy = disputes_policy
        # start_rebill_invoice's way to start an invoice (api.invoices' code path, given by the worker).
        self._rebill_starter = rebill_starter

    @activity.defn
    def record_resolution_transition(self, rec: ResolutionRecord) -> ResolutionRecorded:
        """Append a credit memo's or write-off's transition to the ledger and the read model, atomically."""
        with writing(self._store) as session:
            return record_resolution(session, rec)

    @activity.defn
    def submit_resolution(self, req: ResolutionPlanRequest) -> ResolutionPlanResult:
        """The approval tiers under the matrix in force now and the `submit` transition recorded with them; a
        write-off at or under the entity's tolerance is not submitted: its rule comes back instead."""
        rec = req.transition
        kind = rec.object_type
        with writing(self._store) as session:
            plan = plan_for(
                self._matrix,
                session,
                PlanRequest(rec.legal_entity, kind, req.amount_minor, req.currency, req.exchange_rate),
            )
            matrix_tiers = self._matrix.current().tiers[kind]
            bounds = [str(t.up_to) if t.up_to is not None else "" for t in matrix_tiers[: len(plan.tiers)]]
            if kind == WRITE_OFF:
                tolerance = write_off_tolerance(self._policy, rec.legal_entity)
                exp = exponent(plan.currency)
                if tolerance is not None and Decimal(plan.amount_minor).scaleb(-exp) <= tolerance:
                    text = format_minor(int(tolerance.scaleb(exp)), plan.currency)
                    rule = f"write_off:auto_tolerance:{rec.legal_entity}<={text} {plan.currency}"
                    return ResolutionPlanResult(plan, bounds, [], "", None, rule)
            at = datetime.fromisoformat(rec.at)
            appliers = cash_appliers(session, rec.legal_entity, rec.state.customer_id, at)
            tiers = " -> ".join(f"{t.level}:{t.role}" for t in plan.tiers)
            reason = f"tiers {tiers} (matrix {plan.matrix_version})"
            state = replace(rec.state, plan=plan, tier_bounds=bounds, cash_appliers=appliers)
            recorded = record_resolution(session, replace(rec, reason=reason, state=state))
        return ResolutionPlanResult(plan, bounds, appliers, reason, recorded)

    @activity.defn
    def issue_credit_memo(self, req: IssueRequest) -> IssueResult:
        """Number the credit note (gapless, CN-<year>), build its UBL and PDF, record `issue`: one
        transaction. A retry after the commit answers with the credit note as issued."""
        rec = req.transition
        with writing(self._store) as session:
            row = session.get(CreditMemo, rec.object_id)
            inv = session.get(Invoice, rec.state.invoice_id)
            if row is None or inv is None:
                raise ApplicationError(f"credit memo {rec.object_id} is not in the store", non_retryable=True)
            if find_by_business_key(session, f"{rec.workflow_id}#{rec.transition_seq}") is None:
                entity = session.get(LegalEntity, rec.legal_entity)
                zone = ZoneInfo(entity.timezone if entity else "UTC")
                row.issue_date = datetime.fromisoformat(rec.at).astimezone(zone).date()
                row.number = _next_number(session, rec.legal_entity, row.issue_date)
                doc = document_of(row, inv)
                from activities.credit_notes import credit_note_problems

                problems = credit_note_problems(session, doc)
                if problems:
                    # Never numbered (the transaction rolls back) and never retried: the same document would
                    # fail again. The API's doors build consistent lines; this stops anyone else's.
                    raise ApplicationError(
                        f"credit memo {row.id} cannot be issued: {'; '.join(problems)}",
                        {"problems": problems},
                        type="credit_note_invalid",
                        non_retryable=True,
                    )
                ubl, pdf = _render(session, doc)
                if ubl is not None:
                    row.ubl, row.ubl_sha256 = ubl.decode(), hashlib.sha256(ubl).hexdigest()
                row.pdf, row.pdf_sha256 = pdf, hashlib.sha256(pdf).hexdigest()
                session.add(row)
                session.flush()
                state = replace(rec.state, number=row.number, issued_at=rec.at)
                recorded = record_resolution(
                    session, replace(rec, reason=f"credit note {row.number}", state=state)
                )
            else:
                recorded = record_resolution(session, rec)
            assert row.number is not None
            return IssueResult(recorded, row.number, rec.at, document_of(row, inv))

    @activity.defn
    async def start_rebill_invoice(self, req: RebillRequest) -> RebillResult:
        """Start a rebill's corrected invoice through the API's own creation code (external id
        `<original>-R1`); starting it again finds the first (the external id is its workflow id)."""
        if self._rebill_starter is None:
            raise ApplicationError("no rebill starter configured", type="invalid_command", non_retryable=True)
        invoice_id, external_id = await self._rebill_starter(req)
        return RebillResult(invoice_id, external_id)


def _next_number(session: Session, legal_entity: str, issue_date: date) -> str:
    from activities.credit_notes import next_credit_note_number

    return next_credit_note_number(session, legal_entity, issue_date)


def _render(session: Session, doc: CreditNoteDocument) -> tuple[bytes | None, bytes]:
    """The credit note's UBL and PDF (activities/credit_notes.py). A customer whose master data cannot make
    an EN 16931 e-invoice (no Peppol endpoint, say) gets the PDF by mail: no UBL is kept then."""
    from activities.credit_notes import credit_note_pdf, credit_note_ubl
    from activities.einvoice import EInvoiceError

    try:
        ubl: bytes | None = credit_note_ubl(session, doc)
    except EInvoiceError as exc:
        activity.logger.info("credit note %s has no UBL: %s", doc.number, exc)
        ubl = None
    return ubl, credit_note_pdf(session, doc)


def document_of(row: CreditMemo, inv: Invoice) -> CreditNoteDocument:
    lines = json.loads(row.lines_json or "[]")
    return CreditNoteDocument(
        legal_entity=row.legal_entity,
        credit_memo_id=row.id,
        number=row.number or "",
        issue_date=(row.issue_date or date.today()).isoformat(),
        currency=row.currency,
        customer_id=row.customer_id,
        invoice_id=inv.id,
        invoice_number=inv.number or "",
        invoice_issue_date=inv.issue_date.isoformat(),
        lines=[
            CreditNoteLine(
                description=ln["description"],
                quantity=ln["quantity"],
                unit_price=ln["unit_price"],
                tax_rate=ln["tax_rate"],
            )
            for ln in lines
        ],
        reason=row.reason,
        full_credit=row.amount_minor == inv.total_minor,
        rebill=row.kind == "rebill",
    )


# -- reads for the API and the pages ------------------------------------------------------------------


def resolution_by_id(session: Session, kind: str, document_id: str) -> CreditMemo | WriteOff | None:
    if kind == CREDIT_MEMO:
        return session.get(CreditMemo, document_id)
    return session.get(WriteOff, document_id)


def _filtered(
    query: Any,
    table: type[CreditMemo] | type[WriteOff],
    entities: list[str],
    status: str | None,
    invoice_id: str | None,
    dispute_id: str | None,
    customer_id: str | None,
) -> Any:
    if "*" not in entities:
        query = query.where(col(table.legal_entity).in_(entities))
    if status:
        query = query.where(table.status == status)
    if invoice_id:
        query = query.where(table.invoice_id == invoice_id)
    if dispute_id:
        query = query.where(table.dispute_id == dispute_id)
    if customer_id:
        query = query.where(table.customer_id == customer_id)
    return query


def list_resolutions(
    session: Session,
    kind: str,
    entities: list[str],
    *,
    status: str | None = None,
    invoice_id: str | None = None,
    dispute_id: str | None = None,
    customer_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[CreditMemo] | list[WriteOff]:
    table = table_for(kind)
    query = _filtered(select(table), table, entities, status, invoice_id, dispute_id, customer_id)
    query = query.order_by(col(table.created_at).desc(), col(table.id)).offset(offset).limit(limit)
    return list(session.exec(query))


def count_resolutions(
    session: Session,
    kind: str,
    entities: list[str],
    *,
    status: str | None = None,
    invoice_id: str | None = None,
    dispute_id: str | None = None,
    customer_id: str | None = None,
) -> int:
    table = table_for(kind)
    query = _filtered(
        select(func.count()).select_from(table), table, entities, status, invoice_id, dispute_id, customer_id
    )
    return int(session.exec(query).one())


# Statuses of a document that may still lower the invoice's amount due (proposed, waiting, approved).
PENDING = {
    CREDIT_MEMO: ("proposed", "pending_approval", "approved", "issued"),
    WRITE_OFF: ("requested", "pending_approval", "approved"),
}


def pending_on_invoice(session: Session, invoice_id: str, but: str = "") -> int:
    """What credit memos and write-offs not yet applied hold on the invoice (its currency, minor units): a
    new one may not take the invoice below zero with them."""
    total = 0
    for kind, statuses in PENDING.items():
        table = table_for(kind)
        total += int(
            session.exec(
                select(func.coalesce(func.sum(table.amount_minor), 0)).where(
                    table.invoice_id == invoice_id, col(table.status).in_(statuses), table.id != but
                )
            ).one()
        )
    return total


def waiting_for_roles(
    session: Session, kind: str, roles: dict[str, set[str]], username: str, limit: int = 200
) -> list[CreditMemo] | list[WriteOff]:
    """Documents of `kind` pending at a tier whose role `username` holds in its entity, not barred by
    segregation of duties as the state says (the page re-checks each one with the store's facts)."""
    table = table_for(kind)
    found: list[Any] = []
    for entity, held in roles.items():
        if not held:
            continue
        query = (
            select(table)
            .where(
                table.legal_entity == entity,
                table.status == "pending_approval",
                col(table.waiting_role).in_(sorted(held)),
                col(table.sod_barred).not_like(f"%|{username}|%"),
            )
            .order_by(col(table.waiting_since), col(table.id))
            .limit(limit)
        )
        found.extend(session.exec(query))
    return sorted(found, key=lambda r: (r.waiting_since or r.created_at, r.id))[:limit]


def resolution_history(session: Session, kind: str, document_id: str) -> list[Any]:
    from activities.models import LedgerEntry

    return list(
        session.exec(
            select(LedgerEntry)
            .where(LedgerEntry.object_type == kind, LedgerEntry.object_id == document_id)
            .order_by(col(LedgerEntry.seq))
        )
    )
