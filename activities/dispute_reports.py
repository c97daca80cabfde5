"""Dispute figures (domain.md, "Figures"): the queries behind GET /api/v1/reports/disputes and the CAPA
effectiveness check's recurrence count. Read-only; every figure is an exact count or a sum of minor units.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from activities.disputes import Dispute


def cases_opened(
    session: Session, legal_entity: str, customer_id: str, causes: list[str], start: datetime, end: datetime
) -> int:
    """Cases opened in [start, end) whose validated root cause is one of `causes` (closed cases: the root
    cause is known at closing); one customer's, or every customer's when customer_id is ""."""
    q = sa_select(func.count()).where(
        col(Dispute.legal_entity) == legal_entity,
        col(Dispute.root_cause).in_(causes),
        col(Dispute.opened_at) >= start,
        col(Dispute.opened_at) < end,
    )
    if customer_id:
        q = q.where(col(Dispute.customer_id) == customer_id)
    return int(session.execute(q).scalar_one())
