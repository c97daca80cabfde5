"""`cashcycle users` and `cashcycle entities`, run as the operator runs them: a separate process on a data
directory. With the access API (tests/api/test_access.py) this command is a door to roles, and the only
one to users; what it writes must be right (hashed passwords, ledgered users and grants), what it refuses
(a typo, a conflict of duties) must leave no trace, and it reports the conflicts of duties held."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from activities.db import open_store, reading
from activities.directory import ACCESS_CHAIN, authenticate
from activities.duties import CONFLICTS_FILE
from activities.ledger import verify_chain

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Tr0ub4dor-and-horse"
OPERATOR = "it-ops.jdoe"


@pytest.fixture(scope="session")
def bytecode_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the commands keep compiled bytecode: with PYTHONDONTWRITEBYTECODE set, every command would
    compile SQLAlchemy and Alembic again (seconds each); a prefix keeps the work tree clean."""
    path = tmp_path_factory.getbasetemp() / "pycache"
    path.mkdir(exist_ok=True)
    return path


class Cli:
    """The `cashcycle` command on one data directory, as an operator runs it."""

    def __init__(self, data_dir: Path, bytecode_cache: Path) -> None:
        self.data_dir = data_dir
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CASHCYCLE_", "TEMPORAL_"))}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(
            PYTHONPYCACHEPREFIX=str(bytecode_cache),
            CASHCYCLE_DATA_DIR=str(data_dir),
            CASHCYCLE_OPERATOR=OPERATOR,
        )
        self.env = env

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "api.cli", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, f"cashcycle {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.data_dir / "cashcycle.db") as conn:
            return list(conn.execute(sql))

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every table the access commands could touch, in full."""
        tables = [
            "legal_entity",
            "app_user",
            "role_assignment",
            "policy_revision",
            "ledger_entry",
            "ledger_head",
        ]
        return {t: self.rows(f"SELECT * FROM {t} ORDER BY 1") for t in tables}  # noqa: S608 (fixed names)


@pytest.fixture
def cli(tmp_path: Path, bytecode_cache: Path) -> Cli:
    return Cli(tmp_path, bytecode_cache)


def test_add_grant_list_revoke_with_hashed_password_and_ledgered_grants(cli: Cli) -> None:
    out = cli.ok(
        "entities",
        "add",
        "ACME",
        "--name",
        "Acme Industrie SAS",
        "--currency",
        "EUR",
        "--timezone",
        "Europe/Paris",
        "--country",
        "FR",
    )
    assert "legal entity ACME ready" in out
    out = cli.ok(
        "users",
        "add",
        "alice",
        "--password",
        PASSWORD,
        "--full-name",
        "Alice Martin",
        "--email",
        "alice.martin@acme.example",
    )
    assert "user alice added" in out

    out = cli.ok("users", "grant", "alice", "ar_preparer", "ACME")
    assert "alice now holds ar_preparer in ACME" in out
    assert "alice\tar_preparer@ACME" in cli.ok("users", "list").splitlines()

    out = cli.ok("users", "revoke", "alice", "ar_preparer", "ACME")
    assert "alice no longer holds ar_preparer in ACME" in out
    assert "alice\t-" in cli.ok("users", "list").splitlines()
    assert cli.rows("SELECT * FROM role_assignment") == []

    # The password is kept as an Argon2id hash of itself, and nowhere in clear (database, WAL, logs).
    [(stored, full_name, email)] = cli.rows("SELECT password_hash, full_name, email FROM app_user")
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert PasswordHasher().verify(stored, PASSWORD)
    assert (full_name, email) == ("Alice Martin", "alice.martin@acme.example")
    for path in cli.data_dir.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), f"clear password found in {path}"
    store = open_store(f"sqlite:///{cli.data_dir / 'cashcycle.db'}")
    try:
        with reading(store) as session:
            assert authenticate(session, "alice", PASSWORD) is not None
            assert authenticate(session, "alice", PASSWORD + "x") is None
            # Grant and revoke are evidence: two entries on an intact chain, naming the operator; the user's
            # creation belongs to no legal entity and is on the access chain.
            chain = verify_chain(session, "ACME")
            assert chain.intact and chain.entries == 2, chain
            access = verify_chain(session, ACCESS_CHAIN)
            assert access.intact and access.entries == 1, access
    finally:
        store.dispose()
    assert cli.rows(
        f"SELECT event, object_id, actor, actor_roles FROM ledger_entry WHERE legal_entity = '{ACCESS_CHAIN}'"  # noqa: S608
    ) == [("user_added", "alice", OPERATOR, "[]")]
    ledger = cli.rows(
        "SELECT seq, event, object_type, object_id, actor, payload FROM ledger_entry"
        " WHERE legal_entity = 'ACME' ORDER BY seq"
    )
    assert [(seq, event, kind, who, actor) for seq, event, kind, who, actor, _ in ledger] == [
        (1, "role_granted", "access", "alice", OPERATOR),
        (2, "role_revoked", "access", "alice", OPERATOR),
    ]
    for *_, payload in ledger:
        assert json.loads(payload) == {"username": "alice", "role": "ar_preparer", "legal_entity": "ACME"}
    # Every API process reloads its role graph when the revision moves: once per grant and revoke.
    assert cli.rows("SELECT revision FROM policy_revision") == [(2,)]


def test_granting_a_role_already_held_changes_nothing(cli: Cli) -> None:
    cli.ok("entities", "add", "ACME", "--name", "Acme Industrie SAS", "--currency", "EUR")
    cli.ok("users", "add", "bob", "--password", PASSWORD)
    cli.ok("users", "grant", "bob", "ar_approver", "ACME")
    before = cli.snapshot()
    assert "bob already held ar_approver in ACME" in cli.ok("users", "grant", "bob", "ar_approver", "ACME")
    assert cli.snapshot() == before


BAD_INPUT: list[tuple[list[str], str]] = [
    (["users", "grant", "alice", "superuser", "ACME"], "role: unknown role superuser"),
    (["users", "grant", "ghost", "ar_preparer", "ACME"], "username: no user ghost"),
    (["users", "grant", "alice", "ar_preparer", "GLOBEX"], "legal_entity: no legal entity GLOBEX"),
    (["users", "revoke", "alice", "superuser", "ACME"], "role: unknown role superuser"),
    (["users", "revoke", "ghost", "ar_approver", "ACME"], "username: no user ghost"),
    (["users", "revoke", "alice", "ar_approver", "GLOBEX"], "legal_entity: no legal entity GLOBEX"),
    (["users", "disable", "ghost"], "username: no user ghost"),
    (["users", "add", "carol", "--password", "short"], "password: at least 8 characters"),
    (["users", "add", "alice", "--password", "another-long-password"], "username: user alice already exists"),
    (["users", "add", "carol smith", "--password", PASSWORD], "username: 1-64 letters, digits"),
    (["entities", "add", "GLOBEX", "--name", "Globex Corp", "--currency", "EURO"], "currency:"),
    (
        ["entities", "add", "GLOBEX", "--name", "Globex Corp", "--currency", "XAU"],
        "currency: XAU has no minor unit",
    ),
    (
        [
            "entities",
            "add",
            "GLOBEX",
            "--name",
            "Globex Corp",
            "--currency",
            "USD",
            "--timezone",
            "Mars/Olympus",
        ],
        "timezone: unknown time zone 'Mars/Olympus'",
    ),
    (
        ["entities", "add", "ACME", "--name", "Acme Holding", "--currency", "USD"],
        "code: legal entity ACME already exists",
    ),
]


def test_bad_input_exits_non_zero_with_the_reason_and_changes_nothing(cli: Cli) -> None:
    cli.ok("entities", "add", "ACME", "--name", "Acme Industrie SAS", "--currency", "EUR")
    cli.ok("users", "add", "alice", "--password", PASSWORD)
    cli.ok("users", "grant", "alice", "ar_approver", "ACME")
    before = cli.snapshot()
    assert len(before["ledger_entry"]) == 2  # alice added (access chain), granted (ACME)

    # Independent refusals: run them side by side to keep the test short.
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda case: cli.run(*case[0]), BAD_INPUT))
    for (args, reason), done in zip(BAD_INPUT, results, strict=True):
        command = "cashcycle " + " ".join(args)
        assert done.returncode != 0, f"{command} succeeded:\n{done.stdout}"
        assert f"error: {reason}" in done.stderr, f"{command}: unclear refusal:\n{done.stderr}"
        assert "Traceback" not in done.stderr, f"{command} crashed:\n{done.stderr}"

    assert cli.snapshot() == before
    assert "alice\tar_approver@ACME" in cli.ok("users", "list").splitlines()


def test_a_grant_that_would_combine_incompatible_duties_is_refused_naming_the_pair(cli: Cli) -> None:
    cli.ok("entities", "add", "ACME", "--name", "Acme Industrie SAS", "--currency", "EUR")
    cli.ok("entities", "add", "GLOBEX", "--name", "Globex Corp", "--currency", "USD")
    cli.ok("users", "add", "carol", "--password", PASSWORD)
    cli.ok("users", "grant", "carol", "cash_applier", "ACME")
    before = cli.snapshot()

    done = cli.run("users", "grant", "carol", "ar_preparer", "ACME")
    assert done.returncode == 2, done.stdout
    assert "error: role: carol holds cash_applier in ACME" in done.stderr
    assert "cash_applier + ar_preparer" in done.stderr and "cash application vs. invoicing" in done.stderr
    assert "Traceback" not in done.stderr
    assert cli.snapshot() == before

    # The same two roles in different legal entities are no conflict.
    assert "carol now holds ar_preparer in GLOBEX" in cli.ok(
        "users", "grant", "carol", "ar_preparer", "GLOBEX"
    )


def test_the_conflicts_report_names_the_file_version_and_each_conflict_held(cli: Cli) -> None:
    cli.ok("entities", "add", "ACME", "--name", "Acme Industrie SAS", "--currency", "EUR")
    cli.ok("users", "add", "dave", "--password", PASSWORD)
    cli.ok("users", "grant", "dave", "collector", "ACME")
    version = hashlib.sha256(CONFLICTS_FILE.read_bytes()).hexdigest()
    [header] = cli.ok("users", "conflicts").splitlines()
    assert f"policies/sod_conflicts.csv sha256 {version}" in header
    assert "1 role assignments examined, 0 conflict(s)" in header

    # A conflict granted before the conflicts file tightened (written to the store directly here).
    with sqlite3.connect(cli.data_dir / "cashcycle.db") as conn:
        conn.execute(
            "INSERT INTO role_assignment (username, role, legal_entity, granted_by, granted_at)"
            " VALUES ('dave', 'controller', 'ACME', 'before', '2026-01-01 00:00:00')"
        )
    cli.ok("users", "disable", "dave")
    header, row = cli.ok("users", "conflicts").splitlines()
    assert "2 role assignments examined, 1 conflict(s)" in header
    assert row.split("\t")[:3] == ["dave (disabled)", "ACME", "collector + controller"]
    assert "collections vs. write-off approval" in row


def test_disabling_a_user_stops_their_sign_in_keeps_their_roles_and_is_ledgered(cli: Cli) -> None:
    cli.ok("entities", "add", "ACME", "--name", "Acme Industrie SAS", "--currency", "EUR")
    cli.ok("users", "add", "erin", "--password", PASSWORD)
    cli.ok("users", "grant", "erin", "ar_approver", "ACME")
    assert "user erin disabled" in cli.ok("users", "disable", "erin", "--reason", "left the company")
    assert "user erin was already disabled" in cli.ok("users", "disable", "erin")
    assert "erin (disabled)\tar_approver@ACME" in cli.ok("users", "list").splitlines()
    assert cli.rows(
        f"SELECT event, object_id, actor, reason FROM ledger_entry WHERE legal_entity = '{ACCESS_CHAIN}'"  # noqa: S608
        " ORDER BY seq"
    ) == [("user_added", "erin", OPERATOR, ""), ("user_disabled", "erin", OPERATOR, "left the company")]
    store = open_store(f"sqlite:///{cli.data_dir / 'cashcycle.db'}")
    try:
        with reading(store) as session:
            assert authenticate(session, "erin", PASSWORD) is None
            assert verify_chain(session, ACCESS_CHAIN).intact
    finally:
        store.dispose()
