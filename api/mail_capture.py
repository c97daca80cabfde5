"""A local SMTP server that keeps every message as an .eml file: the demo's and the tests' mailbox.

Production points CASHCYCLE_SMTP_HOST at a real relay instead.

For the demo it can also play a customer's mail server that is in trouble: recipients in the domains
given with `--refuse-domain` are refused at RCPT with a temporary (4xx) error, as a full or greylisting
mailbox answers, so the delivery activity is retried by Temporal for real (the control tower shows it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

# The answer to a refused recipient: temporary (4xx), so that a sender keeps trying.
TEMPORARY_REFUSAL = "450 4.2.1 Mailbox temporarily unavailable: over quota, try again later"


class Outbox:
    """aiosmtpd handler writing each accepted message to `<dir>/<n>.eml`; recipients in a refused domain
    get TEMPORARY_REFUSAL."""

    def __init__(self, directory: Path, refuse_domains: Iterable[str] = ()) -> None:
        self.directory = directory
        self.refuse_domains = frozenset(d.lower().lstrip("@") for d in refuse_domains)
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.rpartition("@")[2].lower() in self.refuse_domains:
            return TEMPORARY_REFUSAL
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            name = f"{time.time_ns()}.eml"
            (self.directory / name).write_bytes(envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"


def start(port: int, directory: Path, refuse_domains: Iterable[str] = ()) -> Controller:
    controller = Controller(Outbox(directory, refuse_domains), hostname="127.0.0.1", port=port)
    controller.start()
    return controller


def serve(port: int, directory: Path, refuse_domains: Iterable[str] = ()) -> None:
    controller = start(port, directory, refuse_domains)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass  # Ctrl-C is how it is meant to stop
    finally:
        controller.stop()
