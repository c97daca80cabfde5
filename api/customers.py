"""Customer master data: created by the ERP or master-data maintainers, read by everyone who bills."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy.exc import IntegrityError

from activities import queries
from activities.db import writing
from activities.directory import create_customer
from activities.models import Customer, CustomerBase
from api.deps import ContextDep, CurrentUser, IdempotencyKey, SessionDep
from api.errors import Conflict, Invalid, NotFound, errors
from api.schemas import CustomerCreate, CustomerPublic

router = APIRouter(prefix="/api/v1", tags=["customers"])
# Beyond any customer master (and within what the store's integers take: an offset of 2**95 was a 500).
MAX_OFFSET = 1_000_000


def idempotent_ref(username: str, key: str) -> str:
    """The external_ref standing in for an Idempotency-Key: per caller, and hashed so that a key of any
    allowed length (200) fits the column (100) instead of failing the insert on PostgreSQL."""
    return "idem:" + hashlib.sha256(f"{username}\n{key}".encode()).hexdigest()


def _public(c: Customer) -> CustomerPublic:
    return CustomerPublic.model_validate(c, from_attributes=True)


@router.post(
    "/customers",
    status_code=201,
    response_model=CustomerPublic,
    responses={
        200: {"description": "the same external_ref and body again: the existing customer"},
        **errors(
            "forbidden",
            "external_ref_conflict",
            "legal_entity_required",
            "unknown_reference",
            "inconsistent_fields",
        ),
    },
)
async def add_customer(
    body: CustomerCreate,
    response: Response,
    ctx: ContextDep,
    session: SessionDep,
    user: CurrentUser,
    idempotency_key: IdempotencyKey,
) -> CustomerPublic:
    """Create a customer with payment terms, currency and billing contact, and what e-invoices to them
    need: address parts, Peppol endpoint (checked against the EAS code list and its check digits), legal
    registration number, buyer reference and whether their AP requires a PO number. With `external_ref`
    (the ERP's id) or an Idempotency-Key, sending the same request twice creates one customer."""
    entities = [
        e
        for e in queries.entities_of(session, user.username)
        if ctx.authorizer.check(user.username, e, "customer:create")
    ]
    entity = body.legal_entity or (entities[0] if len(entities) == 1 else None)
    if entity is None:
        raise Invalid(
            "legal_entity is required: you maintain customers in several legal entities",
            code="legal_entity_required",
            field="legal_entity",
        )
    grant = ctx.authorizer.require(user.username, entity, "customer:create")
    if body.portal not in ctx.portals():
        raise Invalid(
            f"portal: {body.portal!r} is not a configured portal (CASHCYCLE_PORTALS_FILE); use one of "
            f"{', '.join(sorted(ctx.portals()))}",
            code="unknown_reference",
            field="portal",
        )
    problem = body.endpoint_problem()
    if problem:
        raise Invalid(problem, code="inconsistent_fields", field="endpoint_id")
    data = CustomerBase.model_validate(body.model_dump(exclude={"legal_entity", "external_ref"}))
    ref = body.external_ref or (idempotent_ref(user.username, idempotency_key) if idempotency_key else None)
    if ref is not None:
        existing = queries.customer_by_external_ref(session, entity, ref)
        if existing is not None:
            if CustomerBase.model_validate(existing, from_attributes=True) != data:
                raise Conflict(
                    f"customer {ref} exists with different data",
                    code="external_ref_conflict",
                    customer_id=existing.id,
                )
            response.status_code = 200
            return _public(existing)
    try:
        with writing(ctx.store) as wsession:
            customer = create_customer(wsession, entity, data, grant.username, external_ref=ref)
            wsession.refresh(customer)
            wsession.expunge(customer)
    except IntegrityError:
        raise Conflict(
            f"customer {ref} was created concurrently; read it again", code="external_ref_conflict"
        ) from None
    return _public(customer)


@router.get("/customers", response_model=list[CustomerPublic])
async def list_customers(
    ctx: ContextDep,
    session: SessionDep,
    user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[CustomerPublic]:
    """Customers of the legal entities where the caller may read them, by name."""
    entities = [
        e
        for e in queries.entities_of(session, user.username)
        if ctx.authorizer.check(user.username, e, "customer:read")
    ]
    return [_public(c) for c in queries.list_customers(session, entities, limit=limit, offset=offset)]


@router.get("/customers/{customer_id}", response_model=CustomerPublic, responses=errors("not_found"))
async def get_customer(
    customer_id: str, ctx: ContextDep, session: SessionDep, user: CurrentUser
) -> CustomerPublic:
    """One customer."""
    customer = queries.customer_by_id(session, customer_id)
    if customer is None or not ctx.authorizer.check(user.username, customer.legal_entity, "customer:read"):
        raise NotFound(f"no customer {customer_id}")
    return _public(customer)
