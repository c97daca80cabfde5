"""Access evidence kept by the directory: users added and disabled, and the policy files in force, ledgered
in the reserved access chain (events of no legal entity); grants stay in their legal entity's chain.
Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from activities.db import Store, open_store, reading, writing
from activities.directory import (
    ACCESS_CHAIN,
    DirectoryError,
    add_user,
    authenticate,
    disable_user,
    ensure_legal_entity,
    grant,
    record_policy_files,
)
from activities.ledger import verify_chain
from activities.models import LedgerEntry, LegalEntity, User
from api.security import POLICIES

PASSWORD = "a-long-password"


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = open_store(db_url)
    with writing(s) as session:
        session.add(LegalEntity(code="ACME", name="Acme Industries SAS", currency="EUR"))
    yield s
    s.dispose()


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """A copy of the policy files that a test may change."""
    return Path(shutil.copytree(POLICIES, tmp_path / "policies"))


def chain(store: Store, legal_entity: str = ACCESS_CHAIN) -> list[LedgerEntry]:
    with reading(store) as session:
        return list(
            session.exec(
                select(LedgerEntry)
                .where(LedgerEntry.legal_entity == legal_entity)
                .order_by(col(LedgerEntry.seq))
            )
        )


def test_adding_a_user_is_ledgered_in_the_access_chain_with_who_made_it(store: Store) -> None:
    with writing(store) as session:
        add_user(
            session, "alice", PASSWORD, "it-ops.jdoe", full_name="Alice Martin", email="alice@acme.example"
        )
    [entry] = chain(store)
    assert (entry.event, entry.object_type, entry.object_id, entry.actor) == (
        "user_added",
        "user",
        "alice",
        "it-ops.jdoe",
    )
    assert json.loads(entry.actor_roles) == []
    assert json.loads(entry.payload) == {
        "username": "alice",
        "full_name": "Alice Martin",
        "email": "alice@acme.example",
    }
    assert PASSWORD not in entry.payload
    assert chain(store, "ACME") == []
    with reading(store) as session:
        assert verify_chain(session, ACCESS_CHAIN).intact


def test_a_refused_user_leaves_no_trace(store: Store) -> None:
    with pytest.raises(DirectoryError), writing(store) as session:
        add_user(session, "bob", "short", "it-ops.jdoe")
    assert chain(store) == []


def test_a_disabled_user_cannot_sign_in_and_the_disabling_is_ledgered_once(store: Store) -> None:
    with writing(store) as session:
        add_user(session, "alice", PASSWORD, "it-ops.jdoe")
        grant(session, "alice", "ar_preparer", "ACME", "it-ops.jdoe")
    with writing(store) as session:
        assert disable_user(session, "alice", "it-ops.jdoe", reason="left the company")
    with writing(store) as session:
        assert not disable_user(session, "alice", "it-ops.jdoe")
    with pytest.raises(DirectoryError, match="no user ghost"), writing(store) as session:
        disable_user(session, "ghost", "it-ops.jdoe")
    with reading(store) as session:
        assert authenticate(session, "alice", PASSWORD) is None
        user = session.get(User, "alice")
        assert user is not None and not user.active
    assert [(e.event, e.object_id, e.actor, e.reason) for e in chain(store)] == [
        ("user_added", "alice", "it-ops.jdoe", ""),
        ("user_disabled", "alice", "it-ops.jdoe", "left the company"),
    ]
    # Grants belong to the legal entity's chain.
    assert [e.event for e in chain(store, "ACME")] == ["role_granted"]


def test_the_access_chain_cannot_be_taken_as_a_legal_entity_code(store: Store) -> None:
    with pytest.raises(DirectoryError, match="reserved"), writing(store) as session:
        ensure_legal_entity(session, LegalEntity(code=ACCESS_CHAIN, name="Sneaky", currency="EUR"))


def hashes(policies: Path) -> dict[str, str]:
    return {
        p.relative_to(policies).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(policies.rglob("*"))
        if p.is_file()
    }


def record(store: Store, policies: Path) -> dict[str, Any] | None:
    """record_policy_files in its own transaction, as the API and the worker call it when they start."""
    with writing(store) as session:
        entry = record_policy_files(session, policies)
        if entry is None:
            return None
        return {
            "event": entry.event,
            "actor": entry.actor,
            "object_type": entry.object_type,
            "reason": entry.reason,
            "files": json.loads(entry.payload),
        }


def test_the_policy_files_in_force_are_recorded_once_per_new_content(store: Store, policies: Path) -> None:
    first = record(store, policies)
    assert first is not None
    assert (first["event"], first["actor"], first["object_type"]) == ("policy_changed", "system", "policy")
    assert first["files"] == hashes(policies)
    assert {"model.conf", "policy.csv", "sod_conflicts.csv", "reason_codes/initech.toml"} <= set(
        first["files"]
    )
    assert first["reason"] == "policy files first recorded"

    assert record(store, policies) is None  # a restart on the same files records nothing

    original = (policies / "sod_conflicts.csv").read_text()
    (policies / "sod_conflicts.csv").write_text(original + "collector, cash_applier, tightened\n")
    changed = record(store, policies)
    assert changed is not None and changed["reason"] == "changed: sod_conflicts.csv"
    assert changed["files"] == hashes(policies)
    assert record(store, policies) is None

    # Back to the earlier version: that is a change too, and recorded again.
    (policies / "sod_conflicts.csv").write_text(original)
    back = record(store, policies)
    assert back is not None and back["files"] == first["files"]

    assert [e.event for e in chain(store)] == ["policy_changed"] * 3
    with reading(store) as session:
        assert verify_chain(session, ACCESS_CHAIN).intact


def test_an_api_and_a_worker_starting_together_record_the_policy_once(store: Store, policies: Path) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda _: record(store, policies), range(4)))
    assert len(chain(store)) == 1
    with reading(store) as session:
        assert verify_chain(session, ACCESS_CHAIN).intact
