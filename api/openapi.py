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

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.errors import AUTH_CODES, BODY_CODES, CODES, INPUT_CODES, ErrorBody, describe

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_REF = "#/components/schemas/"

# (source operation, where its answer holds the id, target operation or "invoice" for every operation on
# an invoice, the request body field the id fills in the target or None for its path parameter).
# Operations answering an invoice are linked generically in _document_links.
_LINKS: list[tuple[str, str, str, str | None]] = [
    ("post /api/v1/customers", "$response.body#/id", "get /api/v1/customers/{customer_id}", None),
    ("post /api/v1/customers", "$response.body#/id", "post /api/v1/invoices", "customer_id"),
    ("get /api/v1/customers", "$response.body#/0/id", "post /api/v1/invoices", "customer_id"),
    ("get /api/v1/customers", "$response.body#/0/id", "get /api/v1/customers/{customer_id}", None),
    ("post /api/v1/payments", "$response.body#/id", "get /api/v1/payments/{payment_id}", None),
    (
        "post /api/v1/delegations",
        "$response.body#/id",
        "post /api/v1/delegations/{delegation_id}/revoke",
        None,
    ),
    (
        "get /api/v1/delegations",
        "$response.body#/0/id",
        "post /api/v1/delegations/{delegation_id}/revoke",
        None,
    ),
    ("get /api/v1/invoices", "$response.body#/items/0/id", "invoice", None),
    ("get /api/v1/approvals/inbox", "$response.body#/0/invoice_id", "invoice", None),
]


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, item in schema.get("paths", {}).items()
        for method, op in item.items()
        if method in _METHODS
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
    schema: dict[str, Any],
    source: tuple[str, str],
    target: tuple[str, str],
    expression: str,
    field: str | None,
) -> None:
    method, path = source
    op = schema["paths"].get(path, {}).get(method)
    target_op = schema["paths"].get(target[1], {}).get(target[0])
    if op is None or target_op is None:
        raise LookupError(f"link {source} -> {target}: no such operation")
    link: dict[str, Any] = {"operationId": target_op["operationId"]}
    if field is not None:
        link["requestBody"] = {field: expression}  # merged into the generated body
    else:
        (name,) = [p["name"] for p in target_op.get("parameters", []) if p["in"] == "path"]
        link["parameters"] = {f"path.{name}": expression}
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
                _add_link(schema, (method, path), invoice_op, "$response.body#/id", None)
    for source, expression, target, field in _LINKS:
        targets = invoice_ops if target == "invoice" else [_split(target)]
        for target_op in targets:
            _add_link(schema, _split(source), target_op, expression, field)


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
