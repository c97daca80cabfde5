"""`cashcycle ledger` and `cashcycle evidence`, run as an operator or auditor runs them: a separate process
on a data directory. Verify (exit 1 on a broken chain, with where and how), sign and export checkpoints,
list the controls, build a pack."""

from __future__ import annotations

import json
import sqlite3
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.api.test_cli_users import OPERATOR, PASSWORD, Cli


@pytest.fixture(scope="module")
def bytecode_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Compiled bytecode shared by the commands (see tests/api/test_cli_users.py)."""
    path = tmp_path_factory.getbasetemp() / "pycache"
    path.mkdir(exist_ok=True)
    return path


def test_an_operator_verifies_checkpoints_and_packs_from_the_command_line(
    tmp_path: Path, bytecode_cache: Path
) -> None:
    cli = Cli(tmp_path, bytecode_cache)
    cli.ok("entities", "add", "ACME", "--name", "Acme SAS", "--currency", "EUR", "--timezone", "Europe/Paris")
    cli.ok("users", "add", "alice", "--password", PASSWORD)
    cli.ok("users", "grant", "alice", "ar_approver", "ACME")
    out = cli.ok("ledger", "verify", "--entity", "ACME")
    assert out.startswith("ACME: intact, ") and "head hash" in out

    out = cli.ok("ledger", "checkpoint", "--entity", "ACME")
    assert out.startswith("ACME: checkpoint #1 at seq ")
    export = tmp_path / "checkpoints.json"
    cli.ok("ledger", "checkpoints", "--entity", "ACME", "--out", str(export))
    [cp] = json.loads(export.read_text())
    assert cp["signature_valid"] is True and cp["requested_by"] == OPERATOR and cp["algorithm"] == "Ed25519"
    out = cli.ok("ledger", "verify", "--entity", "ACME")
    assert f"matches signed checkpoint #1 at seq {cp['seq']}" in out

    assert "OTC-05\tAccess and role changes" in cli.ok("evidence", "controls")
    today = datetime.now(UTC).date()
    pack = tmp_path / "access.zip"
    out = cli.ok(
        "evidence",
        "pack",
        "--control",
        "OTC-05",
        "--from",
        (today - timedelta(days=1)).isoformat(),
        "--to",
        (today + timedelta(days=1)).isoformat(),
        "--seed",
        "1",
        "--out",
        str(pack),
    )
    # The grant was made from the command line by an operator who is no Cashcycle admin: an exception the
    # pack shows (the command line is a privileged door, and the evidence says who used it).
    assert out.startswith(f"{pack}: 1 records, sample 1 (seed 1), 1 exception(s)")
    with zipfile.ZipFile(pack) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        [item] = [json.loads(x) for x in zf.read("sample_tests.jsonl").decode().splitlines()]
    assert manifest["control"]["id"] == "OTC-05" and manifest["generated_by"] == OPERATOR
    results = {t["test"]: t["result"] for t in item["tests"]}
    assert results == {
        "changed_by_other_than_subject": "pass",
        "changed_by_administrator": "fail",
        "no_duties_conflict_created": "pass",
    }

    bad = cli.run("evidence", "pack", "--control", "NOPE", "--from", "2026-11-01", "--to", "2026-11-30")
    assert bad.returncode == 2 and "unknown control" in bad.stderr
    bad = cli.run("evidence", "pack", "--control", "OTC-01", "--from", "2026-13-01", "--to", "2026-11-30")
    assert bad.returncode == 2 and "YYYY-MM-DD" in bad.stderr

    # An entry changed behind the application's back: verification exits 1 and says where and how.
    with sqlite3.connect(tmp_path / "cashcycle.db") as db:
        db.execute("DROP TRIGGER ledger_entry_no_update")
        db.execute("UPDATE ledger_entry SET actor = 'mallory' WHERE legal_entity = 'ACME' AND seq = 1")
    done = cli.run("ledger", "verify", "--entity", "ACME")
    assert done.returncode == 1
    assert "ACME: broken at seq 1 (changed)" in done.stdout
