"""The demo company that `cashcycle up --demo` seeds on first start: a service beside the product, not
part of it (it drives Cashcycle through its HTTP API, as the ERP and the AR team do).

    company.py  Acme Industrie SAS, its users and roles, its customers
    plan.py     the invoices and receipts, drawn from a seeded generator relative to today
    client.py   the demo users' HTTP client (tokens, idempotency keys, retries of 503s)
    seed.py     seeding through the API and the workflows: `seed_if_empty`
    portals.py  the customers behind the simulated procurement portals
    stuck.py    the invoices left stuck for real reasons, for the supervisor's control tower
    disputes.py dispute cases in every status, credit memos and write-offs, CAPAs (open, done, checked)
"""

from demo.client import wait_healthy
from demo.company import (
    DEMO_CUSTOMERS,
    DEMO_ENTITY,
    DEMO_ENTITY_ROW,
    DEMO_PASSWORD,
    DEMO_USERS,
    DemoCustomer,
)
from demo.plan import DEMO_STATUSES, plan_invoices
from demo.portals import PORTAL_CUSTOMERS, PORTAL_DISPUTED_INVOICES, PORTAL_INVOICES
from demo.seed import seed_if_empty

__all__ = [
    "DEMO_CUSTOMERS",
    "DEMO_ENTITY",
    "DEMO_ENTITY_ROW",
    "DEMO_PASSWORD",
    "DEMO_STATUSES",
    "DEMO_USERS",
    "PORTAL_CUSTOMERS",
    "PORTAL_DISPUTED_INVOICES",
    "PORTAL_INVOICES",
    "DemoCustomer",
    "plan_invoices",
    "seed_if_empty",
    "wait_healthy",
]
