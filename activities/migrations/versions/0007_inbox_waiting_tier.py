"""The approvers' inbox reads the waiting tier from indexed columns of the invoice: its role and level,
since when it waits, its SLA state and who segregation of duties bars from it. Until now the inbox parsed
the approval JSON of every pending invoice at each request (p95 over 200 ms with 4,500 pending).

Upgrade fills the columns of the invoices pending approval from the JSON the recording activity wrote,
and the reminders from the ledger.

Downgrade: drops the columns, which only repeat what the approval JSON and the ledger hold: nothing is lost,
so it is never refused.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 21:40:00
"""
import json
from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def _instant(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def upgrade() -> None:
    with op.batch_alter_table('invoice', schema=None) as batch_op:
        batch_op.add_column(sa.Column('waiting_role', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('waiting_tier', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('waiting_since', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('approval_sla', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('sod_barred', sa.Text(), nullable=False, server_default=''))
        batch_op.create_index('ix_invoice_waiting', ['legal_entity', 'waiting_role', 'waiting_since'], unique=False)

    # The same values activities.transitions.waiting_values writes from a workflow's state, read back from
    # the JSON that state was recorded as (workflows/approval.py: tiers approved in order; the creator,
    # editors, submitters and earlier approvers, and those they approved for, may not approve).
    bind = op.get_bind()
    invoice = sa.table(
        'invoice',
        sa.column('id', sa.String), sa.column('status', sa.String), sa.column('status_since', sqlmodel.sql.sqltypes.UTCDateTime()),
        sa.column('created_by', sa.String), sa.column('approvals_json', sa.Text), sa.column('editors_json', sa.Text),
        sa.column('submitters_json', sa.Text), sa.column('approval_json', sa.Text),
        sa.column('waiting_role', sa.String), sa.column('waiting_tier', sa.Integer),
        sa.column('waiting_since', sqlmodel.sql.sqltypes.UTCDateTime()), sa.column('approval_sla', sa.String),
        sa.column('sod_barred', sa.Text),
    )
    ledger = sa.table(
        'ledger_entry', sa.column('object_id', sa.String), sa.column('object_type', sa.String),
        sa.column('event', sa.String), sa.column('at', sa.String),  # ISO 8601 text, as the ledger hashes it
    )
    pending = bind.execute(sa.select(invoice).where(invoice.c.status == 'pending_approval')).mappings().all()
    for row in pending:
        approval = json.loads(row['approval_json'] or '{}')
        approvals = json.loads(row['approvals_json'] or '[]')
        tiers = ((approval.get('plan') or {}).get('tiers')) or []
        if len(approvals) >= len(tiers):
            continue
        tier = tiers[len(approvals)]
        since = _instant(approval['tier_since']) if approval.get('tier_since') else row['status_since']
        barred = {row['created_by'], *json.loads(row['editors_json'] or '[]'), *json.loads(row['submitters_json'] or '[]')}
        for a in approvals:
            barred.add(a['approver'])
            if a.get('on_behalf_of'):
                barred.add(a['on_behalf_of'])
        if approval.get('escalated'):
            sla = 'escalated'
        else:
            reminded = bind.execute(
                sa.select(sa.func.count()).select_from(ledger).where(
                    ledger.c.object_type == 'invoice', ledger.c.object_id == row['id'],
                    ledger.c.event == 'remind_approvers', ledger.c.at >= since.isoformat(),
                )
            ).scalar()
            sla = 'reminded' if reminded else 'on_time'
        bind.execute(
            invoice.update().where(invoice.c.id == row['id']).values(
                waiting_role=tier['role'], waiting_tier=tier['level'], waiting_since=since, approval_sla=sla,
                sod_barred='|' + '|'.join(sorted(barred)) + '|',
            )
        )


def downgrade() -> None:
    with op.batch_alter_table('invoice', schema=None) as batch_op:
        batch_op.drop_index('ix_invoice_waiting')
        batch_op.drop_column('sod_barred')
        batch_op.drop_column('approval_sla')
        batch_op.drop_column('waiting_since')
        batch_op.drop_column('waiting_tier')
        batch_op.drop_column('waiting_role')
