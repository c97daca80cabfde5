"""Incompatible duties (policies/sod_conflicts.csv): pairs of roles one person must not hold together.

Checked on every grant (a conflicting grant is refused, naming the pair) and reported for existing
assignments, which can conflict when the file tightens after the fact.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

POLICIES = Path(__file__).resolve().parent.parent / "policies"
CONFLICTS_FILE = POLICIES / "sod_conflicts.csv"


@dataclass(frozen=True)
class Conflict:
    role_a: str
    role_b: str
    why: str

    def involves(self, role: str, other: str) -> bool:
        return {role, other} == {self.role_a, self.role_b}


@dataclass(frozen=True)
class ConflictRules:
    """The conflict pairs and the SHA-256 of the exact bytes they were parsed from (the version that
    a refusal or a report names, so evidence shows which file was in force)."""

    conflicts: list[Conflict]
    version: str
    source: str


@dataclass(frozen=True)
class HeldConflict:
    """An existing conflict: a user holding both roles of a pair in one legal entity."""

    username: str
    legal_entity: str
    role_a: str
    role_b: str
    why: str


def parse_conflicts(text: str, name: str = CONFLICTS_FILE.name) -> list[Conflict]:
    rows: list[Conflict] = []
    lines = (row for row in text.splitlines() if row.strip() and not row.lstrip().startswith("#"))
    for line in csv.reader(lines):
        if len(line) < 3:
            raise ValueError(f"{name}: expected 'role_a, role_b, why', got {line!r}")
        role_a, role_b, why = (part.strip() for part in (line[0], line[1], ",".join(line[2:])))
        if not role_a or not role_b or role_a == role_b or not why:
            raise ValueError(f"{name}: two different roles and a reason expected, got {line!r}")
        rows.append(Conflict(role_a, role_b, why))
    return rows


def load_rules(path: Path = CONFLICTS_FILE) -> ConflictRules:
    """Read the file once: the pairs checked and the version named are those of the same bytes."""
    data = path.read_bytes()
    return ConflictRules(
        parse_conflicts(data.decode("utf-8"), path.name), hashlib.sha256(data).hexdigest(), path.name
    )


def load_conflicts(path: Path = CONFLICTS_FILE) -> list[Conflict]:
    return load_rules(path).conflicts


def conflicts_with(role: str, held: set[str], conflicts: list[Conflict]) -> list[Conflict]:
    """The conflicts that granting `role` to someone holding `held` would create."""
    return [c for c in conflicts for other in sorted(held) if c.involves(role, other)]


def conflicts_among(held: set[str], conflicts: list[Conflict]) -> list[Conflict]:
    """The conflicts a set of roles already contains."""
    return [c for c in conflicts if c.role_a in held and c.role_b in held]


def held_conflicts(
    assignments: Iterable[tuple[str, str, str]], conflicts: list[Conflict]
) -> list[HeldConflict]:
    """Every conflict in a population of (username, role, legal entity) assignments, by user and entity."""
    held: dict[tuple[str, str], set[str]] = {}
    for username, role, legal_entity in assignments:
        held.setdefault((username, legal_entity), set()).add(role)
    return [
        HeldConflict(username, legal_entity, c.role_a, c.role_b, c.why)
        for (username, legal_entity), roles in sorted(held.items())
        for c in conflicts_among(roles, conflicts)
    ]
