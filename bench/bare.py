"""The benchmark's baseline: a bare workflow with the Temporal shape of one invoice's lifecycle and no
work in its activities. In a module of its own, so that the workflow sandbox re-imports only this small
file for every run (the invoice workflow's modules are small too)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

BARE_WORKFLOW = "CashcycleBenchBare"


@activity.defn(name="bench_bare_record")
def bare_record(event: str) -> str:
    """Stands in for record_invoice_transition: no work (a regular activity, not a local one)."""
    return event


@activity.defn(name="bench_bare_deliver")
def bare_deliver(key: str) -> str:
    """Stands in for deliver_invoice: no work."""
    return key


@workflow.defn(name=BARE_WORKFLOW)
class BareWorkflow:
    """create (activity) -> submit (update + activity) -> approve (update + activity) -> deliver
    (2 activities, or 1) -> payment (update + activity): 4 updates with the start, 6 activities (or 5)."""

    def __init__(self) -> None:
        self._recorded = 0
        self._approved = False
        self._delivered = False
        self._paid = False

    @workflow.run
    async def run(self, key: str, activities: int = 6) -> int:
        """`activities`: 6, one per business step (5 transitions, the delivery); 5, the delivery's
        record folded into the delivery activity, as Cashcycle's deliver_invoice does."""
        await self._record("create")
        await workflow.wait_condition(lambda: self._approved)
        await workflow.execute_activity(bare_deliver, key, start_to_close_timeout=timedelta(seconds=60))
        if activities >= 6:
            await self._record("deliver")
        else:
            self._recorded += 1
        self._delivered = True
        await workflow.wait_condition(lambda: self._paid)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._recorded

    async def _record(self, event: str) -> None:
        await workflow.execute_activity(bare_record, event, start_to_close_timeout=timedelta(seconds=30))
        self._recorded += 1

    @workflow.update
    async def await_created(self) -> int:
        await workflow.wait_condition(lambda: self._recorded >= 1)
        return self._recorded

    @workflow.update
    async def submit(self) -> int:
        await self._record("submit")
        return self._recorded

    @workflow.update
    async def approve(self) -> int:
        await self._record("approve")
        self._approved = True
        return self._recorded

    @workflow.update
    async def pay(self) -> int:
        # The invoice client polls until delivered before paying; here the update waits for it.
        await workflow.wait_condition(lambda: self._delivered)
        await self._record("record_final_payment")
        self._paid = True
        return self._recorded
