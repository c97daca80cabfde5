"""Credentials stay where they belong: in the requests they authenticate. Never in an exception's text,
a log record (at any level, httpx's and httpcore's included), a receipt, an update, an activity error's
details or a configuration's repr, all of which reach workflow histories, logs and the ledger."""

from __future__ import annotations

import logging
import traceback
from dataclasses import asdict
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from activities.portals.activity import PortalActivities, PortalSubmitRequest, application_error
from activities.portals.base import PortalError, Submission
from activities.portals.config import CoupaPortal, load_portals
from tests.conftest import free_port
from tests.portals.conftest import SECRETS, Sim, invoice, make_adapter, portal_configs, ubl_of


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def everything_said(exc: BaseException) -> str:
    """The exception as a log or a workflow failure would show it: message, chain and traceback."""
    return "".join(traceback.format_exception(exc)) + repr(getattr(exc, "__dict__", {}))


@pytest.mark.parametrize("channel", ["cxml", "coupa", "peppol"])
@pytest.mark.parametrize("trouble", ["storm", "refused", "unreachable"])
def test_a_failing_request_leaks_no_secret(
    channel: str, trouble: str, sim: Sim, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    base = sim.url if trouble != "unreachable" else f"http://127.0.0.1:{free_port()}"
    adapter = make_adapter(channel, base, timeout=2)
    doc = invoice("INV-SECRET-1")
    try:
        if trouble == "storm":
            sim.faults(fail_next=5, status=502)
        if trouble == "refused":
            # The portal forgot us: it knows no client with our credentials.
            sim.load({**sim.control("GET", "scenario"), "cxml": {}, "coupa": {}, "peppol": {}})
        with pytest.raises(PortalError) as failed:
            adapter.submit(Submission(doc.id, 1, doc, ubl_of(doc) if channel == "peppol" else b""))
        with pytest.raises(PortalError) as polled:
            adapter.poll(None)
    finally:
        adapter.close()
    for exc in (failed.value, polled.value):
        assert leaks(everything_said(exc)) == []
        error = application_error(exc)
        assert leaks(f"{error} {error.details!r}") == []
    records = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    assert caplog.records, "the test means nothing if nothing was logged"
    assert leaks(records) == []


def test_receipts_updates_and_activity_results_carry_no_secret(
    sim: Sim, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    adapter = make_adapter("cxml", sim.url)
    docs = {"i": invoice("INV-SECRET-2")}
    activities = PortalActivities({"initech-ariba": adapter}, docs.__getitem__)
    try:
        result = ActivityEnvironment().run(
            activities.submit_to_portal, PortalSubmitRequest("initech-ariba", "i", 1)
        )
        sim.advance(60)
        updates = adapter.poll(None)
    finally:
        activities.close()
    assert updates
    assert leaks(repr(asdict(result)) + repr(updates)) == []
    assert leaks("\n".join(r.getMessage() for r in caplog.records)) == []


def test_configuration_masks_its_secrets(sim: Sim) -> None:
    configs = portal_configs(sim.url)
    assert leaks(repr(configs) + str(configs)) == []
    assert leaks(repr({name: c.model_dump() for name, c in configs.items()})) == []  # SecretStr stays masked


def test_secrets_are_read_from_the_environment_and_a_missing_one_is_named_not_shown(tmp_path: Path) -> None:
    path = tmp_path / "portals.toml"
    path.write_text(
        '[portals.acme]\nchannel = "coupa"\nbase_url = "https://acme.example"\nclient_id = "c"\n'
        'client_secret = "env:ACME_COUPA_SECRET"\n'
    )
    loaded = load_portals(path, {"ACME_COUPA_SECRET": "from-the-env"})
    acme = loaded["acme"]
    assert isinstance(acme, CoupaPortal) and acme.client_secret.get_secret_value() == "from-the-env"
    with pytest.raises(ValueError, match="ACME_COUPA_SECRET is not set"):
        load_portals(path, {})
    assert load_portals(None, {}) == {}
