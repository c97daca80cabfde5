"""Schemathesis hooks for the API fuzz gate (loaded through tests/contract/schemathesis.toml)."""

from __future__ import annotations

import json
from typing import Any

import schemathesis
from schemathesis import Case, CheckContext, Response


def _error_code(response: Response) -> str | None:
    try:
        body: Any = json.loads(response.content)
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        return code if isinstance(code, str) else None
    return None


@schemathesis.check
def schema_states_input_rules(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """A request generated to satisfy the schema is never refused for breaking a field's own rule.

    The built-in positive_data_acceptance check is configured to let 422 through, because the API answers
    422 for rules the schema cannot state (each with its own error code, documented on the route). This
    check keeps the rest of that check's promise: `invalid_input` is the code of a request that breaks its
    schema, so answering it to a schema-valid request means the schema does not say what the API checks.
    """
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    if response.status_code == 422 and _error_code(response) == "invalid_input":
        raise AssertionError(
            "Schema-valid request refused as invalid_input: the schema does not state a rule the API checks"
        )
    return None
