"""The approval matrix (policies/approval_matrix.toml): which tiers a document needs, by amount.

The file is re-read when it changes, so a reviewed change applies to documents submitted afterwards;
the tiers chosen at submission travel with the document (in the workflow) with the matrix version.
"""

from __future__ import annotations

import hashlib
import threading
import tomllib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

MATRIX_FILE = Path(__file__).resolve().parent.parent / "policies" / "approval_matrix.toml"
DOCUMENT_KINDS = ("invoice", "credit_memo", "write_off")


class MatrixError(ValueError):
    """The matrix file is malformed: refuse to use it rather than guess."""


@dataclass(frozen=True)
class MatrixTier:
    role: str
    up_to: Decimal | None  # None: no upper bound (the last tier)


@dataclass(frozen=True)
class ApprovalMatrix:
    version: str  # declared version + the file's SHA-256 prefix, e.g. "2026.1+3f2a9c0d1b7e"
    tiers: dict[str, tuple[MatrixTier, ...]]

    def tiers_for(self, kind: str, amount: Decimal) -> list[MatrixTier]:
        """Every tier whose lower bound `amount` exceeds (the first tier always applies)."""
        needed: list[MatrixTier] = []
        lower = Decimal(0)
        for tier in self.tiers[kind]:
            if not needed or amount > lower:
                needed.append(tier)
            if tier.up_to is None or amount <= tier.up_to:
                break
            lower = tier.up_to
        return needed


def parse_matrix(text: str) -> ApprovalMatrix:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MatrixError(f"approval matrix is not valid TOML: {exc}") from None
    version = data.get("version")
    if not isinstance(version, str) or not version:
        raise MatrixError("approval matrix needs a `version` string")
    tiers: dict[str, tuple[MatrixTier, ...]] = {}
    for kind in DOCUMENT_KINDS:
        rows = data.get(kind, {}).get("tiers")
        if not isinstance(rows, list) or not rows:
            raise MatrixError(f"approval matrix needs [{kind}] tiers")
        parsed: list[MatrixTier] = []
        previous = Decimal(0)
        for i, row in enumerate(rows):
            role = row.get("role") if isinstance(row, dict) else None
            if not isinstance(role, str) or not role:
                raise MatrixError(f"[{kind}] tier {i + 1} needs a role")
            limit = row.get("up_to")
            if limit is None:
                if i != len(rows) - 1:
                    raise MatrixError(f"[{kind}] only the last tier may be unbounded")
                parsed.append(MatrixTier(role, None))
                continue
            try:
                bound = Decimal(str(limit))
            except InvalidOperation:
                raise MatrixError(f"[{kind}] tier {i + 1}: up_to {limit!r} is not a number") from None
            if bound <= previous:
                raise MatrixError(f"[{kind}] tier {i + 1}: up_to must grow from tier to tier")
            parsed.append(MatrixTier(role, bound))
            previous = bound
        if parsed[-1].up_to is not None:
            raise MatrixError(f"[{kind}] the last tier must be unbounded (no up_to)")
        tiers[kind] = tuple(parsed)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return ApprovalMatrix(version=f"{version}+{digest}", tiers=tiers)


class MatrixFile:
    """The matrix as the file says now; re-parsed when the file's modification time or size changes."""

    def __init__(self, path: Path = MATRIX_FILE) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._matrix: ApprovalMatrix | None = None

    def current(self) -> ApprovalMatrix:
        stat = self.path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if self._matrix is None or stamp != self._stamp:
                self._matrix = parse_matrix(self.path.read_text())
                self._stamp = stamp
            return self._matrix
