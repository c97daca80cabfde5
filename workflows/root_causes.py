"""The root-cause taxonomy of disputes (../shared/docs/domain.md, "Disputes"): code, cause, owning function.

Pure data on purpose: the dispute workflow refuses a closing without one of these codes, the CAPA workflow
needs an action for every internal one, and the API, the pages and the reports show the same names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RootCause:
    code: str
    cause: str
    function: str  # the function that owns fixing it (the "process" a preventive action changes)

    @property
    def internal(self) -> bool:
        """Ours to fix: every cause but the customer's own error (CUS), which collections recover."""
        return self.code != "CUS"


ROOT_CAUSES: dict[str, RootCause] = {
    c.code: c
    for c in (
        RootCause("PRC", "price or contract terms", "pricing"),
        RootCause("PRM", "promotion, rebate or allowance", "sales"),
        RootCause("BIL", "billing error: duplicate, quantity billed not delivered, wrong period", "billing"),
        RootCause("MDM", "master data: bill-to, legal entity, VAT id, terms, remit-to", "master data"),
        RootCause("PO", "PO missing, wrong or exhausted", "order management"),
        RootCause("DLV", "shortage, non-delivery, proof of delivery missing", "logistics"),
        RootCause("QLT", "damaged or defective goods, service below spec", "operations"),
        RootCause("CMP", "compliance chargeback: late or early shipment, labelling, EDI", "logistics"),
        RootCause("TAX", "wrong tax rate, category or exemption", "tax"),
        RootCause("FRT", "freight or surcharge", "logistics"),
        RootCause("SVC", "service not rendered, SLA credit due", "service delivery"),
        RootCause("DOC", "e-invoice or portal format", "billing"),
        RootCause("RTN", "return received, not credited", "customer service"),
        RootCause("CSH", "our cash-application error", "accounts receivable"),
        RootCause("CUS", "customer-side error or unauthorised deduction", "customer"),
    )
}

VALIDITY = ("valid", "partly_valid", "invalid")


def root_cause(code: str) -> RootCause | None:
    return ROOT_CAUSES.get(code)
