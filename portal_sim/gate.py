"""What every protocol request passes through, whatever the protocol: injected faults (before
authentication: a storm hits the load balancer, not the application), the rate limit per client, the
request log, and replies held back until the client has given up (lost replies). Also the reply type the
idempotency store keeps, and two small request readers."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from portal_sim.simulator import Simulator


@dataclass(frozen=True)
class Reply:
    status_code: int
    body: bytes
    media_type: str
    headers: dict[str, str] = field(default_factory=dict)

    def response(self, replayed: bool = False) -> Response:
        headers = dict(self.headers)
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return Response(self.body, status_code=self.status_code, media_type=self.media_type, headers=headers)


def json_reply(status_code: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status_code, json.dumps(body, default=str).encode(), "application/json", headers or {})


class Gate:
    """One per app, shared by the protocol routers."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    async def finish(
        self,
        protocol: str,
        request: Request,
        client: str,
        reply: Reply,
        note: str = "",
        *,
        replayed: bool = False,
    ) -> Response:
        """Log, then answer; a reply chosen to be lost is held back until the client has given up."""
        delay = self.sim.lose_reply()
        self.sim.log_request(
            protocol,
            request.method,
            request.url.path,
            client,
            reply.status_code,
            note or ("lost" if delay else ""),
        )
        if delay:
            await asyncio.sleep(delay)
        return reply.response(replayed)

    def injected(self, protocol: str, request: Request) -> Response | None:
        status = self.sim.injected_failure()
        if status is None:
            return None
        self.sim.log_request(protocol, request.method, request.url.path, "", status, "injected")
        return Response(
            f"{status} simulated outage".encode(),
            status_code=status,
            media_type="text/plain",
            headers=self.sim.failure_headers(),
        )

    def throttled(self, protocol: str, request: Request, client: str) -> Response | None:
        wait = self.sim.throttle(f"{protocol}:{client}")
        if wait is None:
            return None
        self.sim.log_request(protocol, request.method, request.url.path, client, 429, "rate limited")
        body = {"errors": [{"code": "rate_limited", "message": f"Too many requests; retry in {wait}s"}]}
        return JSONResponse(body, status_code=429, headers={"Retry-After": str(wait)})


def since_param(value: str | None) -> datetime | None:
    """A cursor from a query parameter or attribute (ISO 8601; a naive one is UTC; unreadable: none)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def bearer(request: Request) -> str:
    value = request.headers.get("Authorization", "")
    return value[7:].strip() if value.lower().startswith("bearer ") else ""
