"""The portal adapters as Temporal activities: `submit_to_portal` and `poll_portal`.

The workflow names the portal (the customer's channel, a key of the portal configuration), the invoice
and the submission pass; the activity loads the document, renders the UBL when the channel is Peppol,
and calls the adapter. Failures become ApplicationErrors the workflow's retry policy understands:

    portal_unavailable  retryable; next_retry_delay = the portal's Retry-After when it gave one
    portal_rejected     non-retryable; details[0] = {"reason_code", "reason_text", "portal_reason_code",
                        "reasons": [...], "http_status", "portal"}: go to portal_rejected with it
    portal_refused      non-retryable, no reason: our side is wrong (credentials, configuration,
                        master data such as a missing Peppol endpoint id); retrying will not help
    unknown_portal      non-retryable: the customer's channel is not configured
    document_invalid    non-retryable: the document cannot be rendered as a valid e-invoice (Peppol)

The request and result types live in workflows/types.py (workflows import nothing from activities/).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.delivery import SmtpConfig
from activities.documents import InvoiceDocument
from activities.portals.base import (
    Channel,
    PermanentError,
    PortalAdapter,
    PortalError,
    StatusUpdate,
    Submission,
    TransientError,
    parse_instant,
)
from activities.portals.config import CoupaPortal, CxmlPortal, EmailPortal, PeppolPortal, PortalConfig
from activities.portals.coupa import CoupaAdapter
from activities.portals.cxml import CxmlAdapter
from activities.portals.email import EmailAdapter
from activities.portals.peppol import PeppolAdapter
from workflows.types import (
    PortalPollRequest,
    PortalPollResult,
    PortalSubmitRequest,
    PortalSubmitResult,
    PortalUpdate,
)

log = logging.getLogger("cashcycle.portals")


def portal_update(update: StatusUpdate) -> PortalUpdate:
    """A StatusUpdate as the workflow receives it (also for pushed updates the API turns into signals)."""
    reason = update.reason
    return PortalUpdate(
        portal=update.portal,
        status=update.status.value,
        at=update.at.isoformat(),
        invoice_number=update.invoice_number,
        portal_ref=update.portal_ref,
        submission_key=update.submission_key,
        reason_code=reason.code.value if reason else "",
        reason_text=reason.text if reason else "",
        portal_reason_code=reason.portal_code if reason else "",
        actions=list(update.actions),
        message=update.message,
        portal_status=update.portal_status,
        update_id=update.update_id,
        paid_minor=update.paid_minor,
    )


def application_error(exc: PortalError) -> ApplicationError:
    """The Temporal form of a portal failure (see the module docstring for the types)."""
    details: dict[str, Any] = {"portal": exc.portal, "http_status": exc.http_status}
    if isinstance(exc, TransientError):
        delay = timedelta(seconds=exc.retry_after) if exc.retry_after else None
        return ApplicationError(str(exc), details, type="portal_unavailable", next_retry_delay=delay)
    reasons = exc.reasons if isinstance(exc, PermanentError) else ()
    first = reasons[0] if reasons else None
    details |= {
        "reason_code": first.code.value if first else "",
        "reason_text": first.text if first else "",
        "portal_reason_code": first.portal_code if first else "",
        "reasons": [{"code": r.code.value, "text": r.text, "portal_code": r.portal_code} for r in reasons],
    }
    kind = "portal_rejected" if reasons else "portal_refused"
    return ApplicationError(str(exc), details, type=kind, non_retryable=True)


def open_adapters(configs: Mapping[str, PortalConfig], smtp: SmtpConfig) -> dict[str, PortalAdapter]:
    """One adapter per configured portal (each keeps its HTTP client and token for the worker's life).
    A portal named "email" is always there, for customers without a portal."""
    adapters: dict[str, PortalAdapter] = {}
    for name, config in configs.items():
        if isinstance(config, CxmlPortal):
            adapters[name] = CxmlAdapter(name, config)
        elif isinstance(config, CoupaPortal):
            adapters[name] = CoupaAdapter(name, config)
        elif isinstance(config, PeppolPortal):
            adapters[name] = PeppolAdapter(name, config)
        elif isinstance(config, EmailPortal):
            adapters[name] = EmailAdapter(name, smtp)
    adapters.setdefault("email", EmailAdapter("email", smtp))
    return adapters


class PortalActivities:
    """Submission to, and status polling from, the customers' channels.

    `documents` loads an issued invoice or credit note by invoice id (activities.einvoice.document_for
    with the store); `render_ubl` renders it for Peppol (activities.einvoice.render_ubl)."""

    def __init__(
        self,
        adapters: Mapping[str, PortalAdapter],
        documents: Callable[[str], InvoiceDocument],
        render_ubl: Callable[[InvoiceDocument], bytes] | None = None,
    ) -> None:
        self._adapters = dict(adapters)
        self._documents = documents
        self._render_ubl = render_ubl

    def _adapter(self, portal: str) -> PortalAdapter:
        adapter = self._adapters.get(portal)
        if adapter is None:
            raise ApplicationError(
                f"portal {portal!r} is not configured",
                {"portal": portal},
                type="unknown_portal",
                non_retryable=True,
            )
        return adapter

    @activity.defn
    def submit_to_portal(self, req: PortalSubmitRequest) -> PortalSubmitResult:
        """Send one pass of an invoice through the customer's channel. Retried by Temporal with the same
        pass, hence the same idempotency key: the portal answers a retry with its first result."""
        adapter = self._adapter(req.portal)
        doc = self._documents(req.invoice_id)
        ubl = b""
        if adapter.channel is Channel.PEPPOL:
            if self._render_ubl is None:
                raise ApplicationError(
                    "no UBL renderer configured for Peppol",
                    {"portal": req.portal},
                    type="portal_refused",
                    non_retryable=True,
                )
            try:
                ubl = self._render_ubl(doc)
            except ValueError as exc:  # activities.einvoice.EInvoiceError: the document, not the portal
                raise ApplicationError(
                    f"{req.portal}: not a valid e-invoice: {exc}",
                    {"portal": req.portal},
                    type="document_invalid",
                    non_retryable=True,
                ) from None
        try:
            receipt = adapter.submit(Submission(req.invoice_id, req.submission_pass, doc, ubl))
        except PortalError as exc:
            log.warning("submission %s.pass-%s failed: %s", req.invoice_id, req.submission_pass, exc)
            raise application_error(exc) from None
        return PortalSubmitResult(
            portal=receipt.portal,
            channel=receipt.channel.value,
            submission_key=receipt.submission_key,
            portal_ref=receipt.portal_ref,
            status=receipt.status.value if receipt.status else "",
            at=receipt.at.isoformat(),
            follow_up=receipt.follow_up.value,
            replayed=receipt.replayed,
        )

    @activity.defn
    def poll_portal(self, req: PortalPollRequest) -> PortalPollResult:
        """The statuses the portal has for us since the cursor (durable polling loops call this)."""
        adapter = self._adapter(req.portal)
        since = parse_instant(req.since) if req.since else None
        try:
            updates = adapter.poll(since)
        except PortalError as exc:
            raise application_error(exc) from None
        return PortalPollResult(
            portal=req.portal, updates=[portal_update(u) for u in updates], cursor=_cursor(updates, since)
        )

    def close(self) -> None:
        for adapter in self._adapters.values():
            adapter.close()


def _cursor(updates: Iterable[StatusUpdate], since: datetime | None) -> str:
    newest = max((u.at for u in updates), default=since)
    return newest.isoformat() if newest else ""
