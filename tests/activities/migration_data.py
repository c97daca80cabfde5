"""The data a store holds at each revision of the migrations, and how the API reads it at head.

RELEASES has one entry per revision, oldest first: what a store at that revision can hold that the one
before could not (`build`, adding rows to the earlier revisions' data), how the API's queries read that
data once the store is upgraded to head (`reads`), and what the revision's downgrade names as lost with
that data in the store (`refused`). Rows are plain dicts by table, inserted with SQL into the tables as
they are at the revision; ledger entries are hashed into a chain with the ledger's own functions.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import Session

from activities.approvals import delegations_of
from activities.checkpoints import checkpoint_message, checkpoint_refs, key_id, public_hex
from activities.directory import authenticate
from activities.ledger import GENESIS_HASH, canonical_json, compute_entry_hash, sha256_hex, verify_chain
from activities.models import LedgerEntry, LegalEntity, Notification
from activities.queries import (
    active_user_and_policy_revision,
    customer_by_id,
    invoice_by_id,
    invoice_history,
    invoice_lines,
    latest_portal_passes,
    lines_of_invoices,
    list_customers,
    list_invoices,
    payment_allocations,
    payment_by_id,
    ui_session,
)
from api.approvals import approval_chain, rules_state
from tests.conftest import PASSWORD, PASSWORD_HASH

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
ACME = "ACME"
INITECH = "c0000000-0000-4000-8000-000000000001"
UMBRELLA = "c0000000-0000-4000-8000-000000000002"
PAID_IN_PART = "10000000-0000-4000-8000-00000000000a"  # issued, delivered by mail, partly paid (0001)
IN_APPROVAL = "10000000-0000-4000-8000-00000000000b"  # numbered when created, as 0001 did
FOREIGN_DRAFT = "10000000-0000-4000-8000-00000000000c"  # GBP, no number yet (0002)
VIA_PORTAL = "10000000-0000-4000-8000-00000000000d"  # issued through the customer's portal (0005)
PAYMENT = "20000000-0000-4000-8000-000000000001"
DELEGATION = "30000000-0000-4000-8000-000000000001"
CHECKPOINT_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
CHECKPOINT_PUBLIC = public_hex(CHECKPOINT_KEY.public_key())
STAFF = {
    "erp": "erp_integration",
    "preparer": "ar_preparer",
    "approver": "ar_approver",
    "approver2": "ar_approver",
    "cashier": "cash_applier",
    "compliance": "compliance",
}


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


@dataclass
class Dataset:
    """Rows by table as a store at some revision holds them, with the ledger's hash chain over them
    (computed with the ledger's own hashing, so verification after an upgrade checks real hashes)."""

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    chain: list[LedgerEntry] = field(default_factory=list)

    def add(self, table: str, **row: Any) -> None:
        self.rows[table].append(row)

    def row(self, table: str, **key: Any) -> dict[str, Any]:
        (found,) = [r for r in self.rows[table] if all(r[k] == v for k, v in key.items())]
        return found

    def record(
        self,
        object_type: str,
        object_id: str,
        event: str,
        actor: str,
        hours: float,
        payload: dict[str, Any],
        from_status: str | None = None,
        to_status: str | None = None,
        reason: str = "",
        workflow_id: str = "",
    ) -> LedgerEntry:
        seq = len(self.chain) + 1
        prev = self.chain[-1].entry_hash if self.chain else GENESIS_HASH
        entry = LedgerEntry(
            legal_entity=ACME,
            seq=seq,
            business_key=f"{workflow_id or object_id}#{seq}",
            object_type=object_type,
            object_id=object_id,
            event=event,
            from_status=from_status,
            to_status=to_status,
            actor=actor,
            actor_roles=canonical_json([STAFF.get(actor, "system")]),
            rule=f"p, {STAFF.get(actor, 'system')}, *, {object_type}:{event}",
            reason=reason,
            workflow_id=workflow_id,
            run_id=f"run-{seq}" if workflow_id else "",
            request_id=f"req-{seq}",
            at=at(hours).isoformat(),
            payload=canonical_json(payload),
            payload_hash=sha256_hex(canonical_json(payload)),
            prev_hash=prev,
            entry_hash="",
        )
        entry.entry_hash = compute_entry_hash(prev, entry)
        self.chain.append(entry)
        return entry

    def transition(
        self,
        invoice_id: str,
        hours: float,
        event: str,
        actor: str,
        from_status: str | None,
        to_status: str,
        payload: dict[str, Any],
    ) -> None:
        """An invoice's transition, as its workflow records it."""
        invoice = self.row("invoice", id=invoice_id)
        self.record(
            "invoice",
            invoice_id,
            event,
            actor,
            hours,
            payload,
            from_status,
            to_status,
            workflow_id=invoice["workflow_id"],
        )

    def stored(self) -> dict[str, list[dict[str, Any]]]:
        """Every table's rows, the ledger and its head included."""
        rows = {table: list(found) for table, found in self.rows.items()}
        if self.chain:
            rows["ledger_entry"] = [e.model_dump(exclude={"id"}) for e in self.chain]
            rows["ledger_head"] = [
                {"legal_entity": ACME, "seq": self.chain[-1].seq, "entry_hash": self.chain[-1].entry_hash}
            ]
        return rows


def add_invoice(
    d: Dataset,
    invoice_id: str,
    external_id: str,
    customer_id: str,
    status: str,
    hours: float,
    items: list[tuple[str, int, int]],
    **over: Any,
) -> None:
    """An invoice of `items` (description, quantity, unit price in minor units), 20 % VAT, and its lines."""
    lines: list[dict[str, Any]] = [
        {
            "invoice_id": invoice_id,
            "line_no": n,
            "description": description,
            "quantity": str(quantity),
            "unit_price": f"{unit_minor / 100:.2f}",
            "tax_rate": "20",
            "net_minor": quantity * unit_minor,
            "tax_minor": quantity * unit_minor // 5,
        }
        for n, (description, quantity, unit_minor) in enumerate(items, start=1)
    ]
    net = sum(quantity * unit_minor for _, quantity, unit_minor in items)
    tax = sum(int(ln["tax_minor"]) for ln in lines)
    row: dict[str, Any] = {
        "id": invoice_id,
        "legal_entity": ACME,
        "external_id": external_id,
        "status": status,
        "customer_id": customer_id,
        "currency": "EUR",
        "subtotal_minor": net,
        "tax_total_minor": tax,
        "total_minor": net + tax,
        "amount_paid_minor": 0,
        "amount_due_minor": net + tax,
        "issue_date": date(2026, 11, 2),
        "due_date": date(2026, 12, 2),
        "po_number": "PO-4711",
        "workflow_id": f"invoice-{ACME}-{external_id}",
        "created_by": "erp",
        "payload_hash": sha256_hex(external_id),
        "transition_seq": 1,
        "status_since": at(hours),
        "created_at": at(hours),
        "updated_at": at(hours),
        "approvals_json": "[]",
        "editors_json": "[]",
        "submitters_json": "[]",
    }
    row.update(over)
    if "amount_paid_minor" in over:
        row["amount_due_minor"] = row["total_minor"] - row["amount_paid_minor"]
    d.add("invoice", **row)
    for line in lines:
        d.add("invoice_line", **line)


CONSULTING, TRAVEL = "Consulting, October", "Travel expenses"


def the_first_release(d: Dataset) -> None:
    """0001: a legal entity and its staff, two customers, a delivered invoice partly paid and one in
    approval (both numbered at creation, as then), their ledger."""
    d.add(
        "legal_entity",
        code=ACME,
        name="Acme Industries SAS",
        currency="EUR",
        timezone="Europe/Paris",
        country="FR",
        vat_id="FR12345678901",
        address="1 rue de la Paix, 75002 Paris",
    )
    for username, role in STAFF.items():
        d.add(
            "app_user",
            username=username,
            password_hash=PASSWORD_HASH,
            full_name=username.title(),
            email=f"{username}@acme.example",
            active=True,
            created_at=at(-48),
        )
        d.add(
            "role_assignment",
            username=username,
            role=role,
            legal_entity=ACME,
            granted_by="admin",
            granted_at=at(-48),
        )
    d.add("policy_revision", id=1, revision=len(STAFF))
    for customer_id, name, currency, terms, ref in [
        (INITECH, "Initech GmbH", "EUR", 30, "initech"),
        (UMBRELLA, "Umbrella Plc", "GBP", 45, "umbrella"),
    ]:
        d.add(
            "customer",
            id=customer_id,
            legal_entity=ACME,
            name=name,
            currency=currency,
            payment_terms_days=terms,
            email=f"ap@{ref}.example",
            contact_name="Accounts Payable",
            address=f"{name}, Main Street 1",
            country="DE" if currency == "EUR" else "GB",
            vat_id="",
            external_ref=ref,
            created_by="erp",
            created_at=at(-24),
        )
    # Approvals as 0001 wrote them: no tier, role or delegation yet.
    approved = [{"approver": "approver", "at": at(2).isoformat(), "comment": "ok"}]
    add_invoice(
        d,
        PAID_IN_PART,
        "ERP-1",
        INITECH,
        "partially_paid",
        0,
        [(CONSULTING, 10, 12500), (TRAVEL, 1, 31055)],
        number="INV-2026-000001",
        amount_paid_minor=100000,
        transition_seq=5,
        status_since=at(5),
        updated_at=at(5),
        delivered_at=at(3),
        approvals_json=json.dumps(approved),
        submitters_json='["preparer"]',
    )
    add_invoice(
        d,
        IN_APPROVAL,
        "ERP-2",
        UMBRELLA,
        "pending_approval",
        6,
        [(CONSULTING, 4, 12500)],
        number="INV-2026-000002",
        transition_seq=2,
        status_since=at(7),
        updated_at=at(7),
        submitters_json='["preparer"]',
    )
    d.add("number_sequence", legal_entity=ACME, series="INV-2026", last_value=2)
    d.add(
        "invoice_delivery",
        message_id="<INV-2026-000001@acme.example>",
        invoice_id=PAID_IN_PART,
        channel="email",
        recipient="ap@initech.example",
        sent_at=at(3),
    )
    d.add(
        "payment",
        id=PAYMENT,
        legal_entity=ACME,
        customer_id=INITECH,
        amount_minor=100000,
        currency="EUR",
        received_on=date(2026, 11, 20),
        reference="BANK-1",
        created_at=at(5),
    )
    d.add(
        "payment_allocation",
        payment_id=PAYMENT,
        invoice_id=PAID_IN_PART,
        amount_minor=100000,
        applied_by="cashier",
        applied_at=at(5),
    )
    d.add(
        "idempotent_response",
        key="erp:customers:k-1",
        request_hash=sha256_hex("customer initech"),
        status_code=201,
        body=json.dumps({"id": INITECH}),
        created_at=at(-24),
    )
    payment = {"payment": {"payment_id": PAYMENT, "amount_minor": 100000, "reference": "BANK-1"}}
    steps: list[tuple[str, float, str, str, str | None, str, dict[str, Any]]] = [
        (PAID_IN_PART, 0, "create", "erp", None, "draft", {}),
        (PAID_IN_PART, 1, "submit", "preparer", "draft", "pending_approval", {}),
        (PAID_IN_PART, 2, "approve", "approver", "pending_approval", "approved", {"tier": 1}),
        (PAID_IN_PART, 3, "deliver", "system", "approved", "submitted", {"number": "INV-2026-000001"}),
        (PAID_IN_PART, 5, "record_partial_payment", "cashier", "submitted", "partially_paid", payment),
        (IN_APPROVAL, 6, "create", "erp", None, "draft", {}),
        (IN_APPROVAL, 7, "submit", "preparer", "draft", "pending_approval", {}),
    ]
    for step in steps:
        d.transition(*step)


def reads_the_first_release(s: Session, d: Dataset) -> None:
    assert [(c.id, c.name, c.payment_terms_days) for c in list_customers(s, [ACME])] == [
        (INITECH, "Initech GmbH", 30),
        (UMBRELLA, "Umbrella Plc", 45),
    ]
    page = list_invoices(s, [ACME])
    assert [i.id for i in page.items][-2:] == [IN_APPROVAL, PAID_IN_PART]  # newest first
    paid = invoice_by_id(s, PAID_IN_PART)
    assert paid is not None
    assert (paid.number, paid.status, paid.total_minor, paid.amount_due_minor) == (
        "INV-2026-000001",
        "partially_paid",
        187266,
        87266,
    )
    assert (paid.exchange_rate, paid.matrix_version) == ("1", None)  # the 0002 defaults
    assert [(ln.line_no, ln.net_minor) for ln in invoice_lines(s, PAID_IN_PART)] == [(1, 125000), (2, 31055)]
    assert lines_of_invoices(s, [PAID_IN_PART])[PAID_IN_PART] == invoice_lines(s, PAID_IN_PART)
    # The approvals as 0001 wrote them, read by today's rules: tier 1, no delegation, no plan.
    assert [(a.approver, a.tier, a.on_behalf_of) for a in rules_state(paid).approvals] == [
        ("approver", 1, None)
    ]
    chain = approval_chain(paid)
    assert (chain.matrix_version, chain.steps, chain.submission) == (None, [], 0)
    assert [e.event for e in invoice_history(s, PAID_IN_PART)] == [
        "create",
        "submit",
        "approve",
        "deliver",
        "record_partial_payment",
    ]
    payment = payment_by_id(s, PAYMENT)
    assert payment is not None and (payment.amount_minor, payment.reference) == (100000, "BANK-1")
    assert [(a.invoice_id, a.amount_minor) for a in payment_allocations(s, PAYMENT)] == [
        (PAID_IN_PART, 100000)
    ]
    assert active_user_and_policy_revision(s, "approver") == (True, len(STAFF))
    assert authenticate(s, "approver", PASSWORD) is not None


def the_approval_tiers(d: Dataset) -> None:
    """0002: a delegation, a reminder, a foreign-currency draft without a number, an approval plan."""
    d.add(
        "delegation",
        id=DELEGATION,
        legal_entity=ACME,
        delegator="approver",
        delegate="approver2",
        role="ar_approver",
        starts_on=date(2026, 11, 10),
        ends_on=date(2026, 11, 20),
        reason="holiday",
        created_at=at(8),
    )
    d.record(
        "delegation", DELEGATION, "delegate", "approver", 8, {"delegate": "approver2", "role": "ar_approver"}
    )
    d.add(
        "notification",
        key="invoice-ACME-ERP-2#reminder-1",
        legal_entity=ACME,
        recipient="approver",
        kind="approval_reminder",
        invoice_id=IN_APPROVAL,
        subject="ERP-2 is waiting for your approval",
        body="Tier 1 (ar_approver) has been waiting since 2026-11-02 16:00 UTC.",
        created_at=at(31),
    )
    plan = {
        "matrix_version": "2026.1 sha256:" + "ab" * 8,
        "document_kind": "invoice",
        "amount_minor": 60000,
        "currency": "EUR",
        "tiers": [{"level": 1, "role": "ar_approver"}],
    }
    d.row("invoice", id=IN_APPROVAL).update(
        matrix_version=plan["matrix_version"],
        approval_json=json.dumps(
            {
                "plan": plan,
                "assignments": [],
                "tier_since": at(7).isoformat(),
                "escalated": False,
                "submission": 1,
            }
        ),
    )
    add_invoice(
        d,
        FOREIGN_DRAFT,
        "ERP-3",
        UMBRELLA,
        "draft",
        9,
        [(CONSULTING, 8, 12500)],
        currency="GBP",
        exchange_rate="1.1571",
        number=None,
    )
    d.transition(FOREIGN_DRAFT, 9, "create", "erp", None, "draft", {})


def reads_the_approval_tiers(s: Session, d: Dataset) -> None:
    (lent,) = delegations_of(s, "approver2")
    assert (lent.delegator, lent.role, lent.starts_on, lent.ends_on) == (
        "approver",
        "ar_approver",
        date(2026, 11, 10),
        date(2026, 11, 20),
    )
    reminder = s.get(Notification, "invoice-ACME-ERP-2#reminder-1")
    assert reminder is not None and reminder.invoice_id == IN_APPROVAL
    draft = invoice_by_id(s, FOREIGN_DRAFT)
    assert draft is not None and (draft.number, draft.currency, draft.exchange_rate) == (
        None,
        "GBP",
        "1.1571",
    )
    waiting = invoice_by_id(s, IN_APPROVAL)
    assert waiting is not None
    chain = approval_chain(waiting)
    assert chain.matrix_version == "2026.1 sha256:" + "ab" * 8
    assert [(step.tier, step.role, step.status) for step in chain.steps] == [(1, "ar_approver", "waiting")]


def the_checkpoints(d: Dataset) -> None:
    """0003: a signed checkpoint of the chain head, and the ledger entry that records it."""
    head = d.chain[-1]
    signed_at = at(10).isoformat()
    kid = key_id(CHECKPOINT_PUBLIC)
    signature = CHECKPOINT_KEY.sign(checkpoint_message(ACME, head.seq, head.entry_hash, signed_at, kid)).hex()
    d.add(
        "ledger_checkpoint",
        legal_entity=ACME,
        seq=head.seq,
        entry_hash=head.entry_hash,
        signed_at=signed_at,
        key_id=kid,
        public_key=CHECKPOINT_PUBLIC,
        signature=signature,
        trigger="on_demand",
        requested_by="compliance",
    )
    payload = {
        "checkpoint_id": 1,
        "seq": head.seq,
        "entry_hash": head.entry_hash,
        "key_id": kid,
        "signature": signature,
    }
    d.record(
        "ledger",
        ACME,
        "ledger_checkpoint",
        "compliance",
        10,
        payload,
        reason=f"signed checkpoint #1 of seq {head.seq}",
    )


def reads_the_checkpoints(s: Session, d: Dataset) -> None:
    (ref,) = checkpoint_refs(s, ACME, {CHECKPOINT_PUBLIC})
    assert ref.trusted  # the signature still verifies over the stored fields
    result = verify_chain(s, ACME, checkpoints=[ref])
    assert result.intact and result.checkpoint_seq == d.rows["ledger_checkpoint"][0]["seq"], result.summary


def the_einvoice_parties(d: Dataset) -> None:
    """0004: the seller's and a buyer's e-invoicing data, and that buyer's PO rule."""
    d.row("legal_entity", code=ACME).update(
        street="1 rue de la Paix",
        city="Paris",
        postal_code="75002",
        endpoint_id="12345678900011",
        endpoint_scheme="0009",
        company_id="123456789",
        iban="FR7630006000011234567890189",
        contact_name="Claire Martin",
        email="ar@acme.example",
        telephone="+33 1 23 45 67 89",
    )
    d.row("customer", id=INITECH).update(
        street="Hauptstrasse 5",
        city="Berlin",
        postal_code="10115",
        endpoint_id="DE123456789",
        endpoint_scheme="9930",
        company_id="HRB 12345",
        po_required=True,
        buyer_reference="AP-BERLIN",
    )


def reads_the_einvoice_parties(s: Session, d: Dataset) -> None:
    seller = s.get(LegalEntity, ACME)
    assert seller is not None and (seller.iban, seller.endpoint_scheme) == (
        "FR7630006000011234567890189",
        "0009",
    )
    buyer = customer_by_id(s, INITECH)
    assert buyer is not None and (buyer.po_required, buyer.buyer_reference, buyer.city) == (
        True,
        "AP-BERLIN",
        "Berlin",
    )
    other = customer_by_id(s, UMBRELLA)
    assert other is not None and (other.po_required, other.street) == (False, "")  # the 0004 defaults


def the_portals(d: Dataset) -> None:
    """0005: a customer on a portal, an invoice issued through it, its pass and the poller's cursor."""
    d.row("customer", id=UMBRELLA)["portal"] = "coupa"
    add_invoice(
        d,
        VIA_PORTAL,
        "ERP-4",
        UMBRELLA,
        "submitted",
        11,
        [(CONSULTING, 1, 12500), (TRAVEL, 1, 7500)],
        currency="GBP",
        exchange_rate="1.1571",
        number="INV-2026-000003",
        delivered_at=at(12),
        transition_seq=4,
    )
    d.row("number_sequence", series="INV-2026")["last_value"] = 3
    d.add(
        "portal_submission",
        submission_key=f"{VIA_PORTAL}.pass-1",
        invoice_id=VIA_PORTAL,
        legal_entity=ACME,
        customer_id=UMBRELLA,
        portal="coupa",
        channel="rest",
        submission_pass=1,
        portal_ref="COUPA-981",
        submitted_at=at(12),
        status="accepted",
        status_at=at(14),
        reason_code="",
        reason_text="",
        accepted_at=at(14),
    )
    d.add("portal_cursor", portal="coupa", cursor=at(14).isoformat(), updated_at=at(14))
    steps: list[tuple[str, float, str, str, str | None, str, dict[str, Any]]] = [
        (VIA_PORTAL, 11, "create", "erp", None, "draft", {}),
        (VIA_PORTAL, 11.2, "submit", "preparer", "draft", "pending_approval", {}),
        (VIA_PORTAL, 11.5, "approve", "approver2", "pending_approval", "approved", {"tier": 1}),
        (VIA_PORTAL, 12, "deliver", "system", "approved", "submitted", {"portal": "coupa"}),
    ]
    for step in steps:
        d.transition(*step)


def reads_the_portals(s: Session, d: Dataset) -> None:
    customer = customer_by_id(s, UMBRELLA)
    assert customer is not None and customer.portal == "coupa"
    passes = latest_portal_passes(s, [VIA_PORTAL])
    assert [(p.submission_pass, p.status, p.portal_ref) for p in passes.values()] == [
        (1, "accepted", "COUPA-981")
    ]


def the_ui_sessions(d: Dataset) -> None:
    """0006: the web UI's sessions. A store at 0006 may hold signed-in browsers, but the downgrade drops
    them without refusing (signing in again loses nothing), so the dataset holds none."""


def reads_the_ui_sessions(s: Session, d: Dataset) -> None:
    assert ui_session(s, "0" * 64) is None


def the_waiting_tier(d: Dataset) -> None:
    """0007: the inbox's columns only repeat the approval JSON and the ledger (the downgrade drops them,
    never refused); the upgrade fills them for the invoices already pending approval, and a store written
    by the release of 0007 holds them as its recording activity wrote them."""
    for row_id, values in derived_by_migrations(d).get("invoice", {}).items():
        d.row("invoice", id=row_id).update(values)


def reads_the_waiting_tier(s: Session, d: Dataset) -> None:
    waiting = invoice_by_id(s, IN_APPROVAL)
    if waiting is None or waiting.approval_json in ("", "{}"):
        return  # a store from before 0002 has no approval plan: nothing waits at a tier
    assert (waiting.waiting_role, waiting.waiting_tier, waiting.approval_sla) == ("ar_approver", 1, "on_time")
    assert waiting.waiting_since == at(7)
    assert waiting.sod_barred == "|erp|preparer|"  # created by the ERP, submitted by the preparer


def the_invoice_adjustments(d: Dataset) -> None:
    """0008: the invoice issued through the portal is disputed for part of it, and credited for some."""
    row = d.row("invoice", id=VIA_PORTAL)
    row.update(
        status="disputed",
        dispute_id="40000000-0000-4000-8000-000000000001",
        disputed_minor=5000,
        credited_minor=2500,
        amount_due_minor=row["total_minor"] - 2500,
    )


def reads_the_invoice_adjustments(s: Session, d: Dataset) -> None:
    disputed = invoice_by_id(s, VIA_PORTAL)
    assert disputed is not None and disputed.status == "disputed"
    assert (disputed.dispute_id, disputed.disputed_minor, disputed.credited_minor) == (
        "40000000-0000-4000-8000-000000000001",
        5000,
        2500,
    )


DISPUTE_ID = "40000000-0000-4000-8000-000000000001"
DISPUTE_FILE = b"%PDF-1.4 proof of delivery"


def the_disputes(d: Dataset) -> None:
    """0009: the case holding part of the invoice issued through the portal (0008), with a note and an
    attachment in its thread, its number reserved for the request that opened it, its opening ledgered."""
    workflow_id = f"dispute/{ACME}/DSP-2026-000001"
    sha = sha256_hex_bytes(DISPUTE_FILE)
    d.add(
        "dispute",
        id=DISPUTE_ID,
        legal_entity=ACME,
        case_number="DSP-2026-000001",
        workflow_id=workflow_id,
        customer_id=UMBRELLA,
        currency="GBP",
        source="portal",
        status="waiting_on_customer",
        claimed_code="PRI",
        reason="PRC",
        reason_version="default.toml 2026.1+000000000000",
        description="portal coupa: disputed: price",
        owner="collector",
        coordinator="supervisor",
        original_minor=5000,
        open_minor=5000,
        credited_minor=0,
        written_off_minor=0,
        paid_minor=0,
        recovered_minor=0,
        escalation_level=1,
        waiting_reason="asked for the contract price list",
        sla_due_at=None,
        window_deadline=at(24 * 30),
        sla_rule="disputes.toml 2026.1+000000000000: sla.PRC",
        resolution="",
        root_cause="",
        validity="",
        capa_id="",
        opened_by="portal:coupa",
        opened_at=at(15),
        status_since=at(17),
        closed_at=None,
        updated_at=at(17),
        transition_seq=3,
        state_json="{}",
    )
    d.add(
        "dispute_invoice",
        dispute_id=DISPUTE_ID,
        invoice_id=VIA_PORTAL,
        original_minor=5000,
        open_minor=5000,
        linked=True,
    )
    d.add(
        "dispute_request",
        legal_entity=ACME,
        request_key="portal:coupa-77",
        dispute_id=DISPUTE_ID,
        case_number="DSP-2026-000001",
        created_at=at(15),
    )
    d.add("number_sequence", legal_entity=ACME, series="DSP-2026", last_value=1)
    d.add(
        "dispute_attachment",
        sha256=sha,
        size=len(DISPUTE_FILE),
        content=DISPUTE_FILE,
        stored_by="collector",
        stored_at=at(16),
    )
    for seq, event, text, filename in [
        (1, "open", "portal coupa: disputed: price", ""),
        (2, "attach", "their proof", "pod.pdf"),
        (3, "wait_on_customer", "asked for the contract price list", ""),
    ]:
        d.add(
            "dispute_note",
            dispute_id=DISPUTE_ID,
            transition_seq=seq,
            event=event,
            author="collector",
            at=at(15 + seq - 1),
            text=text,
            filename=filename,
            content_type="application/pdf" if filename else "",
            size=len(DISPUTE_FILE) if filename else 0,
            sha256=sha if filename else "",
        )
    d.record(
        "dispute",
        DISPUTE_ID,
        "open",
        "system",
        15,
        {"case_number": "DSP-2026-000001"},
        None,
        "open",
        workflow_id=workflow_id,
    )


def sha256_hex_bytes(content: bytes) -> str:
    import hashlib

    return hashlib.sha256(content).hexdigest()


def reads_the_disputes(s: Session, d: Dataset) -> None:
    from activities.disputes import (
        DisputeFilters,
        attachment_of,
        dispute_thread,
        list_disputes,
        open_case_of_invoice,
    )

    page = list_disputes(s, [ACME], DisputeFilters(status="waiting_on_customer"))
    assert page.total == 1 and page.items[0].case_number == "DSP-2026-000001"
    case = open_case_of_invoice(s, VIA_PORTAL)
    assert case is not None and case.id == DISPUTE_ID and case.open_minor == 5000
    assert [n.event for n in dispute_thread(s, DISPUTE_ID)] == ["open", "attach", "wait_on_customer"]
    found = attachment_of(s, DISPUTE_ID, sha256_hex_bytes(DISPUTE_FILE))
    assert found is not None and found[1].content == DISPUTE_FILE


CREDIT_MEMO_ID = "50000000-0000-4000-8000-000000000001"
WRITE_OFF_ID = "50000000-0000-4000-8000-000000000002"


def _resolution_row(document_id: str, kind: str, status: str, amount: int, hours: float) -> dict[str, Any]:
    plan = {
        "matrix_version": "2026.1+000000000000",
        "document_kind": kind,
        "amount_minor": amount,
        "currency": "EUR",
        "tiers": [{"level": 1, "role": "ar_approver"}],
    }
    return {
        "id": document_id,
        "legal_entity": ACME,
        "workflow_id": f"{kind}/{ACME}/{document_id}",
        "invoice_id": PAID_IN_PART,
        "customer_id": INITECH,
        "dispute_id": "",
        "dispute_owner": "",
        "currency": "EUR",
        "amount_minor": amount,
        "entity_amount_minor": amount,
        "entity_currency": "EUR",
        "reason": "price difference",
        "status": status,
        "proposed_by": "preparer",
        "created_at": at(hours),
        "status_since": at(hours),
        "updated_at": at(hours),
        "transition_seq": 2,
        "matrix_version": plan["matrix_version"],
        "approval_json": json.dumps(
            {"plan": plan, "tier_bounds": ["1000"], "cash_appliers": [], "approvals": []}
        ),
        "waiting_role": "ar_approver" if status == "pending_approval" else "",
        "waiting_tier": 1 if status == "pending_approval" else 0,
        "waiting_since": at(hours) if status == "pending_approval" else None,
        "sod_barred": "|preparer|" if status == "pending_approval" else "",
        "decided_by": "" if status == "pending_approval" else "system",
        "decided_at": None if status == "pending_approval" else at(hours),
        "decided_period": "" if status == "pending_approval" else at(hours).strftime("%Y-%m"),
        "decision_reason": "",
        "applied_minor": 0 if status == "pending_approval" else amount,
    }


def the_credit_memos_and_write_offs(d: Dataset) -> None:
    """0010: a credit memo waiting for its approver, and a write-off made automatically (tolerance)."""
    memo = _resolution_row(CREDIT_MEMO_ID, "credit_memo", "pending_approval", 2500, 30)
    memo.update(
        kind="credit",
        lines_json=json.dumps(
            [
                {
                    "description": "Price difference",
                    "quantity": "1",
                    "unit_price": "20.83",
                    "tax_rate": "20",
                    "net_minor": 2083,
                    "tax_minor": 417,
                }
            ]
        ),
        number=None,
        issue_date=None,
        ubl=None,
        pdf=None,
        ubl_sha256="",
        pdf_sha256="",
        channel="",
        delivered_at=None,
        rebill_invoice_id=None,
        rebill_json="",
    )
    d.add("credit_memo", **memo)
    off = _resolution_row(WRITE_OFF_ID, "write_off", "written_off", 300, 31)
    off["auto_rule"] = "write_off:auto_tolerance:ACME<=5.00 EUR"
    d.add("write_off", **off)


def reads_the_credit_memos_and_write_offs(s: Session, d: Dataset) -> None:
    from activities.credit_memos import resolution_by_id, state_of

    memo = resolution_by_id(s, "credit_memo", CREDIT_MEMO_ID)
    assert memo is not None and memo.status == "pending_approval"
    state = state_of(memo)
    assert state.plan is not None and [t.role for t in state.plan.tiers] == ["ar_approver"]
    assert state.lines[0].net_minor == 2083
    off = resolution_by_id(s, "write_off", WRITE_OFF_ID)
    assert off is not None and state_of(off).auto_rule == "write_off:auto_tolerance:ACME<=5.00 EUR"


def derived_by_migrations(d: Dataset) -> dict[str, dict[Any, dict[str, Any]]]:
    """Columns a migration fills from what the store already holds, by table and row id: what a row holds
    in them once they exist (rows not named hold the columns' defaults)."""
    waiting = next((r for r in d.rows["invoice"] if r["id"] == IN_APPROVAL), None)
    if waiting is None or waiting.get("approval_json", "{}") == "{}":
        return {}
    return {
        "invoice": {
            IN_APPROVAL: {
                "waiting_role": "ar_approver",
                "waiting_tier": 1,
                "waiting_since": at(7),
                "approval_sla": "on_time",
                "sod_barred": "|erp|preparer|",
            }
        }
    }


TABLES_OF_THE_FIRST_RELEASE = (
    "app_user idempotent_response ledger_entry ledger_head legal_entity number_sequence policy_revision "
    "customer role_assignment invoice payment invoice_delivery invoice_line payment_allocation"
).split()

CAPA_WORKFLOW = "capa/ACME/DSP-2026-000001"


def the_capas(d: Dataset) -> None:
    """0011: a CAPA whose preventive action is done and waits for its effectiveness check; its corrective
    action was extended once."""
    from activities.capa import capa_id_of

    capa = capa_id_of(CAPA_WORKFLOW)
    d.add(
        "capa",
        id=capa,
        legal_entity=ACME,
        capa_id="DSP-2026-000001",
        workflow_id=CAPA_WORKFLOW,
        dispute_id="",
        case_number="DSP-2026-000001",
        root_cause="BIL",
        customer_id=INITECH,
        function="billing",
        status="checking",
        opened_by="approver",
        opened_at=at(40),
        check_due_at=at(40 + 24 * 90),
        last_outcome="",
        checks_json="[]",
        reopened=0,
        closed_at=None,
        transition_seq=4,
        updated_at=at(41),
    )
    for kind, owner, status in (("corrective", "preparer", "open"), ("preventive", "approver2", "done")):
        d.add(
            "capa_action",
            capa_id=capa,
            kind=kind,
            owner=owner,
            description=f"the {kind} action",
            due="2026-12-31",
            due_at=datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC),
            status=status,
            completed_at=at(41) if status == "done" else None,
            completed_by=owner if status == "done" else "",
            note="done" if status == "done" else "",
            extension_new_due="",
            extension_reason="",
            extension_requested_by="",
            extensions_approved=1 if kind == "corrective" else 0,
            reminders_sent=0,
        )


def reads_the_capas(s: Session, d: Dataset) -> None:
    from activities.capa import CapaFilters, actions_of, capa_id_of, list_capas

    capa = capa_id_of(CAPA_WORKFLOW)
    rows, total = list_capas(s, CapaFilters([ACME], owner="approver2"))
    assert total == 1 and rows[0].id == capa and rows[0].status == "checking"
    actions = actions_of(s, [capa])[capa]
    assert actions["corrective"].extensions_approved == 1 and actions["preventive"].status == "done"


@dataclass(frozen=True)
class Release:
    build: Callable[[Dataset], None]  # what a store at this revision can hold, added to the earlier ones'
    reads: Callable[[Session, Dataset], None]  # how the API's queries read it once the store is at head
    # What the downgrade below this revision names as lost with that data in the store; empty for a
    # revision whose downgrade loses nothing (and then `build` adds nothing that one would drop).
    refused: set[str]


RELEASES: dict[str, Release] = {
    "0001": Release(
        the_first_release,
        reads_the_first_release,
        {f"{table} rows" for table in TABLES_OF_THE_FIRST_RELEASE},
    ),
    "0002": Release(
        the_approval_tiers,
        reads_the_approval_tiers,
        {
            "delegations",
            "notifications",
            "invoices without a number",
            "invoices with an exchange rate",
            "invoices with an approval plan",
        },
    ),
    "0003": Release(the_checkpoints, reads_the_checkpoints, {"signed checkpoints"}),
    "0004": Release(
        the_einvoice_parties,
        reads_the_einvoice_parties,
        {"legal entities with e-invoice data", "customers with e-invoice data"},
    ),
    "0005": Release(
        the_portals, reads_the_portals, {"customers on a portal", "portal passes", "portal poll cursors"}
    ),
    "0006": Release(the_ui_sessions, reads_the_ui_sessions, set()),
    "0007": Release(the_waiting_tier, reads_the_waiting_tier, set()),
    # Issue 11: reserved, each filled (build/reads/refused) with its migration.
    "0008": Release(
        the_invoice_adjustments, reads_the_invoice_adjustments, {"invoices disputed, credited or written off"}
    ),
    "0009": Release(
        the_disputes, reads_the_disputes, {"dispute cases", "case numbers reserved", "attachments"}
    ),
    "0010": Release(
        the_credit_memos_and_write_offs, reads_the_credit_memos_and_write_offs, {"credit memos", "write-offs"}
    ),
    "0011": Release(the_capas, reads_the_capas, {"CAPAs"}),
}


def up_to(revision: str | None) -> list[Release]:
    """The releases of the revisions up to `revision`, oldest first (none below the first revision)."""
    order = list(RELEASES)
    return [RELEASES[rev] for rev in order[: order.index(revision) + 1]] if revision else []


def data_at(revision: str | None) -> Dataset:
    """The data a store at `revision` holds (None: the empty store below the first revision)."""
    d = Dataset()
    for release in up_to(revision):
        release.build(d)
    return d


def read_through_the_api(session: Session, d: Dataset, revision: str) -> None:
    """Every release's data up to `revision`, read through the API's queries from a store at head."""
    for release in up_to(revision):
        release.reads(session, d)
