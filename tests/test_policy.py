"""The Casbin model and policy as a table of allowed and denied requests, and the tie between the
policy and the API: every action the API checks is in the policy, and every action in the policy is
checked somewhere in the API.

The role -> actions matrix below is the specification, typed in by hand: granting a role a new action
means changing this table too, where a reviewer sees it.
"""

from __future__ import annotations

import ast
import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session

from activities import queries
from activities.models import RoleAssignment
from api.errors import Forbidden
from api.security import POLICIES, Authorizer

ROOT = Path(__file__).resolve().parent.parent
API = ROOT / "api"

EXPECTED: dict[str, set[str]] = {
    "ar_preparer": {
        "invoice:create",
        "invoice:edit",
        "invoice:submit",
        "invoice:void",
        "invoice:read",
        "customer:read",
    },
    "ar_approver": {
        "invoice:approve",
        "invoice:reject",
        "invoice:read",
        "customer:read",
        "approval:delegate",
    },
    "finance_manager": {
        "invoice:approve",
        "invoice:reject",
        "invoice:read",
        "customer:read",
        "payment:read",
        "approval:delegate",
        "report:read",
    },
    "controller": {
        "invoice:approve",
        "invoice:reject",
        "invoice:read",
        "customer:read",
        "payment:read",
        "ledger:read",
        "approval:delegate",
        "report:read",
    },
    "collector": {"invoice:read", "customer:read", "payment:read"},
    "cash_applier": {"payment:record", "payment:read", "invoice:read", "customer:read"},
    "ar_supervisor": {
        "invoice:read",
        "customer:read",
        "payment:read",
        "ledger:read",
        "approval:reassign",
        "report:read",
        "tower:read",
        "workflow:remind",
        "workflow:escalate",
        "workflow:retry",
    },
    "compliance": {"ledger:read", "access:read", "evidence:export", "evidence:checkpoint"},
    "master_data": {"customer:create", "customer:read"},
    "erp_integration": {
        "invoice:create",
        "invoice:read",
        "customer:create",
        "customer:read",
        "payment:record",
        "payment:read",
    },
    "admin": {"access:read", "access:grant"},
}
# Disputes (issue 11): collectors and supervisors work cases, preparers record and annotate them, whoever
# reads invoices reads cases.
DISPUTE_ACTIONS: dict[str, set[str]] = {
    "collector": {
        "dispute:open",
        "dispute:read",
        "dispute:note",
        "dispute:assign",
        "dispute:resolve",
        "dispute:close",
    },
    "ar_supervisor": {
        "dispute:open",
        "dispute:read",
        "dispute:note",
        "dispute:assign",
        "dispute:resolve",
        "dispute:close",
    },
    "ar_preparer": {"dispute:open", "dispute:read", "dispute:note"},
    "ar_approver": {"dispute:read"},
    "finance_manager": {"dispute:read"},
    "controller": {"dispute:read"},
    "cash_applier": {"dispute:read"},
    "erp_integration": {"dispute:read"},
}
for _role, _actions in DISPUTE_ACTIONS.items():
    EXPECTED[_role] |= _actions
# Credit memos and write-offs (issue 11): proposed / requested by those who work cases, approved by the
# approval roles (the matrix's tiers decide which), read by them and by compliance.
RESOLUTION_ACTIONS: dict[str, set[str]] = {
    "collector": {"credit_memo:propose", "credit_memo:read", "write_off:request", "write_off:read"},
    "ar_supervisor": {"credit_memo:propose", "credit_memo:read", "write_off:request", "write_off:read"},
    "ar_preparer": {"credit_memo:propose", "credit_memo:read"},
    "ar_approver": {"credit_memo:approve", "credit_memo:read", "write_off:approve", "write_off:read"},
    "finance_manager": {"credit_memo:approve", "credit_memo:read", "write_off:approve", "write_off:read"},
    "controller": {"credit_memo:approve", "credit_memo:read", "write_off:approve", "write_off:read"},
    "compliance": {"credit_memo:read", "write_off:read"},
}
for _role, _actions in RESOLUTION_ACTIONS.items():
    EXPECTED[_role] |= _actions
# CAPA (issue 11): whoever may own an action completes it and asks for more time; only a supervisor, a
# finance manager or a controller decides an extension (never on their own: the workflow refuses the
# owner); compliance reads.
OWNING = {"capa:read", "capa:complete", "capa:extend"}
CAPA_ACTIONS: dict[str, set[str]] = {
    "collector": OWNING,
    "ar_supervisor": OWNING | {"capa:approve_extension"},
    "ar_preparer": OWNING,
    "ar_approver": OWNING,
    "finance_manager": OWNING | {"capa:approve_extension"},
    "controller": OWNING | {"capa:approve_extension"},
    "compliance": {"capa:read"},
}
for _role, _actions in CAPA_ACTIONS.items():
    EXPECTED[_role] |= _actions
ACTIONS = sorted(set().union(*EXPECTED.values()))
ROLES = sorted(EXPECTED)
HOME, ELSEWHERE = "ACME", "GLOBEX"

# One user per role, holding it in ACME only; a user with no role at all; and a user holding
# different roles in the two legal entities.
ASSIGNMENTS = [(f"holds_{role}", role, HOME) for role in ROLES] + [
    ("split", "ar_approver", HOME),
    ("split", "ar_preparer", ELSEWHERE),
]
NOBODY = "no_role"


@pytest.fixture(scope="module")
def authorizer() -> Iterator[Authorizer]:
    """The API's Authorizer over the real model and policy files, with role assignments held in memory
    instead of the store (the store's query functions are swapped for the duration of the refresh)."""
    rows = [RoleAssignment(username=u, role=r, legal_entity=e, granted_by="test") for u, r, e in ASSIGNMENTS]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(queries, "policy_revision", lambda _session: 1)
        patch.setattr(queries, "role_assignments", lambda _session: rows)
        auth = Authorizer()
        auth.refresh(Session())
    yield auth


def policy_rules() -> list[tuple[str, str, str]]:
    rules = []
    for raw in (POLICIES / "policy.csv").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            kind, role, domain, action = (part.strip() for part in line.split(","))
            assert kind == "p", line
            rules.append((role, domain, action))
    return rules


def test_the_policy_grants_exactly_the_specified_actions_to_each_role() -> None:
    granted: dict[str, set[str]] = {}
    for role, _domain, action in policy_rules():
        granted.setdefault(role, set()).add(action)
    assert granted == EXPECTED


def test_every_rule_applies_in_each_legal_entity_where_the_role_is_held() -> None:
    assert {domain for _role, domain, _action in policy_rules()} == {"*"}


MATRIX = list(itertools.product(ROLES, ACTIONS))


@pytest.mark.parametrize(("role", "action"), MATRIX, ids=[f"{r}-{a}" for r, a in MATRIX])
def test_role_holder_may_do_exactly_the_roles_actions_in_their_legal_entity(
    authorizer: Authorizer, role: str, action: str
) -> None:
    user = f"holds_{role}"
    allowed = authorizer.check(user, HOME, action) is not None
    assert allowed == (action in EXPECTED[role])


@pytest.mark.parametrize(("role", "action"), MATRIX, ids=[f"{r}-{a}" for r, a in MATRIX])
def test_role_held_in_one_legal_entity_grants_nothing_in_another(
    authorizer: Authorizer, role: str, action: str
) -> None:
    assert authorizer.check(f"holds_{role}", ELSEWHERE, action) is None


@pytest.mark.parametrize("action", [*ACTIONS, "invoice:delete", "policy:write", "*"])
@pytest.mark.parametrize("entity", [HOME, ELSEWHERE])
def test_user_without_a_role_is_denied_everything(authorizer: Authorizer, entity: str, action: str) -> None:
    assert authorizer.check(NOBODY, entity, action) is None


@pytest.mark.parametrize("role", ROLES)
def test_an_action_the_policy_does_not_name_is_denied_to_every_role(
    authorizer: Authorizer, role: str
) -> None:
    for action in ["invoice:delete", "invoice:write_off", "ledger:write", "invoice:*", "*"]:
        assert authorizer.check(f"holds_{role}", HOME, action) is None


def test_a_user_named_like_a_role_holds_it_only_where_it_was_granted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Casbin's role manager links every name to itself: unless users and roles are kept apart, a user
    # called "admin" or "controller" (as in the demo) holds that role in every legal entity.
    held = [RoleAssignment(username="admin", role="admin", legal_entity=HOME, granted_by="test")]
    monkeypatch.setattr(queries, "policy_revision", lambda _session: 1)
    monkeypatch.setattr(queries, "role_assignments", lambda _session: held)
    auth = Authorizer()
    auth.refresh(Session())
    assert auth.check("admin", HOME, "access:grant") is not None
    assert auth.check("admin", ELSEWHERE, "access:grant") is None
    assert auth.check("controller", HOME, "invoice:approve") is None
    assert auth.roles("controller", HOME) == []


def test_roles_held_in_two_legal_entities_stay_apart(authorizer: Authorizer) -> None:
    assert authorizer.check("split", HOME, "invoice:approve") is not None
    assert authorizer.check("split", ELSEWHERE, "invoice:approve") is None
    assert authorizer.check("split", ELSEWHERE, "invoice:create") is not None
    assert authorizer.check("split", HOME, "invoice:create") is None
    assert authorizer.roles("split", HOME) == ["ar_approver"]
    assert authorizer.roles("split", ELSEWHERE) == ["ar_preparer"]


def test_a_grant_names_the_rule_that_allowed_it_and_the_roles_held(authorizer: Authorizer) -> None:
    grant = authorizer.check("holds_ar_approver", HOME, "invoice:approve")
    assert grant is not None
    assert grant.rule == "p, ar_approver, *, invoice:approve"
    assert grant.roles == ["ar_approver"]
    assert (grant.username, grant.legal_entity, grant.action) == (
        "holds_ar_approver",
        HOME,
        "invoice:approve",
    )


def test_a_refusal_names_the_action_the_legal_entity_and_the_roles_held(authorizer: Authorizer) -> None:
    with pytest.raises(Forbidden) as refused:
        authorizer.require("holds_ar_preparer", HOME, "invoice:approve")
    assert refused.value.status == 403
    assert refused.value.details == {
        "action": "invoice:approve",
        "legal_entity": HOME,
        "roles_held": ["ar_preparer"],
    }
    assert "holds_ar_preparer may not invoice:approve in legal entity ACME" in refused.value.message


def test_the_authorizer_lists_the_actions_of_the_policy(authorizer: Authorizer) -> None:
    assert authorizer.actions == set(ACTIONS)


# -- the policy and the API agree ---------------------------------------------------------------------

ACTION_TEXT = re.compile(r"^[a-z_]+:[a-z_]+$")


def actions_checked_in_api() -> dict[str, list[str]]:
    """Action strings the API passes to `authorizer.require` / `authorizer.check` (or to
    `entities_for`, which calls them), and the values of
    `COMMANDS` in api/invoices.py and `TOWER_COMMANDS` in api/tower.py (the per-command permissions),
    each with where it is used."""
    found: dict[str, list[str]] = {}
    for path in sorted(API.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Call) and (
                (
                    isinstance(node.func, ast.Attribute)
                    and node.func.attr in {"require", "check"}
                    and isinstance(node.func.value, ast.Attribute)
                    and node.func.value.attr == "authorizer"
                )
                # evidence and reports check their actions through one helper, per legal entity (api/deps.py).
                or (isinstance(node.func, ast.Name) and node.func.id == "entities_for")
                # the CAPA commands name their action to one helper, which requires it (api/capa.py).
                or (isinstance(node.func, ast.Name) and node.func.id == "command" and path.name == "capa.py")
            ):
                for arg in node.args:
                    if (
                        isinstance(arg, ast.Constant)
                        and isinstance(arg.value, str)
                        and ACTION_TEXT.match(arg.value)
                    ):
                        found.setdefault(arg.value, []).append(where)
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id in ("COMMANDS", "TOWER_COMMANDS") for t in node.targets
            ):
                assert isinstance(node.value, ast.Dict), where
                for value in node.value.values:
                    assert isinstance(value, ast.Constant) and isinstance(value.value, str), where
                    found.setdefault(value.value, []).append(where)
    return found


def test_the_api_scan_finds_the_checks_it_is_meant_to_find() -> None:
    # Guards the scan itself: a scan that finds nothing would make the two tests below pass vacuously.
    checked = actions_checked_in_api()
    assert {"invoice:create", "invoice:read", "invoice:approve", "payment:record", "customer:create"} <= set(
        checked
    )
    assert any(where.startswith("api/invoices.py") for where in checked["invoice:approve"])


def test_every_action_the_api_checks_is_in_the_policy() -> None:
    in_policy = {action for _role, _domain, action in policy_rules()}
    unknown = {action: where for action, where in actions_checked_in_api().items() if action not in in_policy}
    assert unknown == {}, "the API checks actions no policy rule grants (nobody could ever do them)"


def test_every_action_in_the_policy_is_checked_by_the_api() -> None:
    checked = actions_checked_in_api()
    unused = sorted({action for _role, _domain, action in policy_rules()} - set(checked))
    assert unused == [], "the policy grants actions no API route checks (a role that opens no door)"


def test_a_revoked_role_stops_granting_once_the_policy_revision_moves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held = [RoleAssignment(username="approver", role="ar_approver", legal_entity=HOME, granted_by="test")]
    revision = 1
    monkeypatch.setattr(queries, "policy_revision", lambda _session: revision)
    monkeypatch.setattr(queries, "role_assignments", lambda _session: list(held))
    auth = Authorizer()
    auth.refresh(Session())
    assert auth.check("approver", HOME, "invoice:approve") is not None

    held.clear()
    auth.refresh(Session())  # same revision: the cached role graph stands
    assert auth.check("approver", HOME, "invoice:approve") is not None
    revision = 2
    auth.refresh(Session())
    assert auth.check("approver", HOME, "invoice:approve") is None
    assert auth.roles("approver", HOME) == []
