"""The one Temporal client factory, and registration of the search attributes the workflows set."""

from __future__ import annotations

from datetime import timedelta

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import SearchAttributeIndexedValueType

from activities.converter import DATA_CONVERTER
from workflows.checkpoint import LedgerCheckpointWorkflow, schedule_id
from workflows.invoice import SEARCH_ATTRIBUTES
from workflows.portal_poll import PortalPollWorkflow, poll_schedule_id
from workflows.types import CheckpointRequest


async def connect(address: str, namespace: str) -> Client:
    """A client (for the API, the worker and the CLI) with Cashcycle's data converter."""
    return await Client.connect(address, namespace=namespace, data_converter=DATA_CONVERTER)


async def ensure_search_attributes(client: Client) -> None:
    """Register the custom search attributes on a server that lacks them (idempotent)."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    missing = {
        key.name: IndexedValueType.ValueType(int(SearchAttributeIndexedValueType(key.indexed_value_type)))
        for key in SEARCH_ATTRIBUTES
        if key.name not in existing.custom_attributes
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )


def dev_server_search_attribute_flags() -> list[str]:
    """`--search-attribute` flags for `temporal server start-dev`."""
    kinds = {
        SearchAttributeIndexedValueType.KEYWORD: "Keyword",
        SearchAttributeIndexedValueType.INT: "Int",
        SearchAttributeIndexedValueType.DATETIME: "Datetime",
        SearchAttributeIndexedValueType.TEXT: "Text",
        SearchAttributeIndexedValueType.DOUBLE: "Double",
        SearchAttributeIndexedValueType.BOOL: "Bool",
    }
    flags: list[str] = []
    for key in SEARCH_ATTRIBUTES:
        flags += ["--search-attribute", f"{key.name}={kinds[key.indexed_value_type]}"]
    return flags


async def ensure_checkpoint_schedule(client: Client, task_queue: str, cron: str) -> str:
    """The daily (by default) ledger checkpoint, as a Temporal Schedule: created once, its calendar
    brought in line with the configuration on every worker start. Returns the schedule id."""
    sid = schedule_id(task_queue)
    spec = ScheduleSpec(cron_expressions=[cron])
    # The server keeps a cron as structured calendars; the note says which cron the calendar came from.
    note = f"cron {cron} (UTC), from CASHCYCLE_CHECKPOINT_CRON"
    try:
        await client.create_schedule(
            sid,
            Schedule(
                action=ScheduleActionStartWorkflow(
                    LedgerCheckpointWorkflow.run,
                    CheckpointRequest(trigger="schedule"),
                    id=f"{sid}/run",
                    task_queue=task_queue,
                ),
                spec=spec,
                state=ScheduleState(note=note),
                # A missed run (server down) is made up once; two never overlap.
                policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(days=1)),
            ),
        )
    except ScheduleAlreadyRunningError:
        handle = client.get_schedule_handle(sid)

        def updated(inp: ScheduleUpdateInput) -> ScheduleUpdate | None:
            if inp.description.schedule.state.note == note:
                return None
            inp.description.schedule.spec = spec
            inp.description.schedule.state.note = note
            return ScheduleUpdate(schedule=inp.description.schedule)

        await handle.update(updated)
    return sid


async def ensure_portal_poll_schedules(
    client: Client, task_queue: str, portals: list[str], every_seconds: float
) -> list[str]:
    """A poll schedule for each portal that makes us fetch its statuses (created once, its interval kept
    in line with the configuration)."""
    ids = []
    for portal in portals:
        sid = poll_schedule_id(task_queue, portal)
        spec = ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=every_seconds))])
        note = f"every {every_seconds:g} s, from CASHCYCLE_PORTAL_POLL_SECONDS"
        try:
            await client.create_schedule(
                sid,
                Schedule(
                    action=ScheduleActionStartWorkflow(
                        PortalPollWorkflow.run, portal, id=f"{sid}/run", task_queue=task_queue
                    ),
                    spec=spec,
                    state=ScheduleState(note=note),
                    policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
                ),
            )
        except ScheduleAlreadyRunningError:

            def updated(
                inp: ScheduleUpdateInput, spec: ScheduleSpec = spec, note: str = note
            ) -> ScheduleUpdate | None:
                if inp.description.schedule.state.note == note:
                    return None
                inp.description.schedule.spec = spec
                inp.description.schedule.state.note = note
                return ScheduleUpdate(schedule=inp.description.schedule)

            await client.get_schedule_handle(sid).update(updated)
        ids.append(sid)
    return ids
