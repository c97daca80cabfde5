"""The demo's dispute policy (policies/disputes-demo.toml, which `up --demo` selects) and its stories
(demo/disputes.py), checked without running them: `tests/api/test_up.py` runs them for real."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from activities.disputes import DISPUTES_FILE, AssignRule, config_for, load_dispute_policy, map_reason
from activities.models import Customer, LegalEntity
from demo import DEMO_ENTITY_ROW
from demo.company import DEMO_CUSTOMERS, FX
from demo.disputes import INVOICES, PREFIX

DEMO_FILE = DISPUTES_FILE.with_name("disputes-demo.toml")
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


def _customer(ref: str = "CUST-1002") -> Customer:
    return Customer(
        id="c1", legal_entity="ACME", external_ref=ref, name="x", currency="EUR", created_by="erp"
    )


def _entity() -> LegalEntity:
    return LegalEntity.model_validate(DEMO_ENTITY_ROW.model_dump())


def test_the_demo_policy_is_the_real_one_in_minutes() -> None:
    real, demo = load_dispute_policy(DISPUTES_FILE), load_dispute_policy(DEMO_FILE)
    # The same rules, reasons, owners, windows and tolerance: only the durations differ.
    assert set(demo.sla) == set(real.sla)
    assert demo.assign == real.assign and all(isinstance(a, AssignRule) for a in demo.assign)
    assert demo.windows == real.windows and demo.tolerance == real.tolerance
    for reason in real.sla:
        cfg = config_for(demo, reason, _customer(), _entity(), NOW)
        assert 0 < cfg.sla_seconds <= 30 * 60, (reason, cfg)
        assert cfg.escalation_roles == [r for _, r in real.sla[reason].escalate]
        assert cfg.escalation_seconds == sorted(cfg.escalation_seconds)
    # Price and promotion cases are past their SLA 30 s after they open; the others keep half an hour.
    assert config_for(demo, "PRM", _customer(), _entity(), NOW).sla_seconds == 30
    assert config_for(demo, "PRC", _customer(), _entity(), NOW).sla_seconds == 30
    assert config_for(demo, "DLV", _customer(), _entity(), NOW).sla_seconds == 30 * 60
    # A CAPA's effectiveness check a minute after the preventive action (90 days for real).
    window = [
        config_for(p, "PRC", _customer(), _entity(), NOW).capa.effectiveness_window_seconds
        for p in (demo, real)
    ]
    assert window == [60, 90 * 86400]
    assert tomllib.loads(DEMO_FILE.read_text())["version"].endswith("-demo")


def test_each_story_uses_its_own_customer_and_codes_the_customers_know() -> None:
    customers = {c.ref: c for c in DEMO_CUSTOMERS}
    refs = [inv.customer_ref for inv in INVOICES.values()]
    # One customer per story: a cumulative limit (per approver, customer and period) never bites the demo.
    assert len(refs) == len(set(refs))
    for inv in INVOICES.values():
        assert inv.external_id.startswith(PREFIX)
        customer = customers[inv.customer_ref]
        assert customer.currency == "EUR" and FX[customer.currency] == Decimal(1)
        if customer.party.po_required:
            assert inv.po_number, inv
    for code in ("PRICE", "PROMO", "QUANTITY", "SHORTAGE", "DUPLICATE", "DAMAGED", "FREIGHT", "OTHER"):
        assert map_reason(_customer(), code) is not None, code
    source = Path(__file__).resolve().parents[2] / "demo" / "disputes.py"
    assert "policies/disputes-demo.toml" in source.read_text()
