"""(Reserved for issue 11, filled by the disputes helper: disputes.)

Downgrade: nothing to lose yet.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 23:50:00
"""


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
