"""Evidence for compliance: ledger verification, signed checkpoints, the control catalogue and packs.

Everything here reads the ledger; the only writes are the evidence that evidence was taken (a
verification run, a checkpoint, a pack), appended to the ledger like every other entry. Nothing in the
application can change or delete a ledger entry: there is no such endpoint, and the database refuses it.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field
from sqlmodel import Session

from activities import queries
from activities.checkpoints import checkpoint_export, checkpoints_of, trusted_public_keys, verify_and_record
from activities.controls import load_catalogue
from activities.db import reading
from activities.ledger import Verification
from activities.models import LedgerCheckpoint
from activities.packs import Pack, PackError, PackRequest, Progress, build_pack, record_pack
from api.deps import AppContext, ContextDep, CurrentUser, IdempotencyKey, SessionDep, entities_for
from api.errors import Conflict, Invalid, NotFound, errors
from api.schemas import JSON_INTEGER, Day, Strict
from workflows.checkpoint import LedgerCheckpointWorkflow
from workflows.types import CheckpointRequest, CheckpointRun

router = APIRouter(prefix="/api/v1/evidence", tags=["evidence"])
# Within the store's BIGINT, and exact as a JSON number read as a double (2**63 - 1 is not: clients and
# generators rounded it up to 2**63, past what the API then accepted).
MAX_INTEGER = 2**53 - 1


class ChainVerification(BaseModel):
    legal_entity: str
    intact: bool
    entries: int
    head_hash: str
    broken_at_seq: int | None
    kind: str = Field(description="changed, missing, reordered, inserted, rewritten or checkpoint")
    problem: str
    summary: str
    from_seq: int
    to_seq: int | None
    checkpoint_id: int | None
    checkpoint_seq: int | None
    recorded_at_seq: int | None = Field(description="the ledger entry recording this verification run")


def _out(result: Verification, seq: int | None) -> ChainVerification:
    return ChainVerification(
        legal_entity=result.legal_entity,
        intact=result.intact,
        entries=result.entries,
        head_hash=result.head_hash,
        broken_at_seq=result.broken_at,
        kind=result.kind,
        problem=result.problem,
        summary=result.summary,
        from_seq=result.from_seq,
        to_seq=result.to_seq,
        checkpoint_id=result.checkpoint_id,
        checkpoint_seq=result.checkpoint_seq,
        recorded_at_seq=seq,
    )


@router.get(
    "/ledger/verify", response_model=list[ChainVerification], responses=errors("forbidden", "invalid_range")
)
async def verify_ledger(
    ctx: ContextDep,
    session: SessionDep,
    user: CurrentUser,
    entity: Annotated[str | None, Query(max_length=32)] = None,
    from_seq: Annotated[int | None, Query(alias="from", ge=1, le=MAX_INTEGER)] = None,
    to_seq: Annotated[int | None, Query(alias="to", ge=1, le=MAX_INTEGER)] = None,
) -> list[ChainVerification]:
    """Recompute the hash chain of each legal entity the caller may audit (or one, or a seq range),
    against its head and its signed checkpoints: either intact with N entries and the head hash, or the
    first seq where it breaks and how. Each run is recorded in the ledger it verified."""
    return await verify_ledgers(ctx, session, user.username, entity, from_seq, to_seq)


async def verify_ledgers(
    ctx: AppContext,
    session: Session,
    username: str,
    entity: str | None,
    from_seq: int | None = None,
    to_seq: int | None = None,
) -> list[ChainVerification]:
    """Verify (and record the run on) each chain `username` may read (or `entity`'s): the JSON route and
    the compliance pages."""
    if from_seq is not None and to_seq is not None and to_seq < from_seq:
        raise Invalid("to is before from", code="invalid_range", field="to")
    entities = entities_for(ctx, session, username, "ledger:read", entity)
    out = []
    for code in entities:
        run = await asyncio.to_thread(
            verify_and_record, ctx.store, ctx.settings, code, username, from_seq, to_seq
        )
        out.append(_out(run.result, run.ledger_seq))
    return out


class CheckpointOut(BaseModel):
    id: int
    legal_entity: str
    seq: int
    entry_hash: str
    signed_at: str
    key_id: str
    public_key: str
    signature: str
    algorithm: str = "Ed25519"
    message: str = Field(description="the exact signed bytes (UTF-8)")
    trigger: str
    requested_by: str
    signature_valid: bool = Field(description="valid under a key this installation trusts")


class CheckpointBody(Strict):
    legal_entity: str | None = Field(default=None, max_length=32)


def _checkpoint_out(cp: LedgerCheckpoint, trusted: set[str]) -> CheckpointOut:
    return CheckpointOut(**checkpoint_export(cp, trusted))


@router.get("/checkpoints", response_model=list[CheckpointOut], responses=errors("forbidden"))
async def list_checkpoints(
    ctx: ContextDep,
    session: SessionDep,
    user: CurrentUser,
    entity: Annotated[str | None, Query(max_length=32)] = None,
) -> list[CheckpointOut]:
    """Every signed checkpoint (export them: anyone holding the public key can check them offline)."""
    return checkpoints_for(ctx, session, user.username, entity)


def checkpoints_for(
    ctx: AppContext, session: Session, username: str, entity: str | None
) -> list[CheckpointOut]:
    """The checkpoints of the chains `username` may read (or `entity`'s), oldest first per chain."""
    trusted = trusted_public_keys(ctx.settings)
    out = []
    for code in entities_for(ctx, session, username, "ledger:read", entity):
        out += [_checkpoint_out(cp, trusted) for cp in checkpoints_of(session, code)]
    return out


@router.post(
    "/checkpoints",
    response_model=list[CheckpointOut],
    status_code=201,
    responses=errors("forbidden", "empty_ledger", "ledger_broken", "unavailable"),
)
async def make_checkpoints(
    ctx: ContextDep,
    session: SessionDep,
    user: CurrentUser,
    idempotency_key: IdempotencyKey,
    body: CheckpointBody | None = None,
) -> list[CheckpointOut]:
    """Sign a checkpoint of each chain the caller may checkpoint (or one), now, through the same
    workflow the daily schedule runs."""
    entity = body.legal_entity if body else None
    return await sign_checkpoints(ctx, session, user.username, entity, idempotency_key)


async def sign_checkpoints(
    ctx: AppContext, session: Session, username: str, entity: str | None, idempotency_key: str | None
) -> list[CheckpointOut]:
    """Sign a checkpoint of each chain `username` may checkpoint (or `entity`'s), through the checkpoint
    workflow: the JSON route and the compliance pages. The same key again is the same workflow run."""
    entities = entities_for(ctx, session, username, "evidence:checkpoint", entity)
    made: list[int] = []
    for code in entities:
        if not queries.ledger_has_entries(session, code):
            if entity is not None:
                raise Invalid(
                    f"the ledger of {code} has no entries to checkpoint",
                    code="empty_ledger",
                    field="legal_entity",
                )
            continue
        key = f"{username}:{idempotency_key}:{code}" if idempotency_key else uuid.uuid4().hex
        run: CheckpointRun = await ctx.temporal.execute_workflow(
            LedgerCheckpointWorkflow.run,
            CheckpointRequest(trigger="on_demand", requested_by=username, legal_entity=code),
            id=f"ledger-checkpoint/on-demand/{key}",
            task_queue=ctx.settings.task_queue,
        )
        if run.broken_chains:
            raise Conflict(
                f"the ledger of {code} does not verify, so it was not signed: see "
                "GET /api/v1/evidence/ledger/verify (the failed verification is recorded)",
                code="ledger_broken",
                legal_entity=code,
            )
        made += run.checkpoint_ids
    trusted = trusted_public_keys(ctx.settings)
    with reading(ctx.store) as fresh:  # signed by the worker after this request's session began
        return [
            _checkpoint_out(cp, trusted)
            for code in entities
            for cp in checkpoints_of(fresh, code)
            if cp.id in made
        ]


class ControlOut(BaseModel):
    id: str
    name: str
    description: str
    frequency: str
    population: str
    events: list[str]
    object_types: list[str]
    attribute_tests: list[str]
    default_sample_size: int


@router.get("/controls", response_model=list[ControlOut], responses=errors("forbidden"))
async def list_controls(ctx: ContextDep, session: SessionDep, user: CurrentUser) -> list[ControlOut]:
    """The control catalogue (policies/controls.toml)."""
    entities_for(ctx, session, user.username, "ledger:read", None)
    return control_catalogue()


def control_catalogue() -> list[ControlOut]:
    return [
        ControlOut(
            id=c.id,
            name=c.name,
            description=c.description,
            frequency=c.frequency,
            population=c.population,
            events=list(c.events),
            object_types=list(c.object_types),
            attribute_tests=list(c.attributes),
            default_sample_size=c.default_sample_size,
        )
        for c in load_catalogue().controls.values()
    ]


class PackBody(Strict):
    control_id: str = Field(max_length=32)
    period_start: Day
    period_end: Day
    sample_size: Annotated[int, Field(ge=0, le=10_000), JSON_INTEGER] | None = None
    seed: Annotated[int, Field(ge=0, le=MAX_INTEGER), JSON_INTEGER] | None = None
    legal_entity: str | None = Field(default=None, max_length=32)


@router.post(
    "/packs",
    responses={
        200: {"content": {"application/zip": {}}, "description": "the evidence pack (zip)"},
        **errors("forbidden", "not_found", "invalid_range", "unknown_reference"),
    },
    response_class=Response,
)
async def make_pack(
    body: PackBody, ctx: ContextDep, session: SessionDep, user: CurrentUser, idempotency_key: IdempotencyKey
) -> Response:
    """An evidence pack for one control and period: population (CSV, JSON Lines), manifest, the sample
    drawn from the seed with its attribute tests, and the verification of the chains."""
    req = pack_request(ctx, session, user.username, body)
    return pack_download(await produce_pack(ctx, req, idempotency_key))


def pack_download(pack: Pack) -> Response:
    """The pack as a zip download, its record count and population hash in headers (the API and the
    compliance page send the same)."""
    return Response(
        pack.data,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{pack.filename}"',
            "X-Record-Count": str(pack.manifest["record_count"]),
            "X-Population-SHA256": pack.manifest["files"]["population.csv"]["sha256"],
        },
    )


def pack_request(ctx: AppContext, session: Session, username: str, body: PackBody) -> PackRequest:
    """The pack `username` asks for, over the legal entities where they may export evidence (or one):
    403 naming evidence:export otherwise."""
    entities = entities_for(ctx, session, username, "evidence:export", body.legal_entity)
    return PackRequest(
        control_id=body.control_id,
        period_start=body.period_start,
        period_end=body.period_end,
        legal_entities=tuple(entities),
        requested_by=username,
        sample_size=body.sample_size,
        seed=body.seed,
    )


async def produce_pack(
    ctx: AppContext, req: PackRequest, idempotency_key: str | None, progress: Progress | None = None
) -> Pack:
    """Build the pack and record its production in the ledger: the JSON route, and the compliance pages'
    background builds (which pass `progress`, told each stage and how far along it is)."""
    try:
        pack = await asyncio.to_thread(build_pack, ctx.store, ctx.settings, req, progress=progress)
    except PackError as exc:
        if exc.field == "control_id":
            raise NotFound(str(exc)) from None
        # The period's order and length relate two fields; a legal entity with no population is the store's.
        code = "invalid_range" if exc.field.startswith("period") else "unknown_reference"
        raise Invalid(str(exc), code=code, field=exc.field) from None
    if progress is not None:
        progress("recording the pack in the ledger", 98)
    await asyncio.to_thread(record_pack, ctx.store, pack, req.requested_by, idempotency_key or "")
    return pack
