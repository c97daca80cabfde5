"""Approval activities and the store's side of approval authority: the tiers a submission needs (from
the approval matrix), who holds a role or a delegation of it, and the SLA notifications.
"""

from __future__ import annotations

import smtplib
from datetime import UTC, date, datetime
from decimal import Decimal
from email.message import EmailMessage
from email.utils import formatdate
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.approval_matrix import MatrixFile
from activities.db import Store, reading, writing
from activities.delivery import SmtpConfig
from activities.directory import ledger_event
from activities.models import Delegation, LegalEntity, Notification, RoleAssignment, User
from activities.money import exponent, format_minor, round_minor
from workflows.types import (
    ApprovalPlan,
    Authority,
    NotifyRequest,
    NotifyResult,
    PlanRequest,
    TierRequirement,
)


def entity_today(session: Session, legal_entity: str, at: datetime | None = None) -> date:
    """The business date in the legal entity's zone (delegations run by those dates)."""
    entity = session.get(LegalEntity, legal_entity)
    zone = ZoneInfo(entity.timezone if entity else "UTC")
    return (at or datetime.now(UTC)).astimezone(zone).date()


def holds_role(session: Session, username: str, role: str, legal_entity: str) -> bool:
    found = session.exec(
        select(RoleAssignment.id).where(
            RoleAssignment.username == username,
            RoleAssignment.role == role,
            RoleAssignment.legal_entity == legal_entity,
        )
    ).first()
    user = session.get(User, username)
    return found is not None and user is not None and user.active


def active_delegation(
    session: Session, delegator: str, delegate: str, role: str, legal_entity: str, on: date
) -> Delegation | None:
    return session.exec(
        select(Delegation).where(
            Delegation.delegator == delegator,
            Delegation.delegate == delegate,
            Delegation.role == role,
            Delegation.legal_entity == legal_entity,
            col(Delegation.revoked_at).is_(None),
            col(Delegation.starts_on) <= on,
            col(Delegation.ends_on) >= on,
        )
    ).first()


def authority_refusal(session: Session, legal_entity: str, authority: Authority, at: datetime) -> str | None:
    """Why the store does not back this approval (role not held, delegation missing or expired)."""
    if authority.on_behalf_of is None:
        if holds_role(session, authority.username, authority.role, legal_entity):
            return None
        return f"{authority.username} does not hold the role {authority.role} in {legal_entity}"
    on = entity_today(session, legal_entity, at)
    if (
        active_delegation(
            session, authority.on_behalf_of, authority.username, authority.role, legal_entity, on
        )
        is None
    ):
        return (
            f"no delegation of {authority.role} from {authority.on_behalf_of} to {authority.username} "
            f"is in force on {on}"
        )
    if not holds_role(session, authority.on_behalf_of, authority.role, legal_entity):
        return f"the delegator {authority.on_behalf_of} no longer holds the role {authority.role}"
    return None


def plan_for(matrix: MatrixFile, session: Session, req: PlanRequest) -> ApprovalPlan:
    entity = session.get(LegalEntity, req.legal_entity)
    if entity is None:
        raise ApplicationError(f"no legal entity {req.legal_entity}", non_retryable=True)
    # Tiers are amounts in the entity's currency: convert the total at the rate on the document.
    total = Decimal(req.total_minor).scaleb(-exponent(req.currency)) * Decimal(req.exchange_rate)
    amount_minor = round_minor(total.scaleb(exponent(entity.currency)))
    current = matrix.current()
    tiers = current.tiers_for(req.document_kind, Decimal(amount_minor).scaleb(-exponent(entity.currency)))
    return ApprovalPlan(
        matrix_version=current.version,
        document_kind=req.document_kind,
        amount_minor=amount_minor,
        currency=entity.currency,
        tiers=[TierRequirement(level=i, role=t.role) for i, t in enumerate(tiers, start=1)],
    )


class ApprovalActivities:
    """The approval SLA's reminders and escalations (the matrix is read at submission by
    TransitionActivities.submit_invoice, which records the submission with its tiers; `plan_approval`
    serves invoice workflows of the earlier shape)."""

    def __init__(
        self, store: Store, smtp: SmtpConfig, matrix: MatrixFile | None = None, ui_base_url: str = ""
    ) -> None:
        self._store = store
        self._smtp = smtp
        self._matrix = matrix or MatrixFile()
        self._ui = ui_base_url.rstrip("/")

    @activity.defn
    def plan_approval(self, req: PlanRequest) -> ApprovalPlan:
        """The approval tiers under the matrix in force now, as a local activity: for an invoice workflow
        of the shape before 2026-11-23, which reads them here, then records the submission."""
        with reading(self._store) as session:
            return plan_for(self._matrix, session, req)

    @activity.defn
    def notify_approval_sla(self, req: NotifyRequest) -> NotifyResult:
        """Remind the approvers of a waiting tier (or its assignee), or alert the supervisors; each
        person is told once per notification (the key makes retries send nothing twice)."""
        state = req.state
        entity = state.legal_entity
        with reading(self._store) as session:
            if req.kind == "portal_rejection" or (req.kind == "supervisor_reminder" and not req.role):
                # The people who prepared it fix it: its creator, editors and submitters.
                candidates = sorted({state.created_by, *state.editors, *state.submitters})
            elif req.kind == "supervisor_escalation":
                candidates = self._holders(session, req.role, entity)
            elif req.kind == "approval_escalation":
                candidates = self._holders(session, "ar_supervisor", entity)
            elif req.assignee:
                candidates = [req.assignee]
            else:
                candidates = self._holders(session, req.role, entity)
            barred = {
                state.created_by,
                *state.editors,
                *state.submitters,
                *(a.approver for a in state.approvals),
            }
            recipients = [
                u
                for u in candidates
                if u not in barred
                or req.kind in ("approval_escalation", "portal_rejection", "supervisor_escalation")
                or (req.kind == "supervisor_reminder" and not req.role)
            ]
            emails = {
                u.username: u.email
                for u in session.exec(select(User).where(col(User.username).in_(recipients)))
            }
        amount = format_minor(state.draft.total_minor, state.draft.currency)
        label = state.number or state.external_id
        # Where people act on it: the invoice's page in the web UI (approve, reject, reassign in place).
        page = f"\n\nOpen the invoice: {self._ui}/invoices/{state.invoice_id}" if self._ui else ""
        if req.kind == "portal_rejection":
            where = f"the portal {state.portal}" if state.portal and state.portal != "email" else "delivery"
            subject = f"Invoice {label} was not accepted by {where}: fix and resubmit"
            body = (
                f"Invoice {label} ({amount} {state.draft.currency}) was refused: {state.portal_reason}. "
                f"Fix it (POST /api/v1/invoices/{state.invoice_id}/fix, then edit and submit): if amounts, "
                "tax, PO and customer stay as approved, it goes straight back out; otherwise it is approved "
                "again first."
            )
        elif req.kind in ("supervisor_reminder", "supervisor_escalation"):
            # From the control tower: the supervisor's own words travel with it.
            waits = f"tier {req.tier} approval ({req.role})" if req.tier else f"status {state.status}"
            verb = "Escalation" if req.kind == "supervisor_escalation" else "Reminder"
            subject = f"{verb}: invoice {label} is stuck at {waits}"
            body = (
                f"Invoice {label} ({amount} {state.draft.currency}) has been in {waits} since "
                f"{state.tier_since if req.tier else state.status_since}. {req.note}"
            )
        elif req.kind == "approval_escalation":
            subject = f"Escalation: invoice {label} waits for tier {req.tier} ({req.role}) approval"
            body = (
                f"Invoice {label} ({amount} {state.draft.currency}) has waited since {state.tier_since} for "
                f"tier {req.tier} approval by a {req.role}. As supervisor you can reassign it to a named "
                f"approver: POST /api/v1/invoices/{state.invoice_id}/reassign.{page}"
            )
        else:
            subject = f"Reminder: invoice {label} waits for your approval (tier {req.tier})"
            body = (
                f"Invoice {label} ({amount} {state.draft.currency}) has waited since {state.tier_since} for "
                f"tier {req.tier} approval ({req.role}). See GET /api/v1/approvals/inbox.{page}"
            )
        sent: list[str] = []
        for username in recipients:
            key = f"{req.workflow_id}#n{req.notification_seq}#{username}"
            with reading(self._store) as session:
                done = session.get(Notification, key) is not None
            if not done:
                # Mail first, then the row: a crash in between repeats a reminder rather than losing it.
                if emails.get(username):
                    self._mail(emails[username], subject, body, key)
                try:
                    with writing(self._store) as session:
                        session.add(
                            Notification(
                                key=key,
                                legal_entity=entity,
                                recipient=username,
                                kind=req.kind,
                                invoice_id=state.invoice_id,
                                subject=subject,
                                body=body,
                            )
                        )
                except IntegrityError:
                    pass  # a concurrent retry recorded it
            sent.append(username)
        return NotifyResult(recipients=sent)

    @staticmethod
    def _holders(session: Session, role: str, entity: str) -> list[str]:
        return sorted(
            set(
                session.exec(
                    select(RoleAssignment.username).where(
                        RoleAssignment.role == role, RoleAssignment.legal_entity == entity
                    )
                )
            )
        )

    def _mail(self, to: str, subject: str, body: str, key: str) -> None:
        msg = EmailMessage()
        msg["Subject"], msg["From"], msg["To"] = subject, self._smtp.mail_from, to
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = f"<{key.replace('/', '.').replace('#', '.')}@cashcycle>"
        msg.set_content(body)
        with smtplib.SMTP(self._smtp.host, self._smtp.port, timeout=self._smtp.timeout_seconds) as smtp:
            if self._smtp.starttls:
                smtp.starttls()
            if self._smtp.username:
                smtp.login(self._smtp.username, self._smtp.password)
            smtp.send_message(msg)


class DelegationError(ValueError):
    """A refused delegation, naming the field at fault."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


def create_delegation(
    session: Session,
    *,
    legal_entity: str,
    delegator: str,
    delegate: str,
    role: str,
    starts_on: date,
    ends_on: date,
    reason: str,
    delegation_id: str,
) -> Delegation:
    """Lend `delegator`'s approval role to `delegate` for a date range; ledgered as evidence."""
    if delegate == delegator:
        raise DelegationError("delegate", "nobody delegates to themselves")
    if ends_on < starts_on:
        raise DelegationError("ends_on", "ends_on is before starts_on")
    if ends_on < entity_today(session, legal_entity):
        raise DelegationError("ends_on", "the delegation would already be over")
    if (ends_on - starts_on).days > 366:
        raise DelegationError("ends_on", "a delegation lasts at most a year")
    if not holds_role(session, delegator, role, legal_entity):
        raise DelegationError(
            "role", f"{delegator} does not hold {role} in {legal_entity} and cannot lend it"
        )
    target = session.get(User, delegate)
    if target is None or not target.active:
        raise DelegationError("delegate", f"no active user {delegate}")
    found = session.get(Delegation, delegation_id)
    if found is not None:
        return found
    row = Delegation(
        id=delegation_id,
        legal_entity=legal_entity,
        delegator=delegator,
        delegate=delegate,
        role=role,
        starts_on=starts_on,
        ends_on=ends_on,
        reason=reason,
    )
    session.add(row)
    session.flush()
    ledger_event(
        session,
        legal_entity,
        f"delegation/{delegation_id}#1",
        "delegation",
        delegation_id,
        "delegation_granted",
        delegator,
        {
            "delegator": delegator,
            "delegate": delegate,
            "role": role,
            "starts_on": starts_on.isoformat(),
            "ends_on": ends_on.isoformat(),
        },
        reason,
        rule="approval:delegate",
    )
    return row


def revoke_delegation(session: Session, delegation: Delegation, actor: str) -> Delegation:
    if delegation.revoked_at is not None:
        return delegation
    delegation.revoked_at = datetime.now(UTC)
    delegation.revoked_by = actor
    session.add(delegation)
    session.flush()
    ledger_event(
        session,
        delegation.legal_entity,
        f"delegation/{delegation.id}#revoked",
        "delegation",
        delegation.id,
        "delegation_revoked",
        actor,
        {"delegation_id": delegation.id},
        rule="approval:delegate",
    )
    return delegation


def delegations_to(
    session: Session, delegate: str, legal_entity: str, role: str, on: date
) -> list[Delegation]:
    """Delegations in force today that lend `role` to `delegate`, whose delegator still holds it."""
    rows = session.exec(
        select(Delegation)
        .where(
            Delegation.delegate == delegate,
            Delegation.legal_entity == legal_entity,
            Delegation.role == role,
            col(Delegation.revoked_at).is_(None),
            col(Delegation.starts_on) <= on,
            col(Delegation.ends_on) >= on,
        )
        .order_by(col(Delegation.created_at))
    )
    return [d for d in rows if holds_role(session, d.delegator, role, legal_entity)]


def delegations_of(session: Session, username: str) -> list[Delegation]:
    return list(
        session.exec(
            select(Delegation)
            .where((col(Delegation.delegator) == username) | (col(Delegation.delegate) == username))
            .order_by(col(Delegation.starts_on), col(Delegation.id))
        )
    )
