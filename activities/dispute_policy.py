"""The dispute policy (policies/disputes.toml: SLA per reason, assignment rules, the customers' dispute
windows, the write-off tolerance, CAPA timings) and the customers' reason-code mappings
(policies/reason_codes/*.toml): parsed, versioned (declared version + the file's SHA-256), and turned into
a case's configuration when it opens. Reviewed text, read when a case opens: a change applies to the cases
opened after it, and the version that decided is recorded on the case.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from activities.calendar import calendar_for
from activities.models import Customer, LegalEntity
from workflows.capa_types import CapaConfig
from workflows.dispute_types import DisputeConfig
from workflows.root_causes import ROOT_CAUSES

POLICIES = Path(__file__).resolve().parent.parent / "policies"
DISPUTES_FILE = POLICIES / "disputes.toml"
REASON_CODES_DIR = POLICIES / "reason_codes"

_AFTER = re.compile(r"^\s*(\d{1,4})\s+(business days?|days?|hours?|minutes?|seconds?)\s*$")


class DisputePolicyError(ValueError):
    """policies/disputes.toml or a reason-code file is not valid; the message names the place."""


@dataclass(frozen=True)
class Duration:
    amount: int
    unit: str  # business days | days | hours | minutes | seconds

    @classmethod
    def parse(cls, text: object, where: str) -> Duration:
        found = _AFTER.match(text) if isinstance(text, str) else None
        if not found or int(found.group(1)) <= 0:
            raise DisputePolicyError(f"{where}: {text!r}: write '<n> business days', '<n> days', ... n >= 1")
        unit = found.group(2)
        return cls(int(found.group(1)), unit if unit.endswith("s") else unit + "s")

    def seconds_from(self, start: datetime, country: str, zone: str) -> float:
        if self.unit == "business days":
            return (
                calendar_for(country, zone or "UTC").add_business_days(start, self.amount) - start
            ).total_seconds()
        return float(self.amount * {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}[self.unit])


@dataclass(frozen=True)
class SlaRule:
    reason: str
    resolve: Duration
    remind: Duration | None
    escalate: tuple[tuple[Duration, str], ...]


@dataclass(frozen=True)
class AssignRule:
    owner: str
    coordinator: str = ""
    reason: str = ""
    customer: str = ""


@dataclass(frozen=True)
class DisputePolicy:
    version: str  # declared version + the file's SHA-256 prefix
    sla: dict[str, SlaRule]
    assign: tuple[AssignRule, ...]
    windows: dict[str, Duration]
    tolerance: dict[str, str]
    capa: dict[str, int]

    def sla_for(self, reason: str) -> SlaRule:
        return self.sla.get(reason) or self.sla["default"]


def parse_dispute_policy(text: str) -> DisputePolicy:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DisputePolicyError(f"not TOML: {exc}") from None
    version = data.get("version")
    if not isinstance(version, str) or not version:
        raise DisputePolicyError("needs a `version` string")
    sla: dict[str, SlaRule] = {}
    for reason, raw in (data.get("sla") or {}).items():
        if reason != "default" and reason not in ROOT_CAUSES:
            raise DisputePolicyError(f"[sla.{reason}]: not a reason code of workflows/root_causes.py")
        where = f"[sla.{reason}]"
        escalate = []
        for i, level in enumerate(raw.get("escalate", [])):
            if not isinstance(level, dict) or not isinstance(level.get("to"), str):
                raise DisputePolicyError(f"{where} escalate {i + 1}: needs after and to")
            escalate.append((Duration.parse(level.get("after"), f"{where} escalate {i + 1}"), level["to"]))
        sla[reason] = SlaRule(
            reason,
            Duration.parse(raw.get("resolve"), f"{where} resolve"),
            Duration.parse(raw["remind"], f"{where} remind") if "remind" in raw else None,
            tuple(escalate),
        )
    if "default" not in sla:
        raise DisputePolicyError("needs [sla.default]")
    rules = []
    for i, raw in enumerate(data.get("assign", [])):
        if not isinstance(raw.get("owner"), str) or not raw["owner"]:
            raise DisputePolicyError(f"[[assign]] {i + 1}: needs an owner")
        rules.append(
            AssignRule(
                raw["owner"], raw.get("coordinator", ""), raw.get("reason", ""), raw.get("customer", "")
            )
        )
    windows = {k: Duration.parse(v, f"[window] {k}") for k, v in (data.get("window") or {}).items()}
    tolerance = {k: str(v) for k, v in ((data.get("write_off") or {}).get("tolerance") or {}).items()}
    capa = {k: int(v) for k, v in (data.get("capa") or {}).items()}
    sha = hashlib.sha256(text.encode()).hexdigest()
    return DisputePolicy(f"{version}+{sha[:12]}", sla, tuple(rules), windows, tolerance, capa)


def load_dispute_policy(path: Path | None = None) -> DisputePolicy:
    """The dispute policy in force (CASHCYCLE_DISPUTES_FILE names another file, e.g. for the demo)."""
    chosen = path or Path(os.environ.get("CASHCYCLE_DISPUTES_FILE") or DISPUTES_FILE)
    return parse_dispute_policy(chosen.read_text())


@dataclass(frozen=True)
class MappedReason:
    claimed_code: str
    reason: str
    label: str
    version: str  # "<file> <version>+<sha12>"


def _reason_file(path: Path) -> tuple[str, str, dict[str, dict[str, str]]]:
    text = path.read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DisputePolicyError(f"{path.name}: not TOML: {exc}") from None
    codes = data.get("codes") or {}
    for code, row in codes.items():
        if not isinstance(row, dict) or row.get("reason") not in ROOT_CAUSES:
            raise DisputePolicyError(f"{path.name}: code {code}: reason must be a root-cause code")
    version = f"{path.name} {data.get('version', '?')}+{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    return str(data.get("customer", "*")), version, codes


def map_reason(customer: Customer, code: str, directory: Path = REASON_CODES_DIR) -> MappedReason | None:
    """The customer's code mapped to ours: their own file (by external reference or id) first, then the
    default; None for a code in neither."""
    keys = [k for k in (customer.external_ref, customer.id) if k]
    for key in keys:
        path = directory / f"{key}.toml"
        if path.is_file():
            _, version, codes = _reason_file(path)
            if code in codes:
                return MappedReason(code, codes[code]["reason"], codes[code].get("label", ""), version)
    _, version, codes = _reason_file(directory / "default.toml")
    if code in codes:
        return MappedReason(code, codes[code]["reason"], codes[code].get("label", ""), version)
    return None


def known_codes(customer: Customer, directory: Path = REASON_CODES_DIR) -> list[str]:
    found: set[str] = set(_reason_file(directory / "default.toml")[2])
    for key in (customer.external_ref, customer.id):
        if key and (directory / f"{key}.toml").is_file():
            found |= set(_reason_file(directory / f"{key}.toml")[2])
    return sorted(found)


def config_for(
    policy: DisputePolicy, reason: str, customer: Customer, entity: LegalEntity, now: datetime
) -> DisputeConfig:
    """The case's SLA as durations from now (business days counted in the entity's calendar)."""
    rule = policy.sla_for(reason)
    country, zone = entity.country, entity.timezone

    def secs(d: Duration) -> float:
        return d.seconds_from(now, country, zone)

    window = next(
        (policy.windows[k] for k in (customer.external_ref, customer.id) if k and k in policy.windows), None
    )
    capa = CapaConfig()
    if "effectiveness_window_days" in policy.capa:
        capa = CapaConfig(effectiveness_window_seconds=policy.capa["effectiveness_window_days"] * 86400.0)
    if "effectiveness_window_minutes" in policy.capa:  # the demo's (policies/disputes-demo.toml)
        capa = CapaConfig(effectiveness_window_seconds=policy.capa["effectiveness_window_minutes"] * 60.0)
    return DisputeConfig(
        sla_seconds=secs(rule.resolve),
        reminder_seconds=secs(rule.remind) if rule.remind else 0.0,
        escalation_seconds=[secs(d) for d, _ in rule.escalate],
        escalation_roles=[role for _, role in rule.escalate],
        window_deadline=(now + timedelta(seconds=secs(window))).isoformat() if window else "",
        sla_rule=f"disputes.toml {policy.version}: sla.{rule.reason}",
        capa=capa,
    )
