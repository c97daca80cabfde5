"""The compliance pages: the control catalogue, evidence packs (built in the background, with their
progress shown, then downloaded), ledger verification per legal entity, signed checkpoints (list, sign
one now, download), and the access review (who holds which role where, and conflicts of duties).

Every page calls the JSON API's own code (api/evidence.py verify_ledgers, checkpoints_for,
sign_checkpoints, control_catalogue, pack_request and produce_pack; api/access.py assignments_for,
conflicts_for, verify_access_for): the same authorisation, the same ledger entries for what is recorded
(a verification run, a checkpoint, a pack).

Packs are built in a background task of the API process that took the request, keyed by a job id; the
page asks for the job's progress every second (htmx) and shows the download when it is ready. The job,
and the pack it built, live in that process's memory for an hour: behind a load balancer, pages of one
session must reach the same API process (sticky sessions), or the progress page answers "not found".
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from activities.db import reading
from activities.packs import MAX_PERIOD_DAYS as PACK_MAX_DAYS
from activities.packs import Pack, PackRequest
from api.access import assignments_for, conflicts_for, verify_access_for
from api.deps import AppContext, entities_for
from api.errors import AppError, Forbidden, NotFound, Unavailable
from api.evidence import (
    PackBody,
    checkpoints_for,
    control_catalogue,
    pack_download,
    pack_request,
    produce_pack,
    sign_checkpoints,
    verify_ledgers,
)
from api.pages.common import CsrfForm, PageUser, PageUserInfo, flash, redirect, render

router = APIRouter()
log = logging.getLogger("cashcycle.pages")

PAGE_SIZE = 50
PACK_FIELDS = ("control_id", "period_start", "period_end", "legal_entity", "sample_size", "seed")


@dataclass(frozen=True)
class Section:
    path: str
    title: str
    text: str
    actions: tuple[str, ...]  # shown to whoever may do one of them somewhere


SECTIONS = (
    Section(
        "/compliance/controls",
        "Control catalogue",
        "The key controls over order-to-cash and how each is tested.",
        ("ledger:read",),
    ),
    Section(
        "/compliance/packs/new",
        "Evidence packs",
        "One control's population for a period, a reproducible sample with its attribute tests and the "
        "verification of the chains: one zip.",
        ("evidence:export",),
    ),
    Section(
        "/compliance/ledger",
        "Ledger verification",
        "Recompute each legal entity's hash chain against its head and its signed checkpoints.",
        ("ledger:read",),
    ),
    Section(
        "/compliance/checkpoints",
        "Signed checkpoints",
        "Ed25519 signatures of each chain's head: list them, sign one now, download one to check offline.",
        ("ledger:read", "evidence:checkpoint"),
    ),
    Section(
        "/compliance/access",
        "Access review",
        "Who holds which role where, and every conflict of duties.",
        ("access:read",),
    ),
)


def _require(user: PageUserInfo, *actions: str) -> None:
    """403, naming the actions, unless the user may do one of them somewhere."""
    if not any(user.may(a) for a in actions):
        raise Forbidden(
            f"{user.username} may not {' or '.join(actions)} in any legal entity",
            code="forbidden",
            action=actions[0],
        )


def _entities(user: PageUserInfo, action: str) -> list[str]:
    with reading(user.ctx.store) as session:
        return entities_for(user.ctx, session, user.username, action, None)


@router.get("/compliance")
async def overview(request: Request, user: PageUser) -> Response:
    """What compliance can do here: the sections the user's roles open."""
    _require(user, "ledger:read", "evidence:export", "evidence:checkpoint", "access:read")
    sections = [s for s in SECTIONS if any(user.may(a) for a in s.actions)]
    status: dict[str, str] = {}
    with reading(user.ctx.store) as session:
        if user.may("ledger:read"):
            latest: dict[str, Any] = {}
            for cp in checkpoints_for(user.ctx, session, user.username, None):
                if cp.legal_entity not in latest or cp.id > latest[cp.legal_entity].id:
                    latest[cp.legal_entity] = cp
            status["/compliance/checkpoints"] = (
                "Latest: "
                + "; ".join(
                    f"{e} at entry {c.seq}, {c.signed_at[:16].replace('T', ' ')} UTC"
                    for e, c in sorted(latest.items())
                )
                if latest
                else "No checkpoint signed yet."
            )
        if user.may("access:read"):
            n = conflicts_for(user.ctx, session, user.username).count
            status["/compliance/access"] = (
                "No conflict of duties."
                if n == 0
                else f"{n} conflict{'s' if n > 1 else ''} of duties to review."
            )
    return render(request, "compliance/overview.html", {"sections": sections, "status": status}, user=user)


@router.get("/compliance/controls")
async def controls(request: Request, user: PageUser) -> Response:
    """The control catalogue (policies/controls.toml), as GET /api/v1/evidence/controls."""
    _require(user, "ledger:read")
    return render(
        request,
        "compliance/controls.html",
        {"controls": control_catalogue(), "may_export": user.may("evidence:export")},
        user=user,
    )


# -- evidence packs, built in the background -----------------------------------------------------------


@dataclass
class PackJob:
    """One pack being built (or built) for one user: what it is doing, how far along, and the result."""

    id: str
    owner: str
    key: str  # the form's idempotency key: the same form posted twice is the same job
    request: PackRequest
    started: float = field(default_factory=time.monotonic)
    stage: str = "waiting to start"
    percent: int = 0
    state: str = "running"  # running, done or failed
    error: str = ""
    pack: Pack | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def told(self, stage: str, percent: int) -> None:
        # Called from the thread building the pack: plain attribute writes, read by the progress page.
        self.stage, self.percent = stage, max(self.percent, min(percent, 99))


class PackJobs:
    """The pack builds of this API process, kept for an hour, and at most `limit` of them (a pack of a
    large population is megabytes, held in memory until it expires)."""

    def __init__(self, keep_seconds: float = 3600, limit: int = 20) -> None:
        self.keep, self.limit = keep_seconds, limit
        self.jobs: dict[str, PackJob] = {}
        self.by_key: dict[tuple[str, str], str] = {}

    def _expire(self) -> None:
        now = time.monotonic()
        done = sorted((j for j in self.jobs.values() if j.state != "running"), key=lambda j: j.started)
        for job in done:
            if now - job.started > self.keep or len(self.jobs) > self.limit:
                del self.jobs[job.id]
                self.by_key.pop((job.owner, job.key), None)

    def start(self, ctx: AppContext, req: PackRequest, owner: str, key: str) -> PackJob:
        self._expire()
        known = self.by_key.get((owner, key))
        if known is not None and known in self.jobs:
            return self.jobs[known]
        if sum(1 for j in self.jobs.values() if j.state == "running") >= self.limit:
            raise Unavailable("too many evidence packs are being built: try again in a minute")
        job = PackJob(id=uuid.uuid4().hex, owner=owner, key=key, request=req)
        self.jobs[job.id] = job
        self.by_key[owner, key] = job.id
        job.task = asyncio.create_task(self._run(ctx, job))
        return job

    async def _run(self, ctx: AppContext, job: PackJob) -> None:
        try:
            job.pack = await produce_pack(ctx, job.request, f"page:{job.key}", progress=job.told)
        except AppError as exc:
            job.state, job.error = "failed", exc.message
        except Exception as exc:  # the page says the build failed, and why; the log keeps the trace
            log.exception("evidence pack %s failed", job.id)
            job.state, job.error = "failed", f"{exc.__class__.__name__}: {exc}"
        else:
            job.state, job.stage, job.percent = "done", "ready", 100

    def get(self, job_id: str, owner: str) -> PackJob:
        """The owner's job: another user's job is as unknown as one that never was."""
        job = self.jobs.get(job_id)
        if job is None or job.owner != owner:
            raise NotFound(
                "no such evidence pack build: it belongs to another user, ended more than an hour ago, or "
                "was started on another API process",
                job_id=job_id[:64],
            )
        return job


def pack_jobs(request: Request) -> PackJobs:
    jobs: PackJobs | None = getattr(request.app.state, "pack_jobs", None)
    if jobs is None:
        jobs = request.app.state.pack_jobs = PackJobs()
    return jobs


def _pack_form(
    request: Request,
    user: PageUserInfo,
    values: dict[str, str],
    errors: Sequence[dict[str, str]] = (),
    status: int = 200,
) -> Response:
    entities = _entities(user, "evidence:export")
    return render(
        request,
        "compliance/pack_form.html",
        {
            "controls": control_catalogue(),
            "entities": entities,
            "values": values,
            "errors": list(errors),
            "pack_key": values.get("pack_key") or uuid.uuid4().hex,
            "max_days": PACK_MAX_DAYS,
        },
        user=user,
        status_code=status,
    )


@router.get("/compliance/packs/new")
async def new_pack(request: Request, user: PageUser) -> Response:
    """The form of an evidence pack: control, period, legal entity, sample size and seed."""
    _require(user, "evidence:export")
    today = datetime.now(UTC).date()
    last_month_end = today.replace(day=1) - timedelta(days=1)
    values = {
        "control_id": request.query_params.get("control_id", "")[:32],
        "period_start": last_month_end.replace(day=1).isoformat(),
        "period_end": last_month_end.isoformat(),
        "legal_entity": "",
        "sample_size": "",
        "seed": "",
    }
    return _pack_form(request, user, values)


def _pack_errors(values: dict[str, str], controls: set[str], entities: list[str]) -> list[dict[str, str]]:
    """The form's problems, each naming its field, before anything starts."""
    errors: list[dict[str, str]] = []
    if values["control_id"] not in controls:
        errors.append({"field": "control_id", "reason": "Choose a control of the catalogue"})
    days: dict[str, date] = {}
    for name, what in (("period_start", "first"), ("period_end", "last")):
        try:
            days[name] = date.fromisoformat(values[name])
        except ValueError:
            errors.append({"field": name, "reason": f"Enter the {what} day as a date, like 2026-11-01"})
    if len(days) == 2:
        if days["period_end"] < days["period_start"]:
            errors.append({"field": "period_end", "reason": "The last day must be on or after the first day"})
        elif (days["period_end"] - days["period_start"]).days > PACK_MAX_DAYS:
            errors.append({"field": "period_end", "reason": f"A period is at most {PACK_MAX_DAYS} days"})
    if values["legal_entity"] and values["legal_entity"] not in entities:
        errors.append(
            {
                "field": "legal_entity",
                "reason": f"Choose a legal entity you may export evidence of ({', '.join(entities)})",
            }
        )
    for name, hi in (("sample_size", 10_000), ("seed", 2**53 - 1)):
        text = values[name]
        if text and (not text.isdigit() or int(text) > hi):
            errors.append(
                {"field": name, "reason": f"Enter a whole number from 0 to {hi}, or leave it empty"}
            )
    return errors


@router.post("/compliance/packs")
async def start_pack(request: Request, user: PageUser, form: CsrfForm) -> Response:
    """Start building an evidence pack (the code of POST /api/v1/evidence/packs) and go to its progress.
    The same form posted twice (its pack_key) is the same build."""
    _require(user, "evidence:export")
    values = {k: str(form.get(k) or "").strip()[:64] for k in (*PACK_FIELDS, "pack_key")}
    entities = _entities(user, "evidence:export")
    errors = _pack_errors(values, {c.id for c in control_catalogue()}, entities)
    if not values["pack_key"]:
        errors.append(
            {"field": "control_id", "reason": "The form lacks its key: reload the page and try again"}
        )
    if errors:
        return _pack_form(request, user, values, errors, 422)
    try:
        body = PackBody(
            control_id=values["control_id"],
            period_start=date.fromisoformat(values["period_start"]),
            period_end=date.fromisoformat(values["period_end"]),
            legal_entity=values["legal_entity"] or None,
            sample_size=int(values["sample_size"]) if values["sample_size"] else None,
            seed=int(values["seed"]) if values["seed"] else None,
        )
    except ValidationError as exc:
        problems = [
            {"field": str(e["loc"][-1]) if e["loc"] else "control_id", "reason": str(e["msg"])}
            for e in exc.errors()
        ]
        return _pack_form(request, user, values, problems, 422)
    with reading(user.ctx.store) as session:
        req = pack_request(user.ctx, session, user.username, body)
    job = pack_jobs(request).start(user.ctx, req, user.username, values["pack_key"])
    return redirect(f"/compliance/packs/{job.id}")


@router.get("/compliance/packs/{job_id}")
async def pack_progress(request: Request, user: PageUser, job_id: str) -> Response:
    """Where the build stands (the page polls this every second for its progress block)."""
    _require(user, "evidence:export")
    job = pack_jobs(request).get(job_id[:64], user.username)
    manifest = job.pack.manifest if job.pack else None
    return render(
        request,
        "compliance/pack.html",
        {"job": job, "manifest": manifest, "elapsed": int(time.monotonic() - job.started)},
        user=user,
        block="progress",
    )


@router.get("/compliance/packs/{job_id}/download")
async def download_pack(request: Request, user: PageUser, job_id: str) -> Response:
    """The built pack, as POST /api/v1/evidence/packs answers it."""
    _require(user, "evidence:export")
    job = pack_jobs(request).get(job_id[:64], user.username)
    if job.pack is None:
        raise NotFound("the pack is not built yet (or its build failed)", job_id=job.id)
    return pack_download(job.pack)


# -- ledger verification -------------------------------------------------------------------------------


def _ledger_page(
    request: Request,
    user: PageUserInfo,
    results: list[Any] | None,
    errors: Sequence[dict[str, str]] = (),
    status: int = 200,
    chosen: str = "",
    posted: bool = False,
) -> Response:
    entities = _entities(user, "ledger:read")
    access_chain = None
    if user.may("access:read"):
        with reading(user.ctx.store) as session:
            access_chain = verify_access_for(user.ctx, session, user.username)
    return render(
        request,
        "compliance/ledger.html",
        {
            "entities": entities,
            "results": results,
            "errors": list(errors),
            "chosen": chosen,
            "access_chain": access_chain,
        },
        user=user,
        status_code=status,
        block="results" if posted else None,
    )


@router.get("/compliance/ledger")
async def ledger(request: Request, user: PageUser) -> Response:
    """Verify the chains: choose one legal entity or all (verifying records the run, so it is a POST)."""
    _require(user, "ledger:read")
    return _ledger_page(request, user, None)


@router.post("/compliance/ledger/verify")
async def verify(request: Request, user: PageUser, form: CsrfForm) -> Response:
    """Verify each chain the user may read, or one (GET /api/v1/evidence/ledger/verify): intact with its
    entries and head, or the first entry where it breaks and how. Each run is recorded in its chain."""
    _require(user, "ledger:read")
    entity = str(form.get("legal_entity") or "").strip()[:32]
    entities = _entities(user, "ledger:read")
    if entity and entity not in entities:
        errors = [
            {
                "field": "legal_entity",
                "reason": f"Choose a legal entity you may read the ledger of ({', '.join(entities)})",
            }
        ]
        return _ledger_page(request, user, None, errors, 422, entity, posted=True)
    with reading(user.ctx.store) as session:
        results = await verify_ledgers(user.ctx, session, user.username, entity or None)
    return _ledger_page(request, user, results, chosen=entity, posted=True)


# -- signed checkpoints --------------------------------------------------------------------------------


def _checkpoints_page(
    request: Request, user: PageUserInfo, errors: Sequence[dict[str, str]] = (), status: int = 200
) -> Response:
    entity = request.query_params.get("legal_entity", "")[:32] or None
    readable = _entities(user, "ledger:read") if user.may("ledger:read") else []
    if entity is not None and entity not in readable:
        entity = None
    with reading(user.ctx.store) as session:
        rows = checkpoints_for(user.ctx, session, user.username, entity) if readable else []
    rows.sort(key=lambda c: (c.signed_at, c.id), reverse=True)
    offset = request.query_params.get("offset", "0")
    start = min(int(offset), 10**9) if offset.isdigit() else 0
    signable = _entities(user, "evidence:checkpoint") if user.may("evidence:checkpoint") else []
    return render(
        request,
        "compliance/checkpoints.html",
        {
            "rows": rows[start : start + PAGE_SIZE],
            "total": len(rows),
            "offset": start,
            "limit": PAGE_SIZE,
            "readable": readable,
            "entity": entity or "",
            "signable": signable,
            "errors": list(errors),
            "form_key": uuid.uuid4().hex,
        },
        user=user,
        status_code=status,
    )


@router.get("/compliance/checkpoints")
async def checkpoints(request: Request, user: PageUser) -> Response:
    """The signed checkpoints, newest first, each to download; sign one now."""
    _require(user, "ledger:read", "evidence:checkpoint")
    return _checkpoints_page(request, user)


@router.post("/compliance/checkpoints")
async def sign(request: Request, user: PageUser, form: CsrfForm) -> Response:
    """Sign a checkpoint of one chain or of each the user may checkpoint (POST
    /api/v1/evidence/checkpoints, through the checkpoint workflow). The form's key makes a double submit
    one signature per chain."""
    _require(user, "evidence:checkpoint")
    entity = str(form.get("legal_entity") or "").strip()[:32] or None
    key = str(form.get("idempotency_key") or "").strip()[:64] or None
    signable = _entities(user, "evidence:checkpoint")
    if entity is not None and entity not in signable:
        errors = [
            {
                "field": "legal_entity",
                "reason": f"Choose a legal entity you may checkpoint ({', '.join(signable)})",
            }
        ]
        return _checkpoints_page(request, user, errors, 422)
    try:
        with reading(user.ctx.store) as session:
            made = await sign_checkpoints(user.ctx, session, user.username, entity, key)
    except AppError as exc:
        return _checkpoints_page(
            request, user, [{"field": "legal_entity", "reason": exc.message}], exc.status
        )
    if not made:
        return flash(redirect("/compliance/checkpoints"), "No ledger had entries to sign.", "warning")
    signed = ", ".join(f"{c.legal_entity} at entry {c.seq}" for c in made)
    return flash(
        redirect("/compliance/checkpoints"),
        f"Signed: {signed}. Download a checkpoint to check its signature offline with its public key.",
    )


def _checkpoint_json(rows: list[Any]) -> bytes:
    return (json.dumps([r.model_dump() for r in rows], indent=2, sort_keys=True) + "\n").encode()


@router.get("/compliance/checkpoints.json")
async def checkpoints_json(request: Request, user: PageUser) -> Response:
    """Every checkpoint the user may read, as GET /api/v1/evidence/checkpoints answers."""
    _require(user, "ledger:read")
    with reading(user.ctx.store) as session:
        rows = checkpoints_for(user.ctx, session, user.username, None)
    return Response(
        _checkpoint_json(rows),
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="ledger-checkpoints.json"'},
    )


@router.get("/compliance/checkpoints/{checkpoint_id}.json")
async def checkpoint_json(request: Request, user: PageUser, checkpoint_id: int) -> Response:
    """One checkpoint: the signed message, the signature and the public key, to check offline."""
    _require(user, "ledger:read")
    with reading(user.ctx.store) as session:
        rows = [c for c in checkpoints_for(user.ctx, session, user.username, None) if c.id == checkpoint_id]
    if not rows:
        raise NotFound(f"checkpoint {checkpoint_id} not found", checkpoint_id=checkpoint_id)
    cp = rows[0]
    name = f"checkpoint-{cp.legal_entity}-{cp.seq}-{cp.id}.json"
    return Response(
        (json.dumps(cp.model_dump(), indent=2, sort_keys=True) + "\n").encode(),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


# -- access review -------------------------------------------------------------------------------------


def _assignments(request: Request, user: PageUserInfo) -> tuple[list[Any], dict[str, str], list[Any]]:
    q = request.query_params
    filters = {
        "q": (q.get("q") or "").strip()[:64],
        "role": (q.get("role") or "")[:64],
        "legal_entity": (q.get("legal_entity") or "")[:32],
    }
    with reading(user.ctx.store) as session:
        everything = assignments_for(user.ctx, session, user.username)
    rows = [
        a
        for a in everything
        if (not filters["q"] or filters["q"].lower() in a.username.lower())
        and (not filters["role"] or a.role == filters["role"])
        and (not filters["legal_entity"] or a.legal_entity == filters["legal_entity"])
    ]
    rows.sort(key=lambda a: (a.username, a.legal_entity, a.role))
    return rows, filters, everything


@router.get("/compliance/access")
async def access(request: Request, user: PageUser) -> Response:
    """Who holds which role in which legal entity, and the conflicts of duties among them (GET
    /api/v1/access/assignments and /conflicts), with filters and pages."""
    _require(user, "access:read")
    rows, filters, everything = _assignments(request, user)
    with reading(user.ctx.store) as session:
        report = conflicts_for(user.ctx, session, user.username)
        chain = verify_access_for(user.ctx, session, user.username)
    offset = request.query_params.get("offset", "0")
    start = min(int(offset), 10**9) if offset.isdigit() else 0
    return render(
        request,
        "compliance/access.html",
        {
            "rows": rows[start : start + PAGE_SIZE],
            "total": len(rows),
            "offset": start,
            "limit": PAGE_SIZE,
            "filters": filters,
            "base_query": urlencode({k: v for k, v in filters.items() if v}),
            "roles": sorted({a.role for a in everything}),
            "entities": sorted({a.legal_entity for a in everything}),
            "people": len({a.username for a in everything}),
            "report": report,
            "chain": chain,
        },
        user=user,
    )


@router.get("/compliance/access.csv")
async def access_csv(request: Request, user: PageUser) -> Response:
    """The role assignments shown (with the filters), as CSV for the reviewer's sign-off."""
    _require(user, "access:read")
    rows, _, _ = _assignments(request, user)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(["username", "role", "legal_entity", "granted_by", "granted_at"])
    writer.writerows(
        [a.username, a.role, a.legal_entity, a.granted_by, a.granted_at.isoformat()] for a in rows
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Response(
        buf.getvalue().encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="role-assignments-{stamp}.csv"'},
    )
