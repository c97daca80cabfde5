"""Bad input through HTTP, with a worker running, on SQLite and PostgreSQL (architecture rule 8).

Every refusal has the right status and the error envelope `{"error": {"code", "message", "details"}}`
naming the field or the rule, and changes nothing: the rows of the store, the invoice's status and its
workflow history are the same before and after. No response is ever a 500 (checked on every response of
every client these tests open), and the server still answers at the end of each test.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from activities.db import reading, writing
from activities.directory import grant
from activities.ledger import verify_chain
from activities.models import Invoice
from tests.conftest import Stack, invoice_body
from workflows.invoice import InvoiceWorkflow
from workflows.types import Actor, ApproveCommand

COUNTED_TABLES = (
    "invoice",
    "invoice_line",
    "ledger_entry",
    "payment",
    "payment_allocation",
    "invoice_delivery",
)
INVOICES, PAYMENTS = "/api/v1/invoices", "/api/v1/payments"


# -- helpers -------------------------------------------------------------------------------------------


@dataclass
class Api:
    """Clients of the stack that record every 5xx they receive."""

    stack: Stack
    server_errors: list[str] = field(default_factory=list)

    async def _watch(self, response: httpx.Response) -> None:
        if response.status_code >= 500:
            await response.aread()
            request = response.request
            what = f"{request.method} {request.url}: {response.status_code} {response.text}"
            self.server_errors.append(what[:500])

    def _guard(self, client: httpx.AsyncClient) -> httpx.AsyncClient:
        client.event_hooks["response"].append(self._watch)
        return client

    async def as_(self, username: str) -> httpx.AsyncClient:
        return self._guard(await self.stack.client(username))

    def anonymous(self, **headers: str) -> httpx.AsyncClient:
        client = httpx.AsyncClient(base_url=self.stack.base_url, headers=headers, timeout=60)
        self.stack.opened.append(client)
        return self._guard(client)


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[Api]:
    guarded = Api(stack)
    yield guarded
    assert guarded.server_errors == [], "a client got a 5xx"
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as probe:
        assert (await probe.get("/healthz")).status_code == 200, "the server did not survive"


def refused(
    r: httpx.Response, http_status: int, code: str, /, *, field: str | None = None, **details: Any
) -> dict[str, Any]:
    """Assert the status and the error envelope; `field` must be named, `details` must match."""
    where = f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text[:500]}"
    assert r.status_code == http_status, where
    body = r.json()
    assert set(body) == {"error"}, where
    err: dict[str, Any] = body["error"]
    assert set(err) == {"code", "message", "details"}, where
    assert err["code"] == code, where
    assert isinstance(err["message"], str) and err["message"], where
    if field is not None:
        named = {err["details"].get("field")} | {f["field"] for f in err["details"].get("fields", [])}
        assert field in named, f"field {field!r} not named: {where}"
    for key, value in details.items():
        assert err["details"].get(key) == value, f"details.{key} != {value!r}: {where}"
    return err


async def snapshot(stack: Stack, *invoice_ids: str) -> dict[str, Any]:
    """Row counts of the store, and per invoice its read model and the length of its workflow history."""
    with reading(stack.store) as s:
        counts = {t: s.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in COUNTED_TABLES}  # noqa: S608
        invoices = {}
        for invoice_id in invoice_ids:
            inv = s.get(Invoice, invoice_id)
            assert inv is not None
            invoices[invoice_id] = (
                inv.status,
                inv.transition_seq,
                inv.amount_paid_minor,
                inv.total_minor,
                inv.workflow_id,
            )
    histories = {}
    for invoice_id, (*_, workflow_id) in invoices.items():
        handle = stack.temporal.get_workflow_handle(workflow_id)
        histories[invoice_id] = len([e async for e in handle.fetch_history_events()])
    return {"rows": counts, "invoices": invoices, "history_events": histories}


def line(
    quantity: Any = "1", unit_price: Any = "100.00", tax_rate: Any = "20", description: Any = "Work"
) -> dict[str, Any]:
    return {"description": description, "quantity": quantity, "unit_price": unit_price, "tax_rate": tax_rate}


async def create(client: httpx.AsyncClient, customer_id: str, **over: Any) -> dict[str, Any]:
    r = await client.post(INVOICES, json=invoice_body(customer_id, **over))
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def pending(api: Api, customer: str = "initech", **over: Any) -> dict[str, Any]:
    erp, preparer = await api.as_("erp"), await api.as_("preparer")
    inv = await create(erp, api.stack.customers[customer], **over)
    r = await preparer.post(f"{INVOICES}/{inv['id']}/submit")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def delivered(api: Api, **over: Any) -> dict[str, Any]:
    inv = await pending(api, **over)
    approver = await api.as_("approver")
    r = await approver.post(f"{INVOICES}/{inv['id']}/approve")
    assert r.status_code == 200, r.text
    body = await api.stack.wait_status(inv["id"], "submitted")
    assert body["status"] == "submitted", body
    return body


def grant_role(stack: Stack, username: str, role: str, entity: str = "ACME") -> None:
    with writing(stack.store) as s:
        grant(s, username, role, entity, "test")


# -- creation ------------------------------------------------------------------------------------------


def without(key: str) -> Callable[[str], dict[str, Any]]:
    return lambda customer: {k: v for k, v in invoice_body(customer).items() if k != key}


# (case, what to send, the field the refusal must name). What to send: raw bytes, a whole body built for
# the customer, or the fields that replace those of a good body.
BAD_CREATES: list[tuple[str, bytes | Callable[[str], dict[str, Any]] | dict[str, Any], str]] = [
    ("malformed JSON", b'{"external_id": "ERP-1", "lines": [', "body"),
    ("a JSON array, not an object", b"[1, 2, 3]", "body"),
    ("no fields at all", lambda _: {}, "external_id"),
    ("lines missing", without("lines"), "lines"),
    ("customer missing", without("customer_id"), "customer_id"),
    ("issue date missing", without("issue_date"), "issue_date"),
    (
        "a line without its price",
        {"lines": [{"description": "x", "quantity": "1", "tax_rate": "20"}]},
        "lines.0.unit_price",
    ),
    ("no lines", {"lines": []}, "lines"),
    ("an unknown field", {"discount": "10"}, "discount"),
    ("quantity as a JSON number", {"lines": [line(quantity=10)]}, "lines.0.quantity"),
    ("price as a JSON float", {"lines": [line(unit_price=125.5)]}, "lines.0.unit_price"),
    ("tax rate as a JSON number", {"lines": [line(tax_rate=20)]}, "lines.0.tax_rate"),
    ("negative quantity", {"lines": [line(quantity="-1")]}, "lines.0.quantity"),
    ("zero quantity", {"lines": [line(quantity="0")]}, "lines.0.quantity"),
    ("non-numeric quantity", {"lines": [line(quantity="ten")]}, "lines.0.quantity"),
    ("NaN quantity", {"lines": [line(quantity="NaN")]}, "lines.0.quantity"),
    ("infinite quantity", {"lines": [line(quantity="Infinity")]}, "lines.0.quantity"),
    ("quantity with 7 decimals", {"lines": [line(quantity="1.0000001")]}, "lines.0.quantity"),
    ("negative price", {"lines": [line(unit_price="-100.00")]}, "lines.0.unit_price"),
    ("non-numeric price", {"lines": [line(unit_price="12,50")]}, "lines.0.unit_price"),
    ("price with 7 decimals", {"lines": [line(unit_price="0.0000001")]}, "lines.0.unit_price"),
    ("zero prices only: a zero total", {"lines": [line(unit_price="0")]}, "lines"),
    ("tax rate over 100", {"lines": [line(tax_rate="100.01")]}, "lines.0.tax_rate"),
    ("negative tax rate", {"lines": [line(tax_rate="-5")]}, "lines.0.tax_rate"),
    ("tax rate with 5 decimals", {"lines": [line(tax_rate="19.00001")]}, "lines.0.tax_rate"),
    ("the second line bad", {"lines": [line(), line(quantity="-2")]}, "lines.1.quantity"),
    # The largest quantity times the largest price: ~1e23 cents overflows a 64-bit column. Once refused at
    # the door; before, the workflow's recording activity retried forever and the caller got a 500.
    (
        "a total beyond any column",
        {"lines": [line(quantity="999999999", unit_price="999999999999")]},
        "lines",
    ),
    # PostgreSQL cannot store NUL in text: the recording activity retried forever (the call hung, then 500).
    (
        "a NUL character in a description",
        {"lines": [line(description="Consulting\u0000")]},
        "lines.0.description",
    ),
    ("a NUL character in the PO number", {"po_number": "PO\u00004711"}, "po_number"),
    ("an unknown currency", {"currency": "ZZZ"}, "currency"),
    ("a currency without a minor unit", {"currency": "XAU"}, "currency"),
    ("a currency not in upper case", {"currency": "eur"}, "currency"),
    ("an impossible date", {"issue_date": "2026-02-30"}, "issue_date"),
    # The start of the day in the entity's zone, and the due date after the terms, overflowed: 500s.
    ("the first day Python knows", {"issue_date": "0001-01-01"}, "issue_date"),
    ("the last day Python knows", {"issue_date": "9999-12-31"}, "issue_date"),
    ("a date as a number", {"issue_date": 20261101}, "issue_date"),
    (
        "a total beyond any column in the entity's currency",
        {
            "currency": "USD",
            "exchange_rate": "999999999",
            "lines": [line(quantity="999999", unit_price="999999999", tax_rate="0")],
        },
        "exchange_rate",
    ),
    ("a due date before the issue date", {"issue_date": "2026-11-02", "due_date": "2026-11-01"}, "due_date"),
    ("an external id of 101 characters", {"external_id": "E" * 101}, "external_id"),
    ("an external id with spaces", {"external_id": "ERP 1"}, "external_id"),
]


# Rules the schema cannot state (they relate fields to each other): their own codes, not invalid_input.
BETWEEN_FIELDS = {
    "zero prices only: a zero total": "invalid_amount",
    "a total beyond any column": "invalid_amount",
    "a due date before the issue date": "invalid_range",
    "a total beyond any column in the entity's currency": "invalid_amount",
}


async def test_bad_invoice_bodies_get_422_naming_the_field_and_change_nothing(api: Api) -> None:
    erp = await api.as_("erp")
    customer = api.stack.customers["initech"]
    before = await snapshot(api.stack)
    for case, over, field_name in BAD_CREATES:
        if isinstance(over, bytes):
            r = await erp.post(INVOICES, content=over, headers={"content-type": "application/json"})
        elif callable(over):
            r = await erp.post(INVOICES, json=over(customer))
        else:
            r = await erp.post(INVOICES, json=invoice_body(customer, **over))
        try:
            refused(r, 422, BETWEEN_FIELDS.get(case, "invalid_input"), field=field_name)
        except AssertionError as exc:
            raise AssertionError(f"case {case!r}: {exc}") from None

    # An unknown customer, and one of another legal entity, are refused alike.
    preparer = await api.as_("preparer")
    r = await erp.post(INVOICES, json=invoice_body(str(uuid.uuid4())))
    refused(r, 422, "unknown_reference", field="customer_id")
    # Hooli is a customer of GLOBEX; the preparer works for ACME only. Unknown and not-yours look alike.
    r = await preparer.post(INVOICES, json=invoice_body(api.stack.customers["hooli"], currency="USD"))
    err = refused(r, 422, "unknown_reference", field="customer_id")
    assert "GLOBEX" not in err["message"]
    assert await snapshot(api.stack) == before


async def test_a_body_over_the_limit_gets_413_whether_declared_or_streamed_and_the_server_keeps_serving(
    api: Api,
) -> None:
    erp = await api.as_("erp")
    before = await snapshot(api.stack)
    ten_mb = 10 * 1024 * 1024
    r = await erp.post(
        INVOICES, content=b"{" + b" " * ten_mb + b"}", headers={"content-type": "application/json"}
    )
    refused(r, 413, "body_too_large")

    async def stream() -> AsyncIterator[bytes]:  # no Content-Length: chunked transfer encoding
        yield b'{"external_id": "ERP-BIG", "lines": [{"description": "'
        for _ in range(ten_mb // 65536):
            yield b"x" * 65536
        yield b'"}]}'

    r = await erp.post(INVOICES, content=stream(), headers={"content-type": "application/json"})
    refused(r, 413, "body_too_large")
    assert await snapshot(api.stack) == before
    # The server survives and serves the next, ordinary request.
    await create(erp, api.stack.customers["initech"])


# -- text that looks like SQL -------------------------------------------------------------------------

SQLISH = "Robert'); DROP TABLE invoice_line; --"


async def test_sql_looking_text_is_stored_verbatim_or_refused_by_the_external_id_pattern(api: Api) -> None:
    erp, approver, supervisor = await api.as_("erp"), await api.as_("approver"), await api.as_("supervisor")
    customer = api.stack.customers["initech"]
    before = await snapshot(api.stack)
    for external_id in ("ERP-1'; DROP TABLE invoice; --", "1 OR 1=1", "' OR '1'='1"):
        r = await erp.post(INVOICES, json=invoice_body(customer, external_id=external_id))
        refused(r, 422, "invalid_input", field="external_id")
    assert await snapshot(api.stack) == before

    inv = await create(erp, customer, po_number="' OR '1'='1", lines=[line(description=SQLISH)])
    assert inv["po_number"] == "' OR '1'='1"
    assert inv["lines"][0]["description"] == SQLISH
    preparer = await api.as_("preparer")
    assert (await preparer.post(f"{INVOICES}/{inv['id']}/submit")).status_code == 200
    reason = "x'); DELETE FROM ledger_entry WHERE ('1'='1"
    r = await approver.post(f"{INVOICES}/{inv['id']}/reject", json={"reason": reason})
    assert r.status_code == 200, r.text
    history = (await supervisor.get(f"{INVOICES}/{inv['id']}/history")).json()
    assert [h["event"] for h in history] == ["create", "submit", "reject"]
    assert history[-1]["reason"] == reason
    fetched = (await supervisor.get(f"{INVOICES}/{inv['id']}")).json()
    assert fetched["lines"][0]["description"] == SQLISH and fetched["po_number"] == "' OR '1'='1"
    with reading(api.stack.store) as s:
        assert verify_chain(s, "ACME").intact

    # In filters and paths the same strings are only values: nothing found, nothing broken.
    r = await supervisor.get(INVOICES, params={"customer_id": "' OR 1=1 --"})
    assert r.status_code == 200 and r.json()["items"] == []
    r = await supervisor.get(f"{INVOICES}/' OR '1'='1")
    refused(r, 404, "not_found")


# -- who may ask --------------------------------------------------------------------------------------


async def test_unknown_invoices_are_404_and_another_entitys_invoice_looks_unknown(api: Api) -> None:
    erp, preparer, approver = await api.as_("erp"), await api.as_("preparer"), await api.as_("approver")
    unknown = str(uuid.uuid4())
    before = await snapshot(api.stack)
    refused(await approver.get(f"{INVOICES}/{unknown}"), 404, "not_found")
    refused(await approver.get(f"{INVOICES}/{unknown}/history"), 404, "not_found")
    refused(await approver.post(f"{INVOICES}/{unknown}/approve"), 404, "not_found")
    refused(await preparer.post(f"{INVOICES}/{unknown}/submit"), 404, "not_found")
    refused(await preparer.patch(f"{INVOICES}/{unknown}", json={"po_number": "X"}), 404, "not_found")
    refused(await approver.get(f"{PAYMENTS}/{unknown}"), 404, "not_found")
    assert await snapshot(api.stack) == before

    globex = await create(erp, api.stack.customers["hooli"], currency="USD")
    before = await snapshot(api.stack, globex["id"])
    refused(await preparer.get(f"{INVOICES}/{globex['id']}"), 404, "not_found")
    refused(await preparer.post(f"{INVOICES}/{globex['id']}/submit"), 404, "not_found")
    assert await snapshot(api.stack, globex["id"]) == before


async def test_requests_without_a_valid_token_get_401(api: Api) -> None:
    inv = await pending(api)
    secret = api.stack.settings.secret_key
    expired = jwt.encode({"sub": "approver", "iat": 0, "exp": 1}, secret, algorithm="HS256")
    forged = jwt.encode({"sub": "approver", "exp": 4102444800}, "not-the-secret-" * 3, algorithm="HS256")
    ghost = jwt.encode({"sub": "ghost", "exp": 4102444800}, secret, algorithm="HS256")
    unsigned = jwt.encode({"sub": "approver", "exp": 4102444800}, None, algorithm="none")
    before = await snapshot(api.stack, inv["id"])
    clients = {
        "no token": api.anonymous(),
        "not a JWT": api.anonymous(Authorization="Bearer not-a-token"),
        "expired": api.anonymous(Authorization=f"Bearer {expired}"),
        "signed with another key": api.anonymous(Authorization=f"Bearer {forged}"),
        "unsigned (alg none)": api.anonymous(Authorization=f"Bearer {unsigned}"),
        "an unknown user": api.anonymous(Authorization=f"Bearer {ghost}"),
        "another scheme": api.anonymous(Authorization="Basic YXBwcm92ZXI6eA=="),
    }
    for case, client in clients.items():
        for r in (
            await client.get(INVOICES),
            await client.post(f"{INVOICES}/{inv['id']}/approve"),
            await client.post(INVOICES, json=invoice_body(api.stack.customers["initech"])),
        ):
            try:
                refused(r, 401, "unauthenticated")
            except AssertionError as exc:
                raise AssertionError(f"case {case!r}: {exc}") from None
            assert r.headers.get("www-authenticate") == "Bearer"
    r = await api.anonymous().post("/api/v1/auth/token", data={"username": "approver", "password": "wrong"})
    refused(r, 401, "unauthenticated")
    assert await snapshot(api.stack, inv["id"]) == before


async def test_a_role_without_the_permission_gets_403_naming_the_action(api: Api) -> None:
    inv = await pending(api)
    collector, cashier, approver, preparer = [
        await api.as_(u) for u in ("collector", "cashier", "approver", "preparer")
    ]
    before = await snapshot(api.stack, inv["id"])
    refused(
        await collector.post(f"{INVOICES}/{inv['id']}/approve"), 403, "forbidden", action="invoice:approve"
    )
    url = f"{INVOICES}/{inv['id']}"
    refused(
        await collector.post(f"{url}/reject", json={"reason": "no"}),
        403,
        "forbidden",
        action="invoice:reject",
    )
    refused(
        await approver.post(f"{url}/void", json={"reason": "dup"}), 403, "forbidden", action="invoice:void"
    )
    refused(await approver.patch(url, json={"po_number": "PO-1"}), 403, "forbidden", action="invoice:edit")
    refused(
        await cashier.post(INVOICES, json=invoice_body(api.stack.customers["initech"])),
        403,
        "forbidden",
        action="invoice:create",
    )
    refused(
        await preparer.post(
            PAYMENTS,
            json={
                "customer_id": api.stack.customers["initech"],
                "amount": "10.00",
                "currency": "EUR",
                "received_on": "2026-11-20",
                "reference": "BANK-1",
                "allocations": [{"invoice_id": inv["id"], "amount": "10.00"}],
            },
        ),
        403,
        "forbidden",
        action="payment:record",
    )
    assert await snapshot(api.stack, inv["id"]) == before
    assert before["invoices"][inv["id"]][0] == "pending_approval"


async def test_maker_checker_refuses_the_preparer_the_erp_creator_and_an_editor_with_403_naming_the_rule(
    api: Api,
) -> None:
    stack = api.stack
    # Each of them also holds an approving role, so that Casbin allows and only maker-checker refuses.
    grant_role(stack, "preparer", "ar_approver")
    grant_role(stack, "erp", "ar_approver")
    grant_role(stack, "approver2", "ar_preparer")
    erp, preparer, approver2, approver = [
        await api.as_(u) for u in ("erp", "preparer", "approver2", "approver")
    ]

    own = await create(preparer, stack.customers["initech"])
    assert (await preparer.post(f"{INVOICES}/{own['id']}/submit")).status_code == 200
    from_erp = await pending(api)
    edited = await create(erp, stack.customers["initech"])
    r = await approver2.patch(f"{INVOICES}/{edited['id']}", json={"po_number": "PO-4712"})
    assert r.status_code == 200, r.text
    assert (await preparer.post(f"{INVOICES}/{edited['id']}/submit")).status_code == 200

    ids = (own["id"], from_erp["id"], edited["id"])
    before = await snapshot(stack, *ids)
    refused(
        await preparer.post(f"{INVOICES}/{own['id']}/approve"),
        403,
        "segregation_of_duties",
        rule="preparer_cannot_approve",
    )
    refused(
        await erp.post(f"{INVOICES}/{from_erp['id']}/approve"),
        403,
        "segregation_of_duties",
        rule="preparer_cannot_approve",
    )
    refused(
        await approver2.post(f"{INVOICES}/{edited['id']}/approve", json={"comment": "fine"}),
        403,
        "segregation_of_duties",
        rule="editor_cannot_approve",
    )
    assert await snapshot(stack, *ids) == before
    assert {v[0] for v in before["invoices"].values()} == {"pending_approval"}

    # The workflow is the last line (rule 3): an approval that bypasses the API is refused there too,
    # and the refused update leaves no trace in the workflow history.
    handle = stack.temporal.get_workflow_handle(from_erp["workflow_id"])
    with pytest.raises(WorkflowUpdateFailedError) as info:
        actor = Actor("erp", ["ar_approver"], "p, ar_approver, *, invoice:approve")
        await handle.execute_update(InvoiceWorkflow.approve, ApproveCommand(actor))
    assert isinstance(info.value.cause, ApplicationError) and info.value.cause.type == "segregation_of_duties"
    assert await snapshot(stack, *ids) == before

    # Someone else may approve.
    assert (await approver.post(f"{INVOICES}/{edited['id']}/approve")).status_code == 200
    assert (await stack.wait_status(edited["id"], "submitted"))["status"] == "submitted"


# -- the state machine --------------------------------------------------------------------------------


async def test_impossible_transitions_get_409_naming_the_current_status_and_change_nothing(api: Api) -> None:
    erp, preparer, approver = await api.as_("erp"), await api.as_("preparer"), await api.as_("approver")
    draft = await create(erp, api.stack.customers["initech"])
    waiting = await pending(api)
    sent = await delivered(api)
    ids = (draft["id"], waiting["id"], sent["id"])
    before = await snapshot(api.stack, *ids)

    err = refused(
        await approver.post(f"{INVOICES}/{draft['id']}/approve"), 409, "transition_refused", status="draft"
    )
    assert "draft" in err["message"]
    refused(
        await preparer.post(f"{INVOICES}/{waiting['id']}/submit"),
        409,
        "transition_refused",
        status="pending_approval",
    )
    refused(
        await approver.post(f"{INVOICES}/{draft['id']}/reject", json={"reason": "no"}),
        409,
        "transition_refused",
        status="draft",
    )
    err = refused(
        await preparer.post(f"{INVOICES}/{sent['id']}/void", json={"reason": "duplicate"}),
        409,
        "transition_refused",
        status="submitted",
    )
    assert "submitted" in err["message"]
    refused(
        await preparer.patch(f"{INVOICES}/{sent['id']}", json={"po_number": "PO-9"}),
        409,
        "transition_refused",
        status="submitted",
    )
    # A reason is required to reject and to void.
    refused(
        await approver.post(f"{INVOICES}/{waiting['id']}/reject", json={}),
        422,
        "invalid_input",
        field="reason",
    )
    refused(
        await approver.post(f"{INVOICES}/{waiting['id']}/reject", json={"reason": "   "}),
        422,
        "invalid_input",
        field="reason",
    )
    refused(await approver.post(f"{INVOICES}/{waiting['id']}/reject"), 422, "invalid_input")
    refused(
        await preparer.post(f"{INVOICES}/{draft['id']}/void", json={"reason": ""}),
        422,
        "invalid_input",
        field="reason",
    )
    assert await snapshot(api.stack, *ids) == before

    # A closed workflow (void) answers 409 too, not a 5xx.
    r = await preparer.post(f"{INVOICES}/{draft['id']}/void", json={"reason": "entered twice"})
    assert r.status_code == 200 and r.json()["status"] == "void", r.text
    before = await snapshot(api.stack, draft["id"])
    refused(await preparer.post(f"{INVOICES}/{draft['id']}/submit"), 409, "transition_refused", status="void")
    assert await snapshot(api.stack, draft["id"]) == before


# -- payments -----------------------------------------------------------------------------------------


async def test_payments_that_cannot_apply_are_refused_and_apply_nothing(api: Api) -> None:
    erp, cashier = await api.as_("erp"), await api.as_("cashier")
    customer = api.stack.customers["initech"]
    sent = await delivered(api)  # 1872.66 EUR due
    draft = await create(erp, customer)
    ids = (sent["id"], draft["id"])

    def payment(amount: str, *allocations: tuple[str, str], currency: str = "EUR") -> dict[str, Any]:
        return {
            "customer_id": customer,
            "amount": amount,
            "currency": currency,
            "received_on": "2026-11-20",
            "reference": "BANK-77",
            "allocations": [{"invoice_id": i, "amount": a} for i, a in allocations],
        }

    before = await snapshot(api.stack, *ids)
    refused(
        await cashier.post(PAYMENTS, json=payment("100.00", (sent["id"], "150.00"))),
        422,
        "over_allocation",
        field="allocations",
    )
    refused(
        await cashier.post(PAYMENTS, json=payment("5000.00", (sent["id"], "1872.67"))),
        422,
        "over_allocation",
        field="allocations.0.amount",
    )
    refused(
        await cashier.post(PAYMENTS, json=payment("100.00", (sent["id"], "100.00"), currency="GBP")),
        422,
        "currency_mismatch",
        field="allocations.0.invoice_id",
    )
    err = refused(
        await cashier.post(PAYMENTS, json=payment("100.00", (draft["id"], "100.00"))),
        409,
        "transition_refused",
        status="draft",
    )
    assert "draft" in err["message"]
    # One bad allocation refuses the whole receipt: the good one before it is not applied either.
    refused(
        await cashier.post(PAYMENTS, json=payment("200.00", (sent["id"], "100.00"), (draft["id"], "100.00"))),
        409,
        "transition_refused",
        status="draft",
    )
    twice = payment("100.00", (sent["id"], "50.00"), (sent["id"], "50.00"))
    refused(
        await cashier.post(PAYMENTS, json=twice), 422, "inconsistent_fields", field="allocations.1.invoice_id"
    )
    # More places than the currency has: a rule between the amount and the currency.
    refused(
        await cashier.post(PAYMENTS, json=payment("10.001", (sent["id"], "10.00"))),
        422,
        "invalid_amount",
        field="amount",
    )
    refused(
        await cashier.post(PAYMENTS, json=payment("10.00", (sent["id"], "0"))),
        422,
        "invalid_input",
        field="allocations.0.amount",
    )
    refused(
        await cashier.post(PAYMENTS, json=payment("10.00", (str(uuid.uuid4()), "10.00"))),
        422,
        "unknown_reference",
        field="allocations.0.invoice_id",
    )
    refused(
        await cashier.post(PAYMENTS, json={**payment("10.00", (sent["id"], "10.00")), "amount": 10}),
        422,
        "invalid_input",
        field="amount",
    )
    assert await snapshot(api.stack, *ids) == before


# -- lists --------------------------------------------------------------------------------------------


async def test_a_page_of_the_invoice_list_costs_the_same_queries_whatever_its_size(api: Api) -> None:
    erp, supervisor = await api.as_("erp"), await api.as_("supervisor")
    created = [await create(erp, api.stack.customers["initech"]) for _ in range(6)]
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        statements.append(statement)

    async def page_of(limit: int) -> tuple[list[dict[str, Any]], int]:
        statements.clear()
        event.listen(Engine, "before_cursor_execute", count)
        try:
            r = await supervisor.get(INVOICES, params={"limit": limit})
        finally:
            event.remove(Engine, "before_cursor_execute", count)
        assert r.status_code == 200, r.text
        return r.json()["items"], len(statements)

    one, queries_for_one = await page_of(1)
    six, queries_for_six = await page_of(6)
    assert len(one) == 1 and len(six) == 6
    assert queries_for_six == queries_for_one, "the list reads lines or portal passes invoice by invoice"
    # What the page shows of each invoice is what the invoice's own page shows.
    for item in six:
        alone = (await supervisor.get(f"{INVOICES}/{item['id']}")).json()
        assert item["lines"] == alone["lines"] and len(item["lines"]) == 2
        assert item["portal"] == alone["portal"] is None
    assert {i["id"] for i in six} == {i["id"] for i in created}


async def test_the_invoice_list_pages_with_a_cursor_filters_by_status_and_customer_and_refuses_bad_parameters(
    api: Api,
) -> None:
    erp, preparer, supervisor = await api.as_("erp"), await api.as_("preparer"), await api.as_("supervisor")
    initech, umbrella = api.stack.customers["initech"], api.stack.customers["umbrella"]
    created = [await create(erp, initech) for _ in range(5)]
    created.append(await create(erp, umbrella, currency="GBP", exchange_rate="1.15"))
    for inv in created[:2]:
        assert (await preparer.post(f"{INVOICES}/{inv['id']}/submit")).status_code == 200
    await create(erp, api.stack.customers["hooli"], currency="USD")  # GLOBEX: not the supervisor's to see

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        r = await supervisor.get(INVOICES, params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) <= 2
        seen += [i["id"] for i in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert sorted(seen) == sorted(i["id"] for i in created) and len(seen) == len(set(seen))
    assert seen == [i["id"] for i in sorted(created, key=lambda i: (i["created_at"], i["id"]), reverse=True)]

    r = await supervisor.get(INVOICES, params={"status": "pending_approval"})
    assert {i["id"] for i in r.json()["items"]} == {created[0]["id"], created[1]["id"]}
    r = await supervisor.get(INVOICES, params={"customer_id": umbrella})
    assert [i["id"] for i in r.json()["items"]] == [created[5]["id"]]
    r = await supervisor.get(INVOICES, params={"customer_id": initech, "status": "draft", "limit": 500})
    assert {i["id"] for i in r.json()["items"]} == {i["id"] for i in created[2:5]}

    not_issued = [
        "not base64 at all!",
        "bm90IGpzb24",  # base64 of "not json"
        "W251bGwsIG51bGxd",  # [null, null]
        "e30=",  # {}
        "WzEsMl0=",  # [1, 2]
        "WyJub3QgYSBkYXRlIiwieCJd",  # ["not a date", "x"]
        "8J+SqQ==",  # a lone emoji
    ]
    before = await snapshot(api.stack)
    for cursor in not_issued:
        refused(
            await supervisor.get(INVOICES, params={"cursor": cursor}), 422, "invalid_cursor", field="cursor"
        )
    bad_params: list[tuple[dict[str, str | int], str]] = [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "lost"}, "status"),
        ({"cursor": "A" * 501}, "cursor"),
        ({"customer_id": "C" * 37}, "customer_id"),
    ]
    for params, name in bad_params:
        err = refused(await supervisor.get(INVOICES, params=params), 422, "invalid_input")
        assert any(name in f["field"] for f in err["details"]["fields"]), err
    assert await snapshot(api.stack) == before
