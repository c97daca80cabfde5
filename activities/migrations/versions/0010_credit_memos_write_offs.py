"""Credit memos and write-offs (issue 11): one table each, the read model of their workflows (status, the
approval tiers and approvals, the waiting tier for the approvers' inbox, who decided it in which period for
the cumulative limit) and, for a credit memo, its credit note as issued (number, UBL, PDF and their SHA-256,
the channel it went through, a rebill's corrected invoice).

Downgrade: drops both tables. Refused while either holds a row (credit memos and write-offs, with their
issued credit notes, would be lost); on an empty store it runs.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 23:50:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel

from activities.db import refuse_downgrade_losing


revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "credit_memo",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("legal_entity", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("workflow_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("invoice_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("customer_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("dispute_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("dispute_owner", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("entity_amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("entity_currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("proposed_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("status_since", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("transition_seq", sa.Integer(), nullable=False),
        sa.Column("matrix_version", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("approval_json", sa.Text(), nullable=False),
        sa.Column("waiting_role", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("waiting_tier", sa.Integer(), nullable=False),
        sa.Column("waiting_since", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("sod_barred", sa.Text(), nullable=False),
        sa.Column("decided_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("decided_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("decided_period", sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column("decision_reason", sa.Text(), nullable=False),
        sa.Column("applied_minor", sa.BigInteger(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("lines_json", sa.Text(), nullable=False),
        sa.Column("number", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("issue_date", sa.Date(), nullable=True),
        sa.Column("ubl", sa.Text(), nullable=True),
        sa.Column("pdf", sa.LargeBinary(), nullable=True),
        sa.Column("ubl_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("pdf_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("delivered_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("rebill_invoice_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
        sa.Column("rebill_json", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customer.id"],
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoice.id"],
        ),
        sa.ForeignKeyConstraint(
            ["legal_entity"],
            ["legal_entity.code"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("number"),
        sa.UniqueConstraint("workflow_id"),
    )
    with op.batch_alter_table("credit_memo", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_credit_memo_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_credit_memo_dispute_id"), ["dispute_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_credit_memo_invoice_id"), ["invoice_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_credit_memo_legal_entity"), ["legal_entity"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_credit_memo_rebill_invoice_id"), ["rebill_invoice_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_credit_memo_status"), ["status"], unique=False)

    op.create_table(
        "write_off",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("legal_entity", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("workflow_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("invoice_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("customer_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("dispute_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("dispute_owner", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("entity_amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("entity_currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("proposed_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("status_since", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("transition_seq", sa.Integer(), nullable=False),
        sa.Column("matrix_version", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("approval_json", sa.Text(), nullable=False),
        sa.Column("waiting_role", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("waiting_tier", sa.Integer(), nullable=False),
        sa.Column("waiting_since", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("sod_barred", sa.Text(), nullable=False),
        sa.Column("decided_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("decided_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("decided_period", sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column("decision_reason", sa.Text(), nullable=False),
        sa.Column("applied_minor", sa.BigInteger(), nullable=False),
        sa.Column("auto_rule", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customer.id"],
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoice.id"],
        ),
        sa.ForeignKeyConstraint(
            ["legal_entity"],
            ["legal_entity.code"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workflow_id"),
    )
    with op.batch_alter_table("write_off", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_write_off_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_write_off_dispute_id"), ["dispute_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_write_off_invoice_id"), ["invoice_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_write_off_legal_entity"), ["legal_entity"], unique=False)
        batch_op.create_index(batch_op.f("ix_write_off_status"), ["status"], unique=False)


def downgrade() -> None:
    refuse_downgrade_losing(
        op.get_bind(),
        revision,
        {
            "credit memos": "SELECT count(*) FROM credit_memo",
            "write-offs": "SELECT count(*) FROM write_off",
        },
    )
    with op.batch_alter_table("write_off", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_write_off_status"))
        batch_op.drop_index(batch_op.f("ix_write_off_legal_entity"))
        batch_op.drop_index(batch_op.f("ix_write_off_invoice_id"))
        batch_op.drop_index(batch_op.f("ix_write_off_dispute_id"))
        batch_op.drop_index(batch_op.f("ix_write_off_customer_id"))

    op.drop_table("write_off")
    with op.batch_alter_table("credit_memo", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credit_memo_status"))
        batch_op.drop_index(batch_op.f("ix_credit_memo_rebill_invoice_id"))
        batch_op.drop_index(batch_op.f("ix_credit_memo_legal_entity"))
        batch_op.drop_index(batch_op.f("ix_credit_memo_invoice_id"))
        batch_op.drop_index(batch_op.f("ix_credit_memo_dispute_id"))
        batch_op.drop_index(batch_op.f("ix_credit_memo_customer_id"))

    op.drop_table("credit_memo")
