"""The simulator as a service: started by the CLI as its own process, running on real time for the demo,
retrying pushes our side refused, keeping its books straight under concurrent clients."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from functools import partial
from pathlib import Path

import httpx
import pytest

from activities.portals.base import PermanentError, PortalAdapter, Submission
from activities.portals.config import CoupaPortal, CxmlPortal, PeppolPortal, portals_from_mapping
from activities.portals.coupa import CoupaAdapter
from activities.portals.cxml import CxmlAdapter
from activities.portals.peppol import PeppolAdapter
from activities.portals.status import PortalStatus, ReasonCode
from portal_sim import create_app, default_scenario, demo_portals, load_scenario
from tests.conftest import ROOT, free_port
from tests.portals.conftest import (
    PushReceiver,
    Sim,
    ThreadedUvicorn,
    invoice,
    make_adapter,
    ubl_of,
    with_backoff,
)

SCENARIO = Path(__file__).with_name("scenario.toml")


def wait_healthy(url: str, proc: subprocess.Popen[bytes], within: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"portal-sim exited with {proc.returncode}")
        try:
            health: dict[str, object] = httpx.get(f"{url}/_sim/health", timeout=1).json()
            return health
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"portal-sim did not answer on {url}")


@pytest.mark.parametrize("entry", [("api.cli", "portal-sim"), ("portal_sim",)], ids=["cashcycle", "module"])
def test_the_cli_runs_the_simulator_with_a_scenario_on_real_time(entry: tuple[str, ...]) -> None:
    """`cashcycle portal-sim` and `python -m portal_sim` (the service on its own) run the same."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", *entry, "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        [*command, "--scenario", str(SCENARIO)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        assert wait_healthy(url, proc)["scenario"] == "initech-fast"
        adapter = make_adapter("coupa", url)
        try:
            doc = invoice("INV-CLI-1")
            assert adapter.submit(Submission(doc.id, 1, doc)).status is PortalStatus.RECEIVED
            # An hour of the buyer's process per second: approved within a second or so, unaided.
            deadline = time.monotonic() + 10
            statuses: set[PortalStatus] = set()
            while PortalStatus.ACCEPTED not in statuses and time.monotonic() < deadline:
                statuses |= {u.status for u in adapter.poll(None)}
                time.sleep(0.2)
            assert statuses & {PortalStatus.ACCEPTED, PortalStatus.PAYMENT_SCHEDULED, PortalStatus.PAID}
        finally:
            adapter.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, proc.stdout.read().decode() if proc.stdout else ""


def test_the_scenario_file_and_the_default_scenario_load() -> None:
    scenario = load_scenario(SCENARIO)
    assert (scenario.name, scenario.clock, scenario.purchase_orders[0].lines[0].unit_price) == (
        "initech-fast",
        "realtime",
        Decimal("12.50"),
    )
    assert [(d.po_number, d.status, d.then) for d in scenario.disputes] == [
        ("PO-9*", "disputed", "hold"),
        ("PO-8*", "under_query", "accept"),
    ]
    demo = default_scenario()
    assert demo.cxml.clients and demo.coupa.clients and demo.peppol.clients and demo.purchase_orders
    # The demo's buyer disputes one purchase order and queries another; both are on file.
    orders = {po.number for po in demo.purchase_orders}
    assert {d.po_number for d in demo.disputes} <= orders


def test_a_push_our_side_refused_is_retried(sim: Sim, receiver: PushReceiver) -> None:
    receiver.status = 500
    adapter = make_adapter("cxml", sim.url)
    try:
        doc = invoice("INV-RETRY-1")
        adapter.submit(Submission(doc.id, 1, doc))
        result = sim.advance(60)
        assert (result["pushed"], result["push_failures"]) == (0, 1)
        receiver.status = 200
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(p["ok"] for p in sim.control("GET", "pushes")):
            time.sleep(0.1)
        attempts = [(p["ok"], p["attempt"]) for p in sim.control("GET", "pushes")]
        assert attempts == [(False, 1), (True, 2)]
        assert len(receiver.bodies("/cxml")) == 2  # the same StatusUpdateRequest, twice
        first, second = (r.body for r in receiver.bodies("/cxml"))
        assert first == second
    finally:
        adapter.close()


def test_purchase_orders_added_over_the_control_api_are_used_and_consumed(sim: Sim) -> None:
    po = {
        "number": "PO-2002",
        "bill_to": {"name": "Initech GmbH", "vat_id": "DE129273398"},
        "lines": [{"line": 1, "item": "WIDGET", "quantity": "3", "unit_price": "12.50", "tax_rate": "19"}],
    }
    sim.control("POST", "purchase-orders", po)
    adapter = make_adapter("coupa", sim.url)
    try:
        doc = invoice("INV-PO-1", po="PO-2002", lines=(("WIDGET", "Widget", "2", "12.50", "19"),))
        adapter.submit(Submission(doc.id, 1, doc))
        [found] = [p for p in sim.control("GET", "purchase-orders") if p["number"] == "PO-2002"]
        assert found["lines"][0]["consumed"] == "2"
        more = invoice("INV-PO-2", po="PO-2002", lines=(("WIDGET", "Widget", "2", "12.50", "19"),))
        with pytest.raises(PermanentError) as refused:
            adapter.submit(Submission(more.id, 1, more))
        assert refused.value.reason is not None and refused.value.reason.code is ReasonCode.QUANTITY
        assert "1 of 3" in refused.value.reason.text
    finally:
        adapter.close()


def test_concurrent_clients_never_overdraw_a_purchase_order(sim: Sim) -> None:
    sim.control("POST", "rate-limit", {"capacity": 1000, "refill_per_second": 1000})
    adapters = [make_adapter("coupa", sim.url) for _ in range(4)]

    def submit(n: int) -> str:
        doc = invoice(f"INV-CC-{n}", lines=(("WIDGET", "Widget", "1", "12.50", "19"),))
        try:
            adapters[n % 4].submit(Submission(doc.id, 1, doc))
            return "accepted"
        except PermanentError as exc:
            return exc.reason.portal_code if exc.reason else str(exc)

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            outcomes = list(pool.map(submit, range(16)))
    finally:
        for adapter in adapters:
            adapter.close()
    assert sorted(outcomes) == ["accepted"] * 10 + ["quantity_exceeds_po"] * 6


def test_the_same_attempt_sent_twice_at_once_is_one_document(sim: Sim) -> None:
    adapter = make_adapter("cxml", sim.url)
    doc = invoice("INV-TWICE-1")
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            receipts = list(pool.map(lambda _: adapter.submit(Submission(doc.id, 1, doc)), range(2)))
    finally:
        adapter.close()
    assert {r.portal_ref for r in receipts} == {"inv-INV-TWICE-1.pass-1@cashcycle"}
    assert sorted(r.replayed for r in receipts) == [False, True]
    assert len(sim.invoices(number="INV-TWICE-1")) == 1


def test_the_default_app_serves_the_demo_portal_to_the_demo_configuration() -> None:
    with ThreadedUvicorn(create_app(), free_port()) as server:
        assert httpx.get(f"{server.url}/_sim/health", timeout=5).json()["scenario"] == "demo"
        configs = portals_from_mapping(demo_portals(server.url))
        for name, config in configs.items():
            adapter: PortalAdapter
            if isinstance(config, CxmlPortal):
                adapter = CxmlAdapter(name, config)
            elif isinstance(config, CoupaPortal):
                adapter = CoupaAdapter(name, config)
            else:
                assert isinstance(config, PeppolPortal)
                adapter = PeppolAdapter(name, config)
            try:
                # The demo's purchase orders and bill-to (Initech GmbH), lines the PO knows.
                doc = invoice(
                    f"INV-DEMO-{name}",
                    po="PO-4711",
                    lines=(("CONSULTING", "Consulting", "8", "125.00", "19"),),
                )
                ubl = ubl_of(doc) if adapter.channel == "peppol" else b""
                assert adapter.submit(Submission(doc.id, 1, doc, ubl)).status is PortalStatus.RECEIVED
                assert adapter.poll(None) is not None
            finally:
                adapter.close()
        assert {i["status"] for i in httpx.get(f"{server.url}/_sim/invoices", timeout=5).json()} == {
            "received"
        }


def test_a_failure_rate_is_random_but_survivable_with_backoff(sim: Sim) -> None:
    sim.faults(fail_rate=0.4, status=502, seed=7)
    adapter = make_adapter("coupa", sim.url)
    try:
        survived = 0
        for n in range(6):
            doc = invoice(f"INV-RATE-{n}", lines=(("WIDGET", "Widget", "1", "12.50", "19"),))
            attempt = Submission(doc.id, 1, doc)
            receipt, failures = with_backoff(partial(adapter.submit, attempt), attempts=12)
            assert receipt.status is PortalStatus.RECEIVED
            survived += failures
    finally:
        adapter.close()
    injected = [r for r in sim.requests() if r["note"] == "injected"]
    assert survived > 0 and len(injected) == survived
    assert len(sim.invoices()) == 6
