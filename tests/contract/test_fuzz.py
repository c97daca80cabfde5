"""The API against its own OpenAPI document, as a new user would test it: Schemathesis with every check,
including the stateful phase that follows the schema's links (create an invoice, read it, submit it,
approve it), against the API started as `cashcycle up --demo` starts it (Temporal dev server, worker,
store, portal simulator), once per role that matters. A run must end with no failure; otherwise the test
fails with Schemathesis's report, which gives the request (as curl) that reproduces each failure.

Fixed seed, no example database and a fixed number of examples per operation: the same requests every
run. New endpoints are in the schema, so they are fuzzed without a change here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from demo import DEMO_PASSWORD
from tests.api.test_up import Up, free_port
from tests.conftest import invoice_body

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).resolve().parent / "schemathesis.toml"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# A small demo through the same seeding code as `cashcycle up --demo`: every status is there with 20. The
# default 300 take about 70 s to seed on a 2-core machine (20: about 25 s) and double each role's run (the
# lists it reads are 15 times longer: the supervisor's run went from 24 s to 45 s), past the gate's budget.
DEMO_INVOICES = 20
# Examples per operation and phase (the stateful phase's budget is in schemathesis.toml): 2,700 to 4,100
# test cases a role, the six roles in about 4 minutes on a 2-core machine with the stack's start.
MAX_EXAMPLES = 10
RUN_TIMEOUT = 600.0
# The roles that see different parts of the API: the ERP creates customers and invoices, the preparer
# submits, the approver approves (the demo's pending invoices and the ones created before), the supervisor
# reassigns and reports, compliance works the evidence, the administrator grants roles.
ROLES = ["erp", "preparer", "approver", "supervisor", "compliance", "admin"]
WAITING_FOR_APPROVER = 5


@pytest.fixture(scope="session")
def demo_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`cashcycle up --demo` in a data directory of its own, on free ports; its base URL."""
    tmp = tmp_path_factory.mktemp("fuzz")
    pycache = tmp / "pycache"
    pycache.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CASHCYCLE_", "TEMPORAL_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        CASHCYCLE_DEMO_INVOICES=str(DEMO_INVOICES), PYTHONUNBUFFERED="1", PYTHONPYCACHEPREFIX=str(pycache)
    )
    for attempt in range(3):
        port = free_port()
        up = Up(tmp / f"cashcycle-{attempt}", port, env, demo=True, from_script=False)
        try:
            up.wait_ready()
        except pytest.fail.Exception:
            up.kill_everything()
            # Another process may take the free port between free_port() and the API's bind.
            if f"port {port} is in use" in up.output and attempt < 2:
                continue
            raise
        break
    try:
        assert f"demo data ready: {DEMO_INVOICES} invoices" in up.output, up.output
        yield f"http://127.0.0.1:{port}"
        code = up.interrupt()
        assert code == 0, f"cashcycle up exited with {code} on Ctrl-C\n{up.diagnostics()}"
    finally:
        up.kill_everything()


def token_of(base_url: str, username: str) -> str:
    r = httpx.post(
        f"{base_url}/api/v1/auth/token", data={"username": username, "password": DEMO_PASSWORD}, timeout=60
    )
    assert r.status_code == 200, f"login {username}: {r.status_code} {r.text}"
    return str(r.json()["access_token"])


def schemathesis_command(base_url: str, token: str) -> list[str]:
    """The command README gives for running the fuzzer by hand, with this run's budget."""
    return [
        str(SCHEMATHESIS),
        "--config-file",
        str(CONFIG),
        "--no-color",
        "run",
        f"{base_url}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--workers",
        "1",
    ]


def failures_section(output: str) -> str:
    """Schemathesis's report without its progress lines: each failure with its reproducing curl."""
    start = output.find("=" * 10)
    return output[start:] if start >= 0 else output


def submit_for_approval(base_url: str, count: int) -> list[str]:
    """Invoices waiting for the approver, created by the ERP and submitted by the preparer through the API
    as the demo's are: the earlier roles' runs move (void, edit) what the demo left pending, and the
    approver's stateful phase follows the inbox to approving what waits there."""
    ids = []
    with httpx.Client(base_url=base_url, timeout=60) as http:
        erp = {"Authorization": f"Bearer {token_of(base_url, 'erp')}"}
        preparer = {"Authorization": f"Bearer {token_of(base_url, 'preparer')}"}
        customer = http.get("/api/v1/customers", headers=erp).json()[0]["id"]
        for n in range(count):
            r = http.post("/api/v1/invoices", json=invoice_body(customer, f"FUZZ-APPROVE-{n}"), headers=erp)
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
            r = http.post(f"/api/v1/invoices/{ids[-1]}/submit", headers=preparer)
            assert r.status_code == 200 and r.json()["status"] == "pending_approval", r.text
    return ids


@pytest.mark.parametrize("role", ROLES)
def test_the_api_keeps_its_schema_under_fuzzing(demo_api: str, role: str) -> None:
    waiting = submit_for_approval(demo_api, WAITING_FOR_APPROVER) if role == "approver" else []
    token = token_of(demo_api, role)
    started = time.monotonic()
    run = subprocess.run(
        schemathesis_command(demo_api, token),
        cwd=ROOT,  # the hooks module named in the config is imported from the work tree
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    output = run.stdout + run.stderr
    generated = re.search(r"(\d+) generated", output)
    print(
        f"schemathesis as {role}: {generated.group(0) if generated else '?'} test cases in "
        f"{time.monotonic() - started:.0f}s, exit code {run.returncode}"
    )
    if waiting:
        with httpx.Client(base_url=demo_api, timeout=60) as http:
            headers = {"Authorization": f"Bearer {token}"}
            statuses = [http.get(f"/api/v1/invoices/{i}", headers=headers).json()["status"] for i in waiting]
        print(f"  invoices waiting for the approver before the run, after it: {statuses}")
    if run.returncode != 0:
        pytest.fail(f"schemathesis as {role} found failures:\n{failures_section(output)}", pytrace=False)
    assert generated and int(generated.group(1)) > 0, f"schemathesis as {role} generated nothing:\n{output}"
