"""E-invoice party data: address parts, Peppol endpoints, registration numbers; the seller's contact and
account; the customer's PO rule and buyer reference. Existing rows get '' and no PO rule (not known yet).

Downgrade: refused (activities.db.DowngradeRefused, nothing changed) while any legal entity or customer
holds e-invoice data in these columns: it is master data someone entered, and the previous schema has no
place for it. With all of them at their defaults the downgrade drops the columns.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 06:30:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

from activities.db import refuse_downgrade_losing


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# (column, length) added to both legal_entity and customer; existing rows get '' (not known yet).
_PARTY_COLUMNS = [
    ('street', 200),
    ('city', 100),
    ('postal_code', 20),
    ('endpoint_id', 100),
    ('endpoint_scheme', 4),
    ('company_id', 50),
]


def upgrade() -> None:
    with op.batch_alter_table('legal_entity', schema=None) as batch_op:
        for name, length in _PARTY_COLUMNS:
            batch_op.add_column(sa.Column(name, sqlmodel.sql.sqltypes.AutoString(length=length), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('iban', sqlmodel.sql.sqltypes.AutoString(length=34), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('contact_name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('telephone', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False, server_default=''))

    with op.batch_alter_table('customer', schema=None) as batch_op:
        for name, length in _PARTY_COLUMNS:
            batch_op.add_column(sa.Column(name, sqlmodel.sql.sqltypes.AutoString(length=length), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('po_required', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('buyer_reference', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False, server_default=''))


_SELLER_ONLY = ['iban', 'contact_name', 'email', 'telephone']


def _with_data(table: str, columns: list[str], extra: str = "") -> str:
    filled = " OR ".join(f"{column} <> ''" for column in columns)
    return f"SELECT count(*) FROM {table} WHERE {filled}{extra}"


def downgrade() -> None:
    party = [name for name, _ in _PARTY_COLUMNS]
    refuse_downgrade_losing(op.get_bind(), revision, {
        "legal entities with e-invoice data": _with_data('legal_entity', party + _SELLER_ONLY),
        "customers with e-invoice data": _with_data(
            'customer', party + ['buyer_reference'], " OR po_required = true"
        ),
    })
    with op.batch_alter_table('customer', schema=None) as batch_op:
        batch_op.drop_column('buyer_reference')
        batch_op.drop_column('po_required')
        for name, _ in reversed(_PARTY_COLUMNS):
            batch_op.drop_column(name)

    with op.batch_alter_table('legal_entity', schema=None) as batch_op:
        for name in reversed(_SELLER_ONLY):
            batch_op.drop_column(name)
        for name, _ in reversed(_PARTY_COLUMNS):
            batch_op.drop_column(name)
