"""The approval SLA's notifications against the real store and a real SMTP server: reminders go to the
holders of the waiting tier's role (never to whoever prepared the invoice), escalations to the
supervisors, each person once per notification even when the activity is retried."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from sqlmodel import select

from activities.approvals import ApprovalActivities
from activities.db import Store, open_store, reading
from activities.delivery import SmtpConfig
from activities.models import Notification
from api.mail_capture import start as start_mail_capture
from tests.conftest import free_port, seed_cast
from workflows.types import ApprovalPlan, InvoiceDraft, InvoiceState, NotifyRequest, TierRequirement


def waiting_invoice(*, submitted_by: str = "preparer", assignee: str | None = None) -> NotifyRequest:
    draft = InvoiceDraft(
        customer_id="c",
        currency="EUR",
        issue_date="2026-11-02",
        due_date="2026-12-02",
        po_number=None,
        lines=[],
        subtotal_minor=4_000_000,
        tax_total_minor=0,
        total_minor=4_000_000,
        release_at="2026-11-02T00:00:00+00:00",
        payload_hash="x",
    )
    plan = ApprovalPlan(
        "2026.1+test",
        "invoice",
        4_000_000,
        "EUR",
        [TierRequirement(1, "ar_approver"), TierRequirement(2, "finance_manager")],
    )
    state = InvoiceState(
        invoice_id="inv-1",
        workflow_id="invoice/ACME/ERP-1",
        legal_entity="ACME",
        external_id="ERP-1",
        number="",
        status="pending_approval",
        draft=draft,
        created_by="erp",
        editors=[],
        approvals=[],
        amount_paid_minor=0,
        payments=[],
        status_since="",
        transition_seq=2,
        submitters=[submitted_by],
        plan=plan,
        tier_since="2026-11-02T09:00:00+00:00",
    )
    return NotifyRequest("invoice/ACME/ERP-1", 1, "approval_reminder", state, 1, "ar_approver", assignee)


def notifications(store: Store) -> list[tuple[str, str]]:
    with reading(store) as session:
        return sorted((n.recipient, n.kind) for n in session.exec(select(Notification)))


def test_reminders_reach_the_tiers_approvers_once_and_escalations_the_supervisors(
    db_url: str, tmp_path: Path
) -> None:
    store = open_store(db_url)
    port = free_port()
    mail = start_mail_capture(port, tmp_path / "outbox")
    try:
        seed_cast(store)
        activities = ApprovalActivities(store, SmtpConfig("127.0.0.1", port, "billing@acme.example"))
        request = waiting_invoice(submitted_by="approver2")  # approver2 submitted: barred, not reminded
        result = activities.notify_approval_sla(request)
        assert result.recipients == ["approver"]
        again = activities.notify_approval_sla(request)  # a retried activity sends nothing twice
        assert again.recipients == ["approver"]
        assert notifications(store) == [("approver", "approval_reminder")]
        assert len(list((tmp_path / "outbox").glob("*.eml"))) == 0  # the cast has no e-mail addresses

        escalation = NotifyRequest(
            request.workflow_id, 2, "approval_escalation", request.state, 1, "ar_approver"
        )
        assert activities.notify_approval_sla(escalation).recipients == ["supervisor"]
        reassigned = NotifyRequest(
            request.workflow_id, 3, "approval_reminder", request.state, 1, "ar_approver", assignee="approver"
        )
        assert activities.notify_approval_sla(reassigned).recipients == ["approver"]
        assert notifications(store) == [
            ("approver", "approval_reminder"),
            ("approver", "approval_reminder"),
            ("supervisor", "approval_escalation"),
        ]
    finally:
        mail.stop()
        store.dispose()


def test_reminders_are_mailed_to_approvers_with_an_address(db_url: str, tmp_path: Path) -> None:
    store = open_store(db_url)
    port = free_port()
    mail = start_mail_capture(port, tmp_path / "outbox")
    try:
        seed_cast(store)
        with store.write.begin() as conn:
            conn.execute(
                text("UPDATE app_user SET email = 'julien@acme.example' WHERE username = 'approver'")
            )
        activities = ApprovalActivities(store, SmtpConfig("127.0.0.1", port, "billing@acme.example"))
        activities.notify_approval_sla(waiting_invoice())
        mails = [p.read_text() for p in (tmp_path / "outbox").glob("*.eml")]
        assert len(mails) == 1 and "julien@acme.example" in mails[0]
        assert "waits for your approval (tier 1)" in mails[0]
    finally:
        mail.stop()
        store.dispose()
