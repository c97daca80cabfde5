"""Engines, sessions and migrations for the store (SQLite by default, PostgreSQL in production).

SQLite runs in WAL mode. Write transactions take the write lock up front (BEGIN IMMEDIATE) so that two
writers never deadlock upgrading a read lock; reads stay concurrent.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_engine(url: str, immediate: bool) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
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
