"""Users, roles, legal entities and customers: the master data, with every change ledgered.

Passwords are hashed with Argon2id. Role grants bump the policy revision so that every API process
reloads its Casbin role graph on its next request. A grant that would give one person two incompatible
duties in a legal entity (policies/sod_conflicts.csv) is refused.

Where access evidence goes: grants and revokes belong to a legal entity and are ledgered in its chain.
Events of no legal entity (a user added or disabled, the policy files in force) go to the reserved chain
ACCESS_CHAIN, "~access": a code no legal entity can have (codes are letters, digits, '-' and '_'), so it
never mixes with an entity's chain, and it is verified like any other.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam
from sqlalchemy import select as sa_select
from sqlalchemy import update as sa_update
from sqlmodel import Session, col, select

from activities.duties import (
    POLICIES,
    Conflict,
    ConflictRules,
    HeldConflict,
    conflicts_with,
    held_conflicts,
    load_conflicts,
    load_rules,
)
from activities.ledger import LedgerFacts, append_to_ledger, canonical_json, sha256_hex
from activities.models import (
    Customer,
    CustomerBase,
    LedgerEntry,
    LegalEntity,
    PolicyRevision,
    RoleAssignment,
    User,
)

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("cashcycle-timing-equaliser")

KNOWN_ROLES = frozenset(
    {
        "ar_preparer",
        "ar_approver",
        "finance_manager",
        "controller",
        "collector",
        "cash_applier",
        "ar_supervisor",
        "compliance",
        "master_data",
        "erp_integration",
        "admin",
    }
)


ACCESS_CHAIN = "~access"
SYSTEM_ACTOR = "system"


class DirectoryError(ValueError):
    """A refused master-data change, with the field at fault."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


class DutiesConflict(DirectoryError):
    """A grant refused because the user already holds a role incompatible with it in that legal entity."""

    def __init__(self, username: str, role: str, legal_entity: str, clashes: list[Conflict]) -> None:
        self.username, self.role, self.legal_entity, self.clashes = username, role, legal_entity, clashes
        first = clashes[0]
        self.held = first.role_b if first.role_a == role else first.role_a
        self.pair = (first.role_a, first.role_b)
        self.why = first.why
        super().__init__(
            "role",
            f"{username} holds {self.held} in {legal_entity}: granting {role} would "
            f"combine incompatible duties {first.role_a} + {first.role_b} ({first.why})",
        )


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def authenticate(session: Session, username: str, password: str) -> User | None:
    user = session.get(User, username)
    try:
        if user is None or not user.active:
            _hasher.verify(_DUMMY_HASH, password)  # same cost either way: no user enumeration by timing
            return None
        _hasher.verify(user.password_hash, password)
        return user
    except (VerificationError, InvalidHashError):
        return None


def _now() -> str:
    return datetime.now(UTC).isoformat()


def ledger_event(
    session: Session,
    entity: str,
    key: str,
    object_type: str,
    object_id: str,
    event: str,
    actor: str,
    payload: dict[str, object],
    reason: str = "",
    rule: str = "",
) -> LedgerEntry:
    """Ledger an event that has no workflow: master data, access, delegations, policy files."""
    return append_to_ledger(
        session,
        LedgerFacts(
            legal_entity=entity,
            business_key=key,
            object_type=object_type,
            object_id=object_id,
            event=event,
            from_status=None,
            to_status=None,
            actor=actor,
            actor_roles=roles_of(session, actor, entity),
            rule=rule,
            reason=reason,
            workflow_id="",
            run_id="",
            request_id="",
            at=_now(),
            payload=payload,
        ),
    )


def ensure_legal_entity(session: Session, entity: LegalEntity) -> LegalEntity:
    if entity.code == ACCESS_CHAIN:
        raise DirectoryError("code", f"{ACCESS_CHAIN} is reserved for the access ledger chain")
    found = session.get(LegalEntity, entity.code)
    if found is not None:
        return found
    session.add(entity)
    session.flush()
    return entity


def add_user(
    session: Session,
    username: str,
    password: str,
    actor: str,
    full_name: str = "",
    email: str = "",
    password_hash: str | None = None,
) -> User:
    """Add a user; `password_hash` (an Argon2 hash of `password`) spares hashing again when seeding many
    users with one password (demo, tests)."""
    if not username or len(username) > 64 or not username.replace("_", "").replace(".", "").isalnum():
        raise DirectoryError("username", "1-64 letters, digits, '.' or '_'")
    if len(password) < 8:
        raise DirectoryError("password", "at least 8 characters")
    if session.get(User, username) is not None:
        raise DirectoryError("username", f"user {username} already exists")
    user = User(
        username=username,
        password_hash=password_hash or hash_password(password),
        full_name=full_name,
        email=email,
    )
    session.add(user)
    session.flush()
    ledger_event(
        session,
        ACCESS_CHAIN,
        f"access/{uuid.uuid4()}",
        "user",
        username,
        "user_added",
        actor,
        {"username": username, "full_name": full_name, "email": email},
    )
    return user


def disable_user(session: Session, username: str, actor: str, reason: str = "") -> bool:
    """Stop a user from signing in (their next request is refused); False when already disabled.
    Role assignments stay, so that the access review still shows what the user held."""
    user = session.get(User, username, with_for_update=True)
    if user is None:
        raise DirectoryError("username", f"no user {username}")
    if not user.active:
        return False
    user.active = False
    session.add(user)
    session.flush()
    ledger_event(
        session,
        ACCESS_CHAIN,
        f"access/{uuid.uuid4()}",
        "user",
        username,
        "user_disabled",
        actor,
        {"username": username},
        reason=reason,
    )
    return True


# Built once: every recorded command asks it (the actor's roles are evidence).
_ROLES_OF = sa_select(col(RoleAssignment.role)).where(
    col(RoleAssignment.username) == bindparam("username"),
    col(RoleAssignment.legal_entity) == bindparam("legal_entity"),
)


def roles_of(session: Session, username: str, legal_entity: str) -> list[str]:
    rows = session.execute(_ROLES_OF, {"username": username, "legal_entity": legal_entity}).scalars()
    return sorted(rows)


def _bump_policy_revision(session: Session) -> None:
    if session.get(PolicyRevision, 1) is None:
        session.add(PolicyRevision(id=1, revision=1))
    else:
        session.execute(
            sa_update(PolicyRevision)
            .where(col(PolicyRevision.id) == 1)
            .values(revision=PolicyRevision.revision + 1)
        )


def grant(
    session: Session,
    username: str,
    role: str,
    legal_entity: str,
    actor: str,
    rule: str = "",
    conflicts: list[Conflict] | None = None,
) -> bool:
    """Grant a role in a legal entity; False when the user already holds it. Refused with DutiesConflict
    (nothing written, nothing ledgered) when the user holds an incompatible role in that legal entity
    (`conflicts`: the pairs of policies/sod_conflicts.csv unless given)."""
    if role not in KNOWN_ROLES:
        raise DirectoryError("role", f"unknown role {role}; known: {', '.join(sorted(KNOWN_ROLES))}")
    if session.get(LegalEntity, legal_entity) is None:
        raise DirectoryError("legal_entity", f"no legal entity {legal_entity}")
    # The user's row is locked (PostgreSQL; SQLite's write transaction is exclusive anyway): two grants
    # to one person run one after the other, so two concurrent halves of a conflict cannot both pass.
    if session.get(User, username, with_for_update=True) is None:
        raise DirectoryError("username", f"no user {username}")
    held = roles_of(session, username, legal_entity)
    if role in held:
        return False
    clashes = conflicts_with(role, set(held), load_conflicts() if conflicts is None else conflicts)
    if clashes:
        raise DutiesConflict(username, role, legal_entity, clashes)
    session.add(RoleAssignment(username=username, role=role, legal_entity=legal_entity, granted_by=actor))
    _bump_policy_revision(session)
    ledger_event(
        session,
        legal_entity,
        f"access/{uuid.uuid4()}",
        "access",
        username,
        "role_granted",
        actor,
        {"username": username, "role": role, "legal_entity": legal_entity},
        rule=rule,
    )
    return True


def revoke(session: Session, username: str, role: str, legal_entity: str, actor: str, rule: str = "") -> bool:
    """Take a role back; False when the user did not hold it. Always allowed: it never creates a conflict.
    A role no longer known is still revocable; nothing to revoke because of a typo is refused, not False."""
    row = session.exec(
        select(RoleAssignment).where(
            RoleAssignment.username == username,
            RoleAssignment.role == role,
            RoleAssignment.legal_entity == legal_entity,
        )
    ).first()
    if row is None:
        if session.get(User, username) is None:
            raise DirectoryError("username", f"no user {username}")
        if role not in KNOWN_ROLES:
            raise DirectoryError("role", f"unknown role {role}; known: {', '.join(sorted(KNOWN_ROLES))}")
        if session.get(LegalEntity, legal_entity) is None:
            raise DirectoryError("legal_entity", f"no legal entity {legal_entity}")
        return False
    session.delete(row)
    _bump_policy_revision(session)
    ledger_event(
        session,
        legal_entity,
        f"access/{uuid.uuid4()}",
        "access",
        username,
        "role_revoked",
        actor,
        {"username": username, "role": role, "legal_entity": legal_entity},
        rule=rule,
    )
    return True


@dataclass(frozen=True)
class ConflictReport:
    """Existing conflicts of duties, with how they were found: when, against which version of the conflicts
    file, over which legal entities and how many role assignments (the access review's evidence)."""

    generated_at: datetime
    rules: ConflictRules
    legal_entities: list[str]
    assignments_examined: int
    conflicts: list[HeldConflict]
    disabled_users: frozenset[str]


def conflict_report(session: Session, legal_entities: list[str] | None = None) -> ConflictReport:
    """Every user holding both roles of an incompatible pair in one legal entity (all entities, or those
    given). They exist when the conflicts file tightens after the grants were made."""
    rules = load_rules()
    generated_at = datetime.now(UTC)
    query = select(RoleAssignment)
    if legal_entities is not None:
        query = query.where(col(RoleAssignment.legal_entity).in_(legal_entities))
    rows = [(r.username, r.role, r.legal_entity) for r in session.exec(query)]
    covered = sorted({entity for _, _, entity in rows}) if legal_entities is None else sorted(legal_entities)
    disabled = frozenset(session.exec(select(User.username).where(col(User.active).is_(False))))
    return ConflictReport(
        generated_at, rules, covered, len(rows), held_conflicts(rows, rules.conflicts), disabled
    )


def policy_file_hashes(policies: Path = POLICIES) -> dict[str, str]:
    """SHA-256 of each file in the policies directory and its folders (the customers' reason-code mappings
    in `reason_codes/`), by path relative to it."""
    return {
        path.relative_to(policies).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(policies.rglob("*"))
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(policies).parts)
    }


def record_policy_files(session: Session, policies: Path = POLICIES) -> LedgerEntry | None:
    """Ledger the hashes of the policy files in force (event policy_changed, actor "system") when they
    differ from the last ones recorded; None when they do not. Called when the API and the worker start,
    so evidence shows which model, policy, conflict pairs and approval matrix governed each period."""
    files = policy_file_hashes(policies)
    last = session.exec(
        select(LedgerEntry)
        .where(LedgerEntry.legal_entity == ACCESS_CHAIN, LedgerEntry.event == "policy_changed")
        .order_by(col(LedgerEntry.seq).desc())
    ).first()
    before: dict[str, str] = json.loads(last.payload) if last is not None else {}
    if files == before:
        return None
    changed = sorted(name for name in files.keys() | before.keys() if files.get(name) != before.get(name))
    # Keyed by the content and the record it follows: an API and a worker starting together on the same
    # files append one entry (the ledger is idempotent on the key), and a return to an earlier version
    # after a change is recorded again.
    key = f"policy/{sha256_hex(canonical_json(files))}/after/{last.seq if last is not None else 0}"
    named = [name if name in files else f"{name} (removed)" for name in changed]
    reason = "policy files first recorded" if last is None else "changed: " + ", ".join(named)
    return ledger_event(
        session,
        ACCESS_CHAIN,
        key,
        "policy",
        policies.name,
        "policy_changed",
        SYSTEM_ACTOR,
        dict(files),
        reason=reason,
    )


def create_customer(
    session: Session, legal_entity: str, data: CustomerBase, actor: str, external_ref: str | None = None
) -> Customer:
    customer = Customer(
        id=str(uuid.uuid4()),
        legal_entity=legal_entity,
        external_ref=external_ref,
        created_by=actor,
        **data.model_dump(),
    )
    session.add(customer)
    session.flush()
    ledger_event(
        session,
        legal_entity,
        f"customer/{customer.id}#1",
        "customer",
        customer.id,
        "customer_created",
        actor,
        data.model_dump(),
    )
    return customer
