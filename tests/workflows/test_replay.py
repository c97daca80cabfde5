"""Workflows that survive a release: every committed history replays against the current code.

`histories/<tag>/*.json` are exported from a Temporal server by `histories/record.py`: `v1` by the code
as it was at commit 58bce71 (before submission and delivery each became one activity, and before the
transitions upserted only the search attributes that changed), `v2` by the current shape. Invoices
recorded by either are in users' data directories: a change of a workflow's command sequence must keep
them all replaying (`workflow.patched()`), and add a history of its new path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.converter import DATA_CONVERTER
from tests.workflows.histories.record import commanded, record
from worker import WORKFLOWS, workflow_runner

HISTORIES = Path(__file__).parent / "histories"
FILES = sorted(HISTORIES.glob("*/*.json"))


def workflow_type(path: Path) -> str:
    started = json.loads(path.read_text())["events"][0]["workflowExecutionStartedEventAttributes"]
    name: str = started["workflowType"]["name"]
    return name


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(f"{path.parent.name}/{path.stem}", path.read_text())


RUNNERS: dict[str, WorkflowRunner] = {
    # The production worker's runner, and Temporal's sandbox with its default restrictions (it catches
    # workflow code reading the clock, randomness or I/O, which would replay differently).
    "production": workflow_runner(sandboxed=False),
    "sandbox": SandboxedWorkflowRunner(),
}


@pytest.mark.parametrize("runner", sorted(RUNNERS))
@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.stem}" for p in FILES])
async def test_a_committed_history_replays_on_the_current_code(path: Path, runner: str) -> None:
    replayer = Replayer(
        workflows=list(WORKFLOWS), workflow_runner=RUNNERS[runner], data_converter=DATA_CONVERTER
    )
    result = await replayer.replay_workflow(load(path), raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.relative_to(HISTORIES)}: {result.replay_failure!r}"


CURRENT = sorted(p.name for p in HISTORIES.iterdir() if p.is_dir())[-1]


def test_every_workflow_type_the_worker_runs_has_histories_of_the_current_shape() -> None:
    recorded = {workflow_type(p) for p in FILES if p.parent.name == CURRENT}
    assert {w.__name__ for w in WORKFLOWS} <= recorded, f"no {CURRENT} history for some workflow types"


# The paths whose command sequence does not depend on timing (the SLA and portal scenarios wait on
# clocks and polls; they are replayed above, not compared).
STABLE = ["mail_to_paid", "reject_edit_void", "awaiting_issue_date", "checkpoint"]


@pytest.mark.parametrize("scenario", STABLE)
async def test_the_current_code_records_the_shape_of_the_newest_committed_histories(
    scenario: str, temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """A change of a workflow's command sequence must come with a history of its new shape: recorded
    now, the path must command what the newest committed history commands, or this fails until a new
    folder is recorded (`python -m tests.workflows.histories.record --tag v<next>`)."""
    [path] = await record(scenario, temporal_env, tmp_path)
    now = commanded(json.loads(path.read_text())["events"])
    committed = commanded(json.loads((HISTORIES / CURRENT / path.name).read_text())["events"])
    assert now == committed, (
        f"{scenario}: the workflow commands something else than histories/{CURRENT} recorded; put the "
        "change behind workflow.patched() and record a new folder of histories"
    )
