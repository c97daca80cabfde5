"""The evidence controls over credit memos (OTC-02), write-offs (OTC-03) and dispute closings (OTC-06), on
SQLite and PostgreSQL: ledger entries as the recording activities write them (and the store rows a test
reads: cash applied per customer), a pack for November 2026 in ACME's calendar (Europe/Paris), the
population counted and every planted violation named by the attribute test that catches it, nothing else
failing."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest

from activities.controls import ATTRIBUTE_TESTS, load_catalogue
from activities.db import Store, open_store, writing
from activities.disputes import load_dispute_policy
from activities.ledger import LedgerFacts, append_to_ledger
from activities.models import Customer, Invoice, LegalEntity, Payment, PaymentAllocation
from activities.packs import Pack, PackRequest, build_pack
from tests.activities.test_packs import SETTINGS, unzip

INITECH = "c0000000-0000-4000-8000-0000000000a1"
UMBRELLA = "c0000000-0000-4000-8000-0000000000b2"
CM_TIERS = ["ar_approver", "finance_manager"]  # a credit memo above 1,000 EUR: two tiers
CM_BOUNDS = ["1000", "25000"]
WO_TIERS = ["ar_approver"]
WO_BOUNDS = ["500"]
AUTO = "write_off:auto_tolerance:ACME<=5.00 EUR"
ROLES = {
    "approver": ["ar_approver"],
    "approver2": ["ar_approver"],
    "manager": ["finance_manager"],
    "collector": ["collector"],
    "owner": ["ar_approver"],  # a case owner who also approves (the rule is theirs to break)
    "cashier": ["ar_approver"],  # planted: an approver who applied cash for the customer
    "supervisor": ["ar_supervisor"],
    "system": ["system"],
}


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = open_store(db_url)
    with writing(s) as session:
        session.add(
            LegalEntity(code="ACME", name="Acme SAS", currency="EUR", timezone="Europe/Paris", country="FR")
        )
        session.flush()
        for cid, name in ((INITECH, "Initech GmbH"), (UMBRELLA, "Umbrella Plc")):
            session.add(Customer(id=cid, legal_entity="ACME", name=name, currency="EUR", created_by="test"))
    yield s
    s.dispose()


class Ledger:
    """Appends entries as the recording activities write them, one business key each."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.n = 0

    def put(
        self,
        object_type: str,
        object_id: str,
        event: str,
        actor: str,
        at: str,
        payload: dict[str, Any],
        *,
        rule: str = "",
        from_status: str | None = None,
        to_status: str | None = None,
        roles: list[str] | None = None,
    ) -> None:
        self.n += 1
        with writing(self.store) as session:
            append_to_ledger(
                session,
                LedgerFacts(
                    legal_entity="ACME",
                    business_key=f"{object_type}/{object_id}#{self.n}",
                    object_type=object_type,
                    object_id=object_id,
                    event=event,
                    from_status=from_status,
                    to_status=to_status,
                    actor=actor,
                    actor_roles=ROLES.get(actor, []) if roles is None else roles,
                    rule=rule,
                    reason="",
                    workflow_id=f"{object_type}/ACME/{object_id}",
                    run_id="r",
                    request_id="",
                    at=at,
                    payload=payload,
                ),
            )


def ts(day: str, hour: int, minute: int = 0) -> str:
    """An instant on a November 2026 day (or "MM-DD"), in UTC."""
    month, d = (11, int(day)) if "-" not in day else map(int, day.split("-"))
    return datetime(2026, month, d, hour, minute, tzinfo=UTC).isoformat()


def document(
    ledger: Ledger,
    kind: str,
    doc: str,
    day: str,
    *,
    amount: int,
    tiers: list[str],
    bounds: list[str],
    proposer: str = "collector",
    approvers: list[str] | None = None,
    customer: str = INITECH,
    dispute_id: str = "",
    levels: list[int] | None = None,
    finish: bool = True,
    finish_first: bool = False,
) -> None:
    """A credit memo (propose, submit, tiers, issue) or a write-off (request, submit, tiers, write_off), each
    entry with the payload activities/credit_memos.py record_resolution writes."""
    base = {
        "invoice_id": f"inv-{doc}",
        "customer_id": customer,
        "currency": "EUR",
        "amount_minor": amount,
        "dispute_id": dispute_id,
    }
    plan = {"matrix_version": "m1", "tiers": tiers, "tier_bounds": bounds, "amount_entity_minor": amount}
    start = "propose" if kind == "credit_memo" else "request"
    first = "proposed" if kind == "credit_memo" else "requested"
    ledger.put(kind, doc, start, proposer, ts(day, 8), {**base, "approvals": []}, to_status=first)
    ledger.put(kind, doc, "submit", "system", ts(day, 8, 1), {**base, "approvals": [], **plan})
    end_event = "issue" if kind == "credit_memo" else "write_off"
    if finish_first:
        ledger.put(kind, doc, end_event, "system", ts(day, 8, 30), {**base, "approvals": []})
    approvers = approvers or ["approver", "manager"][: len(tiers)]
    done: list[str] = []
    for i, who in enumerate(approvers, start=1):
        level = (levels or list(range(1, len(approvers) + 1)))[i - 1]
        role = tiers[level - 1]
        last = i == len(approvers)
        done.append(who)
        ledger.put(
            kind,
            doc,
            "approve" if last else "approve_tier",
            who,
            ts(day, 9, i),
            {
                **base,
                "approvals": list(done),
                "tier": {"level": level, "role": role, "approver": who, "decides": last},
                **plan,
            },
            rule="approval",
        )
    if finish and not finish_first:
        ledger.put(
            kind, doc, end_event, "system", ts(day, 10), {**base, "approvals": done}, rule=f"workflow:{kind}"
        )


def dispute_case(
    ledger: Ledger,
    case: str,
    *,
    opened: str,
    closed: str | None,
    owner: str = "owner",
    root_cause: str = "PRC",
    validity: str = "valid",
    amounts: dict[str, int] | None = None,
    waits: list[tuple[str, str]] | None = None,
    resolved: str | None = None,
    escalate_at: str | None = None,
    reassign: tuple[str, str] | None = None,
    sla_rule: str = "",
) -> None:
    """A dispute case's entries as activities/disputes.py record_dispute writes them (the close carries
    root cause, validity, CAPA id and the amounts)."""
    amounts = amounts or {
        "original": 10_000,
        "open": 0,
        "credited": 10_000,
        "written_off": 0,
        "paid": 0,
        "recovered": 0,
    }
    rule = sla_rule or f"disputes.toml {load_dispute_policy().version}: sla.PRC"
    state = {"case_number": case, "customer_id": INITECH, "currency": "EUR", "sla_rule": rule}
    opening = {"original": amounts["original"], "open": amounts["original"]}
    opening |= {k: 0 for k in ("credited", "written_off", "paid", "recovered")}
    ledger.put(
        "dispute",
        case,
        "open",
        "collector",
        opened,
        {**state, "owner": owner, "amounts": opening},
        to_status="open",
    )
    now_owner = owner
    if reassign is not None:
        now_owner = reassign[1]
        ledger.put(
            "dispute",
            case,
            "reassign",
            "supervisor",
            reassign[0],
            {**state, "owner": now_owner, "amounts": opening},
            from_status="open",
            to_status="open",
        )
    for begin, end in waits or []:
        ledger.put(
            "dispute",
            case,
            "wait_on_customer",
            now_owner,
            begin,
            {**state, "owner": now_owner},
            to_status="waiting_on_customer",
        )
        ledger.put("dispute", case, "resume", now_owner, end, {**state, "owner": now_owner}, to_status="open")
    if escalate_at is not None:
        ledger.put(
            "dispute",
            case,
            "escalate",
            "system",
            escalate_at,
            {**state, "owner": now_owner, "level": 1, "role": "ar_supervisor"},
            to_status="open",
        )
    if resolved is not None:
        ledger.put(
            "dispute",
            case,
            "resolve",
            now_owner,
            resolved,
            {**state, "owner": now_owner, "resolution": "invalid"},
            from_status="open",
            to_status="resolved",
        )
    if closed is not None:
        ledger.put(
            "dispute",
            case,
            "close",
            now_owner,
            closed,
            {
                **state,
                "owner": now_owner,
                "amounts": amounts,
                "root_cause": root_cause,
                "validity": validity,
                "capa_id": case if root_cause != "CUS" else "",
            },
            from_status="resolved",
            to_status="closed",
        )


def capa_opened(ledger: Ledger, case: str, at: str, *, preventive_owner: str = "manager") -> None:
    ledger.put(
        "capa",
        str(uuid.uuid5(uuid.NAMESPACE_URL, case)),
        "open",
        "owner",
        at,
        {
            "capa_id": case,
            "dispute_id": case,
            "case_number": case,
            "root_cause": "PRC",
            "actions": {
                "corrective": {"owner": "owner", "due": "2026-12-15", "status": "open"},
                "preventive": {
                    "owner": preventive_owner,
                    "due": "2027-01-31" if preventive_owner else "",
                    "status": "open",
                },
            },
        },
        to_status="open",
    )


def applied_cash(store: Store, who: str, customer: str, at: datetime) -> None:
    """A payment allocation as activities/transitions.py writes it (applied_by, applied_at)."""
    invoice_id, payment_id = str(uuid.uuid4()), str(uuid.uuid4())
    with writing(store) as session:
        session.add(
            Invoice(
                id=invoice_id,
                legal_entity="ACME",
                external_id=f"ERP-{invoice_id[:8]}",
                status="partially_paid",
                customer_id=customer,
                currency="EUR",
                subtotal_minor=10000,
                tax_total_minor=2000,
                total_minor=12000,
                amount_due_minor=6000,
                issue_date=date(2026, 10, 1),
                due_date=date(2026, 10, 31),
                workflow_id=f"invoice-ACME-{invoice_id}",
                created_by="erp",
                payload_hash="0" * 64,
                status_since=at,
                created_at=at,
                updated_at=at,
            )
        )
        session.add(
            Payment(
                id=payment_id,
                legal_entity="ACME",
                customer_id=customer,
                amount_minor=6000,
                currency="EUR",
                received_on=at.date(),
                reference="RF18",
                created_at=at,
            )
        )
        session.flush()
        session.add(
            PaymentAllocation(
                payment_id=payment_id, invoice_id=invoice_id, amount_minor=6000, applied_by=who, applied_at=at
            )
        )


def pack_of(store: Store, control: str) -> Pack:
    return build_pack(
        store,
        SETTINGS,
        PackRequest(
            control_id=control,
            period_start=date(2026, 11, 1),
            period_end=date(2026, 11, 30),
            legal_entities=("ACME",),
            requested_by="compliance",
            sample_size=1000,  # the whole population is tested
        ),
    )


def failures(pack: Pack) -> dict[tuple[str, str], dict[str, str]]:
    """(object id, event) -> {failing test: its detail}; every sampled item is listed."""
    out: dict[tuple[str, str], dict[str, str]] = {}
    for line in unzip(pack.data)["sample_tests.jsonl"].decode().splitlines():
        t = json.loads(line)
        key = (t["object_id"], t["event"])
        assert key not in out, key
        out[key] = {o["test"]: o["detail"] for o in t["tests"] if o["result"] == "fail"}
    return out


def results(pack: Pack, object_id: str, event: str) -> dict[str, tuple[str, str]]:
    for line in unzip(pack.data)["sample_tests.jsonl"].decode().splitlines():
        t = json.loads(line)
        if (t["object_id"], t["event"]) == (object_id, event):
            return {o["test"]: (o["result"], o["detail"]) for o in t["tests"]}
    raise AssertionError(f"{object_id} {event} not sampled")


# --- OTC-02 -------------------------------------------------------------------------------------------


def test_credit_memo_approvals_are_the_population_and_each_sod_rule_catches_its_violation(
    store: Store,
) -> None:
    led = Ledger(store)
    # The case DSP-1 is owned by `owner`; DSP-2 by `owner` until reassigned to `supervisor` on the 3rd.
    dispute_case(led, "DSP-1", opened=ts("2", 8), closed=None)
    dispute_case(led, "DSP-2", opened=ts("2", 8), closed=None, reassign=(ts("3", 8), "supervisor"))
    applied_cash(store, "cashier", INITECH, datetime(2026, 11, 4, 8, tzinfo=UTC))  # before cm-cash: counts
    applied_cash(store, "cashier", UMBRELLA, datetime(2026, 11, 4, 8, tzinfo=UTC))  # another customer
    applied_cash(store, "approver2", INITECH, datetime(2026, 10, 30, 8, tzinfo=UTC))  # October: not counted
    applied_cash(store, "approver2", INITECH, datetime(2026, 11, 20, 8, tzinfo=UTC))  # after its approval

    doc = dict(kind="credit_memo", amount=2_000_00, tiers=CM_TIERS, bounds=CM_BOUNDS)
    document(led, doc="cm-clean", day="3", dispute_id="DSP-1", **doc)  # type: ignore[arg-type]
    document(led, doc="cm-self", day="3", proposer="approver", **doc)  # type: ignore[arg-type]
    document(led, doc="cm-owner", day="4", dispute_id="DSP-1", approvers=["owner", "manager"], **doc)  # type: ignore[arg-type]
    # DSP-2's owner at the approval is `supervisor`: `owner` may approve by then.
    document(led, doc="cm-reassigned", day="4", dispute_id="DSP-2", approvers=["owner", "manager"], **doc)  # type: ignore[arg-type]
    document(led, doc="cm-cash", day="5", approvers=["cashier", "manager"], **doc)  # type: ignore[arg-type]
    document(led, doc="cm-cash-ok", day="6", customer=UMBRELLA, approvers=["approver2", "manager"], **doc)  # type: ignore[arg-type]
    document(led, doc="cm-twice", day="6", approvers=["manager", "manager"], **doc)  # type: ignore[arg-type]
    document(led, doc="cm-order", day="7", levels=[2, 1], approvers=["manager", "approver"], **doc)  # type: ignore[arg-type]
    document(led, doc="cm-early", day="9", finish_first=True, **doc)  # type: ignore[arg-type]
    document(led, doc="cm-waiting", day="9", finish=False, **doc)  # type: ignore[arg-type]
    # The cumulative limit: approver2 decides two one-tier memos of 600 EUR for Umbrella in November
    # (bound 1,000 EUR): the second takes the total to 1,200. A third, for Initech, stands alone.
    small = dict(kind="credit_memo", amount=600_00, tiers=["ar_approver"], bounds=["1000"])
    document(led, doc="cm-split-1", day="10", customer=UMBRELLA, approvers=["approver2"], **small)  # type: ignore[arg-type]
    document(led, doc="cm-split-2", day="11", customer=UMBRELLA, approvers=["approver2"], **small)  # type: ignore[arg-type]
    document(led, doc="cm-other-customer", day="11", approvers=["approver2"], **small)  # type: ignore[arg-type]
    # Outside the population: October, December, and write-offs.
    document(led, doc="cm-october", day="10-20", **doc)  # type: ignore[arg-type]
    document(led, doc="cm-december", day="12-02", **doc)  # type: ignore[arg-type]
    document(led, doc="wo-1", day="12", kind="write_off", amount=300_00, tiers=WO_TIERS, bounds=WO_BOUNDS)

    pack = pack_of(store, "OTC-02")
    assert pack.manifest["record_count"] == 2 * 10 + 3
    assert pack.manifest["control_totals"]["by_event"] == {"approve": 13, "approve_tier": 10}
    assert pack.manifest["query"]["filters"]["object_type"] == ["credit_memo"]
    found = failures(pack)
    planted = {
        ("cm-self", "approve_tier"): {"approver_not_proposer"},
        ("cm-owner", "approve_tier"): {"approver_not_dispute_owner"},
        ("cm-cash", "approve_tier"): {"approver_not_cash_applier"},
        # The manager approves tier 1 (not their role) and then tier 2 again.
        ("cm-twice", "approve_tier"): {"approver_held_tier_role"},
        ("cm-twice", "approve"): {"approver_distinct_across_tiers"},
        ("cm-order", "approve_tier"): {"tier_in_matrix_order"},
        # ... and the approver who decided it did so under tier 1's bound (1,000 EUR) for 2,000 EUR.
        ("cm-order", "approve"): {"tier_in_matrix_order", "within_cumulative_limit"},
        ("cm-early", "approve_tier"): {"approved_before_issue"},
        ("cm-early", "approve"): {"approved_before_issue"},
        ("cm-split-2", "approve"): {"within_cumulative_limit"},
    }
    assert {k: set(v) for k, v in found.items() if v} == planted
    assert "owned dispute case DSP-1" in found[("cm-owner", "approve_tier")]["approver_not_dispute_owner"]
    cash = found[("cm-cash", "approve_tier")]["approver_not_cash_applier"]
    assert "cashier applied cash for customer" in cash and "in 2026-11" in cash
    limit = found[("cm-split-2", "approve")]["within_cumulative_limit"]
    assert "1200.00 EUR" in limit and "bound of ar_approver 1000.00 EUR" in limit
    assert "issued at seq" in found[("cm-early", "approve")]["approved_before_issue"]
    summary = pack.manifest["sample"]["attribute_tests"]
    assert set(summary) == set(load_catalogue().controls["OTC-02"].attributes)
    assert summary["within_cumulative_limit"] == {"fail": 2, "n/a": 10, "pass": 11}
    assert pack.manifest["sample"]["exceptions"] == sum(len(v) for v in planted.values())
    # The explanations an auditor reads.
    assert results(pack, "cm-clean", "approve")["within_cumulative_limit"][0] == "pass"
    assert results(pack, "cm-waiting", "approve")["approved_before_issue"] == ("pass", "not issued yet")
    assert results(pack, "cm-clean", "approve")["approver_not_dispute_owner"][0] == "pass"
    assert results(pack, "cm-self", "approve")["approver_not_dispute_owner"][0] == "n/a"
    assert pack.manifest["control_totals"]["amount_minor_by_currency"] == {"EUR": 20 * 2_000_00 + 3 * 600_00}


# --- OTC-03 -------------------------------------------------------------------------------------------


def test_write_off_approvals_and_automatic_write_offs_are_the_population_with_their_rules(
    store: Store,
) -> None:
    led = Ledger(store)
    dispute_case(led, "DSP-9", opened=ts("2", 8), closed=None)
    applied_cash(store, "cashier", INITECH, datetime(2026, 11, 3, 8, tzinfo=UTC))
    wo = dict(kind="write_off", amount=300_00, tiers=WO_TIERS, bounds=WO_BOUNDS)
    document(led, doc="wo-clean", day="4", dispute_id="DSP-9", **wo)  # type: ignore[arg-type]
    document(led, doc="wo-self", day="4", proposer="approver", approvers=["approver"], **wo)  # type: ignore[arg-type]
    document(led, doc="wo-owner", day="5", dispute_id="DSP-9", approvers=["owner"], **wo)  # type: ignore[arg-type]
    document(led, doc="wo-cash", day="5", approvers=["cashier"], **wo)  # type: ignore[arg-type]
    document(led, doc="wo-early", day="6", finish_first=True, **wo)  # type: ignore[arg-type]

    def automatic(doc: str, day: str, amount: int, rule: str = AUTO, currency: str = "EUR") -> None:
        base = {
            "invoice_id": f"inv-{doc}",
            "customer_id": INITECH,
            "currency": currency,
            "amount_minor": amount,
        }
        led.put(
            "write_off",
            doc,
            "request",
            "collector",
            ts(day, 8),
            {**base, "approvals": []},
            to_status="requested",
        )
        payload = {**base, "approvals": [], **({"auto_rule": rule} if rule else {})}
        led.put(
            "write_off",
            doc,
            "write_off",
            "system",
            ts(day, 8, 1),
            payload,
            rule=rule or "workflow:write_off",
            from_status="requested",
            to_status="written_off",
        )

    automatic("wo-auto", "7", 4_99)
    automatic("wo-auto-edge", "7", 5_00)
    automatic("wo-auto-over", "8", 5_01)
    automatic("wo-no-rule", "8", 3_00, rule="")
    automatic("wo-foreign", "9", 4_00, currency="USD")
    # Not in the population: an invoice's own write_off entry, a request, an October write-off.
    led.put("invoice", "inv-x", "write_off", "system", ts("9", 9), {"total_minor": 100})
    document(led, doc="wo-october", day="10-15", **wo)  # type: ignore[arg-type]

    pack = pack_of(store, "OTC-03")
    # 5 approved write-offs (approve + write_off each) and 5 automatic ones.
    assert pack.manifest["record_count"] == 5 * 2 + 5
    assert pack.manifest["control_totals"]["by_event"] == {"approve": 5, "write_off": 10}
    assert pack.manifest["query"]["filters"]["object_type"] == ["write_off"]
    found = failures(pack)
    planted = {
        ("wo-self", "approve"): {"approver_not_requester"},
        ("wo-owner", "approve"): {"approver_not_case_owner"},
        ("wo-cash", "approve"): {"approver_not_cash_applier"},
        ("wo-early", "approve"): {"approved_before_applied"},
        ("wo-early", "write_off"): {"approved_before_applied", "automatic_only_below_tolerance"},
        ("wo-auto-over", "write_off"): {"automatic_only_below_tolerance"},
        ("wo-no-rule", "write_off"): {"automatic_only_below_tolerance", "approved_before_applied"},
        ("wo-foreign", "write_off"): {"automatic_only_below_tolerance"},
    }
    assert {k: set(v) for k, v in found.items() if v} == planted
    auto = results(pack, "wo-auto", "write_off")
    assert auto["automatic_only_below_tolerance"][0] == "pass"
    assert (
        "4.99 EUR at or under the tolerance 5.00 EUR of rule " + AUTO
        in auto["automatic_only_below_tolerance"][1]
    )
    assert auto["approved_before_applied"][0] == "pass"
    assert auto["approver_not_requester"][0] == "n/a"  # not an approval
    assert results(pack, "wo-auto-edge", "write_off")["automatic_only_below_tolerance"][0] == "pass"
    assert "above the tolerance" in found[("wo-auto-over", "write_off")]["automatic_only_below_tolerance"]
    assert "not recorded" in found[("wo-foreign", "write_off")]["automatic_only_below_tolerance"]
    clean = results(pack, "wo-clean", "write_off")
    assert clean["automatic_only_below_tolerance"][0] == "n/a"
    assert clean["approved_before_applied"][0] == "pass"


# --- OTC-06 -------------------------------------------------------------------------------------------


def test_closed_disputes_are_the_population_with_root_cause_validity_sla_capa_and_amounts(
    store: Store,
) -> None:
    led = Ledger(store)
    # PRC: 5 business days in France. Opened Monday 2 November 09:00 Paris (08:00 UTC).
    dispute_case(led, "DSP-ok", opened=ts("2", 8), resolved=ts("4", 8), closed=ts("4", 9))
    capa_opened(led, "DSP-ok", ts("4", 9, 1))  # recorded after the closing by the CAPA's own workflow
    dispute_case(
        led,
        "DSP-cus",
        opened=ts("2", 8),
        resolved=ts("3", 8),
        closed=ts("3", 9),
        root_cause="CUS",
        validity="invalid",
    )
    dispute_case(led, "DSP-nocapa", opened=ts("2", 8), resolved=ts("3", 8), closed=ts("3", 9))
    capa_opened(led, "DSP-halfcapa", ts("3", 9, 1), preventive_owner="")
    dispute_case(led, "DSP-halfcapa", opened=ts("2", 8), resolved=ts("3", 8), closed=ts("3", 9))
    dispute_case(
        led, "DSP-badcause", opened=ts("2", 8), resolved=ts("3", 8), closed=ts("3", 9), root_cause="XYZ"
    )
    capa_opened(led, "DSP-novalidity", ts("3", 9, 1))
    dispute_case(
        led, "DSP-novalidity", opened=ts("2", 8), resolved=ts("3", 8), closed=ts("3", 9), validity=""
    )
    # Twenty days on the calendar, fourteen of them waiting on the customer: within the SLA.
    capa_opened(led, "DSP-paused", ts("22", 9, 1))
    dispute_case(
        led,
        "DSP-paused",
        opened=ts("2", 8),
        waits=[(ts("3", 8), ts("17", 8))],
        resolved=ts("20", 8),
        closed=ts("22", 9),
    )
    # Late and never escalated; late and escalated (the exception flagged).
    capa_opened(led, "DSP-late", ts("20", 9, 1))
    dispute_case(led, "DSP-late", opened=ts("2", 8), resolved=ts("20", 8), closed=ts("20", 9))
    capa_opened(led, "DSP-flagged", ts("20", 9, 1))
    dispute_case(
        led,
        "DSP-flagged",
        opened=ts("2", 8),
        escalate_at=ts("9", 8),
        resolved=ts("20", 8),
        closed=ts("20", 9),
    )
    capa_opened(led, "DSP-money", ts("5", 9, 1))
    dispute_case(
        led,
        "DSP-money",
        opened=ts("2", 8),
        resolved=ts("5", 8),
        closed=ts("5", 9),
        amounts={
            "original": 10_000,
            "open": 0,
            "credited": 6_000,
            "written_off": 0,
            "paid": 3_000,
            "recovered": 0,
        },
    )
    # Under a policy version no longer at hand, not escalated: the SLA cannot be recomputed.
    capa_opened(led, "DSP-oldpolicy", ts("5", 9, 1))
    dispute_case(
        led,
        "DSP-oldpolicy",
        opened=ts("2", 8),
        resolved=ts("5", 8),
        closed=ts("5", 9),
        sla_rule="disputes.toml 2025.1+000000000000: sla.PRC",
    )
    # Not in the population: closed in October or December, a void, a case still open.
    dispute_case(
        led,
        "DSP-oct",
        opened=ts("10-01", 8),
        resolved=ts("10-02", 8),
        closed=ts("10-02", 9),
        root_cause="CUS",
    )
    dispute_case(
        led,
        "DSP-dec",
        opened=ts("11-30", 8),
        resolved=ts("12-01", 8),
        closed=ts("12-01", 9),
        root_cause="CUS",
    )
    dispute_case(led, "DSP-open", opened=ts("2", 8), closed=None)
    led.put(
        "dispute", "DSP-void", "void", "system", ts("6", 8), {"case_number": "DSP-void"}, to_status="closed"
    )

    pack = pack_of(store, "OTC-06")
    assert pack.manifest["record_count"] == 11
    assert pack.manifest["control_totals"]["by_event"] == {"close": 11}
    assert pack.manifest["control_totals"]["amount_minor_by_currency"] == {"EUR": 11 * 10_000}
    found = failures(pack)
    planted = {
        ("DSP-nocapa", "close"): {"capa_opened_for_internal_root_cause"},
        ("DSP-halfcapa", "close"): {"capa_opened_for_internal_root_cause"},
        ("DSP-badcause", "close"): {"root_cause_in_taxonomy", "capa_opened_for_internal_root_cause"},
        ("DSP-novalidity", "close"): {"validity_recorded"},
        ("DSP-late", "close"): {"closed_within_sla"},
        ("DSP-money", "close"): {"amounts_add_up"},
        ("DSP-oldpolicy", "close"): {"closed_within_sla"},
    }
    assert {k: set(v) for k, v in found.items() if v} == planted
    assert "never escalated" in found[("DSP-late", "close")]["closed_within_sla"]
    assert "cannot be recomputed" in found[("DSP-oldpolicy", "close")]["closed_within_sla"]
    assert "preventive" in found[("DSP-halfcapa", "close")]["capa_opened_for_internal_root_cause"]
    assert "9000" in found[("DSP-money", "close")]["amounts_add_up"]
    ok = results(pack, "DSP-ok", "close")
    assert ok["closed_within_sla"][0] == "pass" and "within the SLA" in ok["closed_within_sla"][1]
    assert ok["capa_opened_for_internal_root_cause"][0] == "pass"
    assert ok["root_cause_in_taxonomy"] == (
        "pass",
        "PRC: price or contract terms (internal; owned by pricing)",
    )
    assert results(pack, "DSP-cus", "close")["capa_opened_for_internal_root_cause"][0] == "n/a"
    paused = results(pack, "DSP-paused", "close")["closed_within_sla"]
    assert paused[0] == "pass" and "336.0 h paused" in paused[1]
    flagged = results(pack, "DSP-flagged", "close")["closed_within_sla"]
    assert flagged[0] == "pass" and "exception flagged" in flagged[1] and "ar_supervisor" in flagged[1]


def test_every_attribute_the_catalogue_names_is_registered() -> None:
    catalogue = load_catalogue()
    assert catalogue.version == "2026.12-1"
    for cid in ("OTC-02", "OTC-03", "OTC-06"):
        for name in catalogue.controls[cid].attributes:
            assert name in ATTRIBUTE_TESTS
