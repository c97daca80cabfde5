"""Disputes and adjustments on the invoice's read model: the open dispute case that holds part of it and the
amount it holds, and what issued credit memos and approved write-offs took off the amount due.

Upgrade adds the columns empty: no invoice was disputed, credited or written off in part before this release.

Downgrade: drops the columns. Refused when an invoice is disputed, credited or written off, since the
release before would read a wrong amount due and lose the link to the case.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 23:50:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

from activities.db import refuse_downgrade_losing


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('invoice', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dispute_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('disputed_minor', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('credited_minor', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('written_off_minor', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.create_index(batch_op.f('ix_invoice_dispute_id'), ['dispute_id'], unique=False)


def downgrade() -> None:
    refuse_downgrade_losing(op.get_bind(), revision, {
        "invoices disputed, credited or written off": (
            "SELECT count(*) FROM invoice WHERE dispute_id <> '' OR disputed_minor <> 0 OR credited_minor <> 0 "
            "OR written_off_minor <> 0"
        ),
    })
    with op.batch_alter_table('invoice', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invoice_dispute_id'))
        batch_op.drop_column('written_off_minor')
        batch_op.drop_column('credited_minor')
        batch_op.drop_column('disputed_minor')
        batch_op.drop_column('dispute_id')
