"""A local SMTP server that keeps every message as an .eml file: the demo's and the tests' mailbox.

Production points CASHCYCLE_SMTP_HOST at a real relay instead.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class Outbox:
    """aiosmtpd handler writing each accepted message to `<dir>/<n>.eml`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            name = f"{time.time_ns()}.eml"
            (self.directory / name).write_bytes(envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"


def start(port: int, directory: Path) -> Controller:
    controller = Controller(Outbox(directory), hostname="127.0.0.1", port=port)
    controller.start()
    return controller


def serve(port: int, directory: Path) -> None:
    controller = start(port, directory)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass  # Ctrl-C is how it is meant to stop
    finally:
        controller.stop()
