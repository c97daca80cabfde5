"""Access administration over HTTP: administrators grant and revoke roles in their legal entities, a grant
that would give one person incompatible duties is refused naming the pair and changes nothing, grants take
effect on the grantee's next request and are ledgered with the administrator as actor; compliance reads the
report of existing conflicts, which names the version of the conflicts file it was checked against."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import SQLModel, col, func, select

from activities.db import reading, writing
from activities.directory import ACCESS_CHAIN
from activities.duties import CONFLICTS_FILE
from activities.ledger import verify_chain
from activities.models import LedgerEntry, PolicyRevision, RoleAssignment
from tests.conftest import CAST, Stack

# --- helpers --------------------------------------------------------------------------------------------


def change(username: str, role: str, legal_entity: str = "ACME") -> dict[str, str]:
    return {"username": username, "role": role, "legal_entity": legal_entity}


def count(stack: Stack, model: type[SQLModel]) -> int:
    with reading(stack.store) as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


def snapshot(stack: Stack) -> dict[str, int]:
    """What a refused request must leave as it was."""
    with reading(stack.store) as session:
        revision = session.get(PolicyRevision, 1)
    return {
        "role_assignment": count(stack, RoleAssignment),
        "ledger_entry": count(stack, LedgerEntry),
        "policy_revision": revision.revision if revision else 0,
    }


def last_entry(stack: Stack, legal_entity: str = "ACME") -> LedgerEntry:
    with reading(stack.store) as session:
        entry = session.exec(
            select(LedgerEntry)
            .where(LedgerEntry.legal_entity == legal_entity)
            .order_by(col(LedgerEntry.seq).desc())
        ).first()
        assert entry is not None
        session.expunge(entry)
        return entry


def plant(stack: Stack, username: str, role: str, legal_entity: str = "ACME") -> None:
    """A role assignment written behind the directory's back: what the store holds when the conflicts file
    tightens after the grants were made."""
    with writing(stack.store) as session:
        session.add(
            RoleAssignment(username=username, role=role, legal_entity=legal_entity, granted_by="before")
        )


# --- grants ---------------------------------------------------------------------------------------------


async def test_a_grant_that_creates_a_conflict_is_refused_naming_the_pair_and_changes_nothing(
    stack: Stack,
) -> None:
    admin = await stack.client("admin")
    before = snapshot(stack)
    r = await admin.post("/api/v1/access/grants", json=change("cashier", "ar_preparer"))
    assert r.status_code == 403, r.text
    error = r.json()["error"]
    assert error["code"] == "duties_conflict"
    assert error["details"]["pair"] == ["cash_applier", "ar_preparer"]
    assert error["details"]["held"] == "cash_applier" and error["details"]["requested"] == "ar_preparer"
    assert error["details"]["why"].startswith("cash application vs. invoicing")
    assert "cash_applier + ar_preparer" in error["message"] and error["details"]["why"] in error["message"]
    assert snapshot(stack) == before

    # The administrator cannot take a business role either (administration vs. any business role).
    r = await admin.post("/api/v1/access/grants", json=change("admin", "ar_approver"))
    assert r.status_code == 403 and r.json()["error"]["details"]["pair"] == ["admin", "ar_approver"], r.text
    assert snapshot(stack) == before


async def test_a_grant_takes_effect_on_the_grantees_next_request_and_is_ledgered_with_the_admin_as_actor(
    stack: Stack,
) -> None:
    admin, outsider = await stack.clients("admin", "outsider")
    initech = f"/api/v1/customers/{stack.customers['initech']}"
    assert (await outsider.get(initech)).status_code == 404  # no role in ACME: invisible

    r = await admin.post("/api/v1/access/grants", json=change("outsider", "ar_approver"))
    assert r.status_code == 201, r.text
    granted = r.json()
    assert {k: granted[k] for k in ("username", "role", "legal_entity", "granted_by", "changed")} == {
        "username": "outsider",
        "role": "ar_approver",
        "legal_entity": "ACME",
        "granted_by": "admin",
        "changed": True,
    }
    assert abs(
        datetime.fromisoformat(granted["granted_at"]).replace(tzinfo=UTC) - datetime.now(UTC)
    ) < timedelta(minutes=5)
    entry = last_entry(stack)
    assert (entry.event, entry.object_id, entry.actor, entry.rule) == (
        "role_granted",
        "outsider",
        "admin",
        "p, admin, *, access:grant",
    )
    assert json.loads(entry.actor_roles) == ["admin"]
    assert json.loads(entry.payload) == change("outsider", "ar_approver")

    # The grantee's token was issued before the grant: the role counts from the very next request.
    assert (await outsider.get(initech)).status_code == 200

    before = snapshot(stack)
    again = await admin.post("/api/v1/access/grants", json=change("outsider", "ar_approver"))
    assert again.status_code == 200 and again.json()["changed"] is False, again.text
    assert again.json()["granted_at"] == granted["granted_at"]
    assert snapshot(stack) == before

    assignments = (await admin.get("/api/v1/access/assignments")).json()
    assert {"username": "outsider", "role": "ar_approver", "legal_entity": "ACME", "granted_by": "admin"} in [
        {k: a[k] for k in ("username", "role", "legal_entity", "granted_by")} for a in assignments
    ]

    r = await admin.post("/api/v1/access/revokes", json=change("outsider", "ar_approver"))
    assert r.status_code == 200 and r.json()["changed"] is True, r.text
    entry = last_entry(stack)
    assert (entry.event, entry.object_id, entry.actor) == ("role_revoked", "outsider", "admin")
    assert (await outsider.get(initech)).status_code == 404
    r = await admin.post("/api/v1/access/revokes", json=change("outsider", "ar_approver"))
    assert r.status_code == 200 and r.json()["changed"] is False, r.text

    with reading(stack.store) as session:
        assert verify_chain(session, "ACME").intact


async def test_a_revoke_is_allowed_even_where_conflicts_exist(stack: Stack) -> None:
    plant(stack, "collector", "controller")
    admin = await stack.client("admin")
    r = await admin.post("/api/v1/access/revokes", json=change("collector", "controller"))
    assert r.status_code == 200 and r.json()["changed"] is True, r.text
    assert (await admin.get("/api/v1/access/conflicts")).json()["conflicts"] == []


BAD_BODIES: list[tuple[dict[str, Any], str]] = [
    (change("ghost", "ar_approver"), "username"),
    (change("outsider", "superuser"), "role"),
    (change("outsider", "ar_approver", "NOPE"), "legal_entity"),
    ({"username": "outsider", "role": "ar_approver"}, "legal_entity"),
    ({**change("outsider", "ar_approver"), "expires": "never"}, "expires"),
    (change("", "ar_approver"), "username"),
    (change("outsider", "ar_approver", "X" * 33), "legal_entity"),
]


async def test_unknown_or_malformed_input_is_a_422_naming_the_field_and_changes_nothing(stack: Stack) -> None:
    admin = await stack.client("admin")
    before = snapshot(stack)
    for path in ("/api/v1/access/grants", "/api/v1/access/revokes"):
        for body, field in BAD_BODIES:
            r = await admin.post(path, json=body)
            assert r.status_code == 422, (path, body, r.text)
            details = r.json()["error"]["details"]
            named = {f["field"] for f in details.get("fields", [])} | {details.get("field")}
            assert field in named, (path, body, r.text)
    assert snapshot(stack) == before


@pytest.mark.parametrize("who", ["preparer", "compliance", "supervisor", "outsider"])
async def test_only_administrators_may_grant_naming_access_grant(stack: Stack, who: str) -> None:
    client = await stack.client(who)
    before = snapshot(stack)
    for path in ("/api/v1/access/grants", "/api/v1/access/revokes"):
        # Even naming an unknown legal entity: a non-administrator learns nothing about the request.
        for body in (change(who, "admin"), change("approver", "controller", "NOPE")):
            r = await client.post(path, json=body)
            assert r.status_code == 403, r.text
            error = r.json()["error"]
            assert error["code"] == "forbidden" and error["details"]["action"] == "access:grant", r.text
            assert "access:grant" in error["message"]
    assert snapshot(stack) == before


async def test_an_administrator_grants_only_where_they_hold_admin(stack: Stack) -> None:
    admin = await stack.client("admin")
    before = snapshot(stack)
    r = await admin.post("/api/v1/access/grants", json=change("outsider", "ar_approver", "GLOBEX"))
    assert r.status_code == 403, r.text
    assert r.json()["error"]["details"] == {
        "action": "access:grant",
        "legal_entity": "GLOBEX",
        "roles_held": [],
    }
    assert snapshot(stack) == before


# --- the conflicts report -------------------------------------------------------------------------------


async def test_the_conflicts_report_lists_conflicts_held_and_how_it_was_produced(stack: Stack) -> None:
    compliance, admin = await stack.clients("compliance", "admin")
    r = await compliance.get("/api/v1/access/conflicts")
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["conflicts"] == [] and report["count"] == 0
    assert report["version"] == hashlib.sha256(CONFLICTS_FILE.read_bytes()).hexdigest()
    assert report["conflicts_file"] == "policies/sod_conflicts.csv"
    assert report["legal_entities"] == ["ACME"]
    acme_roles = sum(len(roles) for roles in CAST.values())
    assert report["assignments_examined"] == acme_roles
    assert abs(datetime.fromisoformat(report["generated_at"]) - datetime.now(UTC)) < timedelta(minutes=5)

    # The conflicts file tightened after these were granted (or someone wrote to the store directly).
    plant(stack, "cashier", "ar_preparer")
    plant(stack, "collector", "controller", "GLOBEX")  # not a legal entity compliance reviews
    for reader in (compliance, admin):
        r = await reader.get("/api/v1/access/conflicts")
        assert r.status_code == 200, r.text
        report = r.json()
        assert report["count"] == 1 and report["assignments_examined"] == acme_roles + 1
        [row] = report["conflicts"]
        assert {k: row[k] for k in ("username", "active", "legal_entity", "role_a", "role_b")} == {
            "username": "cashier",
            "active": True,
            "legal_entity": "ACME",
            "role_a": "cash_applier",
            "role_b": "ar_preparer",
        }
        assert row["why"].startswith("cash application vs. invoicing")


async def test_compliance_reads_access_but_cannot_grant_and_business_roles_read_nothing(stack: Stack) -> None:
    compliance, preparer = await stack.clients("compliance", "preparer")
    assert (await compliance.get("/api/v1/access/assignments")).status_code == 200
    r = await compliance.post("/api/v1/access/grants", json=change("compliance", "admin"))
    assert r.status_code == 403 and r.json()["error"]["details"]["action"] == "access:grant", r.text
    r = await preparer.get("/api/v1/access/conflicts")
    assert r.status_code == 403 and r.json()["error"]["details"]["action"] == "access:read", r.text
    assert (await preparer.get("/api/v1/access/assignments")).json() == []


# --- access evidence outside legal entities -------------------------------------------------------------


async def test_users_added_and_the_policy_in_force_are_on_a_verifiable_access_chain(stack: Stack) -> None:
    compliance, preparer = await stack.clients("compliance", "preparer")
    r = await compliance.get("/api/v1/access/ledger/verify")
    assert r.status_code == 200, r.text
    verified = r.json()
    # One entry per user of the cast, and the policy files recorded when the API started.
    assert (verified["chain"], verified["intact"], verified["entries"]) == (ACCESS_CHAIN, True, len(CAST) + 1)
    with reading(stack.store) as session:
        events = [
            (e.event, e.object_id)
            for e in session.exec(
                select(LedgerEntry)
                .where(LedgerEntry.legal_entity == ACCESS_CHAIN)
                .order_by(col(LedgerEntry.seq))
            )
        ]
    assert sorted(events) == sorted([("user_added", u) for u in CAST] + [("policy_changed", "policies")])
    assert (await preparer.get("/api/v1/access/ledger/verify")).status_code == 403
