"""The control catalogue (policies/controls.toml) and the automated attribute tests it names.

An attribute test looks at one population item (a ledger entry) and the full ledger history of its
object, and says pass, fail or not applicable, with the reason in words an auditor can check by hand
against the entries it cites. The ledger is self-contained evidence: no test reads mutable tables.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from activities.duties import Conflict, conflicts_with

CATALOGUE = Path(__file__).resolve().parent.parent / "policies" / "controls.toml"

# Sample sizes auditors commonly take by control frequency (the pack's default; a request may set one).
DEFAULT_SAMPLE = {
    "transactional": 25,
    "daily": 25,
    "weekly": 5,
    "monthly": 2,
    "quarterly": 2,
    "annual": 1,
}


@dataclass(frozen=True)
class Control:
    id: str
    name: str
    description: str
    frequency: str
    object_types: tuple[str, ...]
    events: tuple[str, ...]
    population: str
    attributes: tuple[str, ...]

    @property
    def default_sample_size(self) -> int:
        return DEFAULT_SAMPLE[self.frequency]


@dataclass(frozen=True)
class Catalogue:
    version: str
    controls: dict[str, Control]
    sha256: str


class CatalogueError(ValueError):
    """The catalogue file is not valid."""


def load_catalogue(path: Path = CATALOGUE) -> Catalogue:
    raw = path.read_bytes()
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CatalogueError(f"{path}: {exc}") from None
    controls: dict[str, Control] = {}
    for i, c in enumerate(doc.get("control", [])):
        where = f"{path.name}: control #{i + 1}"
        try:
            control = Control(
                id=str(c["id"]),
                name=str(c["name"]),
                description=str(c["description"]),
                frequency=str(c["frequency"]),
                object_types=tuple(c["object_types"]),
                events=tuple(c["events"]),
                population=str(c["population"]),
                attributes=tuple(c["attributes"]),
            )
        except KeyError as exc:
            raise CatalogueError(f"{where}: missing {exc.args[0]}") from None
        if control.frequency not in DEFAULT_SAMPLE:
            raise CatalogueError(f"{where}: frequency must be one of {', '.join(DEFAULT_SAMPLE)}")
        unknown = [a for a in control.attributes if a not in ATTRIBUTE_TESTS]
        if unknown:
            raise CatalogueError(f"{where} ({control.id}): unknown attribute tests {', '.join(unknown)}")
        if control.id in controls:
            raise CatalogueError(f"{where}: duplicate id {control.id}")
        controls[control.id] = control
    if not controls:
        raise CatalogueError(f"{path}: no controls")
    return Catalogue(str(doc.get("version", "")), controls, hashlib.sha256(raw).hexdigest())


@dataclass(frozen=True)
class Item:
    """A ledger entry as the tests see it."""

    legal_entity: str
    seq: int
    entry_hash: str
    at: str
    object_type: str
    object_id: str
    event: str
    from_status: str | None
    to_status: str | None
    actor: str
    actor_roles: tuple[str, ...]
    rule: str
    reason: str
    workflow_id: str
    request_id: str
    payload: dict[str, Any]

    @staticmethod
    def from_row(row: Any) -> Item:
        return Item(
            legal_entity=row.legal_entity,
            seq=row.seq,
            entry_hash=row.entry_hash,
            at=row.at,
            object_type=row.object_type,
            object_id=row.object_id,
            event=row.event,
            from_status=row.from_status,
            to_status=row.to_status,
            actor=row.actor,
            actor_roles=tuple(json.loads(row.actor_roles)),
            rule=row.rule,
            reason=row.reason,
            workflow_id=row.workflow_id,
            request_id=row.request_id,
            payload=json.loads(row.payload),
        )


@dataclass(frozen=True)
class Outcome:
    test: str
    result: str  # "pass", "fail" or "n/a"
    detail: str


@dataclass
class TestContext:
    conflicts: list[Conflict] | None = None
    # Everything else a test may need that is not on the object's own history.
    extra: dict[str, Any] = field(default_factory=dict)


AttributeTest = Callable[[Item, list[Item], TestContext], tuple[str, str]]
ATTRIBUTE_TESTS: dict[str, AttributeTest] = {}


def attribute_test(name: str) -> Callable[[AttributeTest], AttributeTest]:
    def register(fn: AttributeTest) -> AttributeTest:
        ATTRIBUTE_TESTS[name] = fn
        return fn

    return register


def run_tests(control: Control, item: Item, history: list[Item], ctx: TestContext) -> list[Outcome]:
    out = []
    for name in control.attributes:
        result, detail = ATTRIBUTE_TESTS[name](item, history, ctx)
        out.append(Outcome(name, result, detail))
    return out


# --- approvals -------------------------------------------------------------------------------------------


def _submission_of(item: Item, history: list[Item]) -> list[Item]:
    """The entries of the approval round the item belongs to: from the last submit before it."""
    before = [h for h in history if h.seq < item.seq]
    start = max((i for i, h in enumerate(before) if h.event == "submit"), default=-1)
    return before[start:] if start >= 0 else before


def _approver(item: Item) -> str:
    return item.actor


@attribute_test("approver_not_preparer")
def approver_not_preparer(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    created = next((h for h in history if h.event == "create"), None)
    submitters = {h.actor for h in history if h.event == "submit" and h.seq < item.seq}
    preparers = ({created.actor} if created else set()) | submitters
    if not preparers:
        return "fail", "no creation or submission of the document is in the ledger"
    if _approver(item) in preparers:
        return "fail", f"{item.actor} approved (seq {item.seq}) what they prepared or submitted"
    return "pass", f"approver {item.actor}; prepared/submitted by {', '.join(sorted(preparers))}"


@attribute_test("approver_not_editor")
def approver_not_editor(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    editors = {h.actor for h in history if h.event == "edit" and h.seq < item.seq}
    if item.actor in editors:
        return "fail", f"{item.actor} edited the document before approving it (seq {item.seq})"
    return "pass", f"editors: {', '.join(sorted(editors)) or 'none'}"


@attribute_test("approver_distinct_across_tiers")
def approver_distinct_across_tiers(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    round_ = _submission_of(item, history)
    earlier = [h for h in round_ if h.event in ("approve_tier", "approve")]
    same = [h.seq for h in earlier if h.actor == item.actor]
    if same:
        return "fail", f"{item.actor} already approved an earlier tier of this submission (seq {same[0]})"
    return "pass", f"earlier tiers approved by: {', '.join(h.actor for h in earlier) or 'none'}"


@attribute_test("approver_held_tier_role")
def approver_held_tier_role(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    tier = item.payload.get("tier") or {}
    role = tier.get("role")
    if not role:
        return "fail", "the approval does not record the tier's role"
    held = set(item.actor_roles)
    if role in held:
        return "pass", f"{item.actor} held {role} when approving"
    delegated = [r for r in held if r.startswith(f"delegated:{role}:")]
    if delegated:
        return "pass", f"{item.actor} approved on delegation ({delegated[0]})"
    return "fail", f"{item.actor} held {', '.join(sorted(held)) or 'no role'}, not {role}"


@attribute_test("tier_in_matrix_order")
def tier_in_matrix_order(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    tier = item.payload.get("tier") or {}
    tiers = item.payload.get("tiers") or []
    level = tier.get("level")
    if not tiers or not level:
        return "fail", "the approval does not record the tier plan it was given under"
    round_ = _submission_of(item, history)
    submitted = next((h for h in round_ if h.event == "submit"), None)
    if submitted is not None and submitted.payload.get("tiers") != tiers:
        return "fail", f"the tiers differ from those fixed at submission (seq {submitted.seq})"
    done = sum(1 for h in round_ if h.event in ("approve_tier", "approve"))
    if level != done + 1:
        return "fail", f"tier {level} approved when tier {done + 1} was due"
    if tiers[level - 1] != tier.get("role"):
        return "fail", f"tier {level} needs {tiers[level - 1]}, approved as {tier.get('role')}"
    last = level == len(tiers)
    if (item.event == "approve") != last:
        return "fail", f"tier {level} of {len(tiers)} recorded as {item.event}"
    version = item.payload.get("matrix_version", "")
    return "pass", f"tier {level} of {len(tiers)} ({tier.get('role')}), matrix {version}"


@attribute_test("approved_before_delivery")
def approved_before_delivery(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    deliveries = [h for h in history if h.event == "deliver"]
    if not deliveries:
        return "pass", "not delivered yet"
    delivered = deliveries[0]
    finals = [h for h in history if h.event == "approve" and h.seq < delivered.seq]
    if not finals:
        return "fail", f"delivered at seq {delivered.seq} without a final approval before it"
    final = finals[-1]
    changed = [
        h for h in history if h.event in ("edit", "submit", "reject") and final.seq < h.seq < delivered.seq
    ]
    if changed:
        return "fail", f"changed at seq {changed[0].seq} after the final approval and before delivery"
    return "pass", f"final approval seq {final.seq} before delivery seq {delivered.seq}"


# --- master data and access --------------------------------------------------------------------------


@attribute_test("change_by_master_data_role")
def change_by_master_data_role(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    allowed = {"master_data", "erp_integration"}
    if allowed & set(item.actor_roles):
        return "pass", f"{item.actor} held {', '.join(sorted(allowed & set(item.actor_roles)))}"
    return "fail", f"{item.actor} held {', '.join(item.actor_roles) or 'no role'}"


@attribute_test("maker_checker")
def maker_checker(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    checker = item.payload.get("approved_by")
    if not checker:
        return "fail", "no second person approved the change"
    if checker == item.actor:
        return "fail", f"{item.actor} approved their own change"
    return "pass", f"made by {item.actor}, approved by {checker}"


@attribute_test("changed_by_other_than_subject")
def changed_by_other_than_subject(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    subject = item.payload.get("username")
    if subject == item.actor:
        return "fail", f"{item.actor} changed their own roles"
    return "pass", f"{item.actor} changed the roles of {subject}"


@attribute_test("changed_by_administrator")
def changed_by_administrator(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    if "admin" in item.actor_roles or item.actor == "cashcycle":
        return "pass", f"{item.actor} held admin"
    return "fail", f"{item.actor} held {', '.join(item.actor_roles) or 'no role'}, not admin"


@attribute_test("no_duties_conflict_created")
def no_duties_conflict_created(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    if item.event != "role_granted":
        return "n/a", "a revocation cannot create a conflict"
    user, entity = item.payload.get("username"), item.payload.get("legal_entity")
    grants: list[Item] = ctx.extra.get("access_history", [])
    held: set[str] = set()
    for h in grants:
        if h.seq >= item.seq or h.legal_entity != item.legal_entity:
            continue
        if h.payload.get("username") != user or h.payload.get("legal_entity") != entity:
            continue
        if h.event == "role_granted":
            held.add(str(h.payload.get("role")))
        elif h.event == "role_revoked":
            held.discard(str(h.payload.get("role")))
    role = str(item.payload.get("role"))
    if ctx.conflicts is None:
        return "fail", "no conflict file to test against"
    created = conflicts_with(role, held, ctx.conflicts)
    if created:
        c = created[0]
        return (
            "fail",
            f"{user} was granted {role} while holding the other role of {c.role_a}/{c.role_b}: {c.why}",
        )
    return "pass", f"{user} held {', '.join(sorted(held)) or 'nothing'} before; no conflict with {role}"


# --- disputes, cash, the ledger itself -----------------------------------------------------------------


@attribute_test("root_cause_recorded")
def root_cause_recorded(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    cause = item.payload.get("root_cause")
    return ("pass", f"root cause: {cause}") if cause else ("fail", "no root cause recorded")


@attribute_test("resolved_within_sla")
def resolved_within_sla(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    met = item.payload.get("sla_met")
    if met is None:
        return "fail", "the resolution does not record its SLA"
    return ("pass", "resolved within the SLA") if met else ("fail", "resolved after the SLA")


@attribute_test("applied_by_cash_application_role")
def applied_by_cash_application_role(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    allowed = {"cash_applier", "erp_integration"}
    if allowed & set(item.actor_roles):
        return "pass", f"{item.actor} held {', '.join(sorted(allowed & set(item.actor_roles)))}"
    return "fail", f"{item.actor} held {', '.join(item.actor_roles) or 'no role'}"


@attribute_test("allocation_within_amount_due")
def allocation_within_amount_due(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    total, paid = item.payload.get("total_minor"), item.payload.get("amount_paid_minor")
    if not isinstance(total, int) or not isinstance(paid, int):
        return "fail", "the allocation does not record the invoice total and amount paid"
    if paid > total:
        return "fail", f"paid {paid} above the total {total} (minor units)"
    return "pass", f"paid {paid} of {total} (minor units) after this allocation"


@attribute_test("verification_intact")
def verification_intact(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    if item.event == "ledger_checkpoint":
        sig = item.payload.get("signature")
        return (
            ("pass", f"checkpoint of seq {item.payload.get('seq')}")
            if sig
            else ("fail", "unsigned checkpoint")
        )
    if item.payload.get("intact") is True:
        return "pass", item.reason
    return "fail", item.reason
