"""Stuck detection without a server: the SLA file as a specification (every rule of policies/sla.toml
held to its clock with an injected now), business days per legal entity (holidays, weekends, zones), the
ranking of causes and amounts, and the store query on both databases."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from activities.calendar import calendar_for
from activities.db import open_store, writing
from activities.directory import create_customer, ensure_legal_entity
from activities.models import CustomerBase, Invoice, LegalEntity
from activities.stuck import (
    DEFAULT_SLA_FILE,
    Candidate,
    EngineState,
    Facts,
    PendingActivity,
    SlaError,
    WorkerState,
    assemble,
    evaluate,
    find_breaches,
    load_sla,
    parse_sla,
    pipeline,
)

SLA = load_sla(DEFAULT_SLA_FILE)
DEMO = load_sla(DEFAULT_SLA_FILE.parent / "sla-demo.toml")
PARIS = ("FR", "Europe/Paris")


def at(text: str) -> datetime:
    """A local Paris instant, e.g. "2026-11-06 16:00" (CET in November: UTC+1)."""
    return datetime.fromisoformat(text + "+01:00").astimezone(UTC)


def facts(status: str, since: datetime, **kw: object) -> Facts:
    base: dict[str, object] = {
        "invoice_id": "i-1",
        "legal_entity": "ACME",
        "status": status,
        "status_since": since,
        "issue_date": date(2026, 11, 2),
    }
    base.update(kw)
    return Facts(**base)  # type: ignore[arg-type]


def breached(f: Facts, now: datetime) -> str | None:
    found = evaluate(SLA, f, *PARIS, now)
    return found.rule.id if found else None


# -- business days ------------------------------------------------------------------------------------


def test_business_days_count_business_time_in_the_entitys_zone() -> None:
    cal = calendar_for(*PARIS)
    friday_4pm = at("2026-11-06 16:00")
    assert cal.business_days_between(friday_4pm, at("2026-11-09 16:00")) == pytest.approx(1.0)
    assert cal.business_days_between(friday_4pm, at("2026-11-08 23:00")) == pytest.approx(8 / 24)
    # Wednesday 11 November is Armistice Day in France: no business time that day.
    assert cal.holiday(date(2026, 11, 11)) == "Armistice Day"
    assert cal.business_days_between(at("2026-11-10 00:00"), at("2026-11-12 00:00")) == pytest.approx(1.0)
    assert cal.add_business_days(at("2026-11-10 09:00"), 2) == at("2026-11-13 09:00")


def test_a_clock_started_on_a_weekend_runs_from_the_next_business_morning() -> None:
    cal = calendar_for(*PARIS)
    saturday = at("2026-11-07 10:00")
    assert cal.business_days_between(saturday, at("2026-11-09 00:00")) == 0
    assert cal.add_business_days(saturday, 1) == at("2026-11-10 00:00")


def test_each_entity_counts_its_own_holidays_and_zone() -> None:
    us = calendar_for("US", "America/New_York")
    thanksgiving = date(2026, 11, 26)
    assert us.holiday(thanksgiving) is not None and not us.is_business_day(thanksgiving)
    assert calendar_for(*PARIS).is_business_day(thanksgiving)
    assert calendar_for("", "UTC").is_business_day(date(2026, 12, 25))  # no country: weekends only


def test_business_days_across_a_daylight_saving_change_stay_whole() -> None:
    cal = calendar_for(*PARIS)  # clocks go back on Sunday 25 October 2026
    start = datetime(2026, 10, 23, 14, 0, tzinfo=UTC)  # Friday 16:00 CEST
    assert cal.business_days_between(start, cal.add_business_days(start, 1)) == pytest.approx(1.0)


# -- each rule of policies/sla.toml ----------------------------------------------------------------------


def test_a_draft_is_stuck_after_three_business_days() -> None:
    since = at("2026-11-06 10:00")  # Friday
    f = facts("draft", since)
    assert breached(f, at("2026-11-10 10:00")) is None  # Mon, Tue: 2 business days
    assert breached(f, at("2026-11-12 09:59")) is None  # Wednesday is a holiday
    assert breached(f, at("2026-11-12 10:00")) == "draft_not_submitted"


@pytest.mark.parametrize(
    ("tier", "days", "rule"),
    [(1, 2, "approval_tier_1"), (2, 3, "approval_tier_2"), (3, 5, "approval_higher_tiers")],
)
def test_each_approval_tier_has_its_own_sla_from_when_the_tier_started(
    tier: int, days: int, rule: str
) -> None:
    entered = at("2026-11-02 09:00")  # Monday: pending since then
    tier_since = at("2026-11-16 09:00")  # the tier started later (an earlier tier approved, or reassigned)
    f = facts("pending_approval", entered, tier=tier, tier_role="r", tier_since=tier_since)
    due = calendar_for(*PARIS).add_business_days(tier_since, days)
    assert breached(f, due - timedelta(minutes=1)) is None
    found = evaluate(SLA, f, *PARIS, due)
    assert found is not None and found.rule.id == rule and found.since == tier_since and found.due == due


def test_an_approved_invoice_is_stuck_hours_after_its_issue_date_not_after_its_approval() -> None:
    approved = at("2026-11-20 09:00")
    early = facts("approved", approved, issue_date=date(2026, 11, 25))  # waits for its issue date
    assert breached(early, at("2026-11-24 23:00")) is None
    assert breached(early, at("2026-11-25 03:59")) is None  # released at midnight Paris, 4 h allowed
    assert breached(early, at("2026-11-25 04:00")) == "approved_not_sent"
    late = facts("approved", approved, issue_date=date(2026, 11, 2))  # issue date passed: from approval
    assert breached(late, at("2026-11-20 12:59")) is None
    assert breached(late, at("2026-11-20 13:00")) == "approved_not_sent"


def test_a_portal_submission_without_an_answer_is_stuck_after_five_business_days() -> None:
    sent = at("2026-11-02 10:00")
    silent = facts("submitted", sent, portal=("coupa", "received"))
    assert breached(silent, at("2026-11-09 09:59")) is None
    assert breached(silent, at("2026-11-10 10:00")) == "portal_no_answer"  # 11th holiday is later
    answered = facts("submitted", sent, portal=("coupa", "in_process"))
    assert breached(answered, at("2026-12-30 10:00")) is None
    by_mail = facts("submitted", sent)  # e-mail: no portal to answer
    assert breached(by_mail, at("2026-12-30 10:00")) is None


def test_a_portal_rejection_not_fixed_is_stuck_after_two_business_days() -> None:
    f = facts("portal_rejected", at("2026-11-05 15:00"))  # Thursday
    assert breached(f, at("2026-11-09 14:59")) is None
    assert breached(f, at("2026-11-09 15:00")) == "portal_rejection_not_fixed"


@pytest.mark.parametrize("status", ["accepted", "partially_paid", "paid", "void", "disputed"])
def test_statuses_no_rule_names_are_never_stuck_by_sla(status: str) -> None:
    assert breached(facts(status, at("2020-01-01 00:00")), at("2026-11-30 00:00")) is None


def test_the_demo_file_has_the_same_rules_in_minutes() -> None:
    assert [(r.id, r.status, r.tier, r.owner) for r in DEMO.rules] == [
        (r.id, r.status, r.tier, r.owner) for r in SLA.rules
    ]
    assert {r.unit for r in DEMO.rules} == {"minutes"}
    f = facts(
        "pending_approval", at("2026-11-07 10:00"), tier=1, tier_role="r", tier_since=at("2026-11-07 10:00")
    )
    assert evaluate(DEMO, f, *PARIS, at("2026-11-07 10:01")) is None  # Saturday: minutes run anyway
    found = evaluate(DEMO, f, *PARIS, at("2026-11-07 10:02"))
    assert found is not None and found.rule.id == "approval_tier_1"


# -- the file is reviewed text: mistakes are named -----------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ('id = "x"\nstatus = "lost"\nafter = "1 days"\nescalate_to = "controller"', "not an invoice status"),
        ('id = "x"\nstatus = "draft"\nafter = "soon"\nescalate_to = "controller"', "after = 'soon'"),
        ('id = "x"\nstatus = "draft"\nafter = "0 days"\nescalate_to = "controller"', "n >= 1"),
        (
            'id = "x"\nstatus = "draft"\ntier = 1\nafter = "1 days"\nescalate_to = "controller"',
            "tier applies",
        ),
        ('id = "x"\nstatus = "draft"\nfrom = "tier"\nafter = "1 days"\nescalate_to = "c"', "from = 'tier'"),
        ('id = "x"\nstatus = "draft"\nowner = "cat"\nafter = "1 days"\nescalate_to = "c"', "owner 'cat'"),
        ('id = "x"\nstatus = "draft"\nafter = "1 days"', "escalate_to"),
        ('id = "x"\nstatus = "draft"\nafter = "1 days"\nescalate_to = "c"\ncolour = "red"', "unknown field"),
        ('id = "Bad Id"\nstatus = "draft"\nafter = "1 days"\nescalate_to = "c"', "lower_snake_case"),
    ],
)
def test_a_wrong_rule_is_refused_naming_the_rule_and_the_field(rule: str, message: str) -> None:
    with pytest.raises(SlaError, match="rule 1") as refused:
        parse_sla(f'version = "t"\n[[rule]]\n{rule}\n')
    assert message in str(refused.value)


def test_two_rules_with_one_id_and_a_missing_version_are_refused() -> None:
    one = '[[rule]]\nid = "x"\nstatus = "draft"\nafter = "1 days"\nescalate_to = "c"\n'
    with pytest.raises(SlaError, match="used twice"):
        parse_sla('version = "t"\n' + one + one)
    with pytest.raises(SlaError, match="version"):
        parse_sla(one)


def test_the_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "sla.toml"
    path.write_text('version = "a"\n')
    assert load_sla(path).version == "a"
    path.write_text('version = "b"\n')
    import os

    os.utime(path, (1, 1))
    assert load_sla(path).version == "b"


# -- one ranked cause per row ---------------------------------------------------------------------------


def cand(invoice_id: str, amount: int, since: datetime, status: str = "draft") -> Candidate:
    f = facts(status, since, invoice_id=invoice_id)
    return Candidate(
        facts=f,
        external_id=invoice_id,
        number=None,
        customer_id="c",
        currency="EUR",
        amount_due_minor=amount,
        entity_currency="EUR",
        amount_due_entity_minor=amount,
        workflow_id=f"invoice/ACME/{invoice_id}",
        created_by="erp",
        preparers=("erp", "preparer"),
        last_preparer="preparer",
        barred=("erp", "preparer"),
        assignee=None,
        escalated=False,
        breach=evaluate(SLA, f, *PARIS, at("2026-11-30 12:00")),
    )


NOW = at("2026-11-30 12:00")
POLLING = WorkerState("cashcycle", True, NOW)


def test_rows_rank_by_amount_at_stake_times_age() -> None:
    old_small = cand("a", 10_000, at("2026-11-02 12:00"))  # 100 EUR, 28 days
    new_big = cand("b", 1_000_000, at("2026-11-20 12:00"))  # 10,000 EUR, 10 days
    rows = assemble([old_small, new_big], SLA, {}, POLLING, {}, NOW)
    assert [r.candidate.facts.invoice_id for r in rows] == ["b", "a"]
    assert [r.score for r in rows] == [100_000, 2_800]
    assert rows[0].cause.code == "draft_not_submitted" and rows[0].owner.name == "preparer"


def test_the_engine_outranks_the_sla_no_worker_first() -> None:
    row = cand("a", 10_000, at("2026-11-02 12:00"))
    failing = PendingActivity("5", "deliver_invoice", 7, "scheduled", "450 mailbox full", None, 0)
    engine = {row.workflow_id: EngineState(row.workflow_id, "run", "running", (failing,))}
    [retrying] = assemble([row], SLA, engine, POLLING, {}, NOW)
    assert (
        retrying.cause.code == "activity_retrying" and "attempt 7: 450 mailbox full" in retrying.cause.detail
    )
    broken = {
        row.workflow_id: EngineState(row.workflow_id, "run", "running", (failing,), workflow_task_attempt=4)
    }
    [task] = assemble([row], SLA, broken, POLLING, {}, NOW)
    assert task.cause.code == "workflow_task_failing" and task.owner.kind == "operations"
    [idle] = assemble([row], SLA, broken, WorkerState("cashcycle", False, None), {}, NOW)
    assert idle.cause.code == "no_worker"
    early = PendingActivity("5", "deliver_invoice", 1, "started", "", None, 0)
    fine = {row.workflow_id: EngineState(row.workflow_id, "run", "running", (early,))}
    [sla] = assemble([row], SLA, fine, POLLING, {}, NOW)
    assert sla.cause.code == "draft_not_submitted", "a first attempt is not retrying"


def test_approvers_are_the_tiers_role_holders_less_those_barred_or_its_assignee() -> None:
    f = facts(
        "pending_approval",
        at("2026-11-02 09:00"),
        tier=1,
        tier_role="ar_approver",
        tier_since=at("2026-11-02 09:00"),
    )
    base = cand("a", 100, at("2026-11-02 09:00"))
    from dataclasses import replace

    c = replace(base, facts=f, breach=evaluate(SLA, f, *PARIS, NOW), barred=("approver", "erp"))
    holders = {("ACME", "ar_approver"): ["approver", "approver2", "clerk"]}
    [row] = assemble([c], SLA, {}, POLLING, holders, NOW)
    assert (row.owner.kind, row.owner.name, row.owner.people) == (
        "approvers",
        "ar_approver",
        ("approver2", "clerk"),
    )
    [mine] = assemble([replace(c, assignee="clerk")], SLA, {}, POLLING, holders, NOW)
    assert (mine.owner.kind, mine.owner.name) == ("assignee", "clerk")


# -- the store ----------------------------------------------------------------------------------------------


def test_breaches_come_from_the_store_by_status_and_age(db_url: str) -> None:
    store = open_store(db_url)
    now = datetime.now(UTC)
    try:
        with writing(store) as s:
            ensure_legal_entity(
                s,
                LegalEntity(code="ACME", name="Acme", currency="EUR", timezone="Europe/Paris", country="FR"),
            )
            customer = create_customer(s, "ACME", CustomerBase(name="Initech", currency="EUR"), "test")
            for name, status, age, plan in [
                ("old-draft", "draft", timedelta(days=30), None),
                ("new-draft", "draft", timedelta(hours=1), None),
                ("old-paid", "paid", timedelta(days=300), None),
                ("old-pending", "pending_approval", timedelta(days=20), "ar_approver"),
            ]:
                approval = {
                    "plan": {"tiers": [{"level": 1, "role": plan}]},
                    "tier_since": (now - age).isoformat(),
                }
                s.add(
                    Invoice(
                        id=str(uuid.uuid4()),
                        legal_entity="ACME",
                        external_id=name,
                        status=status,
                        customer_id=customer.id,
                        currency="EUR",
                        subtotal_minor=1000,
                        tax_total_minor=0,
                        total_minor=1000,
                        amount_due_minor=1000 if status != "paid" else 0,
                        issue_date=date(2026, 1, 5),
                        due_date=date(2026, 2, 5),
                        workflow_id=f"invoice/ACME/{name}",
                        created_by="erp",
                        payload_hash="x",
                        status_since=now - age,
                        created_at=now - age,
                        updated_at=now - age,
                        approval_json=json.dumps(approval if plan else {}),
                    )
                )
        with writing(store) as s:
            found, _ = find_breaches(s, SLA, ["ACME"], now)
            cells = {(c.status, c.count) for c in pipeline(s, ["ACME"])}
        assert sorted((c.external_id, c.breach.rule.id if c.breach else "") for c in found) == [
            ("old-draft", "draft_not_submitted"),
            ("old-pending", "approval_tier_1"),
        ]
        assert cells == {("draft", 2), ("paid", 1), ("pending_approval", 1)}
    finally:
        store.dispose()
