"""The web UI: HTML pages served by the API, one module per area, templates in ui/templates.

Page handlers are thin: they read through the same query functions as the JSON API and send changes
through the same command code into the workflows; there is no second way to change state. They are not
part of the API contract (not in the OpenAPI document).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.staticfiles import StaticFiles

from api.pages import (
    approvals,
    capa,
    compliance,
    credit_memos,
    delegations,
    dispute_figures,
    disputes,
    figures,
    invoices,
    session,
    tower,
)
from api.pages.common import UI, install

router = APIRouter(include_in_schema=False)
router.include_router(session.router)
router.include_router(approvals.router)
router.include_router(invoices.router)
router.include_router(credit_memos.router)
router.include_router(delegations.router)
router.include_router(figures.router)
router.include_router(compliance.router)
router.include_router(tower.router)
router.include_router(disputes.router)
router.include_router(dispute_figures.router)
router.include_router(capa.router)

static = StaticFiles(directory=str(UI / "static"))

__all__ = ["install", "router", "static"]
