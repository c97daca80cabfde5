"""Refusals a workflow gives, as Temporal ApplicationError types the API maps onto HTTP statuses.

The names are the `error.code` a client sees; keep them stable.
"""

from __future__ import annotations

from typing import Any

from temporalio.exceptions import ApplicationError

# type -> HTTP status (read by api/errors.py; kept here so there is one list)
HTTP_STATUS: dict[str, int] = {
    "transition_refused": 409,
    "already_applied": 409,
    "segregation_of_duties": 403,
    "no_authority": 403,
    "tier_already_approved": 409,
    "tier_out_of_order": 409,
    "delivery_in_progress": 409,
    "invalid_command": 422,
    "over_allocation": 422,
    "currency_mismatch": 422,
    # Issue 11: disputes, credit memos and write-offs (and the invoice commands they send).
    "cumulative_limit": 403,
    "amount_exceeds_open": 422,
    "already_disputed": 409,
    "not_disputed": 409,
    "unknown_reference": 422,
    "root_cause_required": 422,
    "capa_required": 422,
}


def refuse(code: str, message: str, **details: Any) -> ApplicationError:
    """A non-retryable, typed refusal; raised from validators and handlers."""
    return ApplicationError(message, details, type=code, non_retryable=True)
