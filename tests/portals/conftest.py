"""The portal simulator served for real over HTTP (uvicorn on 127.0.0.1, a free port), a receiver for
the statuses it pushes, the three HTTP adapters configured against it, and invoice documents that match
(or, on purpose, do not match) its purchase orders.

One simulator serves the session; each test loads a fresh scenario into it (a manual clock, moved only by
/_sim/advance), so that no test sees another's invoices, tokens, buckets or faults.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn

from activities.documents import DocumentLine, InvoiceDocument, Party
from activities.money import exponent, line_amounts, tax_by_rate
from activities.portals.base import PortalAdapter, StatusUpdate, Submission, SubmitReceipt, TransientError
from activities.portals.config import portals_from_mapping
from activities.portals.coupa import CoupaAdapter
from activities.portals.cxml import CxmlAdapter
from activities.portals.peppol import PeppolAdapter
from portal_sim import create_app
from tests.conftest import SHARED, free_port

T = TypeVar("T")

CXML_DATA = SHARED / "data" / "cxml"
PEPPOL_DATA = SHARED / "data" / "einvoice" / "peppol-bis3"
NO_SHARED = (
    "the official cXML and Peppol reference files live in ../shared/data, which this checkout does not have "
    "(a clone without ../shared); CI has it"
)

# Credentials of the simulated portal's clients. Test values, but the secret-leak test looks for them.
CXML_SECRET = "cxml-shared-secret-4b1d"
COUPA_SECRET = "coupa-client-secret-93fe"
PEPPOL_KEY = "peppol-api-key-7c2a"
PUSH_SECRET = "buyer-push-secret-51aa"
WEBHOOK_SECRET = "peppol-webhook-secret-e0c4"
SECRETS = (CXML_SECRET, COUPA_SECRET, PEPPOL_KEY, PUSH_SECRET, WEBHOOK_SECRET)

SUPPLIER = Party(
    name="Nordlicht Maschinenbau GmbH",
    country="DE",
    vat_id="DE811569869",
    street="Am Wall 120",
    city="Bremen",
    postal_code="28195",
    endpoint_scheme="9930",
    endpoint_id="DE811569869",
    company_id="HRB 31745",
    contact_name="Debitorenbuchhaltung",
    telephone="+49 421 3360 120",
    email="debitoren@nordlicht.example",
)
CUSTOMER = Party(
    name="Initech GmbH",
    country="DE",
    vat_id="DE129273398",
    street="Lindenstraße 5",
    city="Hamburg",
    postal_code="20095",
    endpoint_scheme="0088",
    endpoint_id="4000001000005",
    company_id="HRB 12345",
    email="ap@initech.example",
    contact_name="Accounts Payable",
)
OTHER_ENTITY = replace(CUSTOMER, name="Initech Holding AG", vat_id="DE813495425")
SUPPLIER_ID = "9930:DE811569869"
CUSTOMER_ID = "0088:4000001000005"
START = "2026-03-02T09:00:00+00:00"

PURCHASE_ORDERS = [
    {
        "number": "PO-1001",
        "currency": "EUR",
        "bill_to": {"name": CUSTOMER.name, "vat_id": CUSTOMER.vat_id},
        "lines": [
            {
                "line": 1,
                "item": "WIDGET",
                "description": "Widget",
                "quantity": "10",
                "unit_price": "12.50",
                "tax_rate": "19",
            },
            {
                "line": 2,
                "item": "INSTALL",
                "description": "Installation",
                "quantity": "5",
                "unit_price": "80.00",
                "tax_rate": "19",
            },
        ],
    }
]

DAY = 86400.0


def scenario(receiver: str, **over: Any) -> dict[str, Any]:
    """The tests' buyer: a manual clock, generous rate limits, every client pushing to `receiver`."""
    data: dict[str, Any] = {
        "name": "tests",
        "clock": "manual",
        "start": START,
        "delays": {
            "in_process": 60,
            "review": 3600,
            "payment_scheduled": DAY,
            "paid": 2 * DAY,
            "query_resolution": 7200,
        },
        "rate_limit": {"capacity": 1000, "refill_per_second": 100},
        "cxml": {
            "buyer_identity": "AN-INITECH",
            "buyer_shared_secret": PUSH_SECRET,
            "clients": [
                {"identity": "AN-NORDLICHT", "shared_secret": CXML_SECRET, "callback_url": f"{receiver}/cxml"}
            ],
        },
        "coupa": {
            "token_lifetime_seconds": 3600,
            "clients": [{"client_id": "nordlicht", "client_secret": COUPA_SECRET}],
        },
        "peppol": {
            "receivers": [CUSTOMER_ID],
            "clients": [
                {
                    "api_key": PEPPOL_KEY,
                    "participant_id": SUPPLIER_ID,
                    "callback_url": f"{receiver}/peppol",
                    "webhook_secret": WEBHOOK_SECRET,
                }
            ],
        },
        "purchase_orders": PURCHASE_ORDERS,
    }
    data.update(over)
    return data


# -- servers --------------------------------------------------------------------------------------------


class ThreadedUvicorn:
    """uvicorn in a thread of this process, started and stopped by the fixture that owns it."""

    def __init__(self, app: Any, port: int) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{port}", daemon=True)
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> ThreadedUvicorn:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class PushReceiver:
    """Our side of the pushes: an HTTP server that keeps what it is sent and answers `status`."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.status = 200
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.received.append(Received(self.path, dict(self.headers.items()), body))
                    status = receiver.status
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="push-receiver", daemon=True)

    def bodies(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def clear(self) -> None:
        with self.lock:
            self.received.clear()
            self.status = 200


@pytest.fixture(scope="session")
def receiver() -> Iterator[PushReceiver]:
    push = PushReceiver()
    push.thread.start()
    yield push
    push.server.shutdown()
    push.server.server_close()


@pytest.fixture(scope="session")
def sim_server() -> Iterator[ThreadedUvicorn]:
    with ThreadedUvicorn(create_app(tick_seconds=0.05), free_port()) as server:
        yield server


@dataclass
class Sim:
    """The running simulator, through its control API."""

    url: str
    http: httpx.Client

    def control(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, f"{self.url}/_sim/{path}", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    def load(self, data: dict[str, Any]) -> None:
        self.control("POST", "scenario", data)

    def advance(self, seconds: float) -> dict[str, Any]:
        result: dict[str, Any] = self.control("POST", "advance", {"seconds": seconds})
        return result

    def faults(self, **faults: Any) -> None:
        self.control("POST", "faults", faults)

    def invoices(self, **filters: str) -> list[dict[str, Any]]:
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        found: list[dict[str, Any]] = self.control("GET", f"invoices?{query}")
        return found

    def requests(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.control("GET", "requests")
        return found


@pytest.fixture
def sim(sim_server: ThreadedUvicorn, receiver: PushReceiver) -> Iterator[Sim]:
    receiver.clear()
    with httpx.Client(timeout=30) as http:
        portal = Sim(sim_server.url, http)
        portal.load(scenario(receiver.url))
        yield portal


def portal_configs(base: str, *, timeout: float = 10.0) -> dict[str, Any]:
    """The three portals as the worker's configuration names them (secrets given as env: references)."""
    environ = {
        "T_CXML_SECRET": CXML_SECRET,
        "T_COUPA_SECRET": COUPA_SECRET,
        "T_PEPPOL_KEY": PEPPOL_KEY,
        "T_PUSH_SECRET": PUSH_SECRET,
        "T_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    return portals_from_mapping(
        {
            "initech-ariba": {
                "channel": "cxml",
                "url": f"{base}/cxml",
                "from_identity": "AN-NORDLICHT",
                "to_identity": "AN-INITECH",
                "shared_secret": "env:T_CXML_SECRET",
                "push_shared_secret": "env:T_PUSH_SECRET",
                "timeout_seconds": timeout,
            },
            "initech-coupa": {
                "channel": "coupa",
                "base_url": f"{base}/coupa",
                "client_id": "nordlicht",
                "client_secret": "env:T_COUPA_SECRET",
                "timeout_seconds": timeout,
            },
            "initech-peppol": {
                "channel": "peppol",
                "base_url": base,
                "api_key": "env:T_PEPPOL_KEY",
                "webhook_secret": "env:T_WEBHOOK_SECRET",
                "follow_up": "push",
                "timeout_seconds": timeout,
            },
        },
        environ,
    )


def make_adapter(channel: str, base: str, *, timeout: float = 10.0) -> PortalAdapter:
    configs = portal_configs(base, timeout=timeout)
    if channel == "cxml":
        return CxmlAdapter("initech-ariba", configs["initech-ariba"])
    if channel == "coupa":
        return CoupaAdapter("initech-coupa", configs["initech-coupa"])
    return PeppolAdapter("initech-peppol", configs["initech-peppol"])


# -- documents ------------------------------------------------------------------------------------------

LineSpec = tuple[str, str, str, str, str]  # item, description, quantity, unit price, tax rate
WIDGETS: LineSpec = ("WIDGET", "Widget", "10", "12.50", "19")


def invoice(
    number: str = "INV-2026-0001",
    *,
    po: str = "PO-1001",
    lines: tuple[LineSpec, ...] = (WIDGETS,),
    customer: Party = CUSTOMER,
    kind: str = "invoice",
    preceding: str = "",
) -> InvoiceDocument:
    """An invoice (or credit note) to Initech, totals computed as Cashcycle computes them."""
    doc_lines = []
    for no, (item, description, quantity, price, rate) in enumerate(lines, start=1):
        amounts = line_amounts(Decimal(quantity), Decimal(price), Decimal(rate), "EUR")
        doc_lines.append(
            DocumentLine(no, description, quantity, price, amounts.net_minor, rate, item_id=item)
        )
    subtotal = sum(ln.net_minor for ln in doc_lines)
    tax = sum(tax_by_rate((Decimal(ln.tax_rate), ln.net_minor) for ln in doc_lines).values())
    assert exponent("EUR") == 2
    return InvoiceDocument(
        kind="credit_note" if kind == "credit_note" else "invoice",
        id=f"inv-{number}",
        number=number,
        issue_date="2026-03-02",
        due_date="2026-04-01",
        currency="EUR",
        supplier=SUPPLIER,
        customer=customer,
        lines=tuple(doc_lines),
        subtotal_minor=subtotal,
        tax_total_minor=tax,
        total_minor=subtotal + tax,
        po_number=po,
        buyer_reference="991-01234-44",  # the buyer's routing id (a Leitweg-ID: German buyers want one)
        payment_terms="Net 30 days",
        payee_iban="DE89370400440532013000",
        preceding_invoice=preceding,
    )


def ubl_of(doc: InvoiceDocument) -> bytes:
    """The Peppol BIS rendering of activities.einvoice (skips when that module is not there yet)."""
    einvoice = pytest.importorskip("activities.einvoice", reason="activities.einvoice renders UBL for Peppol")
    data: bytes = einvoice.render_ubl(doc)
    return data


def submission(doc: InvoiceDocument, submission_pass: int = 1, channel: str = "") -> Submission:
    return Submission(doc.id, submission_pass, doc, ubl_of(doc) if channel == "peppol" else b"")


@dataclass
class Harness:
    """One adapter against the simulator, with the two ways statuses come back."""

    channel: str
    adapter: PortalAdapter
    sim: Sim
    receiver: PushReceiver
    pushed_seen: int = 0
    cursor: datetime | None = None
    seen: set[str] = field(default_factory=set)

    def submit(self, doc: InvoiceDocument, submission_pass: int = 1) -> SubmitReceipt:
        return self.adapter.submit(submission(doc, submission_pass, self.channel))

    def statuses(self, advance: float = 0.0) -> list[StatusUpdate]:
        """Move the portal's clock, then collect what it says: pushes for cXML and Peppol (parsed with
        parse_push), polling for Coupa."""
        self.sim.advance(advance)
        if self.channel == "coupa":
            found = self.adapter.poll(self.cursor)
            if found:
                self.cursor = max(u.at for u in found)
        else:
            path = "/cxml" if self.channel == "cxml" else "/peppol"
            pushed = self.receiver.bodies(path)[self.pushed_seen :]
            self.pushed_seen += len(pushed)
            found = [u for r in pushed for u in self.adapter.parse_push(r.body, r.headers)]
        fresh = [u for u in found if u.update_id not in self.seen]
        self.seen.update(u.update_id for u in fresh)
        return fresh


@pytest.fixture(params=["cxml", "coupa", "peppol"])
def harness(request: pytest.FixtureRequest, sim: Sim, receiver: PushReceiver) -> Iterator[Harness]:
    adapter = make_adapter(request.param, sim.url)
    try:
        yield Harness(request.param, adapter, sim, receiver)
    finally:
        adapter.close()


def with_backoff(call: Callable[[], T], *, sim: Sim | None = None, attempts: int = 8) -> tuple[T, int]:
    """What Temporal's retry policy does for a TransientError: wait (Retry-After when given, else an
    exponential backoff from 50 ms) and call again. The simulator's clock is moved by the wait too, as
    its rate limiter runs on it. Returns the result and the number of transient failures survived."""
    delay = 0.05
    for failures in range(attempts):
        try:
            return call(), failures
        except TransientError as exc:
            wait = exc.retry_after if exc.retry_after is not None else delay
            if sim is not None:
                sim.advance(wait)
            time.sleep(min(wait, 0.2))
            delay *= 2
    raise AssertionError(f"still failing after {attempts} attempts")
