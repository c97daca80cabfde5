"""Starting an invoice workflow: the one code path behind POST /api/v1/invoices and a rebill's corrected
invoice (activity `start_rebill_invoice`, through `InvoiceStarter`).

The draft is built and checked here (lines, tax per rate, totals, exchange rate, due date from the
customer's terms), then the workflow is started by update-with-start (`await_created`), with its search
attributes set by the start and the external id as its workflow id: starting the same invoice again finds
the first one. The API turns `DraftRefused` into a 422 naming the field; the activity into a non-retryable
`invalid_command`. Activities never import the API, so both import this.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from temporalio.client import Client, WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError

from activities import queries
from activities.approvals import entity_today
from activities.db import Store, reading
from activities.models import Customer, Invoice, LegalEntity
from activities.money import MoneyError, exponent, line_amounts, parse_decimal, tax_by_rate
from activities.settings import Settings
from workflows.credit_memo_types import RebillRequest
from workflows.invoice import InvoiceWorkflow, invoice_workflow_id, search_attributes
from workflows.types import Actor, Command, InvoiceConfig, InvoiceDraft, InvoiceInput, InvoiceState, Line

INVOICE_NAMESPACE = uuid.UUID("6f1d3c52-6a8f-4e59-9d0e-0c5ad7a1c0de")
MAX_TOTAL = 10**15  # major units of the currency, as for payments
MAX_MINOR = 2**63 - 1  # minor units: the store's BIGINT columns and Temporal's Int64 search attributes
REBILL_SUFFIX = re.compile(r"^(?P<base>.+)-R(?P<n>\d+)$")


class DraftRefused(Exception):
    """The draft cannot be built: `code` and `field` as the API's 422 names them."""

    def __init__(self, message: str, code: str = "invalid_input", field: str = "") -> None:
        super().__init__(message)
        self.message, self.code, self.field = message, code, field


class LineLike(Protocol):
    @property
    def description(self) -> str: ...
    @property
    def quantity(self) -> str: ...
    @property
    def unit_price(self) -> str: ...
    @property
    def tax_rate(self) -> str: ...


def payload_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def build_lines(lines: Sequence[LineLike], currency: str) -> list[Line]:
    out = []
    for i, ln in enumerate(lines):
        try:
            qty = parse_decimal(
                ln.quantity, f"lines.{i}.quantity", minimum=Decimal(0), exclusive=True, maximum=Decimal("1e9")
            )
            price = parse_decimal(
                ln.unit_price, f"lines.{i}.unit_price", minimum=Decimal(0), maximum=Decimal("1e12")
            )
            rate = parse_decimal(
                ln.tax_rate, f"lines.{i}.tax_rate", minimum=Decimal(0), maximum=Decimal(100), max_places=4
            )
            amounts = line_amounts(qty, price, rate, currency)
        except MoneyError as exc:
            raise DraftRefused(f"{exc.field}: {exc}", field=exc.field) from None
        out.append(
            Line(ln.description, str(qty), str(price), str(rate), amounts.net_minor, amounts.tax_minor)
        )
    return out


def release_instant(issue_date: date, entity: LegalEntity) -> str:
    """Start of the issue date in the legal entity's zone, as a UTC instant."""
    return datetime.combine(issue_date, time(0), ZoneInfo(entity.timezone)).astimezone(UTC).isoformat()


def exchange_rate_for(currency: str, entity: LegalEntity, given: str | None) -> str:
    """The rate to the entity's currency: "1" for its own currency, required (and positive) otherwise."""
    if currency == entity.currency:
        if given is not None and (given.strip() in ("", "1") or _is_one(given)):
            return "1"
        if given is not None:
            raise DraftRefused(
                f"exchange_rate: an invoice in {currency}, the currency of {entity.code}, has rate 1",
                code="exchange_rate",
                field="exchange_rate",
            )
        return "1"
    if given is None:
        raise DraftRefused(
            f"exchange_rate is required: {currency} is not {entity.code}'s currency {entity.currency}",
            code="exchange_rate",
            field="exchange_rate",
        )
    try:
        rate = parse_decimal(
            given, "exchange_rate", minimum=Decimal(0), exclusive=True, maximum=Decimal("1e9"), max_places=10
        )
    except MoneyError as exc:
        raise DraftRefused(f"{exc.field}: {exc}", field=exc.field) from None
    return str(rate)


def _is_one(text: str) -> bool:
    try:
        return parse_decimal(text, "exchange_rate") == 1
    except MoneyError:
        return False


def build_draft(
    *,
    customer: Customer,
    entity: LegalEntity,
    currency: str,
    issue_date: date,
    due_date: date | None,
    po_number: str | None,
    lines: Sequence[LineLike],
    body_hash: str,
    exchange_rate: str | None = None,
) -> InvoiceDraft:
    try:
        exponent(currency)
    except MoneyError as exc:
        raise DraftRefused(str(exc), field="currency") from None
    rate = exchange_rate_for(currency, entity, exchange_rate)
    due = due_date or date.fromordinal(issue_date.toordinal() + customer.payment_terms_days)
    if due < issue_date:
        raise DraftRefused("due_date is before issue_date", code="invalid_range", field="due_date")
    built = build_lines(lines, currency)
    subtotal = sum(ln.net_minor for ln in built)
    # Per rate over the summed nets (EN 16931 BR-CO-17), not the sum of the lines' own taxes: see money.py.
    tax = sum(tax_by_rate((Decimal(ln.tax_rate), ln.net_minor) for ln in built).values())
    if subtotal + tax <= 0:
        raise DraftRefused("the invoice total must be positive", code="invalid_amount", field="lines")
    if subtotal + tax > min(MAX_TOTAL * 10 ** exponent(currency), MAX_MINOR):
        # Beyond this the amounts overflow the store's BIGINT columns and the Int64 search attribute: the
        # workflow's recording activity would retry forever.
        raise DraftRefused(
            f"the invoice total exceeds {MAX_TOTAL} {currency}", code="invalid_amount", field="lines"
        )
    in_entity_currency = Decimal(subtotal + tax).scaleb(exponent(entity.currency) - exponent(currency))
    if in_entity_currency * Decimal(rate) > MAX_MINOR:
        # The approval tiers compare the total in the entity's currency, in minor units as well.
        raise DraftRefused(
            f"the invoice total at rate {rate} exceeds what {entity.currency} amounts can hold",
            code="invalid_amount",
            field="exchange_rate",
        )
    return InvoiceDraft(
        customer_id=customer.id,
        currency=currency,
        issue_date=issue_date.isoformat(),
        due_date=due.isoformat(),
        po_number=po_number or None,
        lines=built,
        subtotal_minor=subtotal,
        tax_total_minor=tax,
        total_minor=subtotal + tax,
        release_at=release_instant(issue_date, entity),
        payload_hash=body_hash,
        exchange_rate=rate,
    )


def invoice_config(settings: Settings) -> InvoiceConfig:
    s = settings
    return InvoiceConfig(
        record_timeout_seconds=s.record_timeout_seconds,
        delivery_timeout_seconds=s.delivery_timeout_seconds,
        delivery_retry_max_interval_seconds=s.delivery_retry_max_interval_seconds,
        approval_reminder_seconds=s.approval_reminder_seconds,
        approval_escalation_seconds=s.approval_escalation_seconds,
    )


def invoice_input(
    legal_entity: str,
    external_id: str,
    draft: InvoiceDraft,
    actor: Actor,
    request_id: str,
    config: InvoiceConfig,
) -> InvoiceInput:
    """The workflow's input; the invoice id derives from the workflow id (the same invoice, the same id)."""
    workflow_id = invoice_workflow_id(legal_entity, external_id)
    return InvoiceInput(
        invoice_id=str(uuid.uuid5(INVOICE_NAMESPACE, workflow_id)),
        legal_entity=legal_entity,
        external_id=external_id,
        draft=draft,
        actor=actor,
        request_id=request_id,
        config=config,
    )


AttributesOf = Callable[..., list[Any]]


async def start_invoice(
    client: Client, task_queue: str, inp: InvoiceInput, attributes: AttributesOf = search_attributes
) -> InvoiceState:
    """Start (or find: the workflow id is the external id) the invoice's workflow and wait until it has
    recorded its creation. `attributes`: the search attributes of the start (the API passes its own name
    for them, which the upgrade tests replace)."""
    draft = inp.draft
    now = datetime.now(UTC)
    start = WithStartWorkflowOperation(
        InvoiceWorkflow.run,
        inp,
        id=invoice_workflow_id(inp.legal_entity, inp.external_id),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        # Searchable from the start, in the visibility write the start makes anyway.
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(update.key, update.value)
                for update in attributes("draft", inp.legal_entity, draft, draft.total_minor, now)
            ]
        ),
    )
    state: InvoiceState = await client.execute_update_with_start_workflow(
        InvoiceWorkflow.await_created, start_workflow_operation=start
    )
    return state


def rebill_external_ids(original: str, wanted: str) -> list[str]:
    """The corrected invoice's external ids to try, in order: the one asked for, else `<original>-R<n>`
    (a rebill of a rebill `X-R1` is `X-R2`)."""
    if wanted:
        return [wanted]
    m = REBILL_SUFFIX.match(original)
    base, n = (m.group("base"), int(m.group("n")) + 1) if m else (original, 1)
    return [f"{base}-R{k}" for k in range(n, n + 20)]


class InvoiceStarter:
    """Starts a rebill's corrected invoice through `start_invoice`, then submits it for approval (as the
    system, so that its approvers are neither the credit memo's proposer, who created it, nor anyone else
    involved). Idempotent: the body hash names the credit memo, an existing invoice with that hash is it."""

    def __init__(self, client: Client, store: Store, settings: Settings, task_queue: str) -> None:
        self._client, self._store, self._settings, self._task_queue = client, store, settings, task_queue

    def _refused(self, message: str, code: str = "invalid_command") -> ApplicationError:
        return ApplicationError(message, type=code, non_retryable=True)

    async def rebill(self, req: RebillRequest) -> tuple[str, str]:
        """(invoice id, external id) of the corrected invoice of credit memo `req.credit_memo_id`."""
        rebill = req.rebill
        body = {
            "rebill_of": req.credit_memo_id,
            "original_invoice_id": req.original_invoice_id,
            "lines": [asdict(ln) for ln in rebill.lines],
            "issue_date": rebill.issue_date,
            "due_date": rebill.due_date,
            "po_number": rebill.po_number,
        }
        body_hash = payload_hash(body)
        with reading(self._store) as session:
            orig = session.get(Invoice, req.original_invoice_id)
            if orig is None:
                raise self._refused(f"no invoice {req.original_invoice_id}", "unknown_reference")
            customer = session.get(Customer, orig.customer_id)
            entity = session.get(LegalEntity, orig.legal_entity)
            assert customer is not None and entity is not None
            try:
                issue = (
                    date.fromisoformat(rebill.issue_date)
                    if rebill.issue_date
                    else entity_today(session, entity.code)
                )
                due = date.fromisoformat(rebill.due_date) if rebill.due_date else None
                draft = build_draft(
                    customer=customer,
                    entity=entity,
                    currency=orig.currency,
                    issue_date=issue,
                    due_date=due,
                    po_number=rebill.po_number if rebill.po_number is not None else orig.po_number,
                    lines=rebill.lines,
                    body_hash=body_hash,
                    exchange_rate=orig.exchange_rate if orig.currency != entity.currency else None,
                )
            except DraftRefused as exc:
                raise self._refused(f"the corrected invoice: {exc.message}") from None
            except ValueError as exc:
                raise self._refused(f"the corrected invoice: {exc}") from None
            external_id = ""
            for candidate in rebill_external_ids(orig.external_id, rebill.external_id):
                existing = queries.invoice_by_external_id(session, entity.code, candidate)
                if existing is None or existing.payload_hash == body_hash:
                    external_id = candidate
                    break
            if not external_id:
                raise self._refused(
                    f"external id {rebill.external_id or orig.external_id + '-R<n>'} names another invoice",
                    "external_id_conflict",
                )
        actor = Actor(req.actor.username, list(req.actor.roles), f"credit_memo:rebill:{req.credit_memo_id}")
        inp = invoice_input(
            entity.code,
            external_id,
            draft,
            actor,
            f"rebill:{req.credit_memo_id}",
            invoice_config(self._settings),
        )
        state = await start_invoice(self._client, self._task_queue, inp)
        if state.status == "draft":
            handle = self._client.get_workflow_handle(state.workflow_id)
            system = Actor("system", ["system"], f"credit_memo:rebill:{req.credit_memo_id}")
            try:
                await handle.execute_update(
                    InvoiceWorkflow.submit,
                    Command(system, f"rebill of {orig.external_id} (credit memo {req.credit_memo_id})"),
                    id=f"rebill-submit:{req.credit_memo_id}",
                )
            except WorkflowUpdateFailedError as exc:
                cause = exc.cause
                if not (isinstance(cause, ApplicationError) and cause.type == "transition_refused"):
                    raise
        return state.invoice_id, external_id
