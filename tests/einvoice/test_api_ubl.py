"""Over HTTP with a worker running: a customer created with its e-invoice data gets, once its invoice is
issued, the UBL document at GET /api/v1/invoices/{id}/ubl; before that 409, for strangers 404; master data
that could not make a valid e-invoice is refused at the door with the field named."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import select

from activities.db import writing
from activities.einvoice import parse_ubl
from activities.einvoice_validation import validate_en16931
from activities.models import LegalEntity
from demo import DEMO_ENTITY_ROW
from tests.conftest import Stack, invoice_body
from tests.einvoice.conftest import EINVOICE_DATA, OfficialValidators

CUSTOMER: dict[str, Any] = {
    "legal_entity": "ACME",
    "external_ref": "ERP-CUST-PEPPOL",
    "name": "Bergmann Logistik GmbH",
    "currency": "EUR",
    "payment_terms_days": 30,
    "email": "ap@bergmann-logistik.example",
    "contact_name": "Katrin Vogel",
    "address": "Hafenstraße 12, 20457 Hamburg",
    "country": "DE",
    "vat_id": "DE287451936",
    "street": "Hafenstraße 12",
    "city": "Hamburg",
    "postal_code": "20457",
    "endpoint_scheme": "9930",
    "endpoint_id": "DE287451936",
    "company_id": "HRB 154321",
    "po_required": True,
    "buyer_reference": "KST-4410",
}


def give_acme_its_einvoice_data(stack: Stack) -> None:
    """The legal entity's Peppol data (no API writes legal entities: `cashcycle` administers them)."""
    with writing(stack.store) as session:
        acme = session.exec(select(LegalEntity).where(LegalEntity.code == "ACME")).one()
        for field in (
            "street",
            "city",
            "postal_code",
            "endpoint_scheme",
            "endpoint_id",
            "company_id",
            "iban",
        ):
            setattr(acme, field, getattr(DEMO_ENTITY_ROW, field))
        session.add(acme)


# Services from France to a German business: the buyer accounts for the VAT (reverse charge, 0 % here).
LINES = [
    {"description": "Consulting, October (days)", "quantity": "10", "unit_price": "125.00", "tax_rate": "0"},
    {"description": "Travel expenses", "quantity": "1", "unit_price": "310.55", "tax_rate": "0"},
]


async def test_an_issued_invoice_is_served_as_a_valid_ubl_document(
    stack: Stack, request: pytest.FixtureRequest
) -> None:
    erp, preparer, approver, outsider = await stack.clients("erp", "preparer", "approver", "outsider")
    give_acme_its_einvoice_data(stack)

    bad = await erp.post(
        "/api/v1/customers", json=CUSTOMER | {"endpoint_scheme": "0088", "endpoint_id": "5012345000016"}
    )
    assert bad.status_code == 422, bad.text
    assert {f["field"] for f in bad.json()["error"]["details"]["fields"]} == {"endpoint_id"}
    assert "GLN" in bad.text
    r = await erp.post("/api/v1/customers", json=CUSTOMER)
    assert r.status_code == 201, r.text
    customer = r.json()
    assert {k: customer[k] for k in CUSTOMER if k not in ("legal_entity",)} == {
        k: v for k, v in CUSTOMER.items() if k != "legal_entity"
    }

    r = await erp.post(
        "/api/v1/invoices", json=invoice_body(customer["id"], po_number="4500123456", lines=LINES)
    )
    assert r.status_code == 201, r.text
    inv = r.json()
    not_yet = await erp.get(f"/api/v1/invoices/{inv['id']}/ubl")
    assert not_yet.status_code == 409, not_yet.text
    assert not_yet.json()["error"]["code"] == "not_issued"
    assert "has no number yet" in not_yet.json()["error"]["message"]

    assert (await preparer.post(f"/api/v1/invoices/{inv['id']}/submit")).status_code == 200
    assert (await approver.post(f"/api/v1/invoices/{inv['id']}/approve", json={})).status_code == 200
    issued = await stack.wait_status(inv["id"], "submitted")
    assert issued["number"], issued

    r = await erp.get(f"/api/v1/invoices/{inv['id']}/ubl")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/xml")
    assert f'filename="{issued["number"]}.xml"' in r.headers["content-disposition"]
    parsed = parse_ubl(r.content)
    assert (parsed.kind, parsed.number, str(parsed.stated.payable)) == (
        "invoice",
        issued["number"],
        issued["total"],
    )
    assert parsed.recomputed == parsed.stated
    assert validate_en16931(r.content) == []
    if EINVOICE_DATA.is_dir():  # the published validators, when this checkout has them
        official: OfficialValidators = request.getfixturevalue("official")
        assert official.fatal(r.content) == []
    assert b"<cbc:ID>AE</cbc:ID>" in r.content and b"VATEX-EU-AE" in r.content

    assert (await outsider.get(f"/api/v1/invoices/{inv['id']}/ubl")).status_code == 404
    unknown = await erp.get("/api/v1/invoices/00000000-0000-4000-8000-000000000000/ubl")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
