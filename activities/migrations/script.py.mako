"""${message}

Downgrade: <when it runs, and what makes it refuse: the data it would destroy, named in downgrade()>

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
${imports if imports else ""}
from activities.db import refuse_downgrade_losing


revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    # Before anything changes: what the downgrade would destroy -> a query counting the rows holding it.
    refuse_downgrade_losing(op.get_bind(), revision, {})
    ${downgrades if downgrades else "pass"}
