"""The control catalogue (policies/controls.toml) and the automated attribute tests it names.

An attribute test looks at one population item (a ledger entry) and the full ledger history of its
object, and says pass, fail or not applicable, with the reason in words an auditor can check by hand
against the entries it cites. The ledger is the evidence: a test never takes a workflow's word for a fact
(the read model's copy of who proposed, who owns the case, who applied cash...).

What the object's own history does not hold is read by a context loader registered for the test
(`CONTEXT_LOADERS`, run by the pack once per legal entity over the sample): other objects' ledger entries
(the dispute a credit memo resolves, the CAPA a case opened, the approver's other decisions in the month),
and three facts from the store that the ledger does not carry in that shape: cash applied per customer
(payment_allocation, written in the same transaction as the invoice's payment entry), the legal entity's
zone, currency and country, and the dispute policy in force (policies/disputes.toml: SLA durations and the
write-off tolerance, matched by the version each case recorded).
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from activities.duties import Conflict, conflicts_with
from activities.models import Invoice, LedgerEntry, LegalEntity, PaymentAllocation
from activities.money import MoneyError, exponent, format_minor
from workflows.root_causes import ROOT_CAUSES, VALIDITY

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


# What a test needs beyond its object's history, read once per legal entity over the sample (ctx.extra).
ContextLoader = Callable[[Session, str, list[Item], TestContext], None]
CONTEXT_LOADERS: dict[str, list[ContextLoader]] = {}


def needs(*tests: str) -> Callable[[ContextLoader], ContextLoader]:
    """Register a context loader for the attribute tests named."""

    def register(fn: ContextLoader) -> ContextLoader:
        for name in tests:
            CONTEXT_LOADERS.setdefault(name, []).append(fn)
        return fn

    return register


def prepare_context(
    session: Session, control: Control, entity: str, sample: list[Item], ctx: TestContext
) -> None:
    """Run the loaders the control's tests need, each once, for the sampled items of one legal entity."""
    ran: list[ContextLoader] = []
    for name in control.attributes:
        for loader in CONTEXT_LOADERS.get(name, []):
            if loader not in ran:
                loader(session, entity, sample, ctx)
                ran.append(loader)


# --- approvals -------------------------------------------------------------------------------------------

APPROVALS = ("approve_tier", "approve")


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
    if item.event not in APPROVALS:
        return "n/a", f"{item.event} by {item.actor}: not an approval (its approvals are items of their own)"
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


# --- context from beyond the object's history (loaders) ------------------------------------------------


def _when(at: str) -> datetime:
    return datetime.fromisoformat(at)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


@dataclass(frozen=True)
class EntityFacts:
    zone: str
    currency: str
    country: str


def _entity(ctx: TestContext, entity: str) -> EntityFacts:
    facts: dict[str, EntityFacts] = ctx.extra.get("entities", {})
    return facts.get(entity) or EntityFacts("UTC", "", "")


def _month(at: datetime, zone: str) -> tuple[str, datetime, datetime]:
    """The calendar month containing `at` in the zone: ("2026-03", start, end) as UTC instants."""
    z = ZoneInfo(zone or "UTC")
    local = at.astimezone(z)
    start = datetime(local.year, local.month, 1, tzinfo=z)
    end = datetime(local.year + (local.month == 12), local.month % 12 + 1, 1, tzinfo=z)
    return f"{local.year:04d}-{local.month:02d}", start.astimezone(UTC), end.astimezone(UTC)


def _entries(session: Session, *where: Any) -> list[Item]:
    rows = session.execute(sa_select(LedgerEntry).where(*where).order_by(col(LedgerEntry.seq))).scalars()
    return [Item.from_row(r) for r in rows]


ENTITY_TESTS = (
    "approver_not_cash_applier",
    "within_cumulative_limit",
    "automatic_only_below_tolerance",
    "closed_within_sla",
)


@needs(*ENTITY_TESTS)
def load_entity(session: Session, entity: str, sample: list[Item], ctx: TestContext) -> None:
    """The legal entity's zone (its calendar months), currency (tier bounds) and country (business days)."""
    le = session.get(LegalEntity, entity)
    facts = EntityFacts(le.timezone or "UTC", le.currency, le.country) if le else EntityFacts("UTC", "", "")
    ctx.extra.setdefault("entities", {})[entity] = facts


@needs("approver_not_dispute_owner", "approver_not_case_owner")
def load_disputes_of_documents(session: Session, entity: str, sample: list[Item], ctx: TestContext) -> None:
    """The ledger history of each dispute case a sampled credit memo or write-off resolves."""
    ids = sorted({str(s.payload.get("dispute_id")) for s in sample if s.payload.get("dispute_id")})
    found: dict[tuple[str, str], list[Item]] = ctx.extra.setdefault("dispute_history", {})
    for chunk in range(0, len(ids), 500):
        for it in _entries(
            session,
            col(LedgerEntry.legal_entity) == entity,
            col(LedgerEntry.object_type) == "dispute",
            col(LedgerEntry.object_id).in_(ids[chunk : chunk + 500]),
        ):
            found.setdefault((entity, it.object_id), []).append(it)


@needs("approver_not_cash_applier")
def load_cash_appliers(session: Session, entity: str, sample: list[Item], ctx: TestContext) -> None:
    """For each sampled approval: who applied cash (payment_allocation.applied_by) to that customer's
    invoices in the entity, in the calendar month of the approval (entity's zone), up to the approval."""
    load_entity(session, entity, sample, ctx)
    zone = _entity(ctx, entity).zone
    found: dict[tuple[str, int], list[tuple[str, str]]] = ctx.extra.setdefault("cash_applied", {})
    for it in sample:
        customer = it.payload.get("customer_id")
        if it.event not in APPROVALS or not customer:
            continue
        at = _when(it.at)
        _, start, _ = _month(at, zone)
        rows = session.execute(
            sa_select(col(PaymentAllocation.applied_by), col(PaymentAllocation.applied_at))
            .join(Invoice, col(Invoice.id) == col(PaymentAllocation.invoice_id))
            .where(
                col(Invoice.legal_entity) == entity,
                col(Invoice.customer_id) == customer,
                col(PaymentAllocation.applied_at) >= start,
                col(PaymentAllocation.applied_at) <= at,
            )
            .order_by(col(PaymentAllocation.applied_at))
        ).all()
        found[(entity, it.seq)] = [(str(u), _aware(a).isoformat()) for u, a in rows]


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@needs("within_cumulative_limit")
def load_decisions(session: Session, entity: str, sample: list[Item], ctx: TestContext) -> None:
    """Every final approval, rejection and cancellation of the sampled kinds of document in the months of
    the sampled decisions (an approver's other decisions count toward their cumulative limit)."""
    load_entity(session, entity, sample, ctx)
    zone = _entity(ctx, entity).zone
    deciding = [s for s in sample if s.event == "approve"]
    if not deciding:
        return
    start = min(_month(_when(s.at), zone)[1] for s in deciding)
    last = max(s.at for s in deciding)
    kinds = sorted({s.object_type for s in deciding})
    ctx.extra.setdefault("decisions", {})[entity] = _entries(
        session,
        col(LedgerEntry.legal_entity) == entity,
        col(LedgerEntry.object_type).in_(kinds),
        col(LedgerEntry.event).in_(["approve", "reject", "cancel"]),
        col(LedgerEntry.at) >= _iso(start),
        col(LedgerEntry.at) <= last,
    )


@needs("capa_opened_for_internal_root_cause")
def load_capa_openings(session: Session, entity: str, sample: list[Item], ctx: TestContext) -> None:
    """Every CAPA opening of the legal entity (payload.dispute_id names the case that opened it)."""
    ctx.extra.setdefault("capa_opens", {})[entity] = _entries(
        session,
        col(LedgerEntry.legal_entity) == entity,
        col(LedgerEntry.object_type) == "capa",
        col(LedgerEntry.event) == "open",
    )


@needs("closed_within_sla", "automatic_only_below_tolerance")
def load_dispute_policy_in_force(session: Session, entity: str, sample: list[Item], ctx: TestContext) -> None:
    """The dispute policy at hand (policies/disputes.toml, or CASHCYCLE_DISPUTES_FILE): its version, SLA
    durations and write-off tolerances. A case recorded under another version cannot be recomputed."""
    if "dispute_policy" in ctx.extra:
        return
    from activities.disputes import DisputePolicyError, load_dispute_policy

    try:
        ctx.extra["dispute_policy"] = load_dispute_policy()
    except (OSError, DisputePolicyError) as exc:
        ctx.extra["dispute_policy"] = None
        ctx.extra["dispute_policy_error"] = str(exc)


# --- credit memos and write-offs (OTC-02, OTC-03) ----------------------------------------------------

NOUN = {"credit_memo": "credit memo", "write_off": "write-off"}
STARTS = {"credit_memo": "propose", "write_off": "request"}
AUTO_RULE = re.compile(
    r"^write_off:auto_tolerance:(?P<entity>[^<]+)<=(?P<amount>\d+(?:\.\d+)?) (?P<currency>[A-Z]{3})$"
)


def _not_an_approval(item: Item) -> tuple[str, str]:
    return "n/a", f"{item.event} by {item.actor}: not an approval (its approvals are items of their own)"


def _starter(item: Item, history: list[Item]) -> Item | None:
    return next((h for h in history if h.event == STARTS.get(item.object_type, "propose")), None)


def _approver_not_starter(item: Item, history: list[Item]) -> tuple[str, str]:
    if item.event not in APPROVALS:
        return _not_an_approval(item)
    noun = NOUN.get(item.object_type, item.object_type)
    verb = "requested" if item.object_type == "write_off" else "proposed"
    start = _starter(item, history)
    if start is None:
        return "fail", f"no {STARTS.get(item.object_type, 'propose')} of the {noun} is in the ledger"
    if start.actor == item.actor:
        return "fail", f"{item.actor} approved (seq {item.seq}) the {noun} they {verb} (seq {start.seq})"
    return "pass", f"approver {item.actor}; {verb} by {start.actor} (seq {start.seq})"


@attribute_test("approver_not_proposer")
def approver_not_proposer(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    return _approver_not_starter(item, history)


@attribute_test("approver_not_requester")
def approver_not_requester(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    return _approver_not_starter(item, history)


def _approver_not_case_owner(item: Item, ctx: TestContext) -> tuple[str, str]:
    if item.event not in APPROVALS:
        return _not_an_approval(item)
    dispute_id = str(item.payload.get("dispute_id") or "")
    if not dispute_id:
        return "n/a", "not the resolution of a dispute case"
    case: list[Item] = ctx.extra.get("dispute_history", {}).get((item.legal_entity, dispute_id), [])
    before = [h for h in case if h.seq < item.seq]
    if not before:
        return "fail", f"dispute {dispute_id} has no ledger entry before the approval (seq {item.seq})"
    last = before[-1]
    owner = str(last.payload.get("owner") or "")
    number = last.payload.get("case_number") or dispute_id
    if owner == item.actor:
        return (
            "fail",
            f"{item.actor} owned dispute case {number} (seq {last.seq}) when approving (seq {item.seq})",
        )
    return "pass", f"approver {item.actor}; case {number} owned by {owner or 'nobody'} (seq {last.seq})"


@attribute_test("approver_not_dispute_owner")
def approver_not_dispute_owner(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    return _approver_not_case_owner(item, ctx)


@attribute_test("approver_not_case_owner")
def approver_not_case_owner(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    return _approver_not_case_owner(item, ctx)


@attribute_test("approver_not_cash_applier")
def approver_not_cash_applier(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    if item.event not in APPROVALS:
        return _not_an_approval(item)
    customer = item.payload.get("customer_id")
    if not customer:
        return "fail", "the approval does not record the customer"
    month, _, _ = _month(_when(item.at), _entity(ctx, item.legal_entity).zone)
    applied: list[tuple[str, str]] | None = ctx.extra.get("cash_applied", {}).get(
        (item.legal_entity, item.seq)
    )
    if applied is None:
        return "fail", "cash application was not read for this approval"
    own = [at for who, at in applied if who == item.actor]
    if own:
        return (
            "fail",
            f"{item.actor} applied cash for customer {customer} in {month} ({len(own)} allocation(s), first "
            f"at {own[0]}) before approving (seq {item.seq})",
        )
    others = sorted({who for who, _ in applied})
    return (
        "pass",
        f"{item.actor} applied no cash for customer {customer} in {month} up to the approval "
        f"(appliers: {', '.join(others) or 'none'})",
    )


def _minor(text: str, exp: int) -> int:
    return int(Decimal(text).scaleb(exp))


@attribute_test("within_cumulative_limit")
def within_cumulative_limit(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    if item.event == "approve_tier":
        return "n/a", "an intermediate tier: the cumulative limit holds the deciding (last) tier"
    if item.event != "approve":
        return _not_an_approval(item)
    tier = item.payload.get("tier") or {}
    level, role = tier.get("level"), tier.get("role")
    bounds = item.payload.get("tier_bounds") or []
    amount = item.payload.get("amount_entity_minor")
    customer = item.payload.get("customer_id")
    if not isinstance(level, int) or not isinstance(amount, int) or not customer:
        return "fail", "the approval does not record its tier, amount in the entity's currency and customer"
    facts = _entity(ctx, item.legal_entity)
    bound_text = str(bounds[level - 1]) if level - 1 < len(bounds) else ""
    if not bound_text:
        return "pass", f"tier {level} ({role}) has no upper bound in the matrix"
    try:
        exp = exponent(facts.currency)
    except MoneyError:
        return "fail", f"the legal entity's currency {facts.currency!r} is not known"
    bound = _minor(bound_text, exp)
    at = _when(item.at)
    month, start, _ = _month(at, facts.zone)
    decisions: list[Item] = ctx.extra.get("decisions", {}).get(item.legal_entity, [])
    undone = {(d.object_id): d.seq for d in decisions if d.event in ("reject", "cancel") and d.seq < item.seq}
    counted: list[tuple[Item, int]] = []
    for d in decisions:
        if (
            d.event != "approve"
            or d.object_type != item.object_type
            or d.object_id == item.object_id
            or d.actor != item.actor
            or d.seq >= item.seq
            or d.payload.get("customer_id") != customer
            or _when(d.at) < start
        ):
            continue
        if undone.get(d.object_id, 0) > d.seq:
            continue  # cancelled after it was decided: it no longer stands
        counted.append((d, int(d.payload.get("amount_entity_minor") or 0)))
    before = sum(a for _, a in counted)
    total = before + amount
    cur = facts.currency
    noun = NOUN.get(item.object_type, item.object_type)
    what = (
        f"{item.actor} decided {format_minor(total, cur)} {cur} of {noun}s for customer {customer} "
        f"in {month} ({format_minor(before, cur)} before in {len(counted)} decision(s)"
        + (f": seq {', '.join(str(d.seq) for d, _ in counted)}" if counted else "")
        + f"; this one {format_minor(amount, cur)}), bound of {role} {format_minor(bound, cur)} {cur}"
    )
    return ("pass", what) if total <= bound else ("fail", "above the bound: " + what)


def _finals_before(history: list[Item], seq: int) -> list[Item]:
    return [h for h in history if h.event == "approve" and h.seq < seq]


def _approved_before(item: Item, history: list[Item], event: str, what: str) -> tuple[str, str]:
    done = [h for h in history if h.event == event]
    if not done:
        return "pass", f"not {what} yet"
    first = done[0]
    auto = _auto_rule(first)
    if event == "write_off" and auto and first.from_status == "requested":
        if item.event in APPROVALS:
            return "fail", f"written off automatically (seq {first.seq}) while also approved (seq {item.seq})"
        return "pass", f"written off automatically under {auto}: no approval needed"
    finals = _finals_before(history, first.seq)
    if not finals:
        return "fail", f"{what} at seq {first.seq} without a final approval before it"
    final = finals[-1]
    undone = [h for h in history if h.event in ("reject", "cancel") and final.seq < h.seq < first.seq]
    if undone:
        return "fail", f"{undone[0].event} at seq {undone[0].seq} after the final approval, then {what}"
    late = [h for h in history if h.event in APPROVALS and h.seq > first.seq]
    if late:
        return "fail", f"approved again at seq {late[0].seq} after being {what} (seq {first.seq})"
    return "pass", f"final approval seq {final.seq} by {final.actor} before {what} at seq {first.seq}"


@attribute_test("approved_before_issue")
def approved_before_issue(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    return _approved_before(item, history, "issue", "issued")


@attribute_test("approved_before_applied")
def approved_before_applied(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    return _approved_before(item, history, "write_off", "written off")


def _auto_rule(item: Item) -> str:
    rule = str(item.payload.get("auto_rule") or "")
    if not rule and item.rule.startswith("write_off:auto_tolerance:"):
        rule = item.rule
    return rule


@attribute_test("automatic_only_below_tolerance")
def automatic_only_below_tolerance(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    if item.event in APPROVALS:
        return "n/a", "an approval, not an automatic write-off"
    if item.event != "write_off":
        return "n/a", f"{item.event}: not a write-off"
    rule = _auto_rule(item)
    if not rule:
        finals = _finals_before(history, item.seq)
        if finals:
            return "n/a", f"an approved write-off (final approval seq {finals[-1].seq} by {finals[-1].actor})"
        return "fail", "written off without an approval and without a tolerance rule"
    found = AUTO_RULE.match(rule)
    if not found:
        return "fail", f"the rule {rule!r} does not state the tolerance it applied"
    if found["entity"] != item.legal_entity:
        return "fail", f"the rule {rule!r} is another legal entity's tolerance"
    if item.actor != "system" or item.from_status != "requested":
        return (
            "fail",
            f"an automatic write-off by {item.actor} from {item.from_status}, not by the system on request",
        )
    currency = found["currency"]
    try:
        tolerance = _minor(found["amount"], exponent(currency))
    except MoneyError:
        return "fail", f"the rule's currency {currency} is not known"
    if item.payload.get("currency") == currency and isinstance(item.payload.get("amount_minor"), int):
        amount = int(item.payload["amount_minor"])
    elif isinstance(item.payload.get("amount_entity_minor"), int):
        amount = int(item.payload["amount_entity_minor"])
    else:
        return (
            "fail",
            f"the write-off is in {item.payload.get('currency')} and its amount in {currency} is not "
            "recorded: the tolerance cannot be checked",
        )
    policy = ctx.extra.get("dispute_policy")
    now = policy.tolerance.get(item.legal_entity) if policy is not None else None
    note = (
        f" (policies/disputes.toml {policy.version} now says {now} {currency})" if policy is not None else ""
    )
    shown = f"{format_minor(amount, currency)} {currency}"
    if amount > tolerance:
        return (
            "fail",
            f"written off automatically {shown}, above the tolerance {found['amount']} {currency}{note}",
        )
    return "pass", f"{shown} at or under the tolerance {found['amount']} {currency} of rule {rule}{note}"


# --- disputes (OTC-06) -------------------------------------------------------------------------------

CLOCK_RUNS = ("open", "resolving")  # workflows/dispute_states.py: the SLA clock runs in these
SLA_RULE = re.compile(r"^disputes\.toml (?P<version>\S+): sla\.(?P<reason>\S+)$")


@attribute_test("root_cause_in_taxonomy")
def root_cause_in_taxonomy(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    code = str(item.payload.get("root_cause") or "")
    cause = ROOT_CAUSES.get(code)
    if not code:
        return "fail", "closed without a root cause"
    if cause is None:
        return "fail", f"root cause {code!r} is not in the taxonomy (workflows/root_causes.py)"
    side = "internal" if cause.internal else "the customer's"
    return "pass", f"{code}: {cause.cause} ({side}; owned by {cause.function})"


@attribute_test("validity_recorded")
def validity_recorded(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    validity = str(item.payload.get("validity") or "")
    if validity in VALIDITY:
        return "pass", f"validity: {validity}"
    return "fail", f"validity {validity!r} is not one of {', '.join(VALIDITY)}" if validity else "no validity"


def _running_time(history: list[Item], until: int) -> tuple[Item | None, Item | None, float, float]:
    """(open entry, entry that resolved it, running seconds, paused seconds) from the case's entries: the
    clock runs while the status is open or resolving, stops waiting on the customer and once resolved."""
    opened = next((h for h in history if h.event == "open"), None)
    if opened is None:
        return None, None, 0.0, 0.0
    running = paused = 0.0
    status, since = opened.to_status, _when(opened.at)
    for h in history:
        if h.seq <= opened.seq or h.seq > until:
            continue
        span = (_when(h.at) - since).total_seconds()
        if status in CLOCK_RUNS:
            running += span
        elif status == "waiting_on_customer":
            paused += span
        status, since = h.to_status, _when(h.at)
        if status in ("resolved", "closed"):
            return opened, h, running, paused
    return opened, None, running, paused


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h"


@attribute_test("closed_within_sla")
def closed_within_sla(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    opened, resolved, running, paused = _running_time(history, item.seq)
    if opened is None:
        return "fail", "the case's opening is not in the ledger"
    escalations = [h for h in history if h.event == "escalate" and h.seq < item.seq]
    flagged = ""
    if escalations:
        e = escalations[-1]
        to = e.payload.get("role") or ("the customer's window" if e.payload.get("window_deadline") else "")
        flagged = f"escalated to level {e.payload.get('level')}{f' ({to})' if to else ''} at seq {e.seq}"
    sla_rule = str(item.payload.get("sla_rule") or opened.payload.get("sla_rule") or "")
    found = SLA_RULE.match(sla_rule)
    policy = ctx.extra.get("dispute_policy")
    end = f"resolved at seq {resolved.seq}" if resolved else "closed"
    spent = f"{_hours(running)} of running time ({_hours(paused)} paused on the customer), {end}"
    if found is None or policy is None or found["version"] != policy.version:
        at_hand = policy.version if policy is not None else ctx.extra.get("dispute_policy_error", "none")
        if flagged:
            return "pass", f"the exception is flagged: {flagged}; {spent} (SLA rule {sla_rule!r})"
        return (
            "fail",
            f"the SLA rule {sla_rule!r} cannot be recomputed with the policy at hand ({at_hand}) and no "
            f"escalation flags the case; {spent}",
        )
    rule = policy.sla_for(found["reason"]) if found["reason"] != "default" else policy.sla["default"]
    facts = _entity(ctx, item.legal_entity)
    due = rule.resolve.seconds_from(_when(opened.at), facts.country, facts.zone)
    what = f"{spent}; SLA {rule.resolve.amount} {rule.resolve.unit} = {_hours(due)} ({sla_rule})"
    if running <= due:
        return "pass", f"within the SLA: {what}"
    if flagged:
        return "pass", f"past the SLA by {_hours(running - due)}, the exception flagged ({flagged}): {what}"
    return "fail", f"past the SLA by {_hours(running - due)} and never escalated: {what}"


@attribute_test("capa_opened_for_internal_root_cause")
def capa_opened_for_internal_root_cause(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    code = str(item.payload.get("root_cause") or "")
    cause = ROOT_CAUSES.get(code)
    if cause is None:
        return "fail", f"root cause {code!r} is not in the taxonomy: cannot tell whether a CAPA is due"
    if not cause.internal:
        return "n/a", f"root cause {code} is the customer's: no corrective action is ours"
    opens: list[Item] = ctx.extra.get("capa_opens", {}).get(item.legal_entity, [])
    mine = [c for c in opens if c.payload.get("dispute_id") == item.object_id]
    number = item.payload.get("case_number") or item.object_id
    if not mine:
        return "fail", f"internal root cause {code} and no CAPA opened for case {number}"
    capa = mine[0]
    actions = capa.payload.get("actions") or {}
    missing = [
        kind
        for kind in ("corrective", "preventive")
        if not (actions.get(kind) or {}).get("owner") or not (actions.get(kind) or {}).get("due")
    ]
    if missing:
        return (
            "fail",
            f"CAPA {capa.payload.get('capa_id')} (seq {capa.seq}) has no owner or due date for "
            + ", ".join(missing),
        )
    c, p = actions["corrective"], actions["preventive"]
    return (
        "pass",
        f"CAPA {capa.payload.get('capa_id')} opened at seq {capa.seq} for {capa.payload.get('root_cause')}: "
        f"corrective {c['owner']} due {c['due']}, preventive {p['owner']} due {p['due']}",
    )


AMOUNT_PARTS = ("open", "credited", "written_off", "paid", "recovered")


@attribute_test("amounts_add_up")
def amounts_add_up(item: Item, history: list[Item], ctx: TestContext) -> tuple[str, str]:
    amounts = item.payload.get("amounts")
    if not isinstance(amounts, dict) or not all(
        isinstance(amounts.get(k), int) for k in ("original", *AMOUNT_PARTS)
    ):
        return "fail", "the closing does not record the case's amounts"
    parts = {k: int(amounts[k]) for k in AMOUNT_PARTS}
    cur = str(item.payload.get("currency") or "")
    shown = " + ".join(f"{k} {v}" for k, v in parts.items())
    negative = [k for k, v in parts.items() if v < 0]
    if negative:
        return "fail", f"negative {', '.join(negative)}: {shown}"
    if sum(parts.values()) != amounts["original"]:
        return (
            "fail",
            f"original {amounts['original']} != {shown} = {sum(parts.values())} ({cur} minor units)",
        )
    return "pass", f"original {amounts['original']} = {shown} ({cur} minor units)"
