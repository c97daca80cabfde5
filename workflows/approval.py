"""Approval rules: sequential tiers, distinct people, maker-checker. Pure, so that the workflow's
validator (the last line), the API (the first) and the inbox (who may act, and why not) share them.

The rules, for the tier being approved:
- the invoice is pending approval and the tier is the current one (a stale tier means someone else
  approved it first);
- if a supervisor reassigned the tier, only the assignee may approve it;
- the approver holds the tier's role, or approves on behalf of a delegator who does (the role itself
  is verified against the store when the approval is recorded);
- neither the approver nor the delegator created, edited or submitted the invoice, or approved an
  earlier tier of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from workflows.types import Actor, ApprovalPlan, Assignment, InvoiceState, TierRequirement


@dataclass(frozen=True)
class Refusal:
    code: str  # workflows.errors type: segregation_of_duties, no_authority, tier_already_approved...
    rule: str
    message: str


def preparers(state: InvoiceState) -> dict[str, str]:
    """Everyone who prepared the invoice, with the rule that bars them from approving it."""
    barred: dict[str, str] = {}
    for who in state.submitters:
        barred.setdefault(who, "submitter_cannot_approve")
    for who in state.editors:
        barred[who] = "editor_cannot_approve"
    barred[state.created_by] = "preparer_cannot_approve"
    return barred


def current_tier(state: InvoiceState) -> TierRequirement | None:
    if state.plan is None or state.status != "pending_approval":
        return None
    done = len(state.approvals)
    return state.plan.tiers[done] if done < len(state.plan.tiers) else None


def assignee_of(state: InvoiceState, tier: int) -> str | None:
    return assignee_among(state.assignments, tier)


def assignee_among(assignments: list[Assignment], tier: int) -> str | None:
    """Who the tier is assigned to (the latest reassignment), if anyone."""
    chosen = [a.assignee for a in assignments if a.tier == tier]
    return chosen[-1] if chosen else None


_WHAT = {
    "preparer_cannot_approve": "prepared",
    "editor_cannot_approve": "edited",
    "submitter_cannot_approve": "submitted",
}


def approval_refusal(
    state: InvoiceState, actor: Actor, tier_seen: int = 0, on_behalf_of: str | None = None
) -> Refusal | None:
    """Why `actor` may not approve the invoice's current tier now, or None if they may."""
    tier = current_tier(state)
    if tier_seen and state.plan is not None and tier_seen <= len(state.approvals):
        # Two approvers acting on the same tier at once: the first one counts.
        done = state.approvals[tier_seen - 1]
        return Refusal(
            "tier_already_approved",
            "tier_already_approved",
            f"tier {tier_seen} is already approved (by {done.approver})",
        )
    if tier is None:
        return Refusal("transition_refused", "status", f"cannot approve an invoice in status {state.status}")
    if tier_seen and tier_seen != tier.level:
        return Refusal(
            "tier_out_of_order",
            "tiers_in_order",
            f"tier {tier_seen} cannot be approved before tier {tier.level} ({tier.role})",
        )
    who = actor.username
    people = [who] if on_behalf_of is None else [who, on_behalf_of]
    if on_behalf_of == who:
        return Refusal("invalid_command", "delegation", "nobody approves on their own behalf")
    barred = preparers(state)
    for person in people:
        if person in barred:
            rule = barred[person]
            subject = person if person == who else f"{who}'s delegator {person}"
            return Refusal(
                "segregation_of_duties", rule, f"{subject} {_WHAT[rule]} this invoice and cannot approve it"
            )
        if any(person in (a.approver, a.on_behalf_of) for a in state.approvals):
            subject = person if person == who else f"{who}'s delegator {person}"
            return Refusal(
                "segregation_of_duties",
                "distinct_approver_per_tier",
                f"{subject} has already approved this invoice; each tier needs a different person",
            )
    assignee = assignee_of(state, tier.level)
    if assignee is not None and assignee not in people:
        return Refusal(
            "segregation_of_duties", "reassigned", f"tier {tier.level} was reassigned to {assignee}"
        )
    if on_behalf_of is None and tier.role not in actor.roles:
        return Refusal(
            "no_authority",
            "tier_role",
            f"tier {tier.level} needs the role {tier.role}, which {who} does not hold here",
        )
    return None


def plan_summary(plan: ApprovalPlan) -> str:
    return " -> ".join(f"{t.level}:{t.role}" for t in plan.tiers) + f" (matrix {plan.matrix_version})"


def submission_reason(comment: str, plan: ApprovalPlan) -> str:
    """What the ledger says of a submission: the submitter's comment and the tiers it needs."""
    return f"{comment} [tiers {plan_summary(plan)}]".strip()
