"""Alembic environment: the target metadata is the SQLModel tables of activities.models.

A run of migrations is one transaction on both databases: a migration that fails leaves the store at the
revision it started from, never half-way. PostgreSQL has transactional DDL; SQLite has it too, but Python's
sqlite3 driver commits before every DDL statement unless it is told not to manage transactions, so the
connection is opened with that switched off and BEGIN is emitted explicitly (as activities/db.py does for
the store). SQLite migrations run in batch mode (a table is copied to change a column); foreign keys are
not enforced during a migration, so copying a table that others reference is allowed.

Autogenerate compares types and server defaults (activities.db.AUTOGENERATE_OPTIONS): what
tests/activities/test_migrations.py checks to be empty between the models and a migrated database.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import engine_from_config, event, pool
from sqlmodel import SQLModel

import activities.models  # noqa: F401  (registers the tables)
from activities.db import AUTOGENERATE_OPTIONS

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    connectable = engine_from_config(
        config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    sqlite = connectable.dialect.name == "sqlite"
    if sqlite:

        @event.listens_for(connectable, "connect")
        def _driver_leaves_transactions_to_us(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        @event.listens_for(connectable, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN")

    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=sqlite,
            transactional_ddl=True,
            **AUTOGENERATE_OPTIONS,
        )
        with context.begin_transaction():
            context.run_migrations()
    connectable.dispose()


run_migrations_online()
