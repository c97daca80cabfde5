"""The OpenAPI document: FastAPI's, with every error response written from the code catalogue and the
links a client (or the fuzzer's stateful phase) follows from one call to the next.

Errors: each operation documents every status it can answer with the ErrorBody component, narrowed to the
codes that status can carry there. The codes a route names with `api.errors.errors(...)` are completed
from what the operation takes, so that a new route cannot forget them: a bearer token (401
`unauthenticated`), parameters or a body (422 `invalid_input`), a body (413 `body_too_large`).

Links: every operation answering an invoice links to every operation on that invoice (read it, submit,
approve, ...), the customer operations link to the invoice creation (a real customer_id), and so on for
payments and delegations, so that create -> read -> submit -> approve can be followed without guessing ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.errors import AUTH_CODES, BODY_CODES, CODES, HTTP_METHODS, INPUT_CODES, ErrorBody, describe


@dataclass(frozen=True)
class _Constant:
    """A value a link sets as it is (not a field of the source's answer)."""

    value: Any


_REF = "#/components/schemas/"


@dataclass(frozen=True)
class _Gives:
    """What a source's object gives a linked operation."""

    path: str | None = None  # the field holding the target's path parameter
    body: dict[str, Any] = field(
        default_factory=dict
    )  # target body field -> the object's field, or _Constant


# An invoice in the customer's currency, with a rate of 1 (required for a currency not the legal entity's,
# and the only one allowed for its own) and the due date from the payment terms: a link that mostly leads
# to an invoice, where bodies drawn from the schema alone mostly meet the rules between fields instead.
_CUSTOMER_TO_INVOICE: dict[str, Any] = {
    "customer_id": "id",
    "currency": "currency",
    "exchange_rate": _Constant("1"),
    "due_date": _Constant(None),
}
# A new customer's id is a fresh external_id too (a UUID fits its pattern): a first invoice of it, where a
# generated external_id ("0", say) would mostly name an invoice created before.
_NEW_CUSTOMER_TO_INVOICE = {**_CUSTOMER_TO_INVOICE, "external_id": "id"}
_INVOICES = "post /api/v1/invoices"
_REVOKE = "post /api/v1/delegations/{delegation_id}/revoke"

# (source operation, where its answer holds the object, target operation or "invoice" for every operation
# on an invoice, what the object gives it). Operations answering an invoice are linked to every operation
# on it in _document_links; a later entry for the same source and target replaces an earlier one.
_LINKS: list[tuple[str, str, str, _Gives]] = [
    ("post /api/v1/customers", "$response.body#", "get /api/v1/customers/{customer_id}", _Gives("id")),
    ("post /api/v1/customers", "$response.body#", _INVOICES, _Gives(body=_NEW_CUSTOMER_TO_INVOICE)),
    ("get /api/v1/customers", "$response.body#/0", _INVOICES, _Gives(body=_CUSTOMER_TO_INVOICE)),
    ("get /api/v1/customers", "$response.body#/0", "get /api/v1/customers/{customer_id}", _Gives("id")),
    ("post /api/v1/payments", "$response.body#", "get /api/v1/payments/{payment_id}", _Gives("id")),
    (
        "post /api/v1/delegations",
        "$response.body#",
        "post /api/v1/delegations/{delegation_id}/revoke",
        _Gives("id"),
    ),
    (
        "get /api/v1/delegations",
        "$response.body#/0",
        "post /api/v1/delegations/{delegation_id}/revoke",
        _Gives("id"),
    ),
    ("get /api/v1/invoices", "$response.body#/items/0", "invoice", _Gives("id")),
    ("get /api/v1/approvals/inbox", "$response.body#/0", "invoice", _Gives("invoice_id")),
    # What the inbox lists is waiting for the caller at a tier: approve that tier.
    (
        "get /api/v1/approvals/inbox",
        "$response.body#/0",
        "post /api/v1/invoices/{invoice_id}/approve",
        _Gives("invoice_id", {"tier": "tier"}),
    ),
]


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, item in schema.get("paths", {}).items()
        for method, op in item.items()
        if method in HTTP_METHODS
    ]


def _error_response(codes: list[str]) -> dict[str, Any]:
    return {
        "description": describe(codes),
        "content": {
            "application/json": {
                "schema": {
                    "allOf": [{"$ref": _REF + "ErrorBody"}],
                    "properties": {"error": {"properties": {"code": {"enum": sorted(set(codes))}}}},
                }
            }
        },
    }


def _document_errors(op: dict[str, Any]) -> None:
    responses: dict[str, Any] = op.setdefault("responses", {})
    by_status: dict[int, list[str]] = {}
    for status, response in list(responses.items()):
        codes = response.pop("x-error-codes", None)
        if codes is not None:
            by_status.setdefault(int(status), []).extend(codes)
    # FastAPI's own 422 (HTTPValidationError, pydantic's error list) is not what this API answers.
    responses.pop("422", None)
    taken: list[str] = []
    if op.get("security"):
        taken += AUTH_CODES
    if op.get("parameters") or op.get("requestBody"):
        taken += INPUT_CODES
    if op.get("requestBody"):
        taken += BODY_CODES
    for code in taken:
        by_status.setdefault(CODES[code][0], []).append(code)
    for code_status, codes in sorted(by_status.items()):
        documented = _error_response(codes)
        other_media = responses.get(str(code_status), {}).get("content", {})
        documented["content"] = {**other_media, **documented["content"]}
        responses[str(code_status)] = documented


def _link_name(method: str, path: str) -> str:
    words = [w for w in path.removeprefix("/api/v1/").split("/") if w and not w.startswith("{")]
    return method.capitalize() + "".join(w.replace("-", " ").title().replace(" ", "") for w in words)


def _add_link(
    schema: dict[str, Any], source: tuple[str, str], target: tuple[str, str], at: str, gives: _Gives
) -> None:
    method, path = source
    op = schema["paths"].get(path, {}).get(method)
    target_op = schema["paths"].get(target[1], {}).get(target[0])
    if op is None or target_op is None:
        raise LookupError(f"link {source} -> {target}: no such operation")
    link: dict[str, Any] = {"operationId": target_op["operationId"]}
    if gives.path is not None:
        (name,) = [p["name"] for p in target_op.get("parameters", []) if p["in"] == "path"]
        link["parameters"] = {f"path.{name}": f"{at}/{gives.path}"}
    if gives.body:
        # Merged into the body generated for the target: the rest of it is still drawn from the schema.
        link["requestBody"] = {
            name: value.value if isinstance(value, _Constant) else f"{at}/{value}"
            for name, value in gives.body.items()
        }
    for status, response in op["responses"].items():
        if status.startswith("2"):
            response.setdefault("links", {})[_link_name(*target)] = link


def _returns(op: dict[str, Any], component: str) -> bool:
    for status, response in op.get("responses", {}).items():
        if status.startswith("2"):
            content = response.get("content", {}).get("application/json", {})
            if content.get("schema", {}).get("$ref") == _REF + component:
                return True
    return False


def _document_links(schema: dict[str, Any]) -> None:
    invoice_ops = [
        (method, path)
        for method, path, _ in _operations(schema)
        if path.startswith("/api/v1/invoices/{invoice_id}")
    ]
    for method, path, op in _operations(schema):
        if _returns(op, "InvoicePublic"):
            for invoice_op in invoice_ops:
                _add_link(schema, (method, path), invoice_op, "$response.body#", _Gives("id"))
    for source, at, target, gives in _LINKS:
        targets = invoice_ops if target == "invoice" else [_split(target)]
        for target_op in targets:
            _add_link(schema, _split(source), target_op, at, gives)


def _split(operation: str) -> tuple[str, str]:
    method, path = operation.split(" ", 1)
    return method, path


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document, built once."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorBody.model_json_schema(ref_template=_REF + "{model}")
    components.update(error_schema.pop("$defs", {}))
    components["ErrorBody"] = error_schema
    for _method, _path, op in _operations(schema):
        _document_errors(op)
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    _document_links(schema)
    app.openapi_schema = schema
    return schema
