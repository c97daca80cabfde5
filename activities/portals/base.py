"""The one interface every customer channel implements (cXML, Coupa-style REST, Peppol, e-mail), the
typed values that cross it, and the two kinds of failure a caller must tell apart.

    submit(submission) -> SubmitReceipt                     send one pass of one invoice
    poll(since) -> list[StatusUpdate]                       statuses the portal makes us fetch
    parse_push(body, headers) -> list[StatusUpdate]         statuses the portal sends us
    push_reply(error) -> PushReply                          what to answer the portal's push

Failures: `TransientError` (5xx, timeouts, connection errors, 429 with its Retry-After) is retried with
backoff by the caller; `PermanentError` is not, and carries the normalised reason when the portal refused
the document itself (so the workflow can go to portal_rejected with it).

Idempotency: every submission carries a key per attempt, `<invoice id>.pass-<n>`. A retry of the same
pass after a timeout sends the same key, so the portal returns its first answer instead of creating a
second document; a new pass after a fix is a new key, hence a new document.

Secrets (shared secrets, client secrets, API keys) are never part of an exception message, a log record,
a receipt or an update: those end up in workflow histories and the evidence ledger.
"""

from __future__ import annotations

import contextlib
import email.utils
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

import httpx
from lxml import etree  # type: ignore[import-untyped, unused-ignore]  # no stubs ship with lxml

from activities.documents import InvoiceDocument
from activities.portals.status import PortalStatus, StatusReason


class Channel(StrEnum):
    CXML = "cxml"
    COUPA = "coupa"
    PEPPOL = "peppol"
    EMAIL = "email"


class FollowUp(StrEnum):
    """How statuses come back after a submission: the workflow waits for signals (push), runs a durable
    polling loop (poll), or expects nothing (none: e-mail)."""

    PUSH = "push"
    POLL = "poll"
    NONE = "none"


@dataclass(frozen=True)
class Submission:
    """One pass of one invoice through one channel."""

    invoice_id: str
    submission_pass: int  # 1 for the first submission, 2 after the first fix...
    document: InvoiceDocument
    ubl: bytes = b""  # the Peppol BIS 3.0 rendering (activities.einvoice.render_ubl); Peppol only

    def __post_init__(self) -> None:
        if self.submission_pass < 1:
            raise ValueError("submission_pass counts from 1")

    @property
    def idempotency_key(self) -> str:
        return f"{self.invoice_id}.pass-{self.submission_pass}"


@dataclass(frozen=True)
class SubmitReceipt:
    portal: str
    channel: Channel
    submission_key: str  # the idempotency key sent
    portal_ref: str  # the portal's id for the document: invoice id, payloadID, message id, Message-ID
    status: PortalStatus | None  # what the portal said at once; None when nothing will be said (e-mail)
    at: datetime  # when the portal received it (its clock when it says so, else ours)
    follow_up: FollowUp
    replayed: bool = False  # the portal answered from its idempotency store: an earlier try got through
    message: str = ""


@dataclass(frozen=True)
class StatusUpdate:
    """A status of one submitted document, as the portal reported it, normalised.

    Route it to its submission by `submission_key` when set, else by `portal_ref` (from the receipt),
    else by `invoice_number` to the newest pass. Updates can repeat: de-duplicate on `update_id`."""

    portal: str
    channel: Channel
    status: PortalStatus
    at: datetime  # the portal's time of the status (the polling cursor is the newest of these)
    invoice_number: str = ""
    portal_ref: str = ""
    submission_key: str = ""
    reasons: tuple[StatusReason, ...] = ()
    actions: tuple[str, ...] = ()  # Peppol OPStatusAction codes (NIN: issue a new invoice, PIN: ...)
    message: str = ""  # the portal's comments
    portal_status: str = ""  # the protocol's own word or code, for evidence ("reconciled", "RE", ...)
    update_id: str = ""
    paid_minor: int | None = None  # a partial payment the portal announced (cXML PartialAmount)

    @property
    def reason(self) -> StatusReason | None:
        return self.reasons[0] if self.reasons else None


@dataclass(frozen=True)
class PushReply:
    """The HTTP answer to a portal's push (cXML wants a cXML Response; Peppol a plain status)."""

    status_code: int
    body: bytes = b""
    content_type: str = "text/plain"


class PortalError(Exception):
    """A failure talking to a portal. The message names the portal, the operation and what the portal
    said, never a credential."""

    def __init__(self, portal: str, message: str, *, http_status: int | None = None) -> None:
        super().__init__(f"{portal}: {message}")
        self.portal = portal
        self.http_status = http_status


class TransientError(PortalError):
    """Try again later: the same attempt, with the same idempotency key."""

    def __init__(
        self, portal: str, message: str, *, http_status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(portal, message, http_status=http_status)
        self.retry_after = retry_after


class PermanentError(PortalError):
    """Sending the same thing again will fail again. `reasons` are set when the portal refused the
    document for what it says (a validation rejection); empty when the fault is ours (credentials,
    configuration, a malformed message)."""

    def __init__(
        self,
        portal: str,
        message: str,
        *,
        http_status: int | None = None,
        reasons: tuple[StatusReason, ...] = (),
    ) -> None:
        super().__init__(portal, message, http_status=http_status)
        self.reasons = reasons

    @property
    def reason(self) -> StatusReason | None:
        return self.reasons[0] if self.reasons else None


class PortalAdapter(Protocol):
    """One configured customer channel (a portal name from the configuration plus its protocol)."""

    @property
    def name(self) -> str: ...

    @property
    def channel(self) -> Channel: ...

    @property
    def follow_up(self) -> FollowUp: ...

    def submit(self, submission: Submission) -> SubmitReceipt: ...

    def poll(self, since: datetime | None) -> list[StatusUpdate]: ...

    def parse_push(self, body: bytes, headers: Mapping[str, str]) -> list[StatusUpdate]: ...

    def push_reply(self, error: PortalError | None) -> PushReply: ...

    def close(self) -> None: ...


# -- shared by the HTTP adapters ----------------------------------------------------------------------


@dataclass(frozen=True)
class HttpOptions:
    timeout_seconds: float = 30.0
    verify_tls: bool = True
    user_agent: str = "Cashcycle"
    extra_headers: Mapping[str, str] = field(default_factory=dict)


def http_client(options: HttpOptions, base_url: str = "") -> httpx.Client:
    """A client per adapter, kept for the worker's life (connection reuse). httpx.Client is safe to share
    between the worker's activity threads."""
    return httpx.Client(
        base_url=base_url,
        timeout=options.timeout_seconds,
        verify=options.verify_tls,
        headers={"User-Agent": options.user_agent, **options.extra_headers},
        follow_redirects=False,  # a redirect would resend credentials somewhere we did not configure
    )


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as delta-seconds or an HTTP-date (RFC 9110 10.2.3); None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@contextlib.contextmanager
def transport_errors(portal: str, what: str) -> Iterator[None]:
    """Timeouts and connection failures are transient. The message is built here, from the exception's
    class only: httpx's own text can carry the request, and a request can carry a credential."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise TransientError(portal, f"{what}: no answer in time ({type(exc).__name__})") from None
    except httpx.TransportError as exc:
        raise TransientError(portal, f"{what}: connection failed ({type(exc).__name__})") from None


def raise_for_throttling(portal: str, what: str, response: httpx.Response) -> None:
    """429 and 5xx (and 408) are the portal's trouble, not the document's: transient."""
    code = response.status_code
    if code == 429 or code == 408 or code >= 500:
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        label = "rate limited" if code == 429 else "portal unavailable"
        raise TransientError(portal, f"{what}: {label} (HTTP {code})", http_status=code, retry_after=wait)


def short_text(value: str, limit: int = 300) -> str:
    """A portal's message, trimmed for an exception or a record."""
    value = " ".join(value.split())
    return value if len(value) <= limit else value[: limit - 1] + "…"


def xml_parser() -> etree.XMLParser:
    """For documents from outside: no DTD loading (cXML names one by URL), no entities, no network,
    so that a pushed document cannot make us fetch or expand anything."""
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False
    )


def parse_xml(portal: str, body: bytes, what: str) -> etree._Element:
    try:
        root = etree.fromstring(body, parser=xml_parser())
    except etree.XMLSyntaxError as exc:
        raise PermanentError(portal, f"{what}: not well-formed XML ({short_text(str(exc), 120)})") from None
    if root is None:
        raise PermanentError(portal, f"{what}: empty document")
    return root


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant from a portal as an aware UTC datetime (a naive one is taken as UTC)."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
