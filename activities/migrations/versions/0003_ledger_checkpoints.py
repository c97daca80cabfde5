"""Signed ledger checkpoints (append-only, like the ledger: triggers refuse UPDATE and DELETE, and TRUNCATE
on PostgreSQL).

Downgrade: only without checkpoints. A signed checkpoint is evidence (what a rewrite of the chain cannot
reproduce without the key), and the ledger records each one; with any, the downgrade refuses
(activities.db.DowngradeRefused) and changes nothing.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 05:10:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

from activities.db import refuse_downgrade_losing


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ledger_checkpoint',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('legal_entity', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('entry_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('signed_at', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('key_id', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('public_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('signature', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('trigger', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('requested_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('ledger_checkpoint', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_checkpoint_legal_entity'), ['legal_entity'], unique=False)
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER ledger_checkpoint_no_{verb.lower()} BEFORE {verb} ON ledger_checkpoint "
                "BEGIN SELECT RAISE(ABORT, 'ledger_checkpoint is append-only'); END"
            )
    else:
        op.execute(
            "CREATE FUNCTION ledger_checkpoint_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'ledger_checkpoint is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER ledger_checkpoint_append_only BEFORE UPDATE OR DELETE ON ledger_checkpoint "
            "FOR EACH ROW EXECUTE FUNCTION ledger_checkpoint_append_only()"
        )
        op.execute(
            "CREATE TRIGGER ledger_checkpoint_no_truncate BEFORE TRUNCATE ON ledger_checkpoint "
            "FOR EACH STATEMENT EXECUTE FUNCTION ledger_checkpoint_append_only()"
        )


def downgrade() -> None:
    refuse_downgrade_losing(
        op.get_bind(), revision, {"signed checkpoints": "SELECT count(*) FROM ledger_checkpoint"}
    )
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP TRIGGER IF EXISTS ledger_checkpoint_no_truncate ON ledger_checkpoint")
        op.execute("DROP TRIGGER IF EXISTS ledger_checkpoint_append_only ON ledger_checkpoint")
        op.execute("DROP FUNCTION IF EXISTS ledger_checkpoint_append_only()")
    with op.batch_alter_table('ledger_checkpoint', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_checkpoint_legal_entity'))
    op.drop_table('ledger_checkpoint')
