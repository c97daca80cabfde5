"""Alembic environment: the target metadata is the SQLModel tables of activities.models.

A run of migrations is one transaction on both databases: a migration that fails leaves the store at the
revision it started from, never half-way. PostgreSQL has transactional DDL; SQLite has it too, but Python's
sqlite3 driver lets DDL outside a transaction commit on its own, so the connection is opened with the
driver's transaction handling off and BEGIN IMMEDIATE is emitted explicitly (as activities/db.py does for
the store). SQLite migrations run in batch mode (a table is copied to change a column); foreign keys are
not enforced during a migration, so copying a table that others reference is allowed.

Every API and worker process migrates as it starts, and replicas start together: one migrates at a time
and the others then find the store at head. On SQLite the write lock taken by BEGIN IMMEDIATE does that
(the others wait up to a minute for it); on PostgreSQL a transaction-scoped advisory lock taken before
Alembic reads the current revision.

Autogenerate compares types and server defaults (activities.db.AUTOGENERATE_OPTIONS): what
tests/activities/test_migrations.py checks to be empty between the models and a migrated database.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import engine_from_config, event, pool, text
from sqlmodel import SQLModel

# Importing the modules registers their tables with SQLModel's metadata.
from activities.db import AUTOGENERATE_OPTIONS, use_wal

config = context.config
target_metadata = SQLModel.metadata
MIGRATION_LOCK = 0x63617368_6379636C  # "cashcycl": the advisory lock key of this store's migrations


def run_migrations_online() -> None:
    section = config.get_section(config.config_ini_section, {})
    sqlite = section["sqlalchemy.url"].startswith("sqlite")
    connectable = engine_from_config(
        section,
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
        connect_args={"timeout": 60} if sqlite else {},
    )
    if sqlite:

        @event.listens_for(connectable, "connect")
        def _driver_leaves_transactions_to_us(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None
            # The store's mode from its first migration on: a process opening the store while another
            # migrates then finds it in WAL mode already (switching needs a lock it would not wait for).
            use_wal(dbapi_conn)

        @event.listens_for(connectable, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=sqlite,
            transactional_ddl=True,
            **AUTOGENERATE_OPTIONS,
        )
        with context.begin_transaction():
            if not sqlite:
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            context.run_migrations()
    connectable.dispose()


run_migrations_online()
