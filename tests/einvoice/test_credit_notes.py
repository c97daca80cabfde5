"""Credit notes, the documents (issue 11): every credit note emitted here passes the official EN 16931 and
Peppol BIS Billing 3.0 validators and the UBL 2.1 schema, names the invoice it credits (BG-3), reads back
to its own totals; the PDF says what it credits and why; numbers are gapless in their own series, also
under concurrent issue; delivery goes through the customer's channel once, however often it is retried;
a document that cannot be issued is refused with every reason."""

from __future__ import annotations

import email
import email.policy
import io
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from lxml import etree  # type: ignore[import-untyped]
from pypdf import PdfReader
from temporalio.exceptions import ApplicationError

from activities.converter import DATA_CONVERTER
from activities.credit_notes import (
    CreditNoteActivities,
    CreditNoteError,
    credit_note_document,
    credit_note_pdf,
    credit_note_problems,
    credit_note_ubl,
    delivery_key,
    full_credit_lines,
    next_credit_note_number,
)
from activities.db import Store, open_store, reading, writing
from activities.delivery import SmtpConfig
from activities.directory import ensure_legal_entity
from activities.documents import InvoiceDocument
from activities.einvoice import CAC, CBC, CREDIT_NOTE_NS, CUSTOMIZATION_ID, PROFILE_ID, parse_ubl
from activities.einvoice_validation import validate_en16931
from activities.models import Customer, Invoice, InvoiceDelivery, LegalEntity
from activities.money import to_minor
from activities.numbering import issue_number
from activities.portals.base import (
    Channel,
    FollowUp,
    PortalAdapter,
    PortalError,
    PushReply,
    StatusUpdate,
    Submission,
    SubmitReceipt,
)
from activities.portals.status import PortalStatus
from api.mail_capture import start as start_mail_capture
from demo import DEMO_CUSTOMERS, DEMO_ENTITY_ROW
from tests.conftest import free_port
from tests.einvoice.conftest import OfficialValidators, UblSchemas
from tests.einvoice.test_document_for import add_customer, add_invoice
from workflows.credit_note_types import (
    CreditNoteDelivered,
    CreditNoteDeliveryRequest,
    CreditNoteDocument,
    CreditNoteLine,
)

NS = {"cac": CAC, "cbc": CBC}
CUSTOMERS = {c.ref: c for c in DEMO_CUSTOMERS}
FRENCH = "CUST-1002"  # Lumière Hôtels SA, FR, EUR: standard rates
GERMAN = "CUST-1001"  # Bergmann Logistik GmbH, DE, EUR: reverse charge (AE) at 0 %
BRITISH = "CUST-1007"  # Hartley & Finch Ltd, GB, GBP: export (G) at 0 %, foreign currency
AMERICAN = "CUST-1010"  # Northwind Analytics Inc., US, USD: export, foreign currency


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = open_store(db_url)
    with writing(s) as session:
        ensure_legal_entity(session, LegalEntity.model_validate(DEMO_ENTITY_ROW.model_dump()))
    yield s
    s.dispose()


@dataclass(frozen=True)
class Issued:
    """An issued invoice of the store and its customer."""

    invoice_id: str
    number: str
    customer: Customer
    currency: str
    total_minor: int


def issued_invoice(store: Store, ref: str, lines: list[dict[str, str]]) -> Issued:
    customer = add_customer(store, CUSTOMERS[ref])
    invoice_id = add_invoice(store, customer, lines, number=None, currency=CUSTOMERS[ref].currency)
    with writing(store) as session:
        number = issue_number(session, invoice_id)
    with reading(store) as session:
        inv = session.get(Invoice, invoice_id)
        assert inv is not None
        return Issued(invoice_id, number, customer, inv.currency, inv.total_minor)


def credit_note(
    inv: Issued,
    lines: list[CreditNoteLine],
    *,
    number: str = "CN-2026-000001",
    reason: str = "Goods damaged in transit (claim 7731)",
    **changes: Any,
) -> CreditNoteDocument:
    doc = CreditNoteDocument(
        legal_entity="ACME",
        credit_memo_id=str(uuid.uuid4()),
        number=number,
        issue_date="2026-11-20",
        currency=inv.currency,
        customer_id=inv.customer.id,
        invoice_id=inv.invoice_id,
        invoice_number=inv.number,
        invoice_issue_date="2026-11-02",
        lines=lines,
        reason=reason,
    )
    return replace(doc, **changes)


def cn_line(description: str, quantity: str, unit_price: str, tax_rate: str) -> CreditNoteLine:
    return CreditNoteLine(
        description=description, quantity=quantity, unit_price=unit_price, tax_rate=tax_rate
    )


def assert_valid_credit_note(
    xml: bytes, official: OfficialValidators, schemas: UblSchemas, *, invoice_number: str
) -> etree._Element:
    """Schema-valid, no fatal assertion of either official validator (nor of the product's own check),
    type 381 in the Peppol billing profile, BG-3 naming the invoice, totals that recompute."""
    assert schemas.errors(xml) == []
    fatal = official.fatal(xml)
    assert fatal == [], "\n".join(f"{f.id}: {f.text} at {f.location}" for f in fatal)
    assert [f for f in validate_en16931(xml) if f.fatal] == []
    root = etree.fromstring(xml)
    assert root.tag == f"{{{CREDIT_NOTE_NS}}}CreditNote"
    assert root.findtext("cbc:CustomizationID", namespaces=NS) == CUSTOMIZATION_ID
    assert root.findtext("cbc:ProfileID", namespaces=NS) == PROFILE_ID
    assert root.findtext("cbc:CreditNoteTypeCode", namespaces=NS) == "381"
    ref = root.find("cac:BillingReference/cac:InvoiceDocumentReference", NS)
    assert ref is not None and ref.findtext("cbc:ID", namespaces=NS) == invoice_number
    assert ref.findtext("cbc:IssueDate", namespaces=NS) == "2026-11-02"
    parsed = parse_ubl(xml)
    assert parsed.kind == "credit_note" and parsed.recomputed == parsed.stated
    assert parsed.stated.payable > 0 and all(b.taxable > 0 for b in parsed.stated.breakdown)
    return root


def stated_minor(xml: bytes, doc: InvoiceDocument) -> tuple[int, int, int]:
    s = parse_ubl(xml).stated
    return tuple(to_minor(a, doc.currency) for a in (s.line_extension, s.tax, s.payable))  # type: ignore[return-value]


# --- the UBL CreditNote ----------------------------------------------------------------------------------

MIXED = [
    {"description": "Room nights, October", "quantity": "12", "unit_price": "149.90", "tax_rate": "10"},
    {"description": "Conference catering", "quantity": "3", "unit_price": "412.35", "tax_rate": "20"},
    {"description": "Breakfasts", "quantity": "37", "unit_price": "14.45", "tax_rate": "5.5"},
]


def test_one_line_credit_note_passes_both_validators_and_names_the_invoice(
    store: Store, official: OfficialValidators, ubl_schemas: UblSchemas
) -> None:
    inv = issued_invoice(store, FRENCH, MIXED)
    doc = credit_note(inv, [cn_line("Room nights not used", "2", "149.90", "10")])
    with reading(store) as session:
        xml = credit_note_ubl(session, doc)
        document = credit_note_document(session, doc)
    root = assert_valid_credit_note(xml, official, ubl_schemas, invoice_number=inv.number)
    assert root.findtext("cbc:ID", namespaces=NS) == "CN-2026-000001"
    assert root.findtext("cbc:Note", namespaces=NS) == "Goods damaged in transit (claim 7731)"
    assert root.findtext("cac:OrderReference/cbc:ID", namespaces=NS) == "4500123456"  # the invoice's PO
    assert root.find("cbc:DueDate", NS) is None
    assert root.findtext("cac:TaxTotal/cac:TaxSubtotal/cac:TaxCategory/cbc:ID", namespaces=NS) == "S"
    # 2 x 149.90 = 299.80 at 10 % = 29.98: positive amounts, the type code says credit.
    assert (
        stated_minor(xml, document)
        == (29980, 2998, 32978)
        == (
            document.subtotal_minor,
            document.tax_total_minor,
            document.total_minor,
        )
    )


def test_several_lines_at_mixed_rates_get_a_breakdown_per_rate(
    store: Store, official: OfficialValidators, ubl_schemas: UblSchemas
) -> None:
    inv = issued_invoice(store, FRENCH, MIXED)
    lines = [
        cn_line("Room nights not used", "1", "149.90", "10"),
        cn_line("Catering: one session cancelled", "1", "412.35", "20"),
        cn_line("Breakfasts not taken", "5", "14.45", "5.5"),
        cn_line("Goodwill on catering", "1", "0.25", "20"),
    ]
    with reading(store) as session:
        xml = credit_note_ubl(session, credit_note(inv, lines))
    root = assert_valid_credit_note(xml, official, ubl_schemas, invoice_number=inv.number)
    rates = sorted(
        root.xpath("cac:TaxTotal/cac:TaxSubtotal/cac:TaxCategory/cbc:Percent/text()", namespaces=NS)
    )
    assert rates == ["10", "20", "5.5"]
    # 20 %: 412.35 + 0.25 = 412.60 -> 82.52; 10 %: 14.99; 5.5 %: 72.25 x 5.5 % = 3.97375 -> 3.97
    assert parse_ubl(xml).stated.tax == sum(b.tax for b in parse_ubl(xml).recomputed.breakdown)


def test_a_partial_credit_and_a_full_credit_for_a_rebill(
    store: Store, official: OfficialValidators, ubl_schemas: UblSchemas
) -> None:
    inv = issued_invoice(store, FRENCH, MIXED)
    partial = credit_note(inv, [cn_line("Catering: price agreed 380.00", "3", "32.35", "20")])
    with reading(store) as session:
        full = credit_note(
            inv,
            full_credit_lines(session, inv.invoice_id),
            number="CN-2026-000002",
            reason="Wrong billing address: invoice cancelled and reissued",
            full_credit=True,
            rebill=True,
        )
        partial_xml = credit_note_ubl(session, partial)
        full_xml = credit_note_ubl(session, full)
        full_doc = credit_note_document(session, full)
    assert_valid_credit_note(partial_xml, official, ubl_schemas, invoice_number=inv.number)
    root = assert_valid_credit_note(full_xml, official, ubl_schemas, invoice_number=inv.number)
    assert full_doc.total_minor == inv.total_minor  # exactly what was invoiced
    assert len(root.findall("cac:CreditNoteLine", NS)) == 3
    assert "a corrected invoice follows" in (root.findtext("cbc:Note", namespaces=NS) or "")


@pytest.mark.parametrize(
    ("ref", "category"),
    [(BRITISH, "G"), (AMERICAN, "G"), (GERMAN, "AE")],
    ids=["GBP-export", "USD-export", "EUR-reverse-charge"],
)
def test_foreign_currency_export_and_reverse_charge_credit_notes(
    store: Store, official: OfficialValidators, ubl_schemas: UblSchemas, ref: str, category: str
) -> None:
    inv = issued_invoice(
        store,
        ref,
        [
            {
                "description": "Maintenance contract, Q4",
                "quantity": "1",
                "unit_price": "4800.00",
                "tax_rate": "0",
            },
            {"description": "Spare parts", "quantity": "14", "unit_price": "37.19", "tax_rate": "0"},
        ],
    )
    doc = credit_note(inv, [cn_line("Spare parts returned", "4", "37.19", "0")])
    with reading(store) as session:
        xml = credit_note_ubl(session, doc)
    root = assert_valid_credit_note(xml, official, ubl_schemas, invoice_number=inv.number)
    assert root.findtext("cbc:DocumentCurrencyCode", namespaces=NS) == CUSTOMERS[ref].currency
    subtotal = root.find("cac:TaxTotal/cac:TaxSubtotal", NS)
    assert subtotal.findtext("cac:TaxCategory/cbc:ID", namespaces=NS) == category
    assert subtotal.findtext("cac:TaxCategory/cbc:TaxExemptionReasonCode", namespaces=NS)
    assert parse_ubl(xml).stated.payable == parse_ubl(xml).stated.line_extension  # 0 % tax


# --- the PDF ---------------------------------------------------------------------------------------------


def test_the_pdf_is_titled_credit_note_and_names_the_invoice_and_the_reason(store: Store) -> None:
    inv = issued_invoice(store, FRENCH, MIXED)
    doc = credit_note(
        inv,
        [cn_line("Room nights not used", "2", "149.90", "10")],
        reason="Two rooms blocked by the hotel's renovation",
        dispute_case="DSP-2026-000004",
    )
    with reading(store) as session:
        pdf = credit_note_pdf(session, doc)
        again = credit_note_pdf(session, doc)
    assert pdf == again  # dated by its issue date: the same document, the same bytes (its hash is evidence)
    reader = PdfReader(io.BytesIO(pdf))
    assert reader.metadata is not None and reader.metadata.title == "Credit note CN-2026-000001"
    text = " ".join(reader.pages[0].extract_text().split())
    assert "Credit note CN-2026-000001" in text
    assert f"Credited invoice: {inv.number} of 2026-11-02" in text
    assert "Reason: Two rooms blocked by the hotel's renovation" in text
    assert "Dispute: DSP-2026-000004" in text
    assert "Total credited: 329.78 EUR" in text
    assert "Invoice " + inv.number not in text.replace("invoice " + inv.number, "")  # not an invoice


# --- numbering -------------------------------------------------------------------------------------------


def test_credit_notes_are_numbered_in_their_own_series_per_year(store: Store) -> None:
    with writing(store) as session:
        first = next_credit_note_number(session, "ACME", "2026-11-20")
        second = next_credit_note_number(session, "ACME", date(2026, 12, 31))
        next_year = next_credit_note_number(session, "ACME", "2027-01-02")
    assert (first, second, next_year) == ("CN-2026-000001", "CN-2026-000002", "CN-2027-000001")
    inv = issued_invoice(store, FRENCH, MIXED)  # invoices keep their own series
    assert inv.number == "INV-2026-000001"


def test_a_rolled_back_issue_uses_no_number(store: Store) -> None:
    with pytest.raises(RuntimeError), writing(store) as session:
        assert next_credit_note_number(session, "ACME", "2026-11-20") == "CN-2026-000001"
        raise RuntimeError("the credit memo could not be stored")
    with writing(store) as session:
        assert next_credit_note_number(session, "ACME", "2026-11-20") == "CN-2026-000001"


def test_numbers_are_gapless_and_unique_under_concurrent_issue(store: Store) -> None:
    threads, each = 8, 6
    taken: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def issue() -> None:
        try:
            start.wait()
            for _ in range(each):
                with writing(store) as session:
                    number = next_credit_note_number(session, "ACME", "2026-11-20")
                with lock:
                    taken.append(number)
        except BaseException as exc:  # reported below, with the numbers
            errors.append(exc)

    workers = [threading.Thread(target=issue) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    assert sorted(taken) == [f"CN-2026-{n:06d}" for n in range(1, threads * each + 1)]


# --- delivery --------------------------------------------------------------------------------------------


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[tuple[SmtpConfig, Path]]:
    port = free_port()
    controller = start_mail_capture(port, tmp_path / "mail")
    try:
        yield (
            SmtpConfig(host="127.0.0.1", port=port, mail_from="ar@acme-industrie.example"),
            tmp_path / "mail",
        )
    finally:
        controller.stop()


def mails(directory: Path) -> list[EmailMessage]:
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted(directory.glob("*.eml"))
    ]


def test_by_mail_one_message_with_the_pdf_and_the_ubl_and_a_retry_sends_nothing(
    store: Store, outbox: tuple[SmtpConfig, Path], official: OfficialValidators, ubl_schemas: UblSchemas
) -> None:
    smtp, directory = outbox
    inv = issued_invoice(store, FRENCH, MIXED)
    doc = credit_note(inv, [cn_line("Room nights not used", "2", "149.90", "10")])
    acts = CreditNoteActivities(store, {}, smtp)
    first = acts.deliver_credit_note(CreditNoteDeliveryRequest(doc))
    again = acts.deliver_credit_note(CreditNoteDeliveryRequest(doc))

    [mail] = mails(directory)
    assert mail["To"] == CUSTOMERS[FRENCH].email and mail["Message-ID"] == delivery_key(doc)
    assert mail["Subject"] == "Credit note CN-2026-000001 from Acme Industrie SAS"
    body = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert f"crediting invoice {inv.number} of 2026-11-02" in body and "329.78 EUR" in body
    attachments = {part.get_filename(): part.get_content() for part in mail.iter_attachments()}
    assert set(attachments) == {"CN-2026-000001.pdf", "CN-2026-000001.xml"}
    assert attachments["CN-2026-000001.pdf"].startswith(b"%PDF")
    assert_valid_credit_note(
        attachments["CN-2026-000001.xml"], official, ubl_schemas, invoice_number=inv.number
    )

    assert (first.channel, first.portal, first.recipient, first.replayed) == (
        "email",
        "email",
        CUSTOMERS[FRENCH].email,
        False,
    )
    assert first.total_minor == 32978 and first.attachments == ["CN-2026-000001.pdf", "CN-2026-000001.xml"]
    assert again.replayed and replace(again, replayed=False) == first
    with reading(store) as session:
        row = session.get(InvoiceDelivery, delivery_key(doc))
        assert row is not None and (row.invoice_id, row.channel) == (inv.invoice_id, "credit_note:email")


def test_a_portal_that_is_not_configured_falls_back_to_mail_and_says_so(
    store: Store, outbox: tuple[SmtpConfig, Path]
) -> None:
    smtp, directory = outbox
    inv = issued_invoice(store, FRENCH, MIXED)
    with writing(store) as session:
        customer = session.get(Customer, inv.customer.id)
        assert customer is not None
        customer.portal = "lumiere-coupa"
        session.add(customer)
    doc = credit_note(inv, [cn_line("Room nights not used", "1", "149.90", "10")])
    result = CreditNoteActivities(store, {}, smtp).deliver_credit_note(CreditNoteDeliveryRequest(doc))
    assert (result.portal, result.channel) == ("lumiere-coupa", "email")
    assert "'lumiere-coupa' is not configured" in result.fallback and "sent by mail" in result.fallback
    assert len(mails(directory)) == 1


@dataclass
class FakePortal:
    """A portal adapter that records what it is given and, like the real ones, answers the same
    idempotency key from its store (replayed) instead of taking a second document."""

    name: str
    channel: Channel
    follow_up: FollowUp = FollowUp.POLL
    received: list[Submission] = field(default_factory=list)

    def submit(self, submission: Submission) -> SubmitReceipt:
        replayed = any(s.idempotency_key == submission.idempotency_key for s in self.received)
        self.received.append(submission)
        return SubmitReceipt(
            portal=self.name,
            channel=self.channel,
            submission_key=submission.idempotency_key,
            portal_ref=f"AP-{len(self.received)}",
            status=PortalStatus.RECEIVED,
            at=datetime(2026, 11, 20, 9, tzinfo=UTC),
            follow_up=self.follow_up,
            replayed=replayed,
        )

    def poll(self, since: datetime | None) -> list[StatusUpdate]:
        return []

    def parse_push(self, body: bytes, headers: Mapping[str, str]) -> list[StatusUpdate]:
        return []

    def push_reply(self, error: PortalError | None) -> PushReply:
        return PushReply(404)

    def close(self) -> None:
        return None


@pytest.mark.parametrize("channel", [Channel.PEPPOL, Channel.CXML, Channel.COUPA])
def test_through_the_customers_portal_once(
    store: Store, official: OfficialValidators, ubl_schemas: UblSchemas, channel: Channel
) -> None:
    inv = issued_invoice(
        store, GERMAN, [{"description": "Freight", "quantity": "3", "unit_price": "950", "tax_rate": "0"}]
    )
    with writing(store) as session:
        customer = session.get(Customer, inv.customer.id)
        assert customer is not None
        customer.portal = "bergmann"
        session.add(customer)
    portal = FakePortal("bergmann", channel)
    adapters: dict[str, PortalAdapter] = {"bergmann": portal}
    acts = CreditNoteActivities(store, adapters, SmtpConfig("127.0.0.1", free_port(), "ar@acme.example"))
    doc = credit_note(inv, [cn_line("Freight charged twice", "1", "950", "0")])
    result: CreditNoteDelivered = acts.deliver_credit_note(CreditNoteDeliveryRequest(doc))
    retried = acts.deliver_credit_note(CreditNoteDeliveryRequest(doc))

    [sent] = portal.received  # the retry found the delivery row: nothing went twice
    assert sent.document.kind == "credit_note" and sent.document.preceding_invoice == inv.number
    assert sent.idempotency_key == f"credit-note.{doc.credit_memo_id}.pass-1"
    if channel is Channel.PEPPOL:
        assert_valid_credit_note(sent.ubl, official, ubl_schemas, invoice_number=inv.number)
    else:
        assert sent.ubl == b""  # cXML and Coupa carry the document in their own format
    assert (result.channel, result.portal, result.recipient, result.portal_ref) == (
        channel.value,
        "bergmann",
        "bergmann",
        "AP-1",
    )
    assert retried.replayed and retried.portal_ref == "AP-1" and retried.message_id == result.message_id


def test_peppol_refuses_a_credit_note_that_is_not_a_valid_einvoice(store: Store) -> None:
    inv = issued_invoice(store, FRENCH, MIXED)
    with writing(store) as session:
        customer = session.get(Customer, inv.customer.id)
        assert customer is not None
        customer.portal, customer.endpoint_id = "peppol", ""
        session.add(customer)
    portal = FakePortal("peppol", Channel.PEPPOL)
    acts = CreditNoteActivities(
        store, {"peppol": portal}, SmtpConfig("127.0.0.1", free_port(), "a@b.example")
    )
    with pytest.raises(ApplicationError) as raised:
        acts.deliver_credit_note(
            CreditNoteDeliveryRequest(credit_note(inv, [cn_line("Room", "1", "149.90", "10")]))
        )
    assert raised.value.type == "document_invalid" and raised.value.non_retryable
    assert "Peppol endpoint" in str(raised.value) and portal.received == []


# --- bad documents ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"lines": []}, "the credit note has no lines"),
        ({"lines": [cn_line("Room", "-2", "149.90", "10")]}, "line 1: the quantity '-2'"),
        ({"lines": [cn_line("Room", "2", "-149.90", "10")]}, "a credit note states positive amounts"),
        ({"invoice_number": ""}, "the credited invoice's number is missing (BG-3"),
        ({"invoice_issue_date": ""}, "the credited invoice's issue date '' is not an ISO date"),
        ({"invoice_number": "INV-2026-999999"}, "not 'INV-2026-999999' (BG-3)"),
        ({"invoice_issue_date": "2026-10-01"}, "not 2026-10-01 (BT-26)"),
        ({"currency": "USD"}, "it is credited in it, not USD"),
        ({"number": ""}, "the credit note has no number"),
        ({"reason": " "}, "the reason for the credit is missing"),
        ({"issue_date": "2026-10-30"}, "cannot precede the invoice it credits"),
        ({"lines": [cn_line("Everything twice", "2", "5000", "20")]}, "exceeds invoice"),
        ({"full_credit": True}, "a full credit is the invoice's total"),
        ({"rebill": True}, "a rebill credits the invoice in full"),
        ({"invoice_id": "nope"}, "the credited invoice 'nope' is not in the store"),
        (
            {
                "lines": [
                    cn_line(
                        "Room",
                        "2",
                        "149.90",
                        "10",
                    )
                ],
                "customer_id": "someone",
            },
            "customer 'someone'",
        ),
    ],
)
def test_a_bad_document_is_refused_with_its_reason(
    store: Store, changes: dict[str, Any], expected: str
) -> None:
    inv = issued_invoice(store, FRENCH, MIXED)
    doc = replace(credit_note(inv, [cn_line("Room nights not used", "2", "149.90", "10")]), **changes)
    with reading(store) as session:
        problems = credit_note_problems(session, doc)
        assert any(expected in p for p in problems), problems
        for render in (credit_note_ubl, credit_note_pdf):
            with pytest.raises(CreditNoteError, match="cannot be issued"):
                render(session, doc)
    acts = CreditNoteActivities(store, {}, SmtpConfig("127.0.0.1", free_port(), "a@b.example"))
    with pytest.raises(ApplicationError) as raised:
        acts.deliver_credit_note(CreditNoteDeliveryRequest(doc))
    assert raised.value.type == "credit_note_invalid" and raised.value.non_retryable
    with reading(store) as session:
        assert session.get(InvoiceDelivery, delivery_key(doc)) is None


def test_all_the_problems_are_named_at_once(store: Store) -> None:
    inv = issued_invoice(store, FRENCH, MIXED)
    doc = credit_note(inv, [cn_line("", "0", "x", "10")], invoice_number="", reason="")
    with reading(store) as session:
        problems = credit_note_problems(session, doc)
    assert len(problems) >= 5, problems


def test_a_half_cent_of_tax_is_rounded_as_the_validators_round_it(
    store: Store, official: OfficialValidators, ubl_schemas: UblSchemas
) -> None:
    """0.25 at 10 % is 0.025: rounded once, half away from zero (architecture rule 5, money.round_tax), 0.03;
    a credit note's amounts are positive, so away from zero is up, and both validators agree."""
    inv = issued_invoice(store, FRENCH, MIXED)
    doc = credit_note(inv, [cn_line("Minibar correction", "1", "0.25", "10")])
    with reading(store) as session:
        xml = credit_note_ubl(session, doc)
        document = credit_note_document(session, doc)
    assert_valid_credit_note(xml, official, ubl_schemas, invoice_number=inv.number)
    assert (document.subtotal_minor, document.tax_total_minor, document.total_minor) == (25, 3, 28)


def test_the_request_and_the_result_cross_the_workflow_boundary_unchanged() -> None:
    """What the credit memo workflow passes and gets back goes through the production data converter."""

    doc = CreditNoteDocument(
        legal_entity="ACME",
        credit_memo_id="cm-1",
        number="CN-2026-000001",
        issue_date="2026-11-20",
        currency="EUR",
        customer_id="c-1",
        invoice_id="i-1",
        invoice_number="INV-2026-000001",
        invoice_issue_date="2026-11-02",
        lines=[
            cn_line("Room", "2", "149.90", "10"),
            replace(cn_line("Fee", "1", "5", "0"), tax_category="E"),
        ],
        reason="Goodwill",
        full_credit=False,
        rebill=False,
        dispute_case="DSP-2026-000001",
    )
    result = CreditNoteDelivered(
        credit_memo_id="cm-1",
        number="CN-2026-000001",
        portal="email",
        channel="email",
        recipient="ap@example.com",
        message_id="<k@cashcycle>",
        portal_ref="<k@cashcycle>",
        subtotal_minor=1,
        tax_total_minor=2,
        total_minor=3,
        ubl_sha256="a",
        pdf_sha256="b",
        sent_at="2026-11-20T09:00:00+00:00",
        attachments=["CN.pdf"],
    )
    for value in (CreditNoteDeliveryRequest(doc), result):
        payloads = DATA_CONVERTER.payload_converter.to_payloads([value])
        assert DATA_CONVERTER.payload_converter.from_payloads(payloads, [type(value)]) == [value]
