"""Approval rules of credit memos and write-offs: pure, shared by the workflows' validators (the last line),
the recording activity (against the store's facts) and the API, inbox and pages (who may act, and why not).

For the tier being approved:
- the document is pending approval and the tier is the current one;
- the approver is not whoever proposed (requested) it, not the owner of its dispute case, not an approver
  of an earlier tier;
- the approver did not apply cash for this customer in the period (the calendar month in the legal
  entity's zone): payment_allocation.applied_by, the conflict auditors cite;
- the approver holds the tier's role (verified in the store when recorded);
- cumulative limit: the approver who decides it (the last tier) may not take their total of decided
  documents of this kind for this customer in the period above the bound of the tier's role (its `up_to`
  in the matrix; the top tier has none), so a credit split in parts does not slip under a tier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from workflows.approval import Refusal
from workflows.credit_memo_types import ResolutionState
from workflows.types import Actor, TierRequirement

NOUN = {"credit_memo": "credit memo", "write_off": "write-off"}


@dataclass(frozen=True)
class SodFacts:
    """What only the store knows, as of now: who applied cash for the customer in the period, and the
    approver's total of documents of this kind they decided for the customer in the period (entity
    currency, minor units, this one excluded)."""

    cash_appliers: list[str] = field(default_factory=list)
    decided_minor: int = 0
    period: str = ""  # "2026-03": the calendar month in the entity's zone
    exponent: int = 2  # of the entity's currency


def current_tier(state: ResolutionState) -> TierRequirement | None:
    if state.plan is None or state.status != "pending_approval":
        return None
    done = len(state.approvals)
    return state.plan.tiers[done] if done < len(state.plan.tiers) else None


def tier_bound_minor(state: ResolutionState, level: int, exponent: int) -> int | None:
    """The bound (up_to) of the tier's role, in the entity currency's minor units; None when unbounded."""
    if level - 1 >= len(state.tier_bounds) or not state.tier_bounds[level - 1]:
        return None
    return int(Decimal(state.tier_bounds[level - 1]).scaleb(exponent))


def _money(minor: int, exponent: int, currency: str) -> str:
    return f"{Decimal(minor).scaleb(-exponent):.{exponent}f} {currency}"


def resolution_refusal(
    state: ResolutionState, actor: Actor, tier_seen: int = 0, facts: SodFacts | None = None
) -> Refusal | None:
    """Why `actor` may not approve the document's current tier now, or None if they may. Without `facts`,
    the cash appliers known at submission (state) are used and the cumulative limit is not checked."""
    noun = NOUN.get(state.kind, state.kind)
    tier = current_tier(state)
    if tier_seen and state.plan is not None and 0 < tier_seen <= len(state.approvals):
        done = state.approvals[tier_seen - 1]
        return Refusal(
            "tier_already_approved",
            "tier_already_approved",
            f"tier {tier_seen} is already approved (by {done.approver})",
        )
    if tier is None:
        return Refusal("transition_refused", "status", f"cannot approve a {noun} in status {state.status}")
    if tier_seen and tier_seen != tier.level:
        return Refusal(
            "tier_out_of_order",
            "tiers_in_order",
            f"tier {tier_seen} cannot be approved before tier {tier.level} ({tier.role})",
        )
    who = actor.username
    if who == state.proposed_by:
        verb = "requested" if state.kind == "write_off" else "proposed"
        return Refusal(
            "segregation_of_duties",
            "proposer_cannot_approve",
            f"{who} {verb} this {noun} and cannot approve it",
        )
    if state.dispute_owner and who == state.dispute_owner:
        return Refusal(
            "segregation_of_duties",
            "case_owner_cannot_approve",
            f"{who} owns the dispute case this {noun} resolves and cannot approve it",
        )
    if any(who in (a.approver, a.on_behalf_of) for a in state.approvals):
        return Refusal(
            "segregation_of_duties",
            "distinct_approver_per_tier",
            f"{who} has already approved this {noun}; each tier needs a different person",
        )
    appliers = facts.cash_appliers if facts is not None else state.cash_appliers
    if who in appliers:
        when = f" in {facts.period}" if facts is not None and facts.period else " this month"
        return Refusal(
            "segregation_of_duties",
            "cash_applier_cannot_approve",
            f"{who} applied cash for customer {state.customer_id}{when} and cannot approve its {noun}s",
        )
    if tier.role not in actor.roles:
        return Refusal(
            "no_authority",
            "tier_role",
            f"tier {tier.level} needs the role {tier.role}, which {who} does not hold here",
        )
    if facts is not None and state.plan is not None and tier.level == len(state.plan.tiers):
        bound = tier_bound_minor(state, tier.level, facts.exponent)
        total = facts.decided_minor + state.plan.amount_minor
        if bound is not None and total > bound:
            cur = state.plan.currency
            return Refusal(
                "cumulative_limit",
                "cumulative_limit",
                f"{who} would decide {_money(total, facts.exponent, cur)} of {noun}s for customer "
                f"{state.customer_id} in {facts.period or 'this period'} "
                f"({_money(facts.decided_minor, facts.exponent, cur)} already, this one "
                f"{_money(state.plan.amount_minor, facts.exponent, cur)}), above the {tier.role} bound of "
                f"{_money(bound, facts.exponent, cur)}",
            )
    return None


def barred_people(state: ResolutionState) -> set[str]:
    """Who the state alone bars from approving the waiting tier (the inbox's pre-filter)."""
    barred = {state.proposed_by, *state.cash_appliers}
    if state.dispute_owner:
        barred.add(state.dispute_owner)
    for a in state.approvals:
        barred.add(a.approver)
        if a.on_behalf_of:
            barred.add(a.on_behalf_of)
    return barred
