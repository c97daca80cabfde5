"""Customer portals: the customer's channel (existing customers: 'email', the PDF by mail, as before),
portal submissions and poll cursors.

Downgrade: refused (activities.db.DowngradeRefused, nothing changed) while any customer goes through a
portal, or any portal pass or poll cursor is stored: the passes are the portal reports' only record, and
dropping the channel would silently send a portal customer's invoices by mail. Without them it downgrades.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 05:30:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

from activities.db import refuse_downgrade_losing


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('customer', schema=None) as batch_op:
        batch_op.add_column(sa.Column('portal', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False, server_default='email'))
    op.create_table('portal_submission',
    sa.Column('submission_key', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('invoice_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('legal_entity', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('customer_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('portal', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('submission_pass', sa.Integer(), nullable=False),
    sa.Column('portal_ref', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('submitted_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('status_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('reason_code', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('reason_text', sa.Text(), nullable=False),
    sa.Column('accepted_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('rejected_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoice.id'], ),
    sa.PrimaryKeyConstraint('submission_key')
    )
    with op.batch_alter_table('portal_submission', schema=None) as batch_op:
        for column in ('invoice_id', 'legal_entity', 'customer_id', 'portal', 'portal_ref', 'submitted_at'):
            batch_op.create_index(batch_op.f(f'ix_portal_submission_{column}'), [column], unique=False)
    op.create_table('portal_cursor',
    sa.Column('portal', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('cursor', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('portal')
    )


def downgrade() -> None:
    refuse_downgrade_losing(op.get_bind(), revision, {
        "customers on a portal": "SELECT count(*) FROM customer WHERE portal <> 'email'",
        "portal passes": "SELECT count(*) FROM portal_submission",
        "portal poll cursors": "SELECT count(*) FROM portal_cursor",
    })
    op.drop_table('portal_cursor')
    with op.batch_alter_table('portal_submission', schema=None) as batch_op:
        for column in ('invoice_id', 'legal_entity', 'customer_id', 'portal', 'portal_ref', 'submitted_at'):
            batch_op.drop_index(batch_op.f(f'ix_portal_submission_{column}'))
    op.drop_table('portal_submission')
    with op.batch_alter_table('customer', schema=None) as batch_op:
        batch_op.drop_column('portal')
