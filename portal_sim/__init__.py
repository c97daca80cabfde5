"""A customer's procurement portal, simulated: one HTTP service that speaks three protocols the way real
portals do, for the tests and the demo (`cashcycle portal-sim` or `python -m portal_sim`, `--port 9100
[--scenario FILE]`). A service of its own: nothing here imports Cashcycle's API, stores or workflows.

    cXML (Ariba-style)     POST /cxml                       InvoiceDetailRequest -> Response 201;
                                                            GetPendingRequest -> pending StatusUpdateRequests;
                                                            StatusUpdateRequests also pushed to a callback
    Coupa-style REST       POST /coupa/oauth2/token         client credentials -> expiring bearer token
                           POST /coupa/api/invoices         JSON invoice -> 201, or 422 with reason codes
                           GET  /coupa/api/invoices[/{id}]  ?updated_at[gt]=...&limit=&offset=
    Peppol access point    POST /peppol/v1/documents        UBL Invoice / CreditNote -> 202
                           GET  /peppol/v1/inbox            Invoice Responses (T111) for us; also pushed
    Test and demo control  /_sim/...                        scenario, purchase orders, clock, faults,
                                                            review rules, disputes, what was received,
                                                            pushed and logged

The buyer behind all three checks each invoice against its purchase orders (PO present and known,
bill-to legal entity, items, unit prices, tax rates, quantity left on the PO) and against earlier
invoices (duplicate numbers; a rejected invoice may come back under the same number, as suppliers do).
Coupa-style answers at once (422); cXML and Peppol answer "received" and reject a little later, as
networks do. Accepted invoices then move on over simulated time: received -> in process -> approved ->
payment scheduled -> paid, with configurable delays, review rules that query, dispute or reject later,
and standing answers per purchase order (never answered; under query; disputed with a reason, held until
a credit note for it arrives).

Realistic misbehaviour, per scenario or through /_sim/faults: a token bucket per client (429 with
Retry-After), 5xx storms (the next N requests, or a rate), replies lost after the work was done (the
client times out; its retry with the same idempotency key gets the first answer back), expiring tokens.

Time is a clock of its own: real time (optionally sped up) for the demo, or frozen and moved only by
POST /_sim/advance for tests. All state is in memory, behind one lock.

Modules: scenario (what can be configured), documents (what the buyer reads of an invoice), buyer (its
checks and an invoice's life), simulator (the state, the lock, pushes), gate (what every protocol request
passes), one module per protocol (cxml, coupa, peppol: parsing, wording, routes), control (/_sim), app.
"""

from portal_sim.app import create_app, serve
from portal_sim.scenario import (
    Dispute,
    Scenario,
    default_scenario,
    demo_portals,
    demo_portals_toml,
    load_scenario,
)

__all__ = [
    "Dispute",
    "Scenario",
    "create_app",
    "default_scenario",
    "demo_portals",
    "demo_portals_toml",
    "load_scenario",
    "serve",
]
