"""The store's migrations, on SQLite and PostgreSQL.

- An empty database upgrades to head, and the models agree with what the migrations built (autogenerate
  finds no difference, types and server defaults included).
- A store at any earlier revision, with data in it, upgrades to head: every row survives, the API's queries
  read it, the ledger is still append-only and its hash chain (and signed checkpoints) still verify.
- Each revision downgrades by one when nothing would be lost, and upgrading again restores head; when the
  store holds data the revision below cannot, the downgrade refuses, says what it would destroy and changes
  nothing (each migration's docstring says so).
- A migration that fails leaves the store at the revision it started from.

The data is built per revision (RELEASES): what a store at that revision can hold, inserted with SQL into
the tables as they are at that revision (never through today's models, which may not match them), and how
the API's queries read it once the store is at head. A new migration comes with its entry there.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.script import ScriptDirectory
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Column, Integer, MetaData, String, Table, inspect, text
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import False_, True_
from sqlmodel import Session, SQLModel

from activities.approvals import delegations_of
from activities.checkpoints import checkpoint_message, checkpoint_refs, key_id, public_hex
from activities.db import (
    AUTOGENERATE_OPTIONS,
    MIGRATIONS,
    DowngradeRefused,
    alembic_config,
    migrate,
    open_store,
    reading,
    writing,
)
from activities.directory import authenticate
from activities.ledger import (
    GENESIS_HASH,
    LedgerFacts,
    append_to_ledger,
    canonical_json,
    compute_entry_hash,
    sha256_hex,
    verify_chain,
)
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
)
from api.approvals import approval_chain, rules_state
from tests.conftest import PASSWORD, PASSWORD_HASH, PG_ADMIN_DSN, drop_pg_database, new_pg_database

SCRIPTS = ScriptDirectory.from_config(alembic_config("sqlite://"))
REVISIONS = [s.revision for s in reversed(list(SCRIPTS.walk_revisions()))]  # oldest first
HEAD = REVISIONS[-1]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each backend, no migration run yet."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    admin = request.getfixturevalue("pg_server")
    name, url = new_pg_database(admin)
    try:
        yield url
    finally:
        drop_pg_database(admin, name)


def upgrade(url: str, revision: str) -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


@contextmanager
def connected(url: str) -> Iterator[Connection]:
    """A plain connection to the database (no store engine, no models), its engine disposed of after."""
    engine = sa_create_engine(url)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def backend(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def current_revision(url: str) -> str | None:
    with connected(url) as conn:
        return MigrationContext.configure(conn).get_current_revision()


# The evidence tables refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL) in the database itself.
APPEND_ONLY_TRIGGERS = {
    "sqlite": {
        "ledger_entry": ["ledger_entry_no_delete", "ledger_entry_no_update"],
        "ledger_checkpoint": ["ledger_checkpoint_no_delete", "ledger_checkpoint_no_update"],
    },
    "postgresql": {
        "ledger_entry": ["ledger_entry_append_only", "ledger_entry_no_truncate"],
        "ledger_checkpoint": ["ledger_checkpoint_append_only", "ledger_checkpoint_no_truncate"],
    },
}


REFUSED_ON_EVIDENCE = [
    ("ledger_entry", "UPDATE ledger_entry SET seq = seq + 1"),
    ("ledger_entry", "DELETE FROM ledger_entry"),
    ("ledger_checkpoint", "UPDATE ledger_checkpoint SET seq = seq + 1"),
    ("ledger_checkpoint", "DELETE FROM ledger_checkpoint"),
]


def append_only_triggers(url: str) -> dict[str, list[str]]:
    """Every trigger in the database, by table."""
    with connected(url) as conn:
        if conn.dialect.name == "sqlite":
            sql = "SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger'"
        else:
            sql = "SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal"
        found: dict[str, list[str]] = defaultdict(list)
        for table, name in conn.execute(text(sql)):
            found[str(table)].append(str(name))
        return {table: sorted(names) for table, names in found.items()}


def named(diff: Any) -> tuple[str, str]:
    """One autogenerate difference as (operation, table or table.column)."""
    if isinstance(diff, list):  # the changes to one column come as a list of one
        (diff,) = diff
    op = diff[0]
    if op in ("add_table", "remove_table"):
        return op, diff[1].name
    if op in ("add_column", "remove_column"):
        return op, f"{diff[2]}.{diff[3].name}"
    if op.startswith("modify_"):
        return op, f"{diff[2]}.{diff[3]}"
    return op, repr(diff[1:])


def differences(url: str, target: MetaData = SQLModel.metadata) -> list[tuple[str, str]]:
    """What `alembic revision --autogenerate` would write to turn the database at `url` into `target`."""
    with connected(url) as conn:
        return [
            named(d)
            for d in compare_metadata(MigrationContext.configure(conn, opts=AUTOGENERATE_OPTIONS), target)
        ]


@contextmanager
def another_database(like: str, tmp_path: Path) -> Iterator[str]:
    """A second empty database on the same backend as `like`, dropped afterwards."""
    if backend(like) == "sqlite":
        yield f"sqlite:///{tmp_path / 'another.db'}"
        return
    name, url = new_pg_database(PG_ADMIN_DSN)
    try:
        yield url
    finally:
        drop_pg_database(PG_ADMIN_DSN, name)


def schema_at(url: str) -> MetaData:
    with connected(url) as conn:
        found = MetaData()
        found.reflect(conn)
        if "alembic_version" in found.tables:
            found.remove(found.tables["alembic_version"])
        return found


# --- the data, revision by revision ---------------------------------------------------------------------

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
ACME = "ACME"
INITECH = "c0000000-0000-4000-8000-000000000001"
UMBRELLA = "c0000000-0000-4000-8000-000000000002"
PAID_IN_PART = "10000000-0000-4000-8000-00000000000a"  # issued, delivered by mail, partly paid (0001)
IN_APPROVAL = "10000000-0000-4000-8000-00000000000b"  # numbered when created, as 0001 did
FOREIGN_DRAFT = "10000000-0000-4000-8000-00000000000c"  # GBP, no number yet (0002)
VIA_PORTAL = "10000000-0000-4000-8000-00000000000d"  # issued through the customer's portal (0005)
PAYMENT = "20000000-0000-4000-8000-000000000001"
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
    wf = "invoice-ACME-ERP-1"
    for hours, event, actor, before, after in [
        (0, "create", "erp", None, "draft"),
        (1, "submit", "preparer", "draft", "pending_approval"),
        (2, "approve", "approver", "pending_approval", "approved"),
        (3, "deliver", "system", "approved", "submitted"),
    ]:
        d.record(
            "invoice",
            PAID_IN_PART,
            event,
            actor,
            hours,
            {"number": "INV-2026-000001"},
            before,
            after,
            workflow_id=wf,
        )
    d.record(
        "invoice",
        PAID_IN_PART,
        "record_partial_payment",
        "cashier",
        5,
        {"payment": {"payment_id": PAYMENT, "amount_minor": 100000, "reference": "BANK-1"}},
        "submitted",
        "partially_paid",
        reason="payment BANK-1",
        workflow_id=wf,
    )
    wf = "invoice-ACME-ERP-2"
    d.record(
        "invoice",
        IN_APPROVAL,
        "create",
        "erp",
        6,
        {"number": "INV-2026-000002"},
        None,
        "draft",
        workflow_id=wf,
    )
    d.record("invoice", IN_APPROVAL, "submit", "preparer", 7, {}, "draft", "pending_approval", workflow_id=wf)


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
        id="d0000000-0000-4000-8000-000000000001",
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
        "delegation",
        "d0000000-0000-4000-8000-000000000001",
        "delegate",
        "approver",
        8,
        {"role": "ar_approver"},
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
    d.record(
        "invoice", FOREIGN_DRAFT, "create", "erp", 9, {}, None, "draft", workflow_id="invoice-ACME-ERP-3"
    )


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
    d.record(
        "invoice",
        VIA_PORTAL,
        "deliver",
        "system",
        12,
        {"portal": "coupa"},
        "approved",
        "submitted",
        workflow_id="invoice-ACME-ERP-4",
    )


def reads_the_portals(s: Session, d: Dataset) -> None:
    customer = customer_by_id(s, UMBRELLA)
    assert customer is not None and customer.portal == "coupa"
    passes = latest_portal_passes(s, [VIA_PORTAL])
    assert [(p.submission_pass, p.status, p.portal_ref) for p in passes.values()] == [
        (1, "accepted", "COUPA-981")
    ]


@dataclass(frozen=True)
class Release:
    build: Callable[[Dataset], None]  # what a store at this revision can hold, added to the earlier ones'
    reads: Callable[[Session, Dataset], None]  # how the API's queries read it once the store is at head
    refused: set[str]  # what the downgrade below this revision names, with that data in the store


RELEASES: dict[str, Release] = {
    "0001": Release(
        the_first_release,
        reads_the_first_release,
        {
            f"{t} rows"
            for t in (
                "app_user",
                "idempotent_response",
                "ledger_entry",
                "ledger_head",
                "legal_entity",
                "number_sequence",
                "policy_revision",
                "customer",
                "role_assignment",
                "invoice",
                "payment",
                "invoice_delivery",
                "invoice_line",
                "payment_allocation",
            )
        },
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
}


def data_at(revision: str | None) -> Dataset:
    """The data a store at `revision` holds (None: the empty store below the first revision)."""
    d = Dataset()
    for rev in REVISIONS[: REVISIONS.index(revision) + 1] if revision else []:
        RELEASES[rev].build(d)
    return d


def tables_as_they_are(conn: Connection, names: set[str]) -> list[Table]:
    """The tables as they are in the database now, with today's column types (for binding and reading
    values: the types of a column have not changed since it was added), in foreign-key order."""
    order = [t.name for t in SQLModel.metadata.sorted_tables]
    found = []
    for name in sorted(names, key=lambda n: order.index(n) if n in order else len(order)):
        today = SQLModel.metadata.tables.get(name)
        columns = []
        for reflected in inspect(conn).get_columns(name):
            column = today.c.get(reflected["name"]) if today is not None else None
            columns.append(
                Column(reflected["name"], column.type if column is not None else reflected["type"])
            )
        found.append(Table(name, MetaData(), *columns))
    return found


def insert(url: str, d: Dataset) -> None:
    stored = d.stored()
    with connected(url) as conn, conn.begin():
        for table in tables_as_they_are(conn, set(stored)):
            for row in stored[table.name]:
                unknown = set(row) - set(table.c.keys())
                assert not unknown, f"{table.name} has no column {sorted(unknown)} at this revision"
                conn.execute(table.insert().values(**row))


def default_of(table: str, column: str) -> Any:
    """What a row that did not set `column` holds: the server default the migration gave it, else NULL."""
    today = SQLModel.metadata.tables[table].c[column]
    default = getattr(today.server_default, "arg", None)
    if isinstance(default, True_ | False_):
        return isinstance(default, True_)
    return default


def assert_stored(url: str, d: Dataset) -> None:
    """Every row of `d` is in the database as built, and nothing else is: columns it did not set (those
    that later migrations added among them) hold their defaults."""
    stored = d.stored()
    with connected(url) as conn:
        present = set(inspect(conn).get_table_names()) - {"alembic_version"}
        filled = {t for t in present if conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()}  # noqa: S608
        assert filled == set(stored), "tables with rows, and the tables the data has"
        for table in tables_as_they_are(conn, set(stored)):
            # Surrogate keys are the database's business (the sequence numbers them); the rest is data.
            columns = [c for c in table.c if not (c.name == "id" and isinstance(c.type, Integer))]
            read = sorted(
                (tuple(row) for row in conn.execute(table.select().with_only_columns(*columns))), key=repr
            )
            built = sorted(
                (
                    tuple(row[c.name] if c.name in row else default_of(table.name, c.name) for c in columns)
                    for row in stored[table.name]
                ),
                key=repr,
            )
            assert read == built, f"{table.name} as stored differs from the data"


def assert_the_api_reads(url: str, d: Dataset, revision: str) -> None:
    """Through the store and the API's queries, at head: every release's data up to `revision` reads as
    it should, the ledger refuses changes, its chain verifies and grows."""
    store = open_store(url)
    try:
        with reading(store) as s:
            for rev in REVISIONS[: REVISIONS.index(revision) + 1]:
                RELEASES[rev].reads(s, d)
            result = verify_chain(s, ACME)
        assert (result.intact, result.entries, result.head_hash) == (
            True,
            len(d.chain),
            d.chain[-1].entry_hash,
        ), result.summary
        assert append_only_triggers(url) == APPEND_ONLY_TRIGGERS[backend(url)]
        stored = d.stored()
        for table, statement in REFUSED_ON_EVIDENCE:
            if not stored.get(table):
                continue  # a trigger for each row: nothing to refuse in an empty table
            with pytest.raises(DBAPIError, match="append-only"), store.write.begin() as conn:
                conn.execute(text(statement))
        with writing(store) as s:
            entry = append_to_ledger(
                s,
                LedgerFacts(
                    legal_entity=ACME,
                    business_key="after-upgrade#1",
                    object_type="ledger",
                    object_id=ACME,
                    event="ledger_verified",
                    from_status=None,
                    to_status=None,
                    actor="compliance",
                    actor_roles=["compliance"],
                    rule="p, compliance, *, ledger:verify",
                    reason="after the upgrade",
                    workflow_id="",
                    run_id="",
                    request_id="",
                    at=at(100).isoformat(),
                    payload={"entries": len(d.chain)},
                ),
            )
            appended = (entry.seq, entry.prev_hash)
        assert appended == (len(d.chain) + 1, d.chain[-1].entry_hash)
        with reading(store) as s:
            grown = verify_chain(s, ACME)
        assert (grown.intact, grown.entries) == (True, len(d.chain) + 1), grown.summary
    finally:
        store.dispose()


# --- upgrading ------------------------------------------------------------------------------------------


def test_every_migration_comes_with_data_to_upgrade_and_downgrade_with() -> None:
    assert list(RELEASES) == REVISIONS, (
        "add the new revision's data to RELEASES (what it can store, how it reads)"
    )


def test_an_empty_database_upgrades_to_head_with_every_table_of_the_models(empty_url: str) -> None:
    migrate(empty_url)
    assert current_revision(empty_url) == HEAD
    with connected(empty_url) as conn:
        assert set(inspect(conn).get_table_names()) == set(SQLModel.metadata.tables) | {"alembic_version"}
    assert append_only_triggers(empty_url) == APPEND_ONLY_TRIGGERS[backend(empty_url)]


def test_the_models_and_the_migrations_agree(empty_url: str) -> None:
    migrate(empty_url)
    assert differences(empty_url) == [], (
        "autogenerate would write a migration: the models and migrations disagree"
    )


def test_autogenerate_notices_a_table_a_column_or_a_default_the_models_do_not_have(empty_url: str) -> None:
    migrate(empty_url)
    with connected(empty_url) as conn, conn.begin():
        conn.execute(text("CREATE TABLE scratch (id INTEGER PRIMARY KEY)"))
        ops = Operations(MigrationContext.configure(conn))
        with ops.batch_alter_table("customer") as batch_op:
            batch_op.add_column(Column("fax", String(40), nullable=False, server_default=""))
        with ops.batch_alter_table("legal_entity") as batch_op:
            batch_op.alter_column("street", existing_type=String(200), server_default="somewhere")
    found = set(differences(empty_url))
    assert found == {
        ("remove_table", "scratch"),
        ("remove_column", "customer.fax"),
        ("modify_default", "legal_entity.street"),
    }


def test_migrating_twice_changes_nothing(empty_url: str) -> None:
    migrate(empty_url)
    before = append_only_triggers(empty_url)
    migrate(empty_url)
    migrate(empty_url)
    assert current_revision(empty_url) == HEAD
    assert append_only_triggers(empty_url) == before
    assert differences(empty_url) == []


def test_migrate_creates_the_sqlite_file_and_its_directories(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "there" / "store.db"
    migrate(f"sqlite:///{path}")
    assert path.exists() and current_revision(f"sqlite:///{path}") == HEAD


@pytest.mark.parametrize("revision", REVISIONS[:-1])
def test_a_store_at_an_earlier_revision_upgrades_and_the_api_reads_its_data(
    empty_url: str, revision: str
) -> None:
    upgrade(empty_url, revision)
    data = data_at(revision)
    insert(empty_url, data)

    migrate(empty_url)

    assert current_revision(empty_url) == HEAD
    assert_stored(empty_url, data)
    assert_the_api_reads(empty_url, data, revision)
    assert differences(empty_url) == []


# --- downgrading ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("revision", REVISIONS)
def test_a_downgrade_that_loses_nothing_runs_and_upgrading_again_restores_head(
    empty_url: str, revision: str, tmp_path: Path
) -> None:
    below = SCRIPTS.get_revision(revision).down_revision
    assert below is None or isinstance(below, str)
    data = data_at(below)  # nothing this revision added is used: the downgrade has nothing to lose
    if below is not None:
        upgrade(empty_url, below)
        insert(empty_url, data)
    upgrade(empty_url, revision)

    downgrade(empty_url, "-1")

    assert current_revision(empty_url) == below
    with another_database(empty_url, tmp_path) as fresh:
        if below is not None:
            upgrade(fresh, below)
        assert differences(empty_url, schema_at(fresh)) == [], "the schema differs from the revision's"
    assert_stored(empty_url, data)
    migrate(empty_url)
    assert_stored(empty_url, data)
    if below is not None:
        assert_the_api_reads(empty_url, data, below)
    assert differences(empty_url) == []


@pytest.mark.parametrize("revision", REVISIONS)
def test_a_downgrade_that_would_destroy_data_refuses_names_it_and_changes_nothing(
    empty_url: str, revision: str
) -> None:
    upgrade(empty_url, revision)
    data = data_at(revision)
    insert(empty_url, data)
    triggers = append_only_triggers(empty_url)

    with pytest.raises(DowngradeRefused) as refused:
        downgrade(empty_url, "-1")

    assert refused.value.revision == revision
    assert set(refused.value.losses) == RELEASES[revision].refused
    assert "Nothing was changed" in str(refused.value)
    assert current_revision(empty_url) == revision
    assert append_only_triggers(empty_url) == triggers
    assert_stored(empty_url, data)


# --- failing ------------------------------------------------------------------------------------------


FAILING_MIGRATION = '''"""A migration that fails after changing the schema."""
from alembic import op
import sqlalchemy as sa

revision = "9999"
down_revision = "{head}"


def upgrade() -> None:
    op.create_table("half_done", sa.Column("id", sa.Integer(), primary_key=True))
    with op.batch_alter_table("customer") as batch_op:
        batch_op.add_column(sa.Column("half_done", sa.Integer(), nullable=True))
    raise RuntimeError("the migration fails half-way")


def downgrade() -> None:
    pass
'''


def test_a_migration_that_fails_leaves_the_store_at_the_revision_it_started_from(
    empty_url: str, tmp_path: Path
) -> None:
    migrate(empty_url)
    scripts = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "9999_fails.py").write_text(FAILING_MIGRATION.format(head=HEAD))
    config = alembic_config(empty_url)
    config.set_main_option("script_location", str(scripts))

    with pytest.raises(RuntimeError, match="half-way"):
        command.upgrade(config, "head")

    assert current_revision(empty_url) == HEAD
    with connected(empty_url) as conn:
        assert "half_done" not in inspect(conn).get_table_names()
        assert "half_done" not in {c["name"] for c in inspect(conn).get_columns("customer")}
    assert differences(empty_url) == []
