"""The demo users' HTTP client: the seeding talks to Cashcycle as its users do, through the API."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from demo.company import DEMO_PASSWORD


async def wait_healthy(base_url: str, timeout: float) -> None:  # noqa: ASYNC109 (a deadline with a message)
    """Poll /healthz until the API answers 200 (store, Temporal and a worker all reachable): seeding
    before the worker polls would leave every creation waiting on a workflow nobody runs."""
    quiet_http_log()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = "no answer"
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        while True:
            try:
                r = await client.get("/healthz")
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code} {r.text}"
            except httpx.HTTPError as exc:
                last = f"{exc.__class__.__name__}: {exc}"
            if loop.time() >= deadline:
                raise SystemExit(
                    f"Cashcycle at {base_url} is not healthy after {timeout:.0f}s "
                    f"(last answer from /healthz: {last}); see the logs"
                )
            await asyncio.sleep(0.5)


class DemoSeedError(RuntimeError):
    """Seeding stopped: the API refused or failed a request the demo expected to succeed."""


@dataclass
class DemoApi:
    """The demo users' HTTP client: one token per user, bounded concurrency, retries of 503s and lost
    connections with the same Idempotency-Key (so a retried command is applied once)."""

    client: httpx.AsyncClient
    semaphore: asyncio.Semaphore
    tokens: dict[str, str] = field(default_factory=dict)

    async def login(self, username: str) -> None:
        r = await self.client.post(
            "/api/v1/auth/token", data={"username": username, "password": DEMO_PASSWORD}
        )
        if r.status_code != 200:
            raise DemoSeedError(f"demo user {username} cannot log in: HTTP {r.status_code} {r.text}")
        self.tokens[username] = r.json()["access_token"]

    async def call(
        self,
        username: str,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.tokens[username]}"}
        if key:
            headers["Idempotency-Key"] = key
        return await self._send(username, method, path, headers, {"json": body})

    async def upload(
        self, username: str, path: str, file: tuple[str, bytes, str], text: str, key: str | None = None
    ) -> dict[str, Any]:
        """POST one file (name, bytes, content type) as a multipart form, with a `text`."""
        headers = {"Authorization": f"Bearer {self.tokens[username]}"}
        if key:
            headers["Idempotency-Key"] = key
        return await self._send(
            username, "POST", path, headers, {"files": {"file": file}, "data": {"text": text}}
        )

    async def _send(
        self, username: str, method: str, path: str, headers: dict[str, str], content: dict[str, Any]
    ) -> dict[str, Any]:
        problem = ""
        for attempt in range(6):
            try:
                async with self.semaphore:
                    r = await self.client.request(method, path, headers=headers, **content)
            except httpx.TransportError as exc:
                problem = f"{exc.__class__.__name__}: {exc}"
            else:
                if r.status_code in (200, 201):
                    result: dict[str, Any] = r.json()
                    return result
                problem = f"HTTP {r.status_code} {r.text}"
                if r.status_code != 503:
                    break
            await asyncio.sleep(min(0.5 * 2**attempt, 5.0))
        raise DemoSeedError(f"demo seeding failed: {username} {method} {path}: {problem}")


class Progress:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def say(self, message: str) -> None:
        if self.enabled:
            print(f"  {message}", flush=True)

    def counter(self, what: str, total: int) -> Callable[[], None]:
        done = 0
        step = max(1, total // 10)

        def tick() -> None:
            nonlocal done
            done += 1
            if done % step == 0 or done == total:
                self.say(f"{what}: {done}/{total}")

        return tick


async def wait_sent(api: DemoApi, invoice_id: str, label: str, within: float) -> str:
    """Wait for an approved invoice to leave (delivered, or refused at a portal's door); its status."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    pause = 0.2
    while True:
        state = await api.call("supervisor", "GET", f"/api/v1/invoices/{invoice_id}")
        if state["status"] != "approved":
            status: str = state["status"]
            return status
        if loop.time() >= deadline:
            raise DemoSeedError(f"invoice {label} was not delivered within {within:.0f}s; see the worker log")
        await asyncio.sleep(pause)
        pause = min(pause * 1.5, 2.0)


async def gather_all(tasks: list[Awaitable[None]]) -> None:
    """Run every task; on the first failure cancel the others so the error is reported at once."""
    running = [asyncio.ensure_future(t) for t in tasks]
    try:
        await asyncio.gather(*running)
    except BaseException:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        raise


def quiet_http_log() -> None:
    """httpx logs every request at INFO: hundreds of lines that would bury the progress lines."""
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))
