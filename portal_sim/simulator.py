"""The simulator's state, behind one lock: the scenario, the clock, the invoices and what was said about
them, idempotency replies, tokens, rate-limit buckets, faults, and the pushes to deliver.

Protocol knowledge comes in from outside: `Simulator(scenario, messages=...)` is given, per protocol that
sends the supplier documents (cXML StatusUpdateRequest, Peppol Invoice Response), the function that words
a status in it (app.py wires the protocol modules in).
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx

from portal_sim import buyer
from portal_sim.buyer import Event, Rejection, SimInvoice
from portal_sim.documents import Parsed
from portal_sim.scenario import (
    CoupaClient,
    CxmlClient,
    Dispute,
    Faults,
    PeppolClient,
    Protocol,
    PurchaseOrder,
    RateLimit,
    ReviewRule,
    Scenario,
)

log = logging.getLogger("cashcycle.portal_sim")

R = TypeVar("R")


@dataclass(frozen=True)
class Outgoing:
    """A protocol's document for one status of one invoice, and where to push it ("" = fetched)."""

    id: str
    content: bytes
    url: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)


# A protocol's wording of a status: None when the protocol has no word for it (nothing is sent).
StatusMessage = Callable[[SimInvoice, Event, Scenario], Outgoing | None]


@dataclass
class Message:
    """A document the buyer sends the supplier (cXML StatusUpdateRequest, Peppol Invoice Response)."""

    id: str
    at: datetime
    protocol: Protocol
    client: str
    invoice_id: int
    content: bytes
    sender: str = ""
    receiver: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Push:
    message: Message
    url: str
    attempts: int = 0
    due: float = 0.0  # time.monotonic(): pushes are retried in real time, whatever the simulated clock


class SimClock:
    """Simulated UTC time: real time times `speed` plus every advance, or frozen but for advances."""

    def __init__(self, start: datetime, realtime: bool, speed: float = 1.0) -> None:
        self._start = start.astimezone(UTC)
        self._mono = time.monotonic()
        self._realtime = realtime
        self._speed = speed
        self._offset = 0.0

    def now(self) -> datetime:
        elapsed = (time.monotonic() - self._mono) * self._speed if self._realtime else 0.0
        return self._start + timedelta(seconds=elapsed + self._offset)

    def advance(self, seconds: float) -> None:
        self._offset += seconds


@dataclass
class Bucket:
    tokens: float
    at: datetime


class Simulator:
    """The buyer organisation behind the three protocols. Every public method takes the lock."""

    def __init__(self, scenario: Scenario, messages: Mapping[str, StatusMessage] | None = None) -> None:
        self._lock = threading.RLock()
        self._messages = dict(messages or {})
        self._load(scenario)

    # -- scenario -----------------------------------------------------------------------------------

    def _load(self, scenario: Scenario) -> None:
        self.scenario = scenario
        start = scenario.start or datetime.now(UTC)
        self.clock = SimClock(start, scenario.clock == "realtime", scenario.speed)
        self.faults = scenario.faults.model_copy()
        self.rng = random.Random(scenario.faults.seed)
        self.purchase_orders = {po.number: po for po in scenario.purchase_orders}
        self.invoices: dict[int, SimInvoice] = {}
        self.submissions: list[dict[str, Any]] = []
        self.replies: dict[tuple[str, str, str], tuple[str, Any]] = {}
        self.tokens: dict[str, tuple[str, datetime]] = {}
        self.buckets: dict[str, Bucket] = {}
        self.messages: list[Message] = []
        self.pushes: deque[Push] = deque()
        self.push_log: deque[dict[str, Any]] = deque(maxlen=2000)
        self.requests: deque[dict[str, Any]] = deque(maxlen=5000)
        self.rule_uses: dict[int, int] = {}
        self._next_id = 1000

    def load(self, scenario: Scenario) -> None:
        with self._lock:
            self._load(scenario)

    def reset(self) -> None:
        with self._lock:
            self._load(self.scenario)

    def now(self) -> datetime:
        with self._lock:
            return self.clock.now()

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self.clock.advance(seconds)
            self.catch_up()
            return self.clock.now()

    def set_faults(self, faults: Faults) -> None:
        with self._lock:
            self.faults = faults
            self.rng = random.Random(faults.seed)

    def set_rate_limit(self, limit: RateLimit) -> None:
        with self._lock:
            self.scenario = self.scenario.model_copy(update={"rate_limit": limit})
            self.buckets.clear()

    def add_purchase_order(self, po: PurchaseOrder) -> None:
        with self._lock:
            self.purchase_orders[po.number] = po

    def add_review_rule(self, rule: ReviewRule) -> None:
        with self._lock:
            self.scenario = self.scenario.model_copy(
                update={"review_rules": [*self.scenario.review_rules, rule]}
            )

    def add_dispute(self, dispute: Dispute) -> None:
        with self._lock:
            self.scenario = self.scenario.model_copy(update={"disputes": [*self.scenario.disputes, dispute]})

    def expire_tokens(self) -> int:
        with self._lock:
            count = len(self.tokens)
            now = self.clock.now()
            self.tokens = {t: (c, now) for t, (c, _) in self.tokens.items()}
            return count

    # -- the gate every protocol request passes -------------------------------------------------------

    def log_request(
        self, protocol: str, method: str, path: str, client: str, status: int, note: str = ""
    ) -> None:
        with self._lock:
            self.requests.append(
                {
                    "at": self.clock.now().isoformat(),
                    "protocol": protocol,
                    "method": method,
                    "path": path,
                    "client": client,
                    "status": status,
                    "note": note,
                }
            )

    def injected_failure(self) -> int | None:
        """The status of an injected 5xx for this request, if any (before authentication: a storm hits
        the load balancer, not the application)."""
        with self._lock:
            if self.faults.fail_next > 0:
                self.faults.fail_next -= 1
                return self.faults.status
            if self.faults.fail_rate and self.rng.random() < self.faults.fail_rate:
                return self.faults.status
            return None

    def failure_headers(self) -> dict[str, str]:
        with self._lock:
            after = self.faults.retry_after
            return {"Retry-After": str(after)} if after is not None else {}

    def throttle(self, client: str) -> int | None:
        """Seconds to wait when the client's bucket is empty (429), else None (a token is taken)."""
        with self._lock:
            limit = self.scenario.rate_limit
            now = self.clock.now()
            bucket = self.buckets.setdefault(client, Bucket(limit.capacity, now))
            elapsed = (now - bucket.at).total_seconds()
            if elapsed > 0:
                bucket.tokens = min(limit.capacity, bucket.tokens + elapsed * limit.refill_per_second)
                bucket.at = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return None
            missing = 1 - bucket.tokens
            rate = limit.refill_per_second
            return max(1, int(-(-missing // rate))) if rate > 0 else 3600

    def lose_reply(self) -> float:
        """Real seconds to hold this reply back (0: answer now)."""
        with self._lock:
            if self.faults.lose_next_replies > 0:
                self.faults.lose_next_replies -= 1
                return self.faults.lost_reply_delay
            return 0.0

    # -- idempotency -------------------------------------------------------------------------------------

    def once(
        self, protocol: str, client: str, key: str, fingerprint: str, work: Callable[[], R]
    ) -> tuple[R | None, bool]:
        """The reply to one attempt: the stored one when the key was seen (replayed), None when the key
        was used for another document (a conflict), else `work()`'s, stored. One lock around all of it,
        so that two copies of one attempt arriving together still make one document."""
        with self._lock:
            stored = self.replies.get((protocol, client, key))
            if stored is not None:
                known, reply = stored
                return (reply, True) if known == fingerprint else (None, False)
            reply = work()
            self.replies[(protocol, client, key)] = (fingerprint, reply)
            return reply, False

    # -- receiving an invoice ----------------------------------------------------------------------------

    def receive(
        self,
        protocol: Protocol,
        client: str,
        supplier: str,
        key: str,
        doc: Parsed,
        *,
        synchronous: bool,
        sender: str = "",
        receiver: str = "",
        external_reference: str = "",
    ) -> tuple[SimInvoice | None, Rejection | None]:
        """Check and, unless refused at once (synchronous validation), keep the invoice. For the
        asynchronous protocols a failed check is announced at the in_process step, as networks do."""
        with self._lock:
            self.catch_up()
            now = self.clock.now()
            invoices = list(self.invoices.values())
            rejection, reservations = buyer.validate(supplier, doc, invoices, self.purchase_orders)
            self.submissions.append(
                {
                    "at": now.isoformat(),
                    "protocol": protocol,
                    "client": client,
                    "key": key,
                    "invoice_number": doc.number,
                    "outcome": rejection.code if rejection else "accepted",
                    "message": rejection.message if rejection else "",
                }
            )
            if rejection is not None and synchronous:
                return None, rejection
            self._next_id += 1
            inv = SimInvoice(
                id=self._next_id,
                protocol=protocol,
                client=client,
                supplier=supplier,
                key=key,
                parsed=doc,
                created_at=now,
                updated_at=now,
                pending=rejection,
                reservations=reservations,
                sender=sender,
                receiver=receiver,
                external_reference=external_reference,
            )
            self.invoices[inv.id] = inv
            self._record(inv, Event(now, "received"))
            if not buyer.unanswered(self.scenario, doc):
                buyer.schedule(inv, "in_process", self.scenario.delays.in_process)
            if doc.kind == "credit_note" and rejection is None:
                original = buyer.live_invoice(invoices, supplier, doc.preceding)
                if original is not None:
                    buyer.credited(original, now, self.scenario)
            return inv, None

    # -- life over time ----------------------------------------------------------------------------------

    def catch_up(self) -> None:
        """Apply every step due by now, in time order (events carry their scheduled time, so that a
        poller's updated_at cursor sees them in order whatever the moment they are computed)."""
        with self._lock:
            now = self.clock.now()
            while True:
                due = [i for i in self.invoices.values() if i.next_at is not None and i.next_at <= now]
                if not due:
                    return
                inv = min(due, key=lambda i: (i.next_at or now, i.id))
                buyer.step(inv, self.scenario, self.rule_uses, self._record)

    def _record(self, inv: SimInvoice, event: Event) -> None:
        """The new status, and the message its protocol sends for it (queued for push if configured)."""
        inv.status = event.status
        inv.updated_at = event.at
        inv.history.append(event)
        words = self._messages.get(inv.protocol)
        out = words(inv, event, self.scenario) if words is not None else None
        if out is None:
            return
        message = Message(
            out.id,
            event.at,
            inv.protocol,
            inv.client,
            inv.id,
            out.content,
            sender=inv.receiver,
            receiver=inv.sender,
            headers=out.headers,
        )
        self.messages.append(message)
        if out.url:
            self.pushes.append(Push(message, out.url))

    # -- clients ---------------------------------------------------------------------------------------

    def _cxml_client(self, identity: str) -> CxmlClient | None:
        return next((c for c in self.scenario.cxml.clients if c.identity == identity), None)

    def _coupa_client(self, client_id: str) -> CoupaClient | None:
        return next((c for c in self.scenario.coupa.clients if c.client_id == client_id), None)

    def _peppol_client(self, participant: str) -> PeppolClient | None:
        return next((c for c in self.scenario.peppol.clients if c.participant_id == participant), None)

    def cxml_client(self, identity: str, secret: str) -> CxmlClient | None:
        with self._lock:
            client = self._cxml_client(identity)
            if client is None or not secrets.compare_digest(client.shared_secret.encode(), secret.encode()):
                return None
            return client

    def coupa_client(self, client_id: str, secret: str) -> CoupaClient | None:
        with self._lock:
            client = self._coupa_client(client_id)
            if client is None or not secrets.compare_digest(client.client_secret.encode(), secret.encode()):
                return None
            return client

    def peppol_client(self, api_key: str) -> PeppolClient | None:
        with self._lock:
            return next(
                (
                    c
                    for c in self.scenario.peppol.clients
                    if secrets.compare_digest(c.api_key.encode(), api_key.encode())
                ),
                None,
            )

    def supplier_of(self, protocol: Protocol, client: str) -> str:
        """Whose invoice numbers must be unique: the client's configured supplier, else the client."""
        with self._lock:
            found: CxmlClient | CoupaClient | PeppolClient | None
            if protocol == "cxml":
                found = self._cxml_client(client)
            elif protocol == "coupa":
                found = self._coupa_client(client)
            else:
                found = self._peppol_client(client)
            return (found.supplier if found else "") or client

    def issue_token(self, client_id: str) -> tuple[str, float]:
        with self._lock:
            token = secrets.token_urlsafe(24)
            lifetime = self.scenario.coupa.token_lifetime_seconds
            self.tokens[token] = (client_id, self.clock.now() + timedelta(seconds=lifetime))
            return token, lifetime

    def token_client(self, token: str) -> tuple[str | None, bool]:
        """(client id, expired) of a bearer token; (None, False) when unknown."""
        with self._lock:
            found = self.tokens.get(token)
            if found is None:
                return None, False
            client_id, expires = found
            return client_id, expires <= self.clock.now()

    # -- reads -----------------------------------------------------------------------------------------

    def client_invoices(
        self, protocol: Protocol, client: str, since: datetime | None, limit: int, offset: int
    ) -> list[SimInvoice]:
        """A client's invoices changed after `since`, oldest change first, one page."""
        with self._lock:
            self.catch_up()
            found = sorted(
                (
                    i
                    for i in self.invoices.values()
                    if i.protocol == protocol
                    and i.client == client
                    and (since is None or i.updated_at > since)
                ),
                key=lambda i: (i.updated_at, i.id),
            )
            return found[offset : offset + limit]

    def client_invoice(self, protocol: Protocol, client: str, invoice_id: int) -> SimInvoice | None:
        with self._lock:
            self.catch_up()
            inv = self.invoices.get(invoice_id)
            return inv if inv is not None and inv.protocol == protocol and inv.client == client else None

    def pending_messages(
        self, protocol: Protocol, client: str, since: datetime | None, limit: int
    ) -> list[Message]:
        """Messages for a client newer than `since`, oldest first; a page never splits one timestamp
        (a caller continuing from the last timestamp it saw would miss the rest of it)."""
        with self._lock:
            self.catch_up()
            found = sorted(
                (
                    m
                    for m in self.messages
                    if m.protocol == protocol and m.client == client and (since is None or m.at > since)
                ),
                key=lambda m: m.at,
            )
            if len(found) <= limit:
                return found
            last = found[limit - 1].at
            return [m for m in found if m.at <= last]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            self.catch_up()
            return {
                "now": self.clock.now().isoformat(),
                "invoices": [i.as_json() for i in self.invoices.values()],
                "submissions": list(self.submissions),
            }

    def invoices_json(self, protocol: str | None = None, number: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            self.catch_up()
            return [
                i.as_json()
                for i in self.invoices.values()
                if (protocol is None or i.protocol == protocol)
                and (number is None or i.parsed.number == number)
            ]

    def purchase_orders_json(self) -> list[dict[str, Any]]:
        with self._lock:
            invoices = list(self.invoices.values())
            out = []
            for po in self.purchase_orders.values():
                data = po.model_dump(mode="json")
                for line in data["lines"]:
                    line["consumed"] = str(buyer.consumed(invoices, po.number, int(line["line"])))
                out.append(data)
            return out

    def messages_json(self, protocol: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            self.catch_up()
            return [
                {
                    "id": m.id,
                    "at": m.at.isoformat(),
                    "protocol": m.protocol,
                    "client": m.client,
                    "invoice_id": m.invoice_id,
                    "content": m.content.decode(),
                }
                for m in self.messages
                if protocol is None or m.protocol == protocol
            ]

    # -- pushing ---------------------------------------------------------------------------------------

    def take_pushes(self, *, all_due: bool) -> list[Push]:
        with self._lock:
            self.catch_up()
            now = time.monotonic()
            taken = [p for p in self.pushes if all_due or p.due <= now]
            for push in taken:
                self.pushes.remove(push)
            return taken

    def push_done(self, push: Push, ok: bool, detail: str) -> None:
        with self._lock:
            push.attempts += 1
            self.push_log.append(
                {
                    "at": self.clock.now().isoformat(),
                    "url": push.url,
                    "message_id": push.message.id,
                    "invoice_id": push.message.invoice_id,
                    "protocol": push.message.protocol,
                    "ok": ok,
                    "attempt": push.attempts,
                    "detail": detail,
                }
            )
            if not ok and push.attempts < 8:
                push.due = time.monotonic() + min(60.0, 0.5 * 2**push.attempts)
                self.pushes.append(push)


def deliver_pushes(sim: Simulator, http: httpx.Client, *, all_due: bool) -> tuple[int, int]:
    """Push what is due (outside the lock: a slow receiver must not stall the portal)."""
    ok = failed = 0
    for push in sim.take_pushes(all_due=all_due):
        headers = dict(push.message.headers) or {"Content-Type": "text/xml; charset=UTF-8"}
        try:
            response = http.post(push.url, content=push.message.content, headers=headers)
            good = 200 <= response.status_code < 300
            detail = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            good, detail = False, type(exc).__name__
        sim.push_done(push, good, detail)
        ok, failed = (ok + 1, failed) if good else (ok, failed + 1)
    return ok, failed


class Pusher:
    """The background thread: moves realtime scenarios on and retries pushes."""

    def __init__(self, sim: Simulator, tick_seconds: float) -> None:
        self._sim = sim
        self._tick = tick_seconds
        self._stop = threading.Event()
        self._http = httpx.Client(timeout=5.0)
        # One delivery round at a time: a flush (/_sim/advance) waits for a round the thread has already
        # taken pushes for, so that "every queued push is delivered before answering" holds.
        self._delivering = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="portal-sim-pusher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._http.close()

    def flush(self) -> tuple[int, int]:
        with self._delivering:
            return deliver_pushes(self._sim, self._http, all_due=True)

    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            try:
                with self._delivering:
                    deliver_pushes(self._sim, self._http, all_due=False)
            except Exception:  # the thread must survive a bad receiver or a bug in one message
                log.exception("push delivery failed")
