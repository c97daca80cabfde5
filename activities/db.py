"""Engines, sessions and migrations for the store (SQLite by default, PostgreSQL in production).

SQLite runs in WAL mode. Write transactions take the write lock up front (BEGIN IMMEDIATE) so that two
writers never deadlock upgrading a read lock; reads stay concurrent.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, create_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def use_wal(dbapi_conn: sqlite3.Connection, seconds: float = 60.0) -> None:
    """Put the SQLite file in WAL mode (it stays so: the mode is kept in the file). Switching a file in
    rollback-journal mode needs an exclusive lock, and while another process holds a lock (a replica
    migrating the new store as this one starts) SQLite answers "database is locked" at once, without
    waiting in its busy handler: retried here. On a file already in WAL mode it is a no-op."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            dbapi_conn.execute("PRAGMA journal_mode=WAL").fetchall()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _sqlite_engine(url: str, immediate: bool) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        use_wal(dbapi_conn)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


@dataclass
class Store:
    """The store's engines: `read` for queries, `write` for transactions that change data."""

    url: str
    read: Engine
    write: Engine
    # SQLite has one writer at a time. The threads of one process (the worker's activities) queue for it
    # here and the next one starts as soon as the last commits; left to SQLite's busy handler they would
    # retry after sleeps of up to 100 ms each. Other processes still wait in the busy handler.
    write_lock: threading.RLock | None = field(default=None, compare=False)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    def dispose(self) -> None:
        self.read.dispose()
        if self.write is not self.read:
            self.write.dispose()


def open_store(url: str) -> Store:
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return Store(
            url,
            _sqlite_engine(url, immediate=False),
            _sqlite_engine(url, immediate=True),
            write_lock=threading.RLock(),
        )
    engine = create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    return Store(url, engine, engine)


@contextmanager
def reading(store: Store) -> Iterator[Session]:
    with Session(store.read) as session:
        yield session


@contextmanager
def writing(store: Store) -> Iterator[Session]:
    """One write transaction: committed on success, rolled back on any exception."""
    if store.write_lock is not None:
        store.write_lock.acquire()
    try:
        with Session(store.write) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
    finally:
        if store.write_lock is not None:
            store.write_lock.release()


class DowngradeRefused(RuntimeError):
    """A migration's downgrade would destroy data, and refused before changing anything.

    `losses` names each kind of data it would destroy and how many rows hold it."""

    def __init__(self, revision: str, losses: dict[str, int]) -> None:
        self.revision, self.losses = revision, losses
        found = "; ".join(f"{what}: {n}" for what, n in losses.items())
        super().__init__(
            f"downgrade of revision {revision} refused, it would destroy {found}. Nothing was changed: "
            "restore a backup taken before the upgrade instead"
        )


def refuse_downgrade_losing(connection: Connection, revision: str, losses: dict[str, str]) -> None:
    """The first step of a migration's downgrade(): `losses` maps what the downgrade would destroy to a
    query counting the rows that hold it. Any of them non-zero, and the downgrade raises DowngradeRefused
    before it touches the schema (evidence and business data are not dropped by a schema change)."""
    found = {what: int(connection.execute(text(sql)).scalar_one()) for what, sql in losses.items()}
    lost = {what: n for what, n in found.items() if n}
    if lost:
        raise DowngradeRefused(revision, lost)


def _unquoted(default: str | None) -> str | None:
    if default is None:
        return None
    default = default.strip()
    while default.startswith("(") and default.endswith(")"):
        default = default[1:-1].strip()
    if len(default) >= 2 and default[0] == default[-1] == "'":
        default = default[1:-1]
    return default


def same_server_default(
    context: Any,
    inspected_column: Any,
    metadata_column: Any,
    inspected_default: str | None,
    metadata_default: Any,
    rendered_metadata_default: str | None,
) -> bool | None:
    """Alembic's server-default comparison, except for the empty string on SQLite: Alembic reflects a
    `DEFAULT ''` there as `('')` and the model's `''` as nothing, and reports a difference that is not one.
    Returns False (the same) for that case, None (Alembic decides) for every other."""
    if context.dialect.name == "sqlite" and rendered_metadata_default in ("", "''"):
        return _unquoted(inspected_default) != ""
    return None


# How autogenerate compares the models with a database: types and server defaults included. env.py runs
# with these (so `alembic revision --autogenerate` sees what the migration test checks) and the test too.
AUTOGENERATE_OPTIONS: dict[str, Any] = {"compare_type": True, "compare_server_default": same_server_default}


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Bring the schema to the newest migration (run before the API or worker starts)."""
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), "head")
