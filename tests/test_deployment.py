"""docker-compose.yml is the production description: keep it consistent with the code it runs.

No Docker engine runs here, so the processes it names are run directly elsewhere in the suite
(tests/api/test_up.py starts the same `cashcycle api` and `cashcycle worker`); this checks that the
file is valid and that every command and setting it uses exists.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

from activities.settings import Settings
from api.cli import parser
from tests.conftest import drop_pg_database, new_pg_database

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_compose_services_run_commands_the_cli_accepts() -> None:
    services = compose()["services"]
    ours = {name: svc for name, svc in services.items() if svc.get("image") == "cashcycle:latest"}
    assert set(ours) == {"migrate", "worker", "api"}
    for name, svc in ours.items():
        command = svc["command"]
        assert command[0] == "cashcycle", name
        args = parser().parse_args(command[1:])  # exits (fails the test) on an unknown command or flag
        assert args.func is not None


def test_compose_environment_names_real_settings() -> None:
    fields = {f"CASHCYCLE_{name.upper()}" for name in Settings.model_fields}
    fields |= {"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE"}
    for name, svc in compose()["services"].items():
        if svc.get("image") != "cashcycle:latest":
            continue
        for var in svc["environment"]:
            assert var in fields, f"{name} sets {var}, which no setting reads"


def test_replicas_start_only_after_migrations() -> None:
    services = compose()["services"]
    for name in ("worker", "api"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}


def test_dockerfile_copies_every_package_the_image_runs() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"][
        "wheel"
    ]["packages"]
    for part in (*packages, "policies", "ui", "worker.py", "uv.lock"):
        assert f"COPY {part}" in dockerfile or f" {part} " in dockerfile, part


def test_migrate_command_builds_a_postgresql_store_from_nothing(pg_server: str) -> None:
    name, url = new_pg_database(pg_server)
    try:
        env = {**os.environ, "CASHCYCLE_DATABASE_URL": url.replace("+psycopg", "")}
        for _ in range(2):  # idempotent: a second release run changes nothing
            done = subprocess.run(
                [sys.executable, "-m", "api.cli", "migrate"],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                cwd=ROOT,
            )
            assert done.returncode == 0, done.stderr
            assert "up to date" in done.stdout
    finally:
        drop_pg_database(pg_server, name)
