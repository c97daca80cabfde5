"""GET /healthz: 200 only when the API, the store, Temporal and a worker are all there; 503 naming what is
missing otherwise. No authentication: load balancers and orchestrators call it."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.settings import Settings
from api.app import create_app
from api.deps import AppContext
from tests.conftest import PG_ADMIN_DSN, Stack, drop_pg_database, free_port, running_stack


async def healthz(base_url: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        return await client.get("/healthz")


async def healthz_until(base_url: str, status_code: int, *, within: float = 30) -> httpx.Response:
    """The worker shows in Temporal's poller list once its first poll arrives: wait for it, within bounds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        r = await healthz(base_url)
        if r.status_code == status_code or asyncio.get_running_loop().time() > deadline:
            return r
        await asyncio.sleep(0.2)


@asynccontextmanager
async def app_on(settings: Settings, temporal: Client) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """A second, in-process API (lifespan included) for breaking its dependencies on purpose."""
    app = create_app(settings, temporal=temporal)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api", timeout=60
        ) as client:
            yield app, client


def settings_for(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        environment="test",
        data_dir=tmp_path,
        database_url=db_url,
        task_queue=f"tq-health-{uuid.uuid4().hex[:8]}",
    )


def problems(body: dict[str, Any]) -> set[str]:
    return {name for name, value in body["checks"].items() if value != "ok"}


async def test_healthz_is_200_with_every_check_ok_when_a_worker_polls(stack: Stack) -> None:
    r = await healthz_until(stack.base_url, 200)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "status": "ok",
        "checks": {"api": "ok", "store": "ok", "temporal": "ok", "worker": "ok"},
    }


async def test_healthz_needs_no_authentication(stack: Stack) -> None:
    assert (await healthz_until(stack.base_url, 200)).status_code == 200  # no Authorization header at all
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as client:
        r = await client.get("/healthz", headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ok"


async def test_healthz_is_503_naming_the_worker_when_none_polls_the_task_queue(
    db_url: str, temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    # running_stack gives every stack a fresh task queue: no worker has polled it in the last minute.
    started = running_stack(db_url, temporal_env, tmp_path, with_worker=False)
    async with started as stack:
        r = await healthz(stack.base_url)
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["status"] == "unavailable"
        assert problems(body) == {"worker"}
        assert body["checks"]["worker"] == "no worker polling"

        await started.start_worker()
        r = await healthz_until(stack.base_url, 200)
        assert r.status_code == 200, r.text
        assert problems(r.json()) == set()


async def test_healthz_is_503_naming_the_store_when_the_database_is_gone(
    db_url: str, temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    if db_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'volume' / 'store.db'}"  # a volume we can pull away
    else:
        url = db_url
    async with app_on(settings_for(url, tmp_path), temporal_env.client) as (app, client):
        before = (await client.get("/healthz")).json()
        assert before["checks"]["store"] == "ok"

        ctx: AppContext = app.state.ctx
        if url.startswith("sqlite"):
            ctx.store.dispose()  # the pooled connections hold the file open; new ones find no volume
            shutil.rmtree(tmp_path / "volume")
        else:
            drop_pg_database(PG_ADMIN_DSN, url.rsplit("/", 1)[1])

        r = await client.get("/healthz")
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["status"] == "unavailable"
        assert "store" in problems(body)
        assert body["checks"]["store"].startswith("error: ")
        assert body["checks"]["api"] == "ok" and body["checks"]["temporal"] == "ok"


async def test_healthz_is_503_naming_temporal_when_the_server_is_unreachable(
    db_url: str, tmp_path: Path
) -> None:
    unreachable = await Client.connect(f"127.0.0.1:{free_port()}", lazy=True)
    async with app_on(settings_for(db_url, tmp_path), unreachable) as (_, client):
        r = await client.get("/healthz")
    assert r.status_code == 503, r.text
    body = r.json()
    assert problems(body) == {"temporal", "worker"}
    assert body["checks"]["temporal"].startswith("error: ")
    assert body["checks"]["worker"] == "unknown"
    assert body["checks"]["store"] == "ok"


async def test_healthz_answers_within_seconds_naming_temporal_when_the_server_hangs(
    db_url: str, tmp_path: Path
) -> None:
    """Load balancers give up after a few seconds: a Temporal that accepts connections and never answers
    must show as an error quickly, not hold the check for the client's 30 s connect timeout."""
    held: list[asyncio.StreamWriter] = []

    async def accept_and_stay_silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    silent = await asyncio.start_server(accept_and_stay_silent, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        hanging = await Client.connect(f"127.0.0.1:{port}", lazy=True)
        async with app_on(settings_for(db_url, tmp_path), hanging) as (_, client):
            started = asyncio.get_running_loop().time()
            r = await client.get("/healthz")
            elapsed = asyncio.get_running_loop().time() - started
        assert r.status_code == 503, r.text
        assert r.json()["checks"]["temporal"].startswith("error: ")
        assert r.json()["checks"]["store"] == "ok"
        assert elapsed < 15, f"healthz took {elapsed:.1f} s"
    finally:
        # Hang up, so that the abandoned connection attempt ends now rather than at interpreter exit.
        silent.close()
        for writer in held:
            writer.close()
        await silent.wait_closed()
        await asyncio.sleep(1)
