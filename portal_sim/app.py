"""The simulator as an ASGI app: one Simulator (the buyer's state), the protocols' routers around it, the
control API, and the background pusher; `serve` runs it under uvicorn."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from portal_sim import control, coupa, cxml, peppol
from portal_sim.gate import Gate
from portal_sim.scenario import Scenario, default_scenario, load_scenario
from portal_sim.simulator import Pusher, Simulator, StatusMessage

log = logging.getLogger("cashcycle.portal_sim")

# The protocols that send the supplier a document per status (Coupa-style statuses are pulled).
STATUS_MESSAGES: Mapping[str, StatusMessage] = {"cxml": cxml.status_message, "peppol": peppol.status_message}


def create_app(scenario: Scenario | None = None, *, tick_seconds: float = 0.2) -> FastAPI:
    """The simulator as an ASGI app; `app.state.sim` is the Simulator (tests may reach in)."""
    sim = Simulator(scenario or default_scenario(), STATUS_MESSAGES)
    pusher = Pusher(sim, tick_seconds)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        pusher.start()
        try:
            yield
        finally:
            pusher.stop()

    app = FastAPI(title="Cashcycle portal simulator", lifespan=lifespan)
    app.state.sim = sim
    app.state.pusher = pusher
    gate = Gate(sim)
    for protocol in (cxml, coupa, peppol):
        app.include_router(protocol.router(gate))
    app.include_router(control.router(sim, pusher))
    return app


def serve(host: str, port: int, scenario: Path | None = None) -> None:
    """Run the simulator until interrupted (uvicorn handles SIGINT and SIGTERM)."""
    import uvicorn

    chosen = load_scenario(scenario) if scenario else default_scenario()
    log.info("portal simulator %r on http://%s:%s", chosen.name, host, port)
    uvicorn.run(create_app(chosen), host=host, port=port, log_level="warning", timeout_graceful_shutdown=2)
