"""Authentication (bearer tokens) and authorisation (Casbin, RBAC with the legal entity as domain)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import casbin
import jwt
from sqlmodel import Session

from activities import queries
from api.errors import Forbidden, Unauthenticated

POLICIES = Path(__file__).resolve().parent.parent / "policies"
_ALGORITHM = "HS256"


def issue_token(username: str, secret: str, minutes: int) -> str:
    now = datetime.now(UTC)
    claims = {"sub": username, "iat": now, "exp": now + timedelta(minutes=minutes)}
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


def read_token(token: str, secret: str) -> str:
    try:
        claims = jwt.decode(token, secret, algorithms=[_ALGORITHM], options={"require": ["exp", "sub"]})
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("the token has expired; request a new one at /api/v1/auth/token") from None
    except jwt.PyJWTError:
        raise Unauthenticated("invalid bearer token") from None
    return str(claims["sub"])


@dataclass(frozen=True)
class Grant:
    """An allowed request, with the policy rule that allowed it and the roles held (for evidence)."""

    username: str
    legal_entity: str
    action: str
    rule: str
    roles: list[str]


# Entries kept per policy revision before the decision cache starts over: far above users x legal
# entities x actions in practice, a bound against a client naming endless made-up legal entities.
_CACHE_LIMIT = 10_000


@dataclass(frozen=True)
class _Decision:
    rule: str | None  # the policy rule that allowed the request; None: refused
    roles: tuple[str, ...]


class _Policy:
    """One role graph: its enforcer and the answers it has given, swapped whole on a revision change so
    that no answer of an older graph outlives it."""

    def __init__(self, enforcer: casbin.Enforcer, revision: int) -> None:
        self.enforcer = enforcer
        self.revision = revision
        self.decisions: dict[tuple[str, str, str], _Decision] = {}
        self.roles: dict[tuple[str, str], tuple[str, ...]] = {}
        # Cache misses ask casbin under this lock (its enforcer is not documented as thread-safe) and fill
        # the dicts under it; hits are plain dict reads.
        self.lock = threading.Lock()


def _subject(username: str) -> str:
    """The Casbin subject of a user. Casbin's role manager links every name to itself, so a user named
    like a role ("admin", "controller") would hold that role in every legal entity, granted or not:
    subjects are namespaced, and no role name contains ':'."""
    return f"user:{username}"


class Authorizer:
    """The Casbin enforcer, built once. The role graph (g rows) comes from the store and is reloaded
    when the store's policy revision moves (a grant or revoke from any process).

    Decisions are cached per (user, legal entity, action) for the current revision: casbin evaluates its
    matcher with simpleeval, parsing the expression again on every call, and the API asks some thirty
    times per invoice (the `actions` of every response)."""

    def __init__(self, policies: Path = POLICIES) -> None:
        self._policies = policies
        self._policy = _Policy(self._build([]), -1)
        self._lock = threading.Lock()

    def _build(self, grouping: list[list[str]]) -> casbin.Enforcer:
        enforcer = casbin.Enforcer(str(self._policies / "model.conf"), str(self._policies / "policy.csv"))
        if grouping:
            enforcer.add_grouping_policies(grouping)
        return enforcer

    @property
    def actions(self) -> set[str]:
        return {rule[2] for rule in self._policy.enforcer.get_policy()}

    def refresh(self, session: Session, revision: int | None = None) -> None:
        """Reload the role graph if the store's policy revision (read now, unless given) has moved."""
        if revision is None:
            revision = queries.policy_revision(session)
        if revision == self._policy.revision:
            return
        with self._lock:
            if revision == self._policy.revision:
                return
            rows = [[_subject(r.username), r.role, r.legal_entity] for r in queries.role_assignments(session)]
            # A fresh enforcer with empty caches, swapped in whole: requests checked meanwhile see the
            # old graph or the new one, never a half-rebuilt one (and casbin's
            # remove_filtered_grouping_policy(0) without values removes nothing, so revoked roles used to
            # survive the reload).
            self._policy = _Policy(self._build(rows), revision)

    def roles(self, username: str, legal_entity: str) -> list[str]:
        return list(self._roles(self._policy, username, legal_entity))

    def _roles(self, policy: _Policy, username: str, legal_entity: str) -> tuple[str, ...]:
        key = (username, legal_entity)
        roles = policy.roles.get(key)
        if roles is None:
            with policy.lock:
                held = policy.enforcer.get_roles_for_user_in_domain(_subject(username), legal_entity)
                roles = tuple(sorted(held))
                if len(policy.roles) >= _CACHE_LIMIT:
                    policy.roles.clear()
                policy.roles[key] = roles
        return roles

    def check(self, username: str, legal_entity: str, action: str) -> Grant | None:
        policy = self._policy  # one graph for the decision and the roles, even if swapped meanwhile
        key = (username, legal_entity, action)
        decision = policy.decisions.get(key)
        if decision is None:
            roles = self._roles(policy, username, legal_entity)
            with policy.lock:
                allowed, explain = policy.enforcer.enforce_ex(_subject(username), legal_entity, action)
                decision = _Decision(", ".join(["p", *explain]) if allowed else None, roles)
                if len(policy.decisions) >= _CACHE_LIMIT:
                    policy.decisions.clear()
                policy.decisions[key] = decision
        if decision.rule is None:
            return None
        # A new Grant and roles list per call: callers get their own, the cached answer stays as it was.
        return Grant(username, legal_entity, action, decision.rule, list(decision.roles))

    def require(self, username: str, legal_entity: str, action: str) -> Grant:
        grant = self.check(username, legal_entity, action)
        if grant is None:
            raise Forbidden(
                f"{username} may not {action} in legal entity {legal_entity}: "
                f"no role held there grants {action}",
                code="forbidden",
                action=action,
                legal_entity=legal_entity,
                roles_held=self.roles(username, legal_entity),
            )
        return grant
