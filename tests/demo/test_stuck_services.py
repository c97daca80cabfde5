"""The two outside services the demo makes misbehave for the control tower: a customer's mail server that
refuses with a temporary error (the mail capture), and a buyer who receives invoices on one purchase order
and never answers (the portal simulator)."""

from __future__ import annotations

import copy
import smtplib
from email.message import EmailMessage
from pathlib import Path

import pytest

from activities.portals.status import PortalStatus
from api.mail_capture import start as start_mail_capture
from tests.conftest import free_port
from tests.portals.conftest import (  # noqa: F401 (fixtures)
    DAY,
    PURCHASE_ORDERS,
    PushReceiver,
    Sim,
    invoice,
    make_adapter,
    receiver,
    scenario,
    sim,
    sim_server,
    submission,
)


def mail(to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "billing@cashcycle.local", to, "Invoice INV-1 from Acme"
    msg.set_content("attached")
    return msg


def test_mail_capture_refuses_a_domain_with_a_temporary_error_and_keeps_the_rest(tmp_path: Path) -> None:
    port = free_port()
    capture = start_mail_capture(port, tmp_path, ["brouwerij-devos.example"])
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
                smtp.send_message(mail("ap@brouwerij-devos.example"))
            code, text = refused.value.recipients["ap@brouwerij-devos.example"]
            # Temporary (4xx): a sender keeps trying, as Temporal retries the delivery activity.
            assert 400 <= code < 500 and b"temporarily unavailable" in text
            assert smtp.send_message(mail("ap@lumiere-hotels.example")) == {}
            # The domain, not a substring of it.
            assert smtp.send_message(mail("ap@not-brouwerij-devos.example")) == {}
    finally:
        capture.stop()
    assert len(list(tmp_path.glob("*.eml"))) == 2


def test_simulator_never_answers_invoices_on_an_unanswered_purchase_order(
    sim: Sim,  # noqa: F811
    receiver: PushReceiver,  # noqa: F811
) -> None:
    second = copy.deepcopy(PURCHASE_ORDERS[0]) | {"number": "PO-1002"}
    sim.load(
        scenario(receiver.url, purchase_orders=[*PURCHASE_ORDERS, second], unanswered_po_numbers=["PO-1002"])
    )
    adapter = make_adapter("coupa", sim.url)
    try:
        for number, po in (("INV-ANSWERED", "PO-1001"), ("INV-SILENT", "PO-1002")):
            assert adapter.submit(submission(invoice(number, po=po))).status is PortalStatus.RECEIVED
        sim.advance(30 * DAY)
        statuses = {i["invoice_number"]: i["status"] for i in sim.invoices()}
        assert statuses == {"INV-ANSWERED": "paid", "INV-SILENT": "received"}
        # What the supplier's poller hears: nothing about the silent one after its receipt.
        said = {u.portal_ref: u.status.value for u in adapter.poll(None)}
        silent = next(i for i in sim.invoices() if i["invoice_number"] == "INV-SILENT")
        assert str(silent["id"]) not in said or said[str(silent["id"])] == "received"
    finally:
        adapter.close()
