"""The OpenAPI document says what the API answers (issue 9): every error status of every operation, with
the ErrorBody component and the codes it can carry; bounds on every number; links for the invoice
lifecycle. And the API answers as it says: a 405 names the methods in `Allow`, an unparseable body is a
422 invalid_input, a number beyond its bound is a 422, not a 500."""

from __future__ import annotations

from typing import Any

import pytest

from api.app import create_app
from api.errors import CODES
from tests.conftest import Stack

ERROR_STATUSES = {"401", "403", "404", "409", "413", "422", "503"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app().openapi()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, item in document["paths"].items() for m, op in item.items()]


def codes_of(response: dict[str, Any]) -> list[str]:
    schema = response["content"]["application/json"]["schema"]
    assert schema["allOf"] == [{"$ref": "#/components/schemas/ErrorBody"}], schema
    codes: list[str] = schema["properties"]["error"]["properties"]["code"]["enum"]
    return codes


def test_every_error_status_documents_the_error_body_and_its_codes(document: dict[str, Any]) -> None:
    assert {"ErrorBody", "ErrorDetail"} <= set(document["components"]["schemas"])
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for method, path, op in operations(document):
        where = f"{method.upper()} {path}"
        for status, response in op["responses"].items():
            if status in ERROR_STATUSES and "application/json" in response.get("content", {}):
                if (method, path, status) == ("get", "/healthz", "503"):
                    continue  # the health report itself, naming the check that failed
                codes = codes_of(response)
                assert codes, where
                for code in codes:
                    assert CODES[code][0] == int(status), f"{where}: {code} under {status}"
                    assert f"`{code}`" in response["description"], where
        if op.get("security"):
            assert codes_of(op["responses"]["401"]) == ["unauthenticated"], where
        if op.get("parameters") or op.get("requestBody"):
            assert "invalid_input" in codes_of(op["responses"]["422"]), where
        if op.get("requestBody"):
            # Every body may be over the server's limit; an upload may also be over what the store keeps.
            assert "body_too_large" in codes_of(op["responses"]["413"]), where


def test_refusals_that_need_the_store_are_documented_on_their_route(document: dict[str, Any]) -> None:
    create = document["paths"]["/api/v1/invoices"]["post"]["responses"]
    assert {"unknown_reference", "exchange_rate", "invalid_range", "invalid_amount"} <= set(
        codes_of(create["422"])
    )
    assert codes_of(create["409"]) == ["external_id_conflict"]
    approve = document["paths"]["/api/v1/invoices/{invoice_id}/approve"]["post"]["responses"]
    assert {"forbidden", "segregation_of_duties", "no_authority"} == set(codes_of(approve["403"]))
    report = document["paths"]["/api/v1/reports/portals"]["get"]["responses"]
    assert "invalid_range" in codes_of(report["422"])


def test_every_number_in_a_query_or_a_body_is_bounded(document: dict[str, Any]) -> None:
    def bounded(schema: dict[str, Any]) -> bool:
        variants = schema.get("anyOf", [schema])
        return all("maximum" in v and "minimum" in v for v in variants if v.get("type") == "integer")

    for method, path, op in operations(document):
        for param in op.get("parameters", []):
            assert bounded(param["schema"]), f"{method.upper()} {path}: {param['name']}"
    for name, schema in document["components"]["schemas"].items():
        if name.endswith(("Create", "Body", "In", "Edit", "Change")):
            for prop, prop_schema in schema.get("properties", {}).items():
                assert bounded(prop_schema), f"{name}.{prop}"


def test_free_text_and_the_idempotency_key_carry_their_rules(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "\\x00" in schemas["ReasonBody"]["properties"]["reason"]["pattern"]
    assert "pattern" in schemas["LineIn"]["properties"]["quantity"]
    assert "EUR" in schemas["InvoiceCreate"]["properties"]["currency"]["enum"]
    submit = document["paths"]["/api/v1/invoices/{invoice_id}/submit"]["post"]
    (key,) = [p for p in submit["parameters"] if p["name"] == "Idempotency-Key"]
    assert key["schema"]["anyOf"][0]["maxLength"] == 200 and "pattern" in key["schema"]["anyOf"][0]


def test_links_lead_from_a_new_invoice_to_reading_submitting_and_approving_it(
    document: dict[str, Any],
) -> None:
    created = document["paths"]["/api/v1/invoices"]["post"]["responses"]["201"]["links"]
    ids = {op["operationId"]: (m, p) for m, p, op in operations(document) if p.startswith("/api/v1/invoices")}
    targets = {ids[link["operationId"]] for link in created.values()}
    assert {
        ("get", "/api/v1/invoices/{invoice_id}"),
        ("post", "/api/v1/invoices/{invoice_id}/submit"),
        ("post", "/api/v1/invoices/{invoice_id}/approve"),
    } <= targets
    read = document["paths"]["/api/v1/invoices/{invoice_id}"]["get"]["responses"]["200"]["links"]
    assert any(ids[link["operationId"]][1].endswith("/approve") for link in read.values())


async def test_a_405_names_every_method_of_the_path_in_allow(stack: Stack) -> None:
    erp = await stack.client("erp")
    r = await erp.delete("/api/v1/invoices")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed", r.text
    assert r.headers["allow"] == "GET, POST"
    r = await erp.put("/api/v1/invoices/some-id")
    assert r.status_code == 405 and r.headers["allow"] == "GET, PATCH"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b"\xff\xfe{not json"),
        ("application/json", b'{"external_id": '),
        ("text/plain", b"x"),
    ],
)
async def test_an_unparseable_body_is_a_422_invalid_input(
    stack: Stack, content_type: str, body: bytes
) -> None:
    erp = await stack.client("erp")
    r = await erp.post("/api/v1/invoices", content=body, headers={"content-type": content_type})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input", r.text


async def test_a_broken_login_form_is_a_422_invalid_input(stack: Stack) -> None:
    async with await stack.client("erp") as client:
        r = await client.post(
            "/api/v1/auth/token",
            content=b"--x\r\nContent-Disposition: form-data; name=\xff",
            headers={"content-type": "multipart/form-data; boundary=x", "authorization": ""},
        )
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input", r.text


async def test_an_offset_beyond_its_bound_is_a_422_not_a_500(stack: Stack) -> None:
    erp = await stack.client("erp")
    r = await erp.get("/api/v1/customers", params={"offset": "33752419656803086474825170944"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input", r.text
    assert r.json()["error"]["details"]["fields"][0]["field"] == "query.offset"
    assert (await erp.get("/api/v1/customers", params={"offset": 1_000_000})).status_code == 200
