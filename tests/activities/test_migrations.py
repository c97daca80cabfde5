"""The store's migrations, on SQLite and PostgreSQL.

- An empty database upgrades to head, and the models agree with what the migrations built (autogenerate
  finds no difference, types and server defaults included).
- A store at any earlier revision, with data in it, upgrades to head: every row survives, the API's queries
  read it, the ledger is still append-only and its hash chain (and signed checkpoints) still verify.
- Each revision downgrades by one when nothing would be lost, and upgrading again restores head; when the
  store holds data the revision below cannot, the downgrade refuses, says what it would destroy and changes
  nothing (each migration's docstring says so).
- A migration that fails leaves the store at the revision it started from.

The data is built per revision (migration_data.RELEASES): what a store at that revision can hold, inserted
with SQL into the tables as they are at that revision (never through today's models, which may not match
them), and how the API's queries read it once the store is at head. A new migration comes with its entry
there.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Integer, MetaData, String, Table, inspect, text
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import False_, True_
from sqlmodel import SQLModel

from activities.db import (
    AUTOGENERATE_OPTIONS,
    MIGRATIONS,
    DowngradeRefused,
    alembic_config,
    migrate,
    open_store,
    reading,
    use_wal,
    writing,
)
from activities.ledger import LedgerFacts, append_to_ledger, verify_chain
from tests.activities.migration_data import (
    ACME,
    RELEASES,
    Dataset,
    at,
    data_at,
    derived_by_migrations,
    read_through_the_api,
)
from tests.conftest import PG_ADMIN_DSN, drop_pg_database, new_pg_database

SCRIPTS = ScriptDirectory.from_config(alembic_config("sqlite://"))
REVISIONS = [s.revision for s in reversed(list(SCRIPTS.walk_revisions()))]  # oldest first
HEAD = REVISIONS[-1]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each backend, no migration run yet."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    admin = request.getfixturevalue("pg_server")
    name, url = new_pg_database(admin)
    try:
        yield url
    finally:
        drop_pg_database(admin, name)


def upgrade(url: str, revision: str) -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


@contextmanager
def connected(url: str) -> Iterator[Connection]:
    """A plain connection to the database (no store engine, no models), its engine disposed of after."""
    engine = sa_create_engine(url)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def backend(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def current_revision(url: str) -> str | None:
    with connected(url) as conn:
        return MigrationContext.configure(conn).get_current_revision()


# The evidence tables refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL) in the database itself.
APPEND_ONLY_TRIGGERS = {
    "sqlite": {
        "ledger_entry": ["ledger_entry_no_delete", "ledger_entry_no_update"],
        "ledger_checkpoint": ["ledger_checkpoint_no_delete", "ledger_checkpoint_no_update"],
    },
    "postgresql": {
        "ledger_entry": ["ledger_entry_append_only", "ledger_entry_no_truncate"],
        "ledger_checkpoint": ["ledger_checkpoint_append_only", "ledger_checkpoint_no_truncate"],
    },
}


_CHANGES = [
    ("ledger_entry", "UPDATE ledger_entry SET seq = seq + 1"),
    ("ledger_entry", "DELETE FROM ledger_entry"),
    ("ledger_checkpoint", "UPDATE ledger_checkpoint SET seq = seq + 1"),
    ("ledger_checkpoint", "DELETE FROM ledger_checkpoint"),
]
REFUSED_ON_EVIDENCE = {
    "sqlite": _CHANGES,  # SQLite has no TRUNCATE (a DELETE without WHERE, refused above)
    "postgresql": [
        *_CHANGES,
        ("ledger_entry", "TRUNCATE ledger_entry"),
        ("ledger_checkpoint", "TRUNCATE ledger_checkpoint"),
    ],
}


def triggers_by_table(url: str) -> dict[str, list[str]]:
    """Every trigger in the database, by table."""
    with connected(url) as conn:
        if conn.dialect.name == "sqlite":
            sql = "SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger'"
        else:
            sql = "SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal"
        found: dict[str, list[str]] = defaultdict(list)
        for table, name in conn.execute(text(sql)):
            found[str(table)].append(str(name))
        return {table: sorted(names) for table, names in found.items()}


def named(diff: Any) -> tuple[str, str]:
    """One autogenerate difference as (operation, table or table.column)."""
    if isinstance(diff, list):  # the changes to one column come as a list of one
        (diff,) = diff
    op = diff[0]
    if op in ("add_table", "remove_table"):
        return op, diff[1].name
    if op in ("add_column", "remove_column"):
        return op, f"{diff[2]}.{diff[3].name}"
    if op.startswith("modify_"):
        return op, f"{diff[2]}.{diff[3]}"
    return op, repr(diff[1:])


def differences(url: str, target: MetaData = SQLModel.metadata) -> list[tuple[str, str]]:
    """What `alembic revision --autogenerate` would write to turn the database at `url` into `target`."""
    with connected(url) as conn:
        return [
            named(d)
            for d in compare_metadata(MigrationContext.configure(conn, opts=AUTOGENERATE_OPTIONS), target)
        ]


@contextmanager
def another_database(like: str, tmp_path: Path) -> Iterator[str]:
    """A second empty database on the same backend as `like`, dropped afterwards."""
    if backend(like) == "sqlite":
        yield f"sqlite:///{tmp_path / 'another.db'}"
        return
    name, url = new_pg_database(PG_ADMIN_DSN)
    try:
        yield url
    finally:
        drop_pg_database(PG_ADMIN_DSN, name)


def schema_at(url: str) -> MetaData:
    with connected(url) as conn:
        found = MetaData()
        found.reflect(conn)
        if "alembic_version" in found.tables:
            found.remove(found.tables["alembic_version"])
        return found


def tables_as_they_are(conn: Connection, names: set[str]) -> list[Table]:
    """The tables as they are in the database now, with today's column types (for binding and reading
    values: the types of a column have not changed since it was added), in foreign-key order."""
    order = [t.name for t in SQLModel.metadata.sorted_tables]
    found = []
    for name in sorted(names, key=lambda n: order.index(n) if n in order else len(order)):
        today = SQLModel.metadata.tables.get(name)
        columns = []
        for reflected in inspect(conn).get_columns(name):
            column = today.c.get(reflected["name"]) if today is not None else None
            columns.append(
                Column(reflected["name"], column.type if column is not None else reflected["type"])
            )
        found.append(Table(name, MetaData(), *columns))
    return found


def insert(url: str, d: Dataset) -> None:
    stored = d.stored()
    with connected(url) as conn, conn.begin():
        for table in tables_as_they_are(conn, set(stored)):
            for row in stored[table.name]:
                unknown = set(row) - set(table.c.keys())
                assert not unknown, f"{table.name} has no column {sorted(unknown)} at this revision"
                conn.execute(table.insert().values(**row))


def default_of(table: str, column: str) -> Any:
    """What a row that did not set `column` holds: the server default the migration gave it, else NULL."""
    today = SQLModel.metadata.tables[table].c[column]
    default = getattr(today.server_default, "arg", None)
    if isinstance(default, True_ | False_):
        return isinstance(default, True_)
    if isinstance(default, str) and isinstance(today.type, Integer):
        return int(default)
    return default


def assert_stored(url: str, d: Dataset) -> None:
    """Every row of `d` is in the database as built, and nothing else is: columns it did not set (those
    that later migrations added among them) hold their defaults."""
    stored = d.stored()
    with connected(url) as conn:
        present = set(inspect(conn).get_table_names()) - {"alembic_version"}
        filled = {t for t in present if conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()}  # noqa: S608
        assert filled == set(stored), "tables with rows, and the tables the data has"
        if conn.dialect.name == "sqlite":  # migrations run without foreign keys enforced there: still hold?
            assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
        for table in tables_as_they_are(conn, set(stored)):
            # Surrogate keys are the database's business (the sequence numbers them); the rest is data.
            columns = [c for c in table.c if not (c.name == "id" and isinstance(c.type, Integer))]
            read = sorted(
                (tuple(row) for row in conn.execute(table.select().with_only_columns(*columns))), key=repr
            )
            derived = derived_by_migrations(d).get(table.name, {})
            built = sorted(
                (
                    tuple(
                        row[c.name]
                        if c.name in row
                        else derived.get(row.get("id"), {}).get(c.name, default_of(table.name, c.name))
                        for c in columns
                    )
                    for row in stored[table.name]
                ),
                key=repr,
            )
            assert read == built, f"{table.name} as stored differs from the data"


def assert_the_api_reads(url: str, d: Dataset, revision: str) -> None:
    """Through the store and the API's queries, at head: every release's data up to `revision` reads as
    it should, the ledger refuses changes, its chain verifies and grows."""
    store = open_store(url)
    try:
        with reading(store) as s:
            read_through_the_api(s, d, revision)
            result = verify_chain(s, ACME)
        assert (result.intact, result.entries, result.head_hash) == (
            True,
            len(d.chain),
            d.chain[-1].entry_hash,
        ), result.summary
        assert triggers_by_table(url) == APPEND_ONLY_TRIGGERS[backend(url)]
        stored = d.stored()
        for table, statement in REFUSED_ON_EVIDENCE[backend(url)]:
            if not stored.get(table) and not statement.startswith("TRUNCATE"):
                continue  # a trigger for each row: nothing to refuse in an empty table
            with pytest.raises(DBAPIError, match="append-only"), store.write.begin() as conn:
                conn.execute(text(statement))
        with writing(store) as s:
            entry = append_to_ledger(
                s,
                LedgerFacts(
                    legal_entity=ACME,
                    business_key="after-upgrade#1",
                    object_type="ledger",
                    object_id=ACME,
                    event="ledger_verified",
                    from_status=None,
                    to_status=None,
                    actor="compliance",
                    actor_roles=["compliance"],
                    rule="p, compliance, *, ledger:verify",
                    reason="after the upgrade",
                    workflow_id="",
                    run_id="",
                    request_id="",
                    at=at(100).isoformat(),
                    payload={"entries": len(d.chain)},
                ),
            )
            appended = (entry.seq, entry.prev_hash)
        assert appended == (len(d.chain) + 1, d.chain[-1].entry_hash)
        with reading(store) as s:
            grown = verify_chain(s, ACME)
        assert (grown.intact, grown.entries) == (True, len(d.chain) + 1), grown.summary
    finally:
        store.dispose()


# --- upgrading ------------------------------------------------------------------------------------------


def test_every_migration_comes_with_data_to_upgrade_and_downgrade_with() -> None:
    assert list(RELEASES) == REVISIONS, (
        "add the new revision's data to RELEASES (what it can store, how it reads)"
    )


@pytest.mark.parametrize("revision", REVISIONS)
def test_every_migration_says_in_its_docstring_when_it_downgrades(revision: str) -> None:
    doc = SCRIPTS.get_revision(revision).module.__doc__ or ""
    assert "\nDowngrade: " in doc and "Downgrade: <" not in doc, f"{revision}: say when it downgrades"


def test_an_empty_database_upgrades_to_head_with_every_table_of_the_models(empty_url: str) -> None:
    migrate(empty_url)
    assert current_revision(empty_url) == HEAD
    with connected(empty_url) as conn:
        assert set(inspect(conn).get_table_names()) == set(SQLModel.metadata.tables) | {"alembic_version"}
    assert triggers_by_table(empty_url) == APPEND_ONLY_TRIGGERS[backend(empty_url)]


def test_the_models_and_the_migrations_agree(empty_url: str) -> None:
    migrate(empty_url)
    assert differences(empty_url) == [], (
        "autogenerate would write a migration: the models and migrations disagree"
    )


def test_autogenerate_notices_a_table_a_column_or_a_default_the_models_do_not_have(empty_url: str) -> None:
    migrate(empty_url)
    with connected(empty_url) as conn, conn.begin():
        conn.execute(text("CREATE TABLE scratch (id INTEGER PRIMARY KEY)"))
        ops = Operations(MigrationContext.configure(conn))
        with ops.batch_alter_table("customer") as batch_op:
            batch_op.add_column(Column("fax", String(40), nullable=False, server_default=""))
        with ops.batch_alter_table("legal_entity") as batch_op:
            batch_op.alter_column("street", existing_type=String(200), server_default="somewhere")
    found = set(differences(empty_url))
    assert found == {
        ("remove_table", "scratch"),
        ("remove_column", "customer.fax"),
        ("modify_default", "legal_entity.street"),
    }


def test_migrating_twice_changes_nothing(empty_url: str) -> None:
    migrate(empty_url)
    before = triggers_by_table(empty_url)
    migrate(empty_url)
    migrate(empty_url)
    assert current_revision(empty_url) == HEAD
    assert triggers_by_table(empty_url) == before
    assert differences(empty_url) == []


def test_migrate_creates_the_sqlite_file_and_its_directories(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "there" / "store.db"
    migrate(f"sqlite:///{path}")
    assert path.exists() and current_revision(f"sqlite:///{path}") == HEAD


@pytest.mark.parametrize("revision", REVISIONS[:-1])
def test_a_store_at_an_earlier_revision_upgrades_and_the_api_reads_its_data(
    empty_url: str, revision: str
) -> None:
    upgrade(empty_url, revision)
    data = data_at(revision)
    insert(empty_url, data)

    migrate(empty_url)

    assert current_revision(empty_url) == HEAD
    assert_stored(empty_url, data)
    assert_the_api_reads(empty_url, data, revision)
    assert differences(empty_url) == []


# --- downgrading ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("revision", REVISIONS)
def test_a_downgrade_that_loses_nothing_runs_and_upgrading_again_restores_head(
    empty_url: str, revision: str, tmp_path: Path
) -> None:
    below = SCRIPTS.get_revision(revision).down_revision
    assert below is None or isinstance(below, str)
    data = data_at(below)  # nothing this revision added is used: the downgrade has nothing to lose
    if below is not None:
        upgrade(empty_url, below)
        insert(empty_url, data)
    upgrade(empty_url, revision)

    downgrade(empty_url, "-1")

    assert current_revision(empty_url) == below
    with another_database(empty_url, tmp_path) as fresh:
        if below is not None:
            upgrade(fresh, below)
        assert differences(empty_url, schema_at(fresh)) == [], "the schema differs from the revision's"
    assert_stored(empty_url, data)
    migrate(empty_url)
    assert_stored(empty_url, data)
    if below is not None:
        assert_the_api_reads(empty_url, data, below)
    assert differences(empty_url) == []


@pytest.mark.parametrize("revision", [r for r in REVISIONS if RELEASES[r].refused])
def test_a_downgrade_that_would_destroy_data_refuses_names_it_and_changes_nothing(
    empty_url: str, revision: str
) -> None:
    upgrade(empty_url, revision)
    data = data_at(revision)
    insert(empty_url, data)
    triggers = triggers_by_table(empty_url)

    with pytest.raises(DowngradeRefused) as refused:
        downgrade(empty_url, "-1")

    assert refused.value.revision == revision
    assert set(refused.value.losses) == RELEASES[revision].refused
    assert "Nothing was changed" in str(refused.value)
    assert current_revision(empty_url) == revision
    assert triggers_by_table(empty_url) == triggers
    assert_stored(empty_url, data)


# --- starting together, failing -----------------------------------------------------------------------

REPLICA = """
import sys, time
from pathlib import Path
from sqlalchemy import text
from activities.db import migrate, open_store, reading

ready, go = Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not go.exists():
    time.sleep(0.005)
migrate(sys.argv[1])
# Then the store opens, as the API and the worker open it, while the other replicas may still migrate.
store = open_store(sys.argv[1])
with reading(store) as session:
    session.execute(text("SELECT count(*) FROM legal_entity")).scalar_one()
store.dispose()
"""


def test_a_process_opening_a_store_another_is_migrating_waits_for_it_instead_of_failing(
    tmp_path: Path,
) -> None:
    """Opening a SQLite store switches it to WAL mode, which needs an exclusive lock; SQLite refuses at
    once ("database is locked") while another process holds a lock on a file in rollback-journal mode."""
    path = tmp_path / "store.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (i INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    threading.Timer(0.5, lambda: holder.execute("COMMIT")).start()
    opener = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    started = time.monotonic()
    use_wal(opener, seconds=10)
    assert time.monotonic() - started >= 0.4  # it waited for the lock
    assert opener.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    opener.close()
    holder.close()


def test_replicas_starting_together_on_an_empty_store_all_start_and_migrate_it_once(
    empty_url: str, tmp_path: Path
) -> None:
    # Every API and worker process migrates as it starts, then opens the store: three at once, each
    # released when all are ready.
    go = tmp_path / "go"
    replicas = [
        subprocess.Popen(
            [sys.executable, "-c", REPLICA, empty_url, str(tmp_path / f"ready-{n}"), str(go)],
            cwd=Path(__file__).resolve().parents[2],
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    try:
        while not all((tmp_path / f"ready-{n}").exists() for n in range(3)):
            assert all(r.poll() is None for r in replicas), "a replica ended before it was ready"
            time.sleep(0.01)
        go.touch()
        outcomes = [(r.wait(timeout=120), r.stderr.read() if r.stderr else "") for r in replicas]
    finally:
        for r in replicas:
            r.kill()
    errors = [[line for line in err.splitlines() if "Error" in line][-1:] for _, err in outcomes]
    assert [code for code, _ in outcomes] == [0, 0, 0], errors
    assert current_revision(empty_url) == HEAD
    assert differences(empty_url) == []


FAILING_MIGRATION = '''"""A migration that fails after changing the schema."""
from alembic import op
import sqlalchemy as sa

revision = "9999"
down_revision = "{head}"


def upgrade() -> None:
    op.create_table("half_done", sa.Column("id", sa.Integer(), primary_key=True))
    with op.batch_alter_table("customer") as batch_op:
        batch_op.add_column(sa.Column("half_done", sa.Integer(), nullable=True))
    raise RuntimeError("the migration fails half-way")


def downgrade() -> None:
    raise RuntimeError("never at this revision: its upgrade fails")
'''


def test_a_migration_that_fails_leaves_the_store_at_the_revision_it_started_from(
    empty_url: str, tmp_path: Path
) -> None:
    migrate(empty_url)
    scripts = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "9999_fails.py").write_text(FAILING_MIGRATION.format(head=HEAD))
    config = alembic_config(empty_url)
    config.set_main_option("script_location", str(scripts))

    with pytest.raises(RuntimeError, match="half-way"):
        command.upgrade(config, "head")

    assert current_revision(empty_url) == HEAD
    with connected(empty_url) as conn:
        assert "half_done" not in inspect(conn).get_table_names()
        assert "half_done" not in {c["name"] for c in inspect(conn).get_columns("customer")}
    assert differences(empty_url) == []
