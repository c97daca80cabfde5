"""The demo company: Acme Industrie SAS (legal entity ACME), its people and their roles, and the twenty
customers it bills across Europe, the UK, the US and Switzerland, with what their e-invoices need."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from activities.models import LegalEntity

DEMO_PASSWORD = "cashcycle-demo"  # published: the demo is for trying Cashcycle out
DEMO_ENTITY = "ACME"
DEMO_OPERATOR = "cashcycle-demo"  # who granted the demo roles, in the ledger

# username, roles in the demo legal entity
DEMO_USERS: list[tuple[str, list[str]]] = [
    ("preparer", ["ar_preparer"]),
    ("approver", ["ar_approver"]),
    ("approver2", ["ar_approver", "finance_manager"]),
    ("controller", ["controller"]),
    ("collector", ["collector"]),
    ("supervisor", ["ar_supervisor"]),
    ("compliance", ["compliance"]),
    ("erp", ["erp_integration"]),
    ("admin", ["admin"]),
]

PEOPLE: dict[str, tuple[str, str]] = {
    "preparer": ("Camille Martin", "camille.martin@acme-industrie.example"),
    "approver": ("Julien Bernard", "julien.bernard@acme-industrie.example"),
    "approver2": ("Sophie Lefèvre", "sophie.lefevre@acme-industrie.example"),
    "controller": ("Nathalie Dubois", "nathalie.dubois@acme-industrie.example"),
    "collector": ("Thomas Moreau", "thomas.moreau@acme-industrie.example"),
    "supervisor": ("Isabelle Laurent", "isabelle.laurent@acme-industrie.example"),
    "compliance": ("Marc Girard", "marc.girard@acme-industrie.example"),
    "erp": ("ERP integration (billing interface)", "erp-integration@acme-industrie.example"),
    "admin": ("Cashcycle administrator", "it-admin@acme-industrie.example"),
}

DEMO_ENTITY_ROW = LegalEntity(
    code=DEMO_ENTITY,
    name="Acme Industrie SAS",
    currency="EUR",
    timezone="Europe/Paris",
    country="FR",
    vat_id="FR40123456789",
    address="18 rue des Entrepreneurs, 69007 Lyon, France",
    # The seller on e-invoices: Peppol participant by SIRET (EAS 0009), SIREN as legal registration number.
    street="18 rue des Entrepreneurs",
    postal_code="69007",
    city="Lyon",
    endpoint_scheme="0009",
    endpoint_id="12345678900017",
    company_id="123456789",
    iban="FR8030004000310001234567890",
    contact_name="Service comptabilité clients",
    email="comptabilite-clients@acme-industrie.example",
    telephone="+33 4 72 10 20 30",
)


@dataclass(frozen=True)
class DemoParty:
    """What e-invoices to a customer need: the address in parts, the Peppol participant (EAS scheme and
    identifier), the legal registration number, the reference their AP asks for, and whether it refuses
    invoices without a purchase order."""

    street: str
    postal_code: str
    city: str
    endpoint_scheme: str
    endpoint_id: str
    company_id: str
    buyer_reference: str
    po_required: bool = False

    def fields(self) -> dict[str, Any]:
        return {
            "street": self.street,
            "postal_code": self.postal_code,
            "city": self.city,
            "endpoint_scheme": self.endpoint_scheme,
            "endpoint_id": self.endpoint_id,
            "company_id": self.company_id,
            "buyer_reference": self.buyer_reference,
            "po_required": self.po_required,
        }


@dataclass(frozen=True)
class DemoCustomer:
    ref: str
    name: str
    country: str
    currency: str
    terms: int
    contact: str
    email: str
    address: str
    vat_id: str
    weight: int  # how much business the customer does with Acme, relative to the others
    party: DemoParty

    def body(self) -> dict[str, Any]:
        return self.party.fields() | {
            "legal_entity": DEMO_ENTITY,
            "external_ref": self.ref,
            "name": self.name,
            "currency": self.currency,
            "payment_terms_days": self.terms,
            "email": self.email,
            "contact_name": self.contact,
            "address": self.address,
            "country": self.country,
            "vat_id": self.vat_id,
        }


def _customer(
    n: int,
    name: str,
    country: str,
    currency: str,
    terms: int,
    contact: str,
    domain: str,
    address: str,
    vat_id: str,
    weight: int,
) -> DemoCustomer:
    return DemoCustomer(
        f"CUST-{n:04d}",
        name,
        country,
        currency,
        terms,
        contact,
        f"ap@{domain}.example",
        address,
        vat_id,
        weight,
        replace(_PARTIES[n], po_required=n in _PO_REQUIRED),
    )


# What e-invoices to each customer need, by customer number: street, postal code, city, Peppol EAS scheme and
# endpoint, legal registration number, the reference their AP asks for. Endpoints by country: SIRET (0009)
# in France, VAT numbers in Germany (9930), Spain (9920), Italy (0211), Poland (9945), Portugal (9946),
# Austria (9914) and the UK (9932), KvK (0106), OVT (0216), Swiss UID (0183), GLN (0088), D-U-N-S (0060).
_P = DemoParty  # short, for the table
# fmt: off
_PARTIES: dict[int, DemoParty] = {
    1001: _P("Hafenstraße 12", "20457", "Hamburg", "9930", "DE287451936", "HRB 154321", "KST-4410"),
    1002: _P("42 avenue Jean Médecin", "06000", "Nice", "0009", "51234567800027", "512345678", "LH-ACHATS"),
    1003: _P("Calle de Alcalá 210", "28028", "Madrid", "9920", "ESB84512397", "B84512397", "CA-CP-2210"),
    1004: _P("Keizersgracht 301", "1016 ED", "Amsterdam", "0106", "34512907", "34512907", "VDB-INKOOP"),
    1005: _P("Via Torino 88", "10036", "Settimo Torinese", "0211", "IT04518230018", "TO-1054321", "RM-AMM"),
    1006: _P("ul. Grunwaldzka 14", "80-236", "Gdańsk", "9945", "PL5842719364", "0000412345", "KE-ZAKUPY"),
    1007: _P("14 Brindleyplace", "B1 2HZ", "Birmingham", "9932", "GB284719305", "08412345", "HF-AP-01"),
    1008: _P("1 Canada Square", "E14 5AB", "London", "0088", "5012345000015", "02345678", "PR-AP-LDN"),
    1009: _P("9 Union Street", "AB11 6BD", "Aberdeen", "9932", "GB415820937", "SC412345", "TE-FIN-09"),
    1010: _P("500 Boylston Street", "02116", "Boston, MA", "0060", "081466849", "", "NW-AP-BOS"),
    1011: _P("2200 Bardstown Road", "40205", "Louisville, KY", "0088", "0614141000012", "", "BMS-AP"),
    1012: _P("Bahnhofstrasse 45", "8001", "Zürich", "0183", "CHE113428596", "CHE-113.428.596", "AV-KRED"),
    1013: _P("Industriestrasse 7", "3930", "Visp", "0183", "CHE245871903", "CHE-245.871.903", "MP-EINKAUF"),
    1014: _P("3 quai des Chartrons", "33000", "Bordeaux", "0009", "83051246700015", "830512467", "OC-COMPTA"),
    1015: _P("27 rue de la République", "69002", "Lyon", "0009", "44390281500021", "443902815", "BRUNET"),
    1016: _P("110 boulevard Haussmann", "75008", "Paris", "0009", "39102755400034", "391027554", "GVI-CF"),
    1017: _P("Mannerheimintie 12", "00100", "Helsinki", "0216", "003727481930", "2748193-0", "KS-OSTOT"),
    1018: _P("Rua de Santa Catarina 512", "4000-446", "Porto", "9946", "PT509482713", "509482713", "DT-COMP"),
    1019: _P("8 rue du Faubourg Saint-Denis", "75010", "Paris", "0009", "85203971600012", "852039716", "BDF"),
    1020: _P("Wiedner Hauptstraße 64", "1040", "Wien", "9914", "ATU68413927", "FN 412345x", "KP-EINKAUF"),
}
# fmt: on
# Large buyers whose AP refuses invoices without their purchase order number.
_PO_REQUIRED = frozenset({1001, 1007, 1008, 1016, 1020})

# A table reads better one customer a line, hence no formatter here.
# ref, name, country, currency, terms (days), AP contact, e-mail domain, address, VAT id, business weight
# fmt: off
DEMO_CUSTOMERS: list[DemoCustomer] = [
    _customer(1001, "Bergmann Logistik GmbH", "DE", "EUR", 30, "Katrin Vogel", "bergmann-logistik",
              "Hafenstraße 12, 20457 Hamburg", "DE287451936", 9),
    _customer(1002, "Lumière Hôtels SA", "FR", "EUR", 45, "Élodie Marchand", "lumiere-hotels",
              "42 avenue Jean Médecin, 06000 Nice", "FR72512345678", 8),
    _customer(1003, "Castellano Alimentación S.L.", "ES", "EUR", 60, "Javier Ortega", "castellano",
              "Calle de Alcalá 210, 28028 Madrid", "ESB84512397", 5),
    _customer(1004, "Van Dijk Bouw B.V.", "NL", "EUR", 30, "Pieter de Groot", "vandijk-bouw",
              "Keizersgracht 301, 1016 ED Amsterdam", "NL853412907B01", 6),
    _customer(1005, "Rossi Meccanica S.p.A.", "IT", "EUR", 60, "Giulia Ferraro", "rossi-meccanica",
              "Via Torino 88, 10036 Settimo Torinese", "IT04518230018", 6),
    _customer(1006, "Kowalski Elektro Sp. z o.o.", "PL", "EUR", 30, "Marta Nowak", "kowalski-elektro",
              "ul. Grunwaldzka 14, 80-236 Gdańsk", "PL5842719364", 3),
    _customer(1007, "Hartley & Finch Ltd", "GB", "GBP", 30, "Oliver Hartley", "hartley-finch",
              "14 Brindleyplace, Birmingham B1 2HZ", "GB284719305", 5),
    _customer(1008, "Pembroke Retail plc", "GB", "GBP", 45, "Accounts Payable team", "pembroke-retail",
              "1 Canada Square, London E14 5AB", "GB731904826", 7),
    _customer(1009, "Thistle Energy Ltd", "GB", "GBP", 15, "Fiona MacLeod", "thistle-energy",
              "9 Union Street, Aberdeen AB11 6BD", "GB415820937", 3),
    _customer(1010, "Northwind Analytics Inc.", "US", "USD", 30, "Rebecca Alvarez", "northwind-analytics",
              "500 Boylston Street, Boston, MA 02116", "", 5),
    _customer(1011, "Bluegrass Medical Supply LLC", "US", "USD", 45, "Daniel Whitaker", "bluegrass-medical",
              "2200 Bardstown Road, Louisville, KY 40205", "", 3),
    _customer(1012, "Alpenblick Versicherungen AG", "CH", "CHF", 30, "Reto Baumann", "alpenblick",
              "Bahnhofstrasse 45, 8001 Zürich", "CHE-113.428.596 MWST", 5),
    _customer(1013, "Matterhorn Präzision AG", "CH", "CHF", 60, "Andrea Imboden", "matterhorn-praezision",
              "Industriestrasse 7, 3930 Visp", "CHE-245.871.903 MWST", 3),
    _customer(1014, "Océane Cosmétiques SAS", "FR", "EUR", 30, "Claire Fontaine", "oceane-cosmetiques",
              "3 quai des Chartrons, 33000 Bordeaux", "FR29830512467", 7),
    _customer(1015, "Atelier Brunet SARL", "FR", "EUR", 15, "Luc Brunet", "atelier-brunet",
              "27 rue de la République, 69002 Lyon", "FR61443902815", 3),
    _customer(1016, "Groupe Vauban Immobilier SA", "FR", "EUR", 60, "Hélène Rousseau", "vauban-immobilier",
              "110 boulevard Haussmann, 75008 Paris", "FR83391027554", 6),
    _customer(1017, "Kestrel Software Oy", "FI", "EUR", 30, "Mikko Laine", "kestrel-software",
              "Mannerheimintie 12, 00100 Helsinki", "FI27481930", 4),
    _customer(1018, "Duarte Têxteis Lda", "PT", "EUR", 45, "Ana Duarte", "duarte-texteis",
              "Rua de Santa Catarina 512, 4000-446 Porto", "PT509482713", 3),
    _customer(1019, "Brasserie du Faubourg SAS", "FR", "EUR", 15, "Antoine Girard", "brasserie-faubourg",
              "8 rue du Faubourg Saint-Denis, 75010 Paris", "FR14852039716", 2),
    _customer(1020, "Kronberg Pharma GmbH", "AT", "EUR", 45, "Stefan Huber", "kronberg-pharma",
              "Wiedner Hauptstraße 64, 1040 Wien", "ATU68413927", 6),
]
# fmt: on

# Price lists are in EUR; other currencies are converted at these (rounded, demo) rates.
FX = {"EUR": Decimal("1"), "GBP": Decimal("0.86"), "USD": Decimal("1.09"), "CHF": Decimal("0.96")}
CENT = Decimal("0.01")

SIGNER = {"ar_approver": "approver", "finance_manager": "approver2", "controller": "controller"}
