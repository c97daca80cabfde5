"""Dispute cases: the case (`dispute`), the invoices it holds and how much of each (`dispute_invoice`), its
thread of notes and attachments (`dispute_note`, the attachments' bytes by SHA-256 in
`dispute_attachment`), and the case number reserved for each opening request (`dispute_request`).

Upgrade creates the tables empty: no case existed before this release.

Downgrade: drops the tables. Refused when any case, reservation or attachment is stored, since the cases,
their threads and the files customers sent would be lost (their ledger entries stay, but nothing would
read them).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 23:50:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

from activities.db import refuse_downgrade_losing


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dispute_attachment',
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('stored_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('stored_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('sha256')
    )
    op.create_table('dispute_request',
    sa.Column('legal_entity', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('request_key', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('dispute_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('case_number', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('legal_entity', 'request_key')
    )
    op.create_table('dispute',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('legal_entity', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('case_number', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('workflow_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('customer_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('claimed_code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('reason_version', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('owner', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('coordinator', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('original_minor', sa.BigInteger(), nullable=False),
    sa.Column('open_minor', sa.BigInteger(), nullable=False),
    sa.Column('credited_minor', sa.BigInteger(), nullable=False),
    sa.Column('written_off_minor', sa.BigInteger(), nullable=False),
    sa.Column('paid_minor', sa.BigInteger(), nullable=False),
    sa.Column('recovered_minor', sa.BigInteger(), nullable=False),
    sa.Column('escalation_level', sa.Integer(), nullable=False),
    sa.Column('waiting_reason', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('sla_due_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('window_deadline', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('sla_rule', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('resolution', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('root_cause', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('validity', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('capa_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('opened_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('opened_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('status_since', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('closed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('transition_seq', sa.Integer(), nullable=False),
    sa.Column('state_json', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], ),
    sa.ForeignKeyConstraint(['legal_entity'], ['legal_entity.code'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('legal_entity', 'case_number'),
    sa.UniqueConstraint('workflow_id')
    )
    op.create_index(op.f('ix_dispute_customer_id'), 'dispute', ['customer_id'], unique=False)
    op.create_index(op.f('ix_dispute_legal_entity'), 'dispute', ['legal_entity'], unique=False)
    op.create_index(op.f('ix_dispute_owner'), 'dispute', ['owner'], unique=False)
    op.create_index(op.f('ix_dispute_reason'), 'dispute', ['reason'], unique=False)
    op.create_index(op.f('ix_dispute_sla_due_at'), 'dispute', ['sla_due_at'], unique=False)
    op.create_index(op.f('ix_dispute_status'), 'dispute', ['status'], unique=False)
    op.create_table('dispute_invoice',
    sa.Column('dispute_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('invoice_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('original_minor', sa.BigInteger(), nullable=False),
    sa.Column('open_minor', sa.BigInteger(), nullable=False),
    sa.Column('linked', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['dispute_id'], ['dispute.id'], ),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoice.id'], ),
    sa.PrimaryKeyConstraint('dispute_id', 'invoice_id')
    )
    op.create_index(op.f('ix_dispute_invoice_invoice_id'), 'dispute_invoice', ['invoice_id'], unique=False)
    op.create_table('dispute_note',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('dispute_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('transition_seq', sa.Integer(), nullable=False),
    sa.Column('event', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('author', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('filename', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('content_type', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.ForeignKeyConstraint(['dispute_id'], ['dispute.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('dispute_id', 'transition_seq')
    )
    op.create_index(op.f('ix_dispute_note_dispute_id'), 'dispute_note', ['dispute_id'], unique=False)


def downgrade() -> None:
    refuse_downgrade_losing(op.get_bind(), revision, {
        "dispute cases": "SELECT count(*) FROM dispute",
        "case numbers reserved": "SELECT count(*) FROM dispute_request",
        "attachments": "SELECT count(*) FROM dispute_attachment",
    })
    op.drop_index(op.f('ix_dispute_note_dispute_id'), table_name='dispute_note')
    op.drop_table('dispute_note')
    op.drop_index(op.f('ix_dispute_invoice_invoice_id'), table_name='dispute_invoice')
    op.drop_table('dispute_invoice')
    op.drop_index(op.f('ix_dispute_status'), table_name='dispute')
    op.drop_index(op.f('ix_dispute_sla_due_at'), table_name='dispute')
    op.drop_index(op.f('ix_dispute_reason'), table_name='dispute')
    op.drop_index(op.f('ix_dispute_owner'), table_name='dispute')
    op.drop_index(op.f('ix_dispute_legal_entity'), table_name='dispute')
    op.drop_index(op.f('ix_dispute_customer_id'), table_name='dispute')
    op.drop_table('dispute')
    op.drop_table('dispute_request')
    op.drop_table('dispute_attachment')
