"""Access administration and access evidence: role grants and revokes (refused when they would give one
person incompatible duties), who holds what, and the report of existing conflicts of duties.

Every grant and revoke is ledgered in the legal entity's chain with the administrator as actor; users
added or disabled and the policy files in force are ledgered in the reserved access chain.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field
from sqlmodel import Session, select

from activities import queries
from activities.db import writing
from activities.directory import ACCESS_CHAIN, DirectoryError, DutiesConflict, conflict_report, grant, revoke
from activities.ledger import verify_chain
from activities.models import LegalEntity, RoleAssignment
from api.deps import AppContext, ContextDep, CurrentUser, SessionDep
from api.errors import AppError, Forbidden, Invalid, errors
from api.schemas import Role, Strict
from api.security import Grant

router = APIRouter(prefix="/api/v1/access", tags=["access"])


class RoleChange(Strict):
    username: str = Field(min_length=1, max_length=64, examples=["alice"])
    role: Role = Field(examples=["ar_preparer"])
    legal_entity: str = Field(min_length=1, max_length=32, examples=["ACME"])


class Assignment(BaseModel):
    username: str
    role: str
    legal_entity: str
    granted_by: str
    granted_at: datetime


class GrantResult(Assignment):
    changed: bool = Field(description="false when the user already held the role (nothing was written)")


class RevokeResult(BaseModel):
    username: str
    role: str
    legal_entity: str
    changed: bool = Field(description="false when the user did not hold the role (nothing was written)")


class HeldConflictRow(BaseModel):
    username: str
    active: bool = Field(description="false for a disabled user (who can no longer sign in)")
    legal_entity: str
    role_a: str
    role_b: str
    why: str


class ConflictReportPublic(BaseModel):
    """How the report was produced travels with it, so that its completeness can be checked."""

    generated_at: datetime
    conflicts_file: str
    version: str = Field(description="SHA-256 of the conflicts file the report was checked against")
    legal_entities: list[str] = Field(
        description="the legal entities covered (where the caller may read access)"
    )
    assignments_examined: int
    count: int
    conflicts: list[HeldConflictRow]


class AccessChainVerification(BaseModel):
    chain: str
    intact: bool
    entries: int
    head_hash: str
    broken_at_seq: int | None
    problem: str


def _refusal(exc: DirectoryError) -> AppError:
    if isinstance(exc, DutiesConflict):
        return Forbidden(
            str(exc),
            code="duties_conflict",
            username=exc.username,
            legal_entity=exc.legal_entity,
            requested=exc.role,
            held=exc.held,
            pair=list(exc.pair),
            why=exc.why,
        )
    # What is left after the schema (roles are an enum there): a user or legal entity the store lacks.
    return Invalid(str(exc), code="unknown_reference", field=exc.field)


def _may_administer(ctx: AppContext, session: Session, username: str, body: RoleChange) -> Grant:
    """access:grant in the legal entity of the request. Someone who may grant nowhere is refused before
    anything about the request is looked at; an administrator naming an unknown entity is told so."""
    administers = [
        e for e in queries.entities_of(session, username) if ctx.authorizer.check(username, e, "access:grant")
    ]
    if administers and session.get(LegalEntity, body.legal_entity) is None:
        raise Invalid(f"no legal entity {body.legal_entity}", code="unknown_reference", field="legal_entity")
    return ctx.authorizer.require(username, body.legal_entity, "access:grant")


def _readable_entities(ctx: AppContext, session: Session, username: str) -> list[str]:
    return [
        e for e in queries.entities_of(session, username) if ctx.authorizer.check(username, e, "access:read")
    ]


@router.post(
    "/grants",
    status_code=201,
    response_model=GrantResult,
    responses={
        200: {"description": "the user already held the role: nothing changed"},
        **errors("forbidden", "duties_conflict", "unknown_reference"),
    },
)
def grant_role(
    body: RoleChange, response: Response, ctx: ContextDep, session: SessionDep, user: CurrentUser
) -> GrantResult:
    """Grant a role to a user in a legal entity (administrators of that legal entity). Refused with 403
    `duties_conflict`, naming the pair of roles and why they are incompatible, when the user holds a role
    that conflicts with it there (policies/sod_conflicts.csv); nothing is written then. A grant takes effect
    on the grantee's next request and is ledgered with the administrator as actor."""
    allowed = _may_administer(ctx, session, user.username, body)
    try:
        with writing(ctx.store) as wsession:
            changed = grant(
                wsession, body.username, body.role, body.legal_entity, allowed.username, rule=allowed.rule
            )
            row = wsession.exec(
                select(RoleAssignment).where(
                    RoleAssignment.username == body.username,
                    RoleAssignment.role == body.role,
                    RoleAssignment.legal_entity == body.legal_entity,
                )
            ).one()
            result = GrantResult.model_validate({**row.model_dump(), "changed": changed})
    except DirectoryError as exc:
        raise _refusal(exc) from None
    if not changed:
        response.status_code = 200
    return result


@router.post("/revokes", response_model=RevokeResult, responses=errors("forbidden", "unknown_reference"))
def revoke_role(body: RoleChange, ctx: ContextDep, session: SessionDep, user: CurrentUser) -> RevokeResult:
    """Take a role back from a user in a legal entity (administrators of that legal entity). Always
    allowed: a revoke cannot create a conflict of duties. Ledgered with the administrator as actor."""
    allowed = _may_administer(ctx, session, user.username, body)
    try:
        with writing(ctx.store) as wsession:
            changed = revoke(
                wsession, body.username, body.role, body.legal_entity, allowed.username, rule=allowed.rule
            )
    except DirectoryError as exc:
        raise _refusal(exc) from None
    return RevokeResult(
        username=body.username, role=body.role, legal_entity=body.legal_entity, changed=changed
    )


@router.get("/assignments", response_model=list[Assignment])
async def role_assignments(ctx: ContextDep, session: SessionDep, user: CurrentUser) -> list[Assignment]:
    """Who holds which role in which legal entity, in the legal entities where the caller may read access
    (administrators, compliance)."""
    return assignments_for(ctx, session, user.username)


def assignments_for(ctx: AppContext, session: Session, username: str) -> list[Assignment]:
    """The role assignments in the legal entities where `username` may read access (the JSON route and
    the access review page)."""
    return [
        Assignment.model_validate(r, from_attributes=True)
        for r in queries.role_assignments(session)
        if ctx.authorizer.check(username, r.legal_entity, "access:read")
    ]


@router.get("/conflicts", response_model=ConflictReportPublic, responses=errors("forbidden"))
async def conflicts_report(ctx: ContextDep, session: SessionDep, user: CurrentUser) -> ConflictReportPublic:
    """Existing conflicts of duties: every user holding both roles of an incompatible pair in one legal
    entity (possible when the conflicts file tightens after the grants were made), with the reason, in the
    legal entities where the caller may read access (administrators, compliance). The report names the
    version (SHA-256) of the conflicts file it was checked against, when it ran and how many assignments
    it examined."""
    return conflicts_for(ctx, session, user.username)


def conflicts_for(ctx: AppContext, session: Session, username: str) -> ConflictReportPublic:
    """The conflicts-of-duties report over the legal entities where `username` may read access (the JSON
    route and the access review page); 403 naming access:read when there are none."""
    entities = _readable_entities(ctx, session, username)
    if not entities:
        raise Forbidden(
            f"{username} may not access:read in any legal entity", code="forbidden", action="access:read"
        )
    report = conflict_report(session, entities)
    return ConflictReportPublic(
        generated_at=report.generated_at,
        conflicts_file=f"policies/{report.rules.source}",
        version=report.rules.version,
        legal_entities=report.legal_entities,
        assignments_examined=report.assignments_examined,
        count=len(report.conflicts),
        conflicts=[
            HeldConflictRow(
                username=c.username,
                active=c.username not in report.disabled_users,
                legal_entity=c.legal_entity,
                role_a=c.role_a,
                role_b=c.role_b,
                why=c.why,
            )
            for c in report.conflicts
        ],
    )


@router.get("/ledger/verify", response_model=AccessChainVerification, responses=errors("forbidden"))
async def verify_access_chain(
    ctx: ContextDep, session: SessionDep, user: CurrentUser
) -> AccessChainVerification:
    """Recompute the hash chain of the access ledger (users added and disabled, policy files in force),
    which belongs to no legal entity (for those who may read access in some legal entity)."""
    return verify_access_for(ctx, session, user.username)


def verify_access_for(ctx: AppContext, session: Session, username: str) -> AccessChainVerification:
    """The access chain's verification, for those who may read access somewhere (403 otherwise)."""
    if not _readable_entities(ctx, session, username):
        raise Forbidden(
            f"{username} may not access:read in any legal entity", code="forbidden", action="access:read"
        )
    result = verify_chain(session, ACCESS_CHAIN)
    return AccessChainVerification(
        chain=ACCESS_CHAIN,
        intact=result.intact,
        entries=result.entries,
        head_hash=result.head_hash,
        broken_at_seq=result.broken_at,
        problem=result.problem,
    )
