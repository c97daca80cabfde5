"""The one place that maps errors to HTTP: `{"error": {"code", "message", "details"}}`.

401 unauthenticated, 403 a refused action (naming the rule), 404 unknown object, 409 impossible
transition (naming the current state), 413 body too large, 422 malformed input (naming the field).
Nothing a client can send ends in a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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


def install(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(
            error_body(exc.code, exc.message, exc.details), status_code=exc.status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = []
        for err in exc.errors():
            if err.get("type") == "json_invalid":  # loc is ("body", <character position>)
                where = err.get("loc", ())[-1]
                cause = (err.get("ctx") or {}).get("error", "")
                reason = f"invalid JSON at character {where}" + (f": {cause}" if cause else "")
                fields.append({"field": "body", "reason": reason})
                continue
            name = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            fields.append({"field": name or "body", "reason": err.get("msg", "")})
        message = "; ".join(f"{f['field']}: {f['reason']}" for f in fields[:5])
        return JSONResponse(error_body("invalid_input", message, {"fields": fields}), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {
            401: "unauthenticated",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            413: "body_too_large",
        }.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(WorkflowUpdateFailedError)
    async def _update_failed(_: Request, exc: WorkflowUpdateFailedError) -> JSONResponse:
        err = from_workflow(exc)
        return JSONResponse(error_body(err.code, err.message, err.details), status_code=err.status)

    @app.exception_handler(RPCError)
    async def _rpc(_: Request, exc: RPCError) -> JSONResponse:
        log.warning("Temporal RPC error: %s", exc)
        if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            return JSONResponse(
                error_body("unavailable", "the workflow service is unavailable; retry"), status_code=503
            )
        return JSONResponse(
            error_body("unavailable", f"workflow service error: {exc.message}"), status_code=503
        )
