"""The e-mail channel: the foundation's PDF by SMTP behind the portal interface, against a real SMTP
server (aiosmtpd)."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from activities.delivery import SmtpConfig
from activities.portals.base import FollowUp, PermanentError, Submission, TransientError
from activities.portals.email import EmailAdapter
from activities.portals.status import ReasonCode
from api.mail_capture import start as start_mail_capture
from tests.conftest import free_port
from tests.portals.conftest import CUSTOMER, invoice


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[tuple[SmtpConfig, Path]]:
    port = free_port()
    controller = start_mail_capture(port, tmp_path)
    try:
        yield SmtpConfig(host="127.0.0.1", port=port, mail_from="billing@nordlicht.example"), tmp_path
    finally:
        controller.stop()


def mails(directory: Path) -> list[EmailMessage]:
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted(directory.glob("*.eml"))
    ]


def test_an_invoice_is_sent_with_its_pdf_and_nothing_follows(outbox: tuple[SmtpConfig, Path]) -> None:
    smtp, directory = outbox
    adapter = EmailAdapter("email", smtp)
    doc = invoice("INV-MAIL-1")
    receipt = adapter.submit(Submission(doc.id, 1, doc))
    assert (receipt.status, receipt.follow_up) == (None, FollowUp.NONE)
    assert receipt.portal_ref == "<inv-INV-MAIL-1.pass-1@cashcycle>"
    [mail] = mails(directory)
    assert mail["Message-ID"] == receipt.portal_ref
    assert (
        mail["To"] == CUSTOMER.email
        and mail["Subject"] == "Invoice INV-MAIL-1 from Nordlicht Maschinenbau GmbH"
    )
    [pdf] = [part for part in mail.iter_attachments() if part.get_content_type() == "application/pdf"]
    assert pdf.get_filename() == "INV-MAIL-1.pdf" and pdf.get_content().startswith(b"%PDF")
    assert "148.75 EUR" in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert adapter.poll(None) == []


class RefuseRecipients:
    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        return "550 5.1.1 mailbox unknown"


def test_a_refused_address_is_a_permanent_receiver_unknown() -> None:
    port = free_port()
    controller = Controller(RefuseRecipients(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        adapter = EmailAdapter(
            "email", SmtpConfig(host="127.0.0.1", port=port, mail_from="billing@x.example")
        )
        doc = invoice("INV-MAIL-2")
        with pytest.raises(PermanentError) as refused:
            adapter.submit(Submission(doc.id, 1, doc))
    finally:
        controller.stop()
    assert refused.value.reason is not None and refused.value.reason.code is ReasonCode.RECEIVER_UNKNOWN
    assert "550" in refused.value.reason.text


def test_an_unreachable_mail_server_and_a_missing_address_are_retried() -> None:
    adapter = EmailAdapter(
        "email", SmtpConfig(host="127.0.0.1", port=free_port(), mail_from="b@x.example", timeout_seconds=2)
    )
    doc = invoice("INV-MAIL-3")
    with pytest.raises(TransientError, match="unreachable"):
        adapter.submit(Submission(doc.id, 1, doc))
    no_mail = replace(doc, customer=replace(CUSTOMER, email=""))
    with pytest.raises(TransientError, match="no billing e-mail"):
        adapter.submit(Submission(doc.id, 1, no_mail))
