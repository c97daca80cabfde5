"""(Reserved for issue 11, filled by the lead: invoice adjustments.)

Downgrade: nothing to lose yet.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 23:50:00
"""


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
