"""PortalActivities: the adapters as Temporal activities. Portal failures become the ApplicationErrors a
workflow's retry policy acts on; one test runs a real worker on the dev server through a 5xx storm."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from datetime import timedelta

import pytest
from temporalio import workflow
from temporalio.client import WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.documents import InvoiceDocument
from activities.portals.activity import (
    PortalActivities,
    PortalPollRequest,
    PortalSubmitRequest,
    PortalSubmitResult,
)
from tests.portals.conftest import SECRETS, Sim, invoice, make_adapter, ubl_of

DOCS = {
    "good": invoice("INV-ACT-1", lines=(("WIDGET", "Widget", "1", "12.50", "19"),)),
    "wrong-price": invoice("INV-ACT-2", lines=(("WIDGET", "Widget", "1", "14.00", "19"),)),
    "good-2": invoice("INV-ACT-3", lines=(("WIDGET", "Widget", "1", "12.50", "19"),)),
    "no-iban": replace(invoice("INV-ACT-4"), payee_iban=""),  # German rules want the seller's IBAN
}


def load(invoice_id: str) -> InvoiceDocument:
    return DOCS[invoice_id]


@pytest.fixture
def portals(sim: Sim) -> Iterator[PortalActivities]:
    adapters = {
        "initech-coupa": make_adapter("coupa", sim.url),
        "initech-peppol": make_adapter("peppol", sim.url),
        "initech-ariba": make_adapter("cxml", sim.url),
    }
    activities = PortalActivities(adapters, load, ubl_of)
    yield activities
    activities.close()


def run_submit(
    portals: PortalActivities, portal: str, invoice_id: str, submission_pass: int = 1
) -> PortalSubmitResult:
    result: PortalSubmitResult = ActivityEnvironment().run(
        portals.submit_to_portal, PortalSubmitRequest(portal, invoice_id, submission_pass)
    )
    return result


def failure(portals: PortalActivities, portal: str, invoice_id: str) -> ApplicationError:
    with pytest.raises(ApplicationError) as failed:
        run_submit(portals, portal, invoice_id)
    return failed.value


@pytest.mark.parametrize("portal", ["initech-coupa", "initech-peppol", "initech-ariba"])
def test_a_submission_returns_what_the_workflow_records(portals: PortalActivities, portal: str) -> None:
    result = run_submit(portals, portal, "good")
    assert result.portal == portal
    assert result.submission_key == "good.pass-1"
    assert result.status == "received"
    assert (
        result.follow_up
        == {"initech-coupa": "poll", "initech-peppol": "push", "initech-ariba": "push"}[portal]
    )
    assert not any(secret in repr(asdict(result)) for secret in SECRETS)


def test_a_validation_rejection_is_non_retryable_with_the_normalised_reason(
    portals: PortalActivities,
) -> None:
    error = failure(portals, "initech-coupa", "wrong-price")
    assert (error.type, error.non_retryable) == ("portal_rejected", True)
    details = error.details[0]
    assert (details["reason_code"], details["portal_reason_code"], details["http_status"]) == (
        "PRI",
        "price_mismatch",
        422,
    )
    assert "14.00" in details["reason_text"]


def test_rate_limiting_is_retryable_after_the_portals_retry_after(
    portals: PortalActivities, sim: Sim
) -> None:
    sim.control("POST", "rate-limit", {"capacity": 1, "refill_per_second": 0.2})
    run_submit(portals, "initech-peppol", "good")
    error = failure(portals, "initech-peppol", "good-2")
    assert (error.type, error.non_retryable, error.next_retry_delay) == (
        "portal_unavailable",
        False,
        timedelta(seconds=5),
    )


def test_refused_configuration_is_non_retryable_without_a_reason(portals: PortalActivities) -> None:
    with pytest.raises(ApplicationError) as unknown:
        run_submit(portals, "nobody", "good")
    assert (unknown.value.type, unknown.value.non_retryable) == ("unknown_portal", True)


def test_a_document_that_is_no_valid_e_invoice_is_not_sent_nor_retried(
    portals: PortalActivities, sim: Sim
) -> None:
    error = failure(portals, "initech-peppol", "no-iban")
    assert (error.type, error.non_retryable) == ("document_invalid", True)
    assert "IBAN" in str(error)
    assert sim.invoices() == []


def test_polling_returns_updates_and_the_cursor_for_the_next_poll(
    portals: PortalActivities, sim: Sim
) -> None:
    run_submit(portals, "initech-coupa", "good")
    sim.advance(60)
    env = ActivityEnvironment()
    first = env.run(portals.poll_portal, PortalPollRequest("initech-coupa"))
    assert [(u.invoice_number, u.status) for u in first.updates] == [("INV-ACT-1", "in_process")]
    assert first.cursor == first.updates[0].at
    again = env.run(portals.poll_portal, PortalPollRequest("initech-coupa", first.cursor))
    assert (again.updates, again.cursor) == ([], first.cursor)


# -- on a real Temporal server ----------------------------------------------------------------------------


@workflow.defn(sandboxed=False)
class SubmitOnce:
    """A stand-in for the invoice workflow's submission step: the activity with a retry policy."""

    @workflow.run
    async def run(self, req: PortalSubmitRequest) -> PortalSubmitResult:
        return await workflow.execute_activity_method(
            PortalActivities.submit_to_portal,
            req,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=100),
                backoff_coefficient=2.0,
                maximum_interval=timedelta(seconds=2),
                maximum_attempts=10,
            ),
        )


async def test_a_workflow_rides_out_a_5xx_storm_and_stops_at_a_rejection(
    temporal_env: WorkflowEnvironment, portals: PortalActivities, sim: Sim
) -> None:
    queue = f"portals-{uuid.uuid4().hex[:8]}"
    sim.faults(fail_next=3, status=503)
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with Worker(
            temporal_env.client,
            task_queue=queue,
            workflows=[SubmitOnce],
            activities=[portals.submit_to_portal, portals.poll_portal],
            activity_executor=executor,
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            result = await temporal_env.client.execute_workflow(
                SubmitOnce.run,
                PortalSubmitRequest("initech-coupa", "good", 1),
                id=f"submit-{uuid.uuid4()}",
                task_queue=queue,
            )
            assert result.status == "received" and not result.replayed
            assert [r["status"] for r in sim.requests() if r["note"] == "injected"] == [503, 503, 503]
            assert len(sim.invoices(number="INV-ACT-1")) == 1

            with pytest.raises(WorkflowFailureError) as failed:
                await temporal_env.client.execute_workflow(
                    SubmitOnce.run,
                    PortalSubmitRequest("initech-coupa", "wrong-price", 1),
                    id=f"submit-{uuid.uuid4()}",
                    task_queue=queue,
                )
    cause = failed.value.cause
    assert isinstance(cause, ActivityError) and isinstance(cause.cause, ApplicationError)
    assert cause.cause.type == "portal_rejected" and cause.cause.details[0]["reason_code"] == "PRI"
    assert cause.retry_state is not None and cause.retry_state.name == "NON_RETRYABLE_FAILURE"
