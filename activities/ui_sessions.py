"""The web UI's sessions: opened at login, ended at logout, checked at every page request.

The browser holds a random secret in an HTTP-only cookie; the store holds only its SHA-256, so a copy of
the store (a backup, a replica) opens no session. The cookie is also signed by the API (api/pages/common.py)
so that a forged or truncated cookie is refused before the store is asked.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from sqlmodel import Session

from activities.models import UiSession


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_ui_session(session: Session, username: str, minutes: int) -> str:
    """A new session for `username` (already authenticated), valid `minutes` from now: its secret."""
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    session.add(
        UiSession(
            token_hash=token_hash(token),
            username=username,
            created_at=now,
            expires_at=now + timedelta(minutes=minutes),
        )
    )
    return token


def end_ui_session(session: Session, token: str) -> bool:
    """Logout: the session stops working everywhere at once. False when it was unknown or ended already."""
    row = session.get(UiSession, token_hash(token))
    if row is None or row.ended_at is not None:
        return False
    row.ended_at = datetime.now(UTC)
    session.add(row)
    return True
