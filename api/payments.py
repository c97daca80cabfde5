"""Payments: a receipt and its allocations to invoices, each applied through the invoice's workflow.

Each allocation is an `apply_payment` update whose id is derived from the payment id and the invoice, so
a request sent twice (same Idempotency-Key) applies nothing twice. Allocations are checked against the
store first and again, authoritatively, by each workflow's validator.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter
from sqlmodel import Session
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities import queries
from activities.db import reading
from activities.disputes import (
    JOINABLE,
    Claim,
    DisputeCommands,
    DisputeRefused,
    OpenRequest,
    case_counting_payments,
    known_codes,
    map_reason,
    open_case_of_invoice,
)
from activities.invoice_start import MAX_MINOR
from activities.models import Customer, Invoice
from activities.money import MoneyError, amount_to_minor, format_minor
from api.deps import AppContext, ContextDep, CurrentUser, IdempotencyKey, SessionDep
from api.errors import AppError, Conflict, Invalid, NotFound, errors, from_workflow
from api.invoices import await_workflow
from api.schemas import AllocationOut, DeductionIn, PaymentCreate, PaymentPublic
from workflows import states
from workflows.dispute import DisputeWorkflow
from workflows.dispute_types import PaymentOnCase
from workflows.invoice import InvoiceWorkflow
from workflows.types import Actor, PaymentApplied, PaymentCommand

router = APIRouter(prefix="/api/v1", tags=["payments"])
PAYMENT_NAMESPACE = uuid.UUID("0b4f6a2e-3c1d-4f7b-8e2a-5d9c1b7e4a30")


def _minor(text: str, currency: str, field: str) -> int:
    try:
        return amount_to_minor(text, currency, field)
    except MoneyError as exc:
        # The pattern of an amount states its form and bounds; what is left is a rule between two fields:
        # more decimal places than the currency has.
        raise Invalid(f"{exc.field}: {exc}", code="invalid_amount", field=exc.field) from None


@router.post(
    "/payments",
    status_code=201,
    response_model=PaymentPublic,
    responses=errors(
        "forbidden",
        "unknown_reference",
        "inconsistent_fields",
        "invalid_amount",
        "currency_mismatch",
        "over_allocation",
        "idempotency_key_conflict",
        "transition_refused",
        "invalid_command",
        "amount_exceeds_open",
        "unknown_reason_code",
        "already_disputed",
        "unavailable",
    ),
)
async def record_payment(
    body: PaymentCreate, ctx: ContextDep, user: CurrentUser, idempotency_key: IdempotencyKey
) -> PaymentPublic:
    """Record a receipt and apply it to invoices: each becomes partially_paid or paid.
    Allocating more than the receipt, or more than an invoice's amount due, is a 422 and applies nothing.
    An allocation's `deduction` (what the customer kept back, and their reason code) opens a dispute case
    for it, or joins the invoice's open case; a deduction above what the payment leaves due, or with a
    reason code the customer's mapping does not know, is a 422 and applies nothing."""
    with reading(ctx.store) as session:
        customer = queries.customer_by_id(session, body.customer_id)
        if customer is None or not ctx.authorizer.check(
            user.username, customer.legal_entity, "customer:read"
        ):
            raise Invalid(
                f"unknown customer {body.customer_id}", code="unknown_reference", field="customer_id"
            )
        grant = ctx.authorizer.require(user.username, customer.legal_entity, "payment:record")
        total = _minor(body.amount, body.currency, "amount")
        if total > MAX_MINOR:  # 10**15 in a currency of 4 places (CLF) overflows the store's BIGINT
            raise Invalid(
                f"amount: {body.amount} {body.currency} is more than the store holds",
                code="invalid_amount",
                field="amount",
            )
        planned = []
        deductions: dict[str, int] = {}
        seen: set[str] = set()
        for i, alloc in enumerate(body.allocations):
            field = f"allocations.{i}"
            if alloc.invoice_id in seen:
                raise Invalid(
                    f"{field}.invoice_id: invoice allocated twice in one payment",
                    code="inconsistent_fields",
                    field=f"{field}.invoice_id",
                )
            seen.add(alloc.invoice_id)
            inv = queries.invoice_by_id(session, alloc.invoice_id)
            if inv is None or inv.legal_entity != customer.legal_entity or inv.customer_id != customer.id:
                raise Invalid(
                    f"{field}.invoice_id: no invoice {alloc.invoice_id} of this customer",
                    code="unknown_reference",
                    field=f"{field}.invoice_id",
                )
            if inv.currency != body.currency:
                raise Invalid(
                    f"{field}: invoice {inv.number} is in {inv.currency}, the payment in {body.currency}",
                    code="currency_mismatch",
                    field=f"{field}.invoice_id",
                )
            amount = _minor(alloc.amount, body.currency, f"{field}.amount")
            planned.append((inv, amount))
            if alloc.deduction is not None:
                deductions[inv.id] = _deduction(session, customer, inv, amount, alloc.deduction, field)
        allocated = sum(a for _, a in planned)
        if allocated > total:
            raise Invalid(
                f"allocations total {format_minor(allocated, body.currency)} exceeds the payment "
                f"{format_minor(total, body.currency)}",
                code="over_allocation",
                field="allocations",
            )
        payment_id = (
            str(uuid.uuid5(PAYMENT_NAMESPACE, f"{customer.legal_entity}:{user.username}:{idempotency_key}"))
            if idempotency_key
            else str(uuid.uuid4())
        )
        already = queries.payment_allocations(session, payment_id)
        done = {a.invoice_id for a in already}
        recorded = queries.payment_by_id(session, payment_id)
        if recorded is not None:
            # The key names one receipt: a request under it must be that receipt again. Anything else
            # (another amount, another invoice) used to be applied under the first receipt's total.
            wanted = {inv.id: amount for inv, amount in planned}
            receipt = (customer.id, total, body.currency, body.received_on, body.reference)
            same = (
                recorded.customer_id,
                recorded.amount_minor,
                recorded.currency,
                recorded.received_on,
                recorded.reference,
            ) == receipt and all(wanted.get(a.invoice_id) == a.amount_minor for a in already)
            if not same:
                raise Conflict(
                    f"the Idempotency-Key {idempotency_key} was used for another payment",
                    code="idempotency_key_conflict",
                    payment_id=payment_id,
                )
        for i, (inv, amount) in enumerate(planned):
            if inv.id in done:
                continue
            if states.Status(inv.status) not in states.OPEN_RECEIVABLE:
                raise Conflict(
                    f"invoice {inv.number} is {inv.status}: payments apply to delivered, unpaid invoices",
                    code="transition_refused",
                    field=f"allocations.{i}.invoice_id",
                    status=inv.status,
                )
            if amount > inv.amount_due_minor:
                raise Invalid(
                    f"allocations.{i}.amount: {format_minor(amount, inv.currency)} exceeds the amount due "
                    f"{format_minor(inv.amount_due_minor, inv.currency)} on {inv.number}",
                    code="over_allocation",
                    field=f"allocations.{i}.amount",
                )

    actor = Actor(user.username, grant.roles, grant.rule)
    for inv, amount in planned:
        if inv.id in done:
            # Recorded by an earlier send of this request: nothing to do twice, and no update to send (the
            # workflow of an invoice it paid in full has completed and would refuse any update).
            continue
        applied = PaymentApplied(
            payment_id=payment_id,
            customer_id=customer.id,
            amount_minor=amount,
            currency=body.currency,
            received_on=body.received_on.isoformat(),
            reference=body.reference,
            payment_total_minor=total,
        )
        handle = ctx.temporal.get_workflow_handle(inv.workflow_id)
        try:
            await await_workflow(
                ctx,
                handle.execute_update(
                    InvoiceWorkflow.apply_payment,
                    PaymentCommand(actor, applied),
                    id=f"payment:{payment_id}:{inv.id}",
                ),
            )
        except WorkflowUpdateFailedError as exc:
            if isinstance(exc.cause, ApplicationError) and exc.cause.type == "already_applied":
                continue  # a retry of this same payment: nothing to do twice
            raise from_workflow(exc) from None
        await _tell_the_case(ctx, inv.id, payment_id, amount)
    for alloc in body.allocations:
        if alloc.deduction is not None:
            inv = next(inv for inv, _ in planned if inv.id == alloc.invoice_id)
            await _open_deduction(
                ctx,
                customer,
                inv.id,
                deductions[inv.id],
                alloc.deduction.reason_code,
                payment_id,
                actor,
                body.reference,
            )
    with reading(ctx.store) as session:
        return _present(session, payment_id)


def _deduction(
    session: Session, customer: Customer, inv: Invoice, amount: int, d: DeductionIn, field: str
) -> int:
    """The deduction's amount, refused before anything is applied: more than the payment leaves due, an
    unknown reason code."""
    minor = _minor(d.amount, inv.currency, f"{field}.deduction.amount")
    if amount + minor > inv.amount_due_minor:
        raise Invalid(
            f"{field}.deduction.amount: {format_minor(amount, inv.currency)} paid and "
            f"{format_minor(minor, inv.currency)} deducted exceed the amount due "
            f"{format_minor(inv.amount_due_minor, inv.currency)} on {inv.number}",
            code="amount_exceeds_open",
            field=f"{field}.deduction.amount",
        )
    case = open_case_of_invoice(session, inv.id)
    if case is not None and case.status not in JOINABLE:
        raise Conflict(
            f"{field}.deduction: invoice {inv.number} is in case {case.case_number}, which is {case.status}: "
            "record the payment without the deduction, or once the resolution is decided",
            code="transition_refused",
            field=f"{field}.deduction",
            status=case.status,
        )
    if map_reason(customer, d.reason_code) is None:
        raise Invalid(
            f"{field}.deduction.reason_code: {d.reason_code!r} is not a code of {customer.name}",
            code="unknown_reason_code",
            field=f"{field}.deduction.reason_code",
            known=known_codes(customer),
        )
    return minor


async def _tell_the_case(ctx: AppContext, invoice_id: str, payment_id: str, amount: int) -> None:
    """A payment on an invoice an open case holds: the case counts it (paid, or recovered after it was
    found invalid). A case that ended meanwhile has nothing to count."""
    with reading(ctx.store) as session:
        case = case_counting_payments(session, invoice_id)
        inv = queries.invoice_by_id(session, invoice_id)
    if case is None or inv is None:
        return
    try:
        await ctx.temporal.get_workflow_handle(case.workflow_id).signal(
            DisputeWorkflow.payment_received,
            PaymentOnCase(
                invoice_id, payment_id, amount, inv.amount_due_minor, datetime.now(UTC).isoformat()
            ),
        )
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise


async def _open_deduction(
    ctx: AppContext,
    customer: Customer,
    invoice_id: str,
    amount: int,
    reason_code: str,
    payment_id: str,
    actor: Actor,
    reference: str,
) -> None:
    """A deduction opens a case (source "deduction") or joins the invoice's open case, through the same
    command code as POST /api/v1/disputes; once per payment and invoice."""
    with reading(ctx.store) as session:
        inv = queries.invoice_by_id(session, invoice_id)
    assert inv is not None
    try:
        await await_workflow(
            ctx,
            DisputeCommands(ctx.store, ctx.temporal, ctx.settings.task_queue).open_or_join(
                OpenRequest(
                    legal_entity=customer.legal_entity,
                    customer=customer,
                    claims=[Claim(inv, amount)],
                    claimed_code=reason_code,
                    description=f"deducted from payment {reference}",
                    source="deduction",
                    actor=actor,
                    request_key=f"deduction:{payment_id}:{invoice_id}",
                )
            ),
        )
    except DisputeRefused as exc:
        err = AppError(exc.message, code=exc.code, **exc.details)
        err.status = exc.http_status
        raise err from None
    except WorkflowUpdateFailedError as exc:
        raise from_workflow(exc) from None


def _present(session: SessionDep, payment_id: str) -> PaymentPublic:
    payment = queries.payment_by_id(session, payment_id)
    if payment is None:
        raise NotFound(f"no payment {payment_id}")
    cur = payment.currency
    allocations = []
    for alloc in queries.payment_allocations(session, payment_id):
        inv = queries.invoice_by_id(session, alloc.invoice_id)
        assert inv is not None
        allocations.append(
            AllocationOut(
                invoice_id=inv.id,
                invoice_number=inv.number,
                amount=format_minor(alloc.amount_minor, cur),
                invoice_status=inv.status,
                invoice_amount_due=format_minor(inv.amount_due_minor, cur),
            )
        )
    allocated = sum(a.amount_minor for a in queries.payment_allocations(session, payment_id))
    return PaymentPublic(
        id=payment.id,
        customer_id=payment.customer_id,
        amount=format_minor(payment.amount_minor, cur),
        currency=cur,
        received_on=payment.received_on,
        reference=payment.reference,
        allocated=format_minor(allocated, cur),
        unapplied=format_minor(payment.amount_minor - allocated, cur),
        allocations=allocations,
    )


@router.get("/payments/{payment_id}", response_model=PaymentPublic, responses=errors("not_found"))
async def get_payment(
    payment_id: str, ctx: ContextDep, session: SessionDep, user: CurrentUser
) -> PaymentPublic:
    """A receipt with its allocations."""
    payment = queries.payment_by_id(session, payment_id)
    if payment is None or not ctx.authorizer.check(user.username, payment.legal_entity, "payment:read"):
        raise NotFound(f"no payment {payment_id}")
    return _present(session, payment_id)
