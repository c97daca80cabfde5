"""Corrective and preventive actions (CAPA) of disputes closed with an internal root cause: the read model
of CapaWorkflow (`capa`, one row per CAPA with its effectiveness checks; `capa_action`, its corrective and
preventive actions with owner, due date, completion and pending extension).

Downgrade: drops both tables, refused while any CAPA is recorded (the ledger keeps every transition, but
the board and the reports would lose them).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 23:50:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

from activities.db import refuse_downgrade_losing


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('capa',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('legal_entity', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('capa_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('workflow_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('dispute_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('case_number', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('root_cause', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('customer_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('function', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('opened_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('opened_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('check_due_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('last_outcome', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('checks_json', sa.Text(), nullable=False),
    sa.Column('reopened', sa.Integer(), nullable=False),
    sa.Column('closed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('transition_seq', sa.Integer(), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('legal_entity', 'capa_id'),
    sa.UniqueConstraint('workflow_id')
    )
    with op.batch_alter_table('capa', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_capa_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_capa_dispute_id'), ['dispute_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_capa_legal_entity'), ['legal_entity'], unique=False)
        batch_op.create_index(batch_op.f('ix_capa_root_cause'), ['root_cause'], unique=False)
        batch_op.create_index(batch_op.f('ix_capa_status'), ['status'], unique=False)

    op.create_table('capa_action',
    sa.Column('capa_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('owner', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('due', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('due_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('completed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('completed_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('extension_new_due', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('extension_reason', sa.Text(), nullable=False),
    sa.Column('extension_requested_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('extensions_approved', sa.Integer(), nullable=False),
    sa.Column('reminders_sent', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['capa_id'], ['capa.id'], ),
    sa.PrimaryKeyConstraint('capa_id', 'kind')
    )
    with op.batch_alter_table('capa_action', schema=None) as batch_op:
        batch_op.create_index('ix_capa_action_owner_due', ['owner', 'due_at'], unique=False)


def downgrade() -> None:
    refuse_downgrade_losing(op.get_bind(), revision, {'CAPAs': 'SELECT count(*) FROM capa'})
    with op.batch_alter_table('capa_action', schema=None) as batch_op:
        batch_op.drop_index('ix_capa_action_owner_due')
    op.drop_table('capa_action')
    with op.batch_alter_table('capa', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_capa_status'))
        batch_op.drop_index(batch_op.f('ix_capa_root_cause'))
        batch_op.drop_index(batch_op.f('ix_capa_legal_entity'))
        batch_op.drop_index(batch_op.f('ix_capa_dispute_id'))
        batch_op.drop_index(batch_op.f('ix_capa_customer_id'))
    op.drop_table('capa')
