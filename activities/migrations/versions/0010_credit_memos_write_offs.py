"""(Reserved for issue 11, filled by the credit memo helper: credit memos write offs.)

Downgrade: nothing to lose yet.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 23:50:00
"""


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
