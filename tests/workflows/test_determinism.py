"""Workflow code must replay: it imports only the standard library, temporalio and workflows.*, and it
never reads the clock, randomness, the environment, files or the network except through `workflow.now()`,
`workflow.random()`, `workflow.uuid4()` and Temporal timers (`asyncio.sleep`, `workflow.sleep`).

The check parses every module under workflows/ and resolves import aliases, so `from datetime import
datetime as dt; dt.now()` is caught as `datetime.datetime.now`.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

WORKFLOWS = Path(__file__).resolve().parent.parent.parent / "workflows"

ALLOWED_THIRD_PARTY = {"temporalio", "workflows"}

# Standard-library modules that only do I/O, concurrency or randomness: no use is safe in a workflow.
FORBIDDEN_MODULES = set(
    "os random secrets threading multiprocessing concurrent socket ssl select selectors subprocess signal"
    " zoneinfo shutil tempfile sqlite3 urllib http smtplib io pathlib glob logging".split()
)

# Names that read the clock or make unique values; the deterministic parts of these modules stay usable
# (datetime arithmetic and parsing, uuid.UUID / uuid5, asyncio.sleep as a durable timer).
FORBIDDEN_NAMES = {
    "datetime.datetime.now",
    "datetime.datetime.utcnow",
    "datetime.datetime.today",
    "datetime.datetime.fromtimestamp",
    "datetime.datetime.utcfromtimestamp",
    "datetime.date.today",
    "datetime.date.fromtimestamp",
    "time.time",
    "time.time_ns",
    "time.monotonic",
    "time.monotonic_ns",
    "time.perf_counter",
    "time.perf_counter_ns",
    "time.process_time",
    "time.sleep",
    "time.localtime",
    "time.gmtime",
    "time.ctime",
    "uuid.uuid1",
    "uuid.uuid4",
    "asyncio.get_event_loop",
    "asyncio.to_thread",
    "asyncio.run_coroutine_threadsafe",
    "asyncio.create_subprocess_exec",
    "asyncio.create_subprocess_shell",
    "asyncio.open_connection",
}

FORBIDDEN_BUILTINS = {"open", "input", "breakpoint", "exec", "eval", "compile", "__import__"}


@dataclass(frozen=True)
class Violation:
    where: str
    what: str


def _top(module: str) -> str:
    return module.split(".")[0]


def _dotted(node: ast.expr) -> list[str] | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return parts[::-1]
    return None


def find_violations(source: str, filename: str = "<workflow>") -> list[Violation]:
    """What in `source` would make workflow code non-deterministic or import a forbidden package."""
    tree = ast.parse(source, filename=filename)
    aliases: dict[str, str] = {}  # local name -> fully qualified name
    found: list[Violation] = []

    def flag(node: ast.AST, what: str) -> None:
        found.append(Violation(f"{filename}:{getattr(node, 'lineno', 0)}", what))

    def check_module(node: ast.AST, module: str) -> None:
        top = _top(module)
        if top not in sys.stdlib_module_names and top not in ALLOWED_THIRD_PARTY:
            flag(node, f"imports {module}: outside the standard library, temporalio and workflows.*")
        elif top in FORBIDDEN_MODULES:
            flag(node, f"imports {module}: I/O, threads or randomness in workflow code")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                check_module(node, alias.name)
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    aliases[_top(alias.name)] = _top(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: inside the workflows package
                continue
            module = node.module or ""
            check_module(node, module)
            for alias in node.names:
                qualified = f"{module}.{alias.name}"
                if qualified in FORBIDDEN_NAMES:
                    flag(node, f"imports {qualified}: non-deterministic in workflow code")
                aliases[alias.asname or alias.name] = qualified

    # Resolve every attribute chain and bare name against the aliases: catches calls and references
    # (e.g. `default_factory=datetime.now`) alike.
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute | ast.Name) and isinstance(getattr(node, "ctx", None), ast.Load):
            parts = _dotted(node)
            if parts is None:
                continue
            head = aliases.get(parts[0])
            if head is None:
                if isinstance(node, ast.Name) and node.id in FORBIDDEN_BUILTINS:
                    flag(node, f"calls {node.id}(): I/O or dynamic code in workflow code")
                continue
            qualified = ".".join([head, *parts[1:]])
            if qualified in FORBIDDEN_NAMES:
                flag(node, f"uses {qualified}: use workflow.now(), workflow.random() or workflow.uuid4()")
    return sorted(set(found), key=lambda v: (v.where, v.what))


def workflow_modules() -> list[Path]:
    return sorted(WORKFLOWS.rglob("*.py"))


def test_the_workflows_package_is_scanned() -> None:
    names = {path.name for path in workflow_modules()}
    assert {"invoice.py", "states.py", "types.py", "errors.py"} <= names


@pytest.mark.parametrize("path", workflow_modules(), ids=lambda p: str(p.relative_to(WORKFLOWS)))
def test_workflow_module_is_deterministic(path: Path) -> None:
    assert find_violations(path.read_text(), str(path.relative_to(WORKFLOWS.parent))) == []


# -- the detector itself: each planted mistake is caught, and legitimate workflow code is not flagged ---

PLANTED = {
    "third_party_import": "import httpx\n",
    "third_party_from_import": "from sqlmodel import Session\n",
    "project_io_package": "from activities.db import open_store\n",
    "datetime_now": "from datetime import datetime\nx = datetime.now()\n",
    "datetime_utcnow_module": "import datetime\nx = datetime.datetime.utcnow()\n",
    "datetime_today_aliased": "from datetime import datetime as dt\nx = dt.today()\n",
    "date_today": "from datetime import date\nx = date.today()\n",
    "now_as_reference": "from datetime import datetime\nfactory = datetime.now\n",
    "time_time": "import time\nx = time.time()\n",
    "time_monotonic": "import time\nx = time.monotonic()\n",
    "time_sleep_from_import": "from time import sleep\nsleep(1)\n",
    "random_module": "import random\nx = random.random()\n",
    "random_choice": "from random import choice\nx = choice([1, 2])\n",
    "uuid4": "import uuid\nx = uuid.uuid4()\n",
    "uuid1_from_import": "from uuid import uuid1\nx = uuid1()\n",
    "os_environ": "import os\nx = os.environ['HOME']\n",
    "os_path": "import os.path\nx = os.path.exists('/tmp')\n",
    "open_file": "x = open('/etc/hostname').read()\n",
    "threading": "import threading\nthreading.Thread(target=print).start()\n",
    "socket": "import socket\nsocket.create_connection(('example.com', 80))\n",
    "subprocess": "import subprocess\nsubprocess.run(['ls'])\n",
    "zoneinfo": "from zoneinfo import ZoneInfo\nz = ZoneInfo('Europe/Paris')\n",
}


@pytest.mark.parametrize("snippet", PLANTED.values(), ids=list(PLANTED))
def test_the_detector_catches_a_planted_mistake(snippet: str) -> None:
    assert find_violations(snippet) != []


def test_the_detector_accepts_deterministic_workflow_code() -> None:
    clean = (
        "from __future__ import annotations\n"
        "import asyncio\n"
        "import uuid\n"
        "from datetime import datetime, timedelta\n"
        "from temporalio import workflow\n"
        "from workflows.states import Status\n"
        "from . import types\n"
        "async def run() -> None:\n"
        "    now = workflow.now()\n"
        "    later = now + timedelta(days=1)\n"
        "    parsed = datetime.fromisoformat('2026-11-02T00:00:00+00:00')\n"
        "    await asyncio.sleep(5)\n"
        "    await workflow.sleep(5)\n"
        "    n = workflow.random().randint(1, 6)\n"
        "    u = workflow.uuid4()\n"
        "    k = uuid.uuid5(uuid.NAMESPACE_URL, 'x')\n"
        "    lock = asyncio.Lock()\n"
    )
    assert find_violations(clean) == []
