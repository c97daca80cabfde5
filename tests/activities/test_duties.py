"""Incompatible duties: the conflicts file (policies/sod_conflicts.csv) as the domain states them, the
pure checks as tables, and the directory refusing a conflicting grant without a trace (SQLite and
PostgreSQL)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlmodel import SQLModel, func, select

from activities.db import Store, open_store, reading, writing
from activities.directory import KNOWN_ROLES, DutiesConflict, add_user, grant, revoke, roles_of
from activities.duties import (
    CONFLICTS_FILE,
    Conflict,
    HeldConflict,
    conflicts_among,
    conflicts_with,
    held_conflicts,
    load_conflicts,
    load_rules,
    parse_conflicts,
)
from activities.ledger import verify_chain
from activities.models import LedgerEntry, LegalEntity, PolicyRevision, RoleAssignment
from api.security import POLICIES

CONFLICTS = load_conflicts()
BUSINESS_ROLES = sorted(KNOWN_ROLES - {"admin"})


def pair(a: str, b: str) -> frozenset[str]:
    return frozenset({a, b})


PAIRS = {pair(c.role_a, c.role_b) for c in CONFLICTS}


# --- the file ---------------------------------------------------------------------------------------------


def test_the_conflicts_file_parses_into_pairs_of_two_different_roles_with_a_reason() -> None:
    assert len(CONFLICTS) >= 10
    for c in CONFLICTS:
        assert c.role_a != c.role_b, c
        assert c.why, c
    assert len(PAIRS) == len(CONFLICTS), "a pair is listed twice"


def test_every_role_named_in_the_conflicts_file_is_a_known_role() -> None:
    named = {c.role_a for c in CONFLICTS} | {c.role_b for c in CONFLICTS}
    assert named - KNOWN_ROLES == set()


def test_the_known_roles_are_the_roles_of_the_policy() -> None:
    in_policy = {
        line.split(",")[1].strip()
        for line in (POLICIES / "policy.csv").read_text().splitlines()
        if line.strip().startswith("p,")
    }
    assert in_policy == set(KNOWN_ROLES)


# The incompatible duties of the domain (docs: "Approval controls and segregation of duties"), each as the
# roles that carry them here.
DOMAIN_PAIRS = [
    # customer master maintenance vs. invoicing, cash application, credit memo and write-off approval
    ("master_data", "ar_preparer"),
    ("master_data", "cash_applier"),
    ("master_data", "ar_approver"),
    ("master_data", "finance_manager"),
    ("master_data", "controller"),
    # cash application vs. invoicing or credit memo approval
    ("cash_applier", "ar_preparer"),
    ("cash_applier", "ar_approver"),
    ("cash_applier", "finance_manager"),
    # collections vs. write-off approval above a threshold
    ("collector", "finance_manager"),
    ("collector", "controller"),
]


@pytest.mark.parametrize(("role_a", "role_b"), DOMAIN_PAIRS)
def test_the_file_lists_each_incompatible_duty_of_the_domain(role_a: str, role_b: str) -> None:
    assert pair(role_a, role_b) in PAIRS


@pytest.mark.parametrize("role", BUSINESS_ROLES)
def test_user_administration_conflicts_with_every_business_role(role: str) -> None:
    assert pair("admin", role) in PAIRS


@pytest.mark.parametrize(
    ("role_a", "role_b"),
    [
        ("ar_preparer", "ar_approver"),  # maker-checker is enforced per document, not by role
        ("ar_approver", "finance_manager"),  # approval tiers may be held together
        ("finance_manager", "controller"),
        ("ar_supervisor", "compliance"),
        ("erp_integration", "ar_preparer"),
    ],
)
def test_roles_the_domain_does_not_separate_may_be_held_together(role_a: str, role_b: str) -> None:
    assert pair(role_a, role_b) not in PAIRS


def test_the_version_is_the_sha256_of_the_bytes_the_pairs_were_read_from() -> None:
    rules = load_rules()
    assert rules.version == hashlib.sha256(CONFLICTS_FILE.read_bytes()).hexdigest()
    assert rules.conflicts == CONFLICTS
    assert rules.source == "sod_conflicts.csv"


PARSED = [
    ("a, b, why", [Conflict("a", "b", "why")]),
    ("# comment\n\n  a ,b,  why  \n", [Conflict("a", "b", "why")]),
    ("a, b, why, with a comma", [Conflict("a", "b", "why, with a comma")]),
    ("a, b, x\nc, d, y", [Conflict("a", "b", "x"), Conflict("c", "d", "y")]),
]


@pytest.mark.parametrize(("text", "expected"), PARSED)
def test_parse(text: str, expected: list[Conflict]) -> None:
    assert parse_conflicts(text) == expected


@pytest.mark.parametrize("text", ["a, b", "a", "a, a, same role twice", ", b, no first role", "a, b, "])
def test_a_malformed_row_is_refused_naming_the_file(text: str) -> None:
    with pytest.raises(ValueError, match=r"sod_conflicts\.csv"):
        parse_conflicts(text)


def test_a_malformed_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sod_conflicts.csv"
    path.write_text("master_data\n")
    with pytest.raises(ValueError, match="expected 'role_a, role_b, why'"):
        load_rules(path)


# --- the checks as tables -------------------------------------------------------------------------------

RULES = [
    Conflict("master_data", "ar_preparer", "m/p"),
    Conflict("cash_applier", "ar_preparer", "c/p"),
    Conflict("master_data", "cash_applier", "m/c"),
]
M_P, C_P, M_C = RULES

CONFLICTS_WITH = [
    # role granted, roles held, conflicts created
    ("ar_preparer", set(), []),
    ("ar_preparer", {"ar_approver"}, []),
    ("ar_preparer", {"master_data"}, [M_P]),
    ("master_data", {"ar_preparer"}, [M_P]),  # either order of the pair
    ("ar_preparer", {"master_data", "cash_applier"}, [M_P, C_P]),
    ("ar_preparer", {"ar_preparer"}, []),  # already held: nothing new
    ("cash_applier", {"master_data", "ar_preparer", "collector"}, [C_P, M_C]),
    ("controller", {"master_data"}, []),  # not in these rules
]


@pytest.mark.parametrize(("role", "held", "expected"), CONFLICTS_WITH)
def test_conflicts_with(role: str, held: set[str], expected: list[Conflict]) -> None:
    assert conflicts_with(role, held, RULES) == expected


CONFLICTS_AMONG = [
    (set(), []),
    ({"master_data"}, []),
    ({"master_data", "ar_approver"}, []),
    ({"master_data", "ar_preparer"}, [M_P]),
    ({"master_data", "ar_preparer", "cash_applier"}, [M_P, C_P, M_C]),
    ({"cash_applier", "ar_preparer", "collector"}, [C_P]),
]


@pytest.mark.parametrize(("held", "expected"), CONFLICTS_AMONG)
def test_conflicts_among(held: set[str], expected: list[Conflict]) -> None:
    assert conflicts_among(held, RULES) == expected


def test_held_conflicts_pair_roles_only_within_one_user_and_one_legal_entity() -> None:
    assignments = [
        ("ann", "master_data", "ACME"),
        ("ann", "ar_preparer", "ACME"),
        ("bob", "master_data", "ACME"),
        ("bob", "ar_preparer", "GLOBEX"),  # different legal entity: no conflict
        ("cat", "cash_applier", "ACME"),
        ("dan", "ar_preparer", "ACME"),  # different users: no conflict
    ]
    assert held_conflicts(assignments, RULES) == [
        HeldConflict("ann", "ACME", "master_data", "ar_preparer", "m/p")
    ]
    assert held_conflicts([], RULES) == []


# --- the directory refuses a conflicting grant ----------------------------------------------------------


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = open_store(db_url)
    with writing(s) as session:
        session.add(LegalEntity(code="ACME", name="Acme Industries SAS", currency="EUR"))
        session.add(LegalEntity(code="GLOBEX", name="Globex Corp", currency="USD"))
        session.flush()
        for username in ("alice", "bob"):
            add_user(session, username, "a-long-password", "test")
    yield s
    s.dispose()


def count(store: Store, model: type[SQLModel]) -> int:
    with reading(store) as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


def snapshot(store: Store) -> dict[str, object]:
    with reading(store) as session:
        revision = session.get(PolicyRevision, 1)
        return {
            "role_assignment": count(store, RoleAssignment),
            "ledger_entry": count(store, LedgerEntry),
            "policy_revision": revision.revision if revision else 0,
        }


def test_a_grant_that_would_combine_incompatible_duties_is_refused_and_leaves_no_trace(store: Store) -> None:
    with writing(store) as session:
        assert grant(session, "alice", "cash_applier", "ACME", "it-ops")
    before = snapshot(store)
    with pytest.raises(DutiesConflict) as refused, writing(store) as session:
        grant(session, "alice", "ar_preparer", "ACME", "it-ops")
    exc = refused.value
    assert exc.field == "role"
    assert (exc.username, exc.role, exc.held, exc.legal_entity) == (
        "alice",
        "ar_preparer",
        "cash_applier",
        "ACME",
    )
    assert exc.pair == ("cash_applier", "ar_preparer")
    assert exc.why.startswith("cash application vs. invoicing")
    assert "cash_applier + ar_preparer" in str(exc) and exc.why in str(exc)
    assert snapshot(store) == before
    with reading(store) as session:
        assert roles_of(session, "alice", "ACME") == ["cash_applier"]
        assert verify_chain(session, "ACME").intact


def test_the_same_roles_in_two_legal_entities_do_not_conflict(store: Store) -> None:
    with writing(store) as session:
        assert grant(session, "alice", "cash_applier", "ACME", "it-ops")
        assert grant(session, "alice", "ar_preparer", "GLOBEX", "it-ops")
        assert roles_of(session, "alice", "GLOBEX") == ["ar_preparer"]


def test_a_role_already_held_is_no_conflict_and_a_revoke_is_always_allowed(store: Store) -> None:
    with writing(store) as session:
        assert grant(session, "alice", "master_data", "ACME", "it-ops")
        assert not grant(session, "alice", "master_data", "ACME", "it-ops")
    # A conflict planted behind the directory's back (as when the file tightens after the grants):
    with writing(store) as session:
        session.add(
            RoleAssignment(username="alice", role="ar_preparer", legal_entity="ACME", granted_by="past")
        )
    with writing(store) as session:
        assert revoke(session, "alice", "master_data", "ACME", "it-ops")
        assert roles_of(session, "alice", "ACME") == ["ar_preparer"]


def test_the_conflicts_checked_can_be_given(store: Store) -> None:
    looser: list[Conflict] = []
    with writing(store) as session:
        assert grant(session, "bob", "cash_applier", "ACME", "it-ops", conflicts=looser)
        assert grant(session, "bob", "ar_preparer", "ACME", "it-ops", conflicts=looser)


def test_two_concurrent_halves_of_a_conflict_cannot_both_be_granted(store: Store) -> None:
    def attempt(role: str) -> str:
        try:
            with writing(store) as session:
                grant(session, "alice", role, "ACME", "it-ops")
            return "granted"
        except DutiesConflict:
            return "refused"

    for _ in range(5):
        with ThreadPoolExecutor(max_workers=2) as pool:
            outcomes = sorted(pool.map(attempt, ["cash_applier", "ar_preparer"]))
        assert outcomes == ["granted", "refused"]
        with reading(store) as session:
            assert len(roles_of(session, "alice", "ACME")) == 1
        with writing(store) as session:
            for role in ("cash_applier", "ar_preparer"):
                revoke(session, "alice", role, "ACME", "it-ops")
