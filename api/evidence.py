"""Evidence for compliance: verification of the ledger's hash chain."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from activities import queries
from activities.ledger import verify_chain
from api.deps import ContextDep, CurrentUser, SessionDep
from api.errors import Invalid

router = APIRouter(prefix="/api/v1/evidence", tags=["evidence"])


class ChainVerification(BaseModel):
    legal_entity: str
    intact: bool
    entries: int
    head_hash: str
    broken_at_seq: int | None
    problem: str
    summary: str


@router.get("/ledger/verify", response_model=list[ChainVerification])
async def verify_ledger(
    ctx: ContextDep,
    session: SessionDep,
    user: CurrentUser,
    entity: Annotated[str | None, Query(max_length=32)] = None,
) -> list[ChainVerification]:
    """Recompute the evidence ledger's hash chain of each legal entity the caller may audit (or one):
    either intact with N entries and the head hash, or the first seq where it breaks and how."""
    entities = [
        e
        for e in queries.entities_of(session, user.username)
        if ctx.authorizer.check(user.username, e, "ledger:read")
    ]
    if entity is not None:
        ctx.authorizer.require(user.username, entity, "ledger:read")
        entities = [entity]
    if not entities:
        raise Invalid("you may audit no legal entity: ledger:read is granted nowhere to you", field="entity")
    out = []
    for code in entities:
        result = verify_chain(session, code)
        summary = (
            f"intact, {result.entries} entries, head hash {result.head_hash}"
            if result.intact
            else f"broken at seq {result.broken_at}: {result.problem}"
        )
        out.append(
            ChainVerification(
                legal_entity=code,
                intact=result.intact,
                entries=result.entries,
                head_hash=result.head_hash,
                broken_at_seq=result.broken_at,
                problem=result.problem,
                summary=summary,
            )
        )
    return out
