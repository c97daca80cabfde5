"""The test and demo control API (/_sim/...): the scenario, the clock, purchase orders, review rules and
standing dispute answers, faults, rate limits, tokens; and what was received, sent, pushed and logged."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from portal_sim.scenario import Advance, Dispute, Faults, PurchaseOrder, RateLimit, ReviewRule, Scenario
from portal_sim.simulator import Pusher, Simulator


def router(sim: Simulator, pusher: Pusher) -> APIRouter:
    api = APIRouter(prefix="/_sim")

    @api.get("/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "scenario": sim.scenario.name, "now": sim.now().isoformat()}

    @api.get("/scenario")
    def get_scenario() -> dict[str, Any]:
        return sim.scenario.model_dump(mode="json")

    @api.post("/scenario")
    def put_scenario(scenario: Scenario) -> dict[str, Any]:
        """Replace the whole state with a fresh one from this scenario."""
        sim.load(scenario)
        return {"ok": True, "now": sim.now().isoformat()}

    @api.post("/reset")
    def reset() -> dict[str, Any]:
        sim.reset()
        return {"ok": True, "now": sim.now().isoformat()}

    @api.get("/clock")
    def clock() -> dict[str, Any]:
        return {"now": sim.now().isoformat(), "mode": sim.scenario.clock}

    @api.post("/advance")
    def advance(body: Advance) -> dict[str, Any]:
        """Move the clock; apply what falls due; deliver every queued push before answering."""
        now = sim.advance(body.seconds)
        pushed, failed = pusher.flush()
        return {"now": now.isoformat(), "pushed": pushed, "push_failures": failed}

    @api.get("/purchase-orders")
    def list_pos() -> list[dict[str, Any]]:
        return sim.purchase_orders_json()

    @api.post("/purchase-orders")
    def add_po(po: PurchaseOrder) -> dict[str, Any]:
        sim.add_purchase_order(po)
        return {"ok": True}

    @api.post("/review-rules")
    def add_rule(rule: ReviewRule) -> dict[str, Any]:
        sim.add_review_rule(rule)
        return {"ok": True}

    @api.post("/disputes")
    def add_dispute(dispute: Dispute) -> dict[str, Any]:
        """A standing answer for a purchase order: its invoices go under query or are disputed."""
        sim.add_dispute(dispute)
        return {"ok": True}

    @api.get("/faults")
    def get_faults() -> dict[str, Any]:
        return sim.faults.model_dump(mode="json")

    @api.post("/faults")
    def set_faults(faults: Faults) -> dict[str, Any]:
        sim.set_faults(faults)
        return {"ok": True}

    @api.post("/rate-limit")
    def set_rate_limit(limit: RateLimit) -> dict[str, Any]:
        sim.set_rate_limit(limit)
        return {"ok": True}

    @api.post("/tokens/expire")
    def expire_tokens() -> dict[str, Any]:
        return {"expired": sim.expire_tokens()}

    @api.get("/invoices")
    def invoices(protocol: str | None = None, number: str | None = None) -> list[dict[str, Any]]:
        return sim.invoices_json(protocol, number)

    @api.get("/submissions")
    def submissions() -> list[dict[str, Any]]:
        return list(sim.snapshot()["submissions"])

    @api.get("/messages")
    def messages(protocol: str | None = None) -> list[dict[str, Any]]:
        """Every StatusUpdateRequest and Invoice Response sent (or to be fetched)."""
        return sim.messages_json(protocol)

    @api.get("/pushes")
    def pushes() -> list[dict[str, Any]]:
        return list(sim.push_log)

    @api.get("/requests")
    def requests_log() -> list[dict[str, Any]]:
        return list(sim.requests)

    return api
