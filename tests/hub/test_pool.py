"""A server whose database connections are all in use answers 503 with Retry-After, and works again once one
is free: an overloaded server is busy, not broken (it answered 500 when bench/voice.py's burst of 200 callers
held PostgreSQL's whole pool)."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from hub.config import Settings
from hub.runtime import Runtime
from tests.conftest import LiveServer, login, make_agent, until


async def test_a_request_that_finds_no_free_connection_is_answered_503_and_the_next_is_served(
    settings: Settings, rt: Runtime, is_postgres: bool
) -> None:
    if not is_postgres:
        pytest.skip("SQLite's readers open connections as they need them; its writer queues its turns")
    await make_agent(rt, "ada", role="supervisor")
    tight = settings.model_copy(
        update={"database_pool_size": 2, "database_pool_overflow": 0, "database_pool_timeout_seconds": 0.5}
    )
    live = LiveServer(tight).start()
    url = make_url(settings.database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    blocker = await asyncpg.connect(url)
    try:
        async with httpx.AsyncClient(base_url=live.url, timeout=30) as client:
            auth = await login(client, "ada", "password-123")
            tx = blocker.transaction()
            await tx.start()
            await blocker.execute("LOCK TABLE tickets IN ACCESS EXCLUSIVE MODE")
            # Two listings wait on the lock, each holding one of the server's two connections.
            held = [asyncio.create_task(client.get("/api/tickets", headers=auth)) for _ in range(2)]

            async def both_waiting() -> bool:
                waiting = await blocker.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE relation = 'tickets'::regclass AND NOT granted"
                )
                return bool(waiting == 2)

            await until(both_waiting, 10, what="two listings waiting on the locked table")
            busy = await client.get("/healthz")
            assert busy.status_code == 503, busy.text
            assert busy.headers["Retry-After"] == "1"
            assert "busy" in busy.json()["detail"] and "try again" in busy.json()["detail"]
            await tx.rollback()
            assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
            assert (await client.get("/healthz")).status_code == 200
    finally:
        await blocker.close()
        live.stop()
