"""The one place that maps errors to HTTP: `{"error": {"code", "message", "details"}}`.

401 unauthenticated, 403 a refused action (naming the rule), 404 unknown object, 409 impossible
transition (naming the current state), 413 body too large, 422 input refused (naming the field).
Nothing a client can send ends in a 500.

Every code a route can answer is in `CODES`, with its status and what it means; routes name theirs with
`errors(...)` and api/openapi.py writes them into each operation's responses. Two kinds of 422:
`invalid_input` is a request that breaks its own schema (a field's type, pattern, length or bounds, a body
that is not JSON or form data): a client built from the schema never sends one. Every other 422 code is a
rule the schema cannot state, because it relates two fields or needs the store (an unknown customer, `to`
before `from`, an amount with more decimals than its currency has).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from workflows.errors import HTTP_STATUS

log = logging.getLogger("cashcycle.api")


class AppError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details


class Unauthenticated(AppError):
    status, code = 401, "unauthenticated"


class Forbidden(AppError):
    status, code = 403, "forbidden"


class NotFound(AppError):
    status, code = 404, "not_found"


class Conflict(AppError):
    status, code = 409, "conflict"


class Invalid(AppError):
    status, code = 422, "invalid_input"


class Unavailable(AppError):
    status, code = 503, "unavailable"


class ErrorDetail(BaseModel):
    code: str = Field(description="stable and machine-readable; each response lists the codes it can carry")
    message: str = Field(description="for people: what was refused and why")
    details: dict[str, Any] = Field(description="the field, the rule, the current status, ... as applicable")


class ErrorBody(BaseModel):
    """Every error the API answers (4xx, 503)."""

    error: ErrorDetail


# code -> (HTTP status, what it means). The workflow's refusals (workflows/errors.py) are among them.
CODES: dict[str, tuple[int, str]] = {
    "unauthenticated": (401, "no bearer token, or an invalid, expired or disabled user's one"),
    "forbidden": (403, "no role the caller holds in the legal entity grants the action (named in details)"),
    "segregation_of_duties": (
        403,
        "the caller created, edited or submitted it, or approved an earlier tier; for a credit memo or "
        "write-off: proposed (requested) it, owns its dispute case, or applied cash for the customer in the "
        "period",
    ),
    "cumulative_limit": (
        403,
        "the approver's total of credit memos (write-offs) decided for the customer in the period would pass "
        "the bound of their tier's role (the figures are in the message)",
    ),
    "no_authority": (403, "the caller does not hold the waiting tier's role (nor a delegation of it)"),
    "duties_conflict": (
        403,
        "the grant would give one person incompatible roles (policies/sod_conflicts.csv)",
    ),
    "not_found": (404, "no such object, or not one the caller may read"),
    "transition_refused": (409, "impossible in the current status (named in details)"),
    "already_applied": (409, "this payment, credit memo or write-off was already applied to the invoice"),
    "already_disputed": (409, "another open dispute case holds the invoice: add to that case (named)"),
    "not_disputed": (409, "the invoice is not held by that dispute case"),
    "tier_already_approved": (409, "someone approved that tier meanwhile"),
    "tier_out_of_order": (409, "a later tier than the one waiting"),
    "delivery_in_progress": (409, "the invoice's delivery activity is running or retrying: retry it instead"),
    "external_id_conflict": (409, "the external_id names an invoice created with another body"),
    "external_ref_conflict": (409, "the external_ref (or Idempotency-Key) names a customer with other data"),
    "idempotency_key_conflict": (409, "the Idempotency-Key was used for another request"),
    "not_issued": (409, "the invoice has no number yet: its e-invoice exists once it is issued"),
    "credit_note_not_issued": (
        409,
        "the credit memo is not issued yet: its credit note (PDF, UBL) exists once it is approved and issued",
    ),
    "einvoice_incomplete": (409, "master data lacks what an EN 16931 e-invoice requires (named)"),
    "ledger_broken": (409, "the ledger does not verify, so it was not signed"),
    "body_too_large": (413, "the request body is over the configured limit"),
    "invalid_input": (
        422,
        "the request breaks its schema (type, pattern, length, bounds), or the body is not JSON "
        "(not form data for /auth/token); details.fields names each field and the reason",
    ),
    "invalid_range": (
        422,
        "an end before its start (`to` before `from`, due_date before issue_date, ends_on before starts_on), "
        "or a period longer than allowed",
    ),
    "invalid_amount": (
        422,
        "amounts that do not add up: more decimals than the currency has, a total that is not positive or "
        "too large",
    ),
    "assignee_ineligible": (422, "the assignee does not hold the waiting tier's role"),
    "unknown_reference": (
        422,
        "the body names a customer, invoice, user, role, legal entity or portal that does not exist "
        "(or that the caller may not see)",
    ),
    "inconsistent_fields": (422, "fields that contradict each other (e.g. a Peppol endpoint and its scheme)"),
    "exchange_rate": (422, "an exchange rate is required (other currency) or must be 1 (the entity's own)"),
    "delegation_refused": (
        422,
        "the delegation cannot be made: to yourself, to an unknown or inactive user, a role the delegator "
        "does not hold, a period already over, longer than a year or ending before it starts",
    ),
    "empty_ledger": (422, "the legal entity's ledger has no entries to checkpoint yet"),
    "legal_entity_required": (422, "the caller acts in several legal entities: name one"),
    "invalid_cursor": (422, "the cursor is not one this API issued"),
    "invalid_command": (422, "the workflow refused the command's content (the field is named)"),
    "over_allocation": (422, "allocations exceed the payment or an invoice's amount due"),
    "amount_exceeds_open": (422, "a disputed, credited or written-off amount above what is open"),
    "unknown_reason_code": (
        422,
        "the customer's reason code is in neither their mapping nor the default one "
        "(details.known lists them)",
    ),
    "root_cause_required": (422, "closing a dispute needs a root cause from the taxonomy"),
    "capa_required": (
        422,
        "an internal root cause needs a corrective and a preventive action, each with owner, due date and "
        "description (the field is named)",
    ),
    "attachment_too_large": (413, "the attachment is over the size the store keeps (details.limit)"),
    "currency_mismatch": (422, "an invoice in another currency than the payment"),
    "unavailable": (
        503,
        "the workflow service or a worker did not answer; retry with the same Idempotency-Key",
    ),
}

# Codes every authenticated operation can answer; api/openapi.py adds them from what the operation takes.
AUTH_CODES = ("unauthenticated",)
INPUT_CODES = ("invalid_input",)
BODY_CODES = ("body_too_large",)


# The operations of an OpenAPI path item (its other keys are parameters, summary, ...).
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def errors(*codes: str) -> dict[int | str, dict[str, Any]]:
    """A route's `responses=` for the error codes it can answer (beyond those api/openapi.py adds from what
    the operation takes: 401 with a bearer token, 422 invalid_input with parameters or a body, 413 with a
    body). Each status documents the ErrorBody and lists its codes."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        status = CODES[code][0]  # KeyError: a code missing from the catalogue
        entry = out.setdefault(status, {"model": ErrorBody, "description": "", "x-error-codes": []})
        entry["x-error-codes"].append(code)
    for entry in out.values():
        entry["description"] = describe(entry["x-error-codes"])
    return out


def describe(codes: list[str]) -> str:
    return "; ".join(f"`{code}`: {CODES[code][1]}" for code in sorted(set(codes)))


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def from_workflow(exc: WorkflowUpdateFailedError | ApplicationError) -> AppError:
    """A workflow's typed refusal (see workflows/errors.py) as the matching HTTP error."""
    cause = exc.cause if isinstance(exc, WorkflowUpdateFailedError) else exc
    if isinstance(cause, ApplicationError) and cause.type in HTTP_STATUS:
        details = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
        err = AppError(cause.message, code=cause.type, **details)
        err.status = HTTP_STATUS[cause.type]
        return err
    log.error("workflow update failed unexpectedly: %r", cause)
    return Unavailable(
        "the invoice workflow could not complete the command; retry with the same Idempotency-Key"
    )


PageErrorRenderer = Callable[[Request, int, str, str, dict[str, Any]], Response]


def _page_error(
    request: Request, status: int, code: str, message: str, details: dict[str, Any]
) -> Response | None:
    """The web UI's pages answer errors as pages: the same status, code and message as the JSON API would
    give, rendered by the renderer the pages install (api/pages/common.py); None for the JSON API."""
    render: PageErrorRenderer | None = getattr(request.app.state, "render_page_error", None)
    if render is None or request.url.path.startswith(JSON_PATHS):
        return None
    return render(request, status, code, message, details)


# Paths answered in JSON whatever the error; everything else is a page of the web UI.
JSON_PATHS = ("/api/", "/healthz", "/openapi.json", "/docs", "/redoc")


def install(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> Response:
        if (page := _page_error(request, exc.status, exc.code, exc.message, exc.details)) is not None:
            return page
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        details = exc.details
        if exc.status == 422 and "field" in details and "fields" not in details:
            # Every 422 names its fields alike, whichever check refused them (as request validation does).
            details = {**details, "fields": [{"field": details["field"], "reason": exc.message}]}
        return JSONResponse(
            error_body(exc.code, exc.message, details), status_code=exc.status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        fields = []
        for err in exc.errors():
            if err.get("type") == "json_invalid":  # loc is ("body", <character position>)
                where = err.get("loc", ())[-1]
                cause = (err.get("ctx") or {}).get("error", "")
                reason = f"invalid JSON at character {where}" + (f": {cause}" if cause else "")
                fields.append({"field": "body", "reason": reason})
                continue
            loc = err.get("loc", ())
            # A header is named as it is sent (Idempotency-Key); query and path parameters keep their place.
            name = str(loc[-1]) if loc[:1] == ("header",) else ".".join(str(p) for p in loc if p != "body")
            fields.append({"field": name or "body", "reason": err.get("msg", "")})
        message = "; ".join(f"{f['field']}: {f['reason']}" for f in fields[:5])
        if (page := _page_error(request, 422, "invalid_input", message, {"fields": fields})) is not None:
            return page
        return JSONResponse(error_body("invalid_input", message, {"fields": fields}), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400:
            # FastAPI answers 400 "There was an error parsing the body" for a body it cannot decode (bytes
            # that are not UTF-8, a broken multipart form); JSON that does not parse comes as a
            # RequestValidationError. One status for every unparseable body: 422 invalid_input.
            return JSONResponse(
                error_body(
                    "invalid_input",
                    "body: the request body could not be parsed (JSON, or form data for /auth/token)",
                    {"fields": [{"field": "body", "reason": "not parseable"}]},
                ),
                status_code=422,
            )
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # Starlette names only the methods of the first route matching the path; FastAPI makes one
            # route per method, so GET and POST on one path used to answer `Allow: POST`.
            headers["Allow"] = ", ".join(allowed_methods(request))
        code = {
            401: "unauthenticated",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            413: "body_too_large",
        }.get(exc.status_code, "http_error")
        if (page := _page_error(request, exc.status_code, code, str(exc.detail), {})) is not None:
            page.headers.update(headers)
            return page
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=headers)

    @app.exception_handler(WorkflowUpdateFailedError)
    async def _update_failed(request: Request, exc: WorkflowUpdateFailedError) -> Response:
        err = from_workflow(exc)
        if (page := _page_error(request, err.status, err.code, err.message, err.details)) is not None:
            return page
        return JSONResponse(error_body(err.code, err.message, err.details), status_code=err.status)

    @app.exception_handler(RPCError)
    async def _rpc(request: Request, exc: RPCError) -> Response:
        log.warning("Temporal RPC error: %s", exc)
        if page := _page_error(request, 503, "unavailable", "the workflow service is unavailable; retry", {}):
            return page
        if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            return JSONResponse(
                error_body("unavailable", "the workflow service is unavailable; retry"), status_code=503
            )
        return JSONResponse(
            error_body("unavailable", f"workflow service error: {exc.message}"), status_code=503
        )


def allowed_methods(request: Request) -> list[str]:
    """The methods the OpenAPI document gives the request's path (for the `Allow` header of a 405): what
    the API serves there, as clients generated from the document know it."""
    paths: dict[str, dict[str, Any]] = request.app.openapi()["paths"]
    for template, item in paths.items():
        pattern = "[^/]+".join(re.escape(part) for part in re.split(r"\{[^/}]+\}", template))
        if re.fullmatch(pattern, request.url.path):
            return sorted(method.upper() for method in item if method in HTTP_METHODS)
    return []
