"""Shared fixtures: a real database (SQLite by default, PostgreSQL when SWITCHBOARD_TEST_DATABASE_URL names
one), a runtime in the test's event loop, and a real server (uvicorn in a thread) for HTTP and websockets.

Each test starts from empty tables. The schema is built once per session by the Alembic migrations, so the
migrations themselves run on both databases.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
import uvicorn
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

from hub.app import create_app, import_all_models
from hub.bus import EventHub, LocalTransport
from hub.cli import shorten_gil_switch_interval
from hub.config import Settings
from hub.db import Database
from hub.events import require_payload_models
from hub.messages import Sender
from hub.metrics import Metrics
from hub.migrate import upgrade
from hub.runtime import Runtime, Tx
from hub.websocket import server_protocol

import_all_models()
# Every event the suite appends must have a payload model (CONTRIBUTING.md, "Events"): a new event type
# without one fails the tests that append it.
require_payload_models()

R = TypeVar("R")


async def until(check: Callable[[], bool | Awaitable[bool]], seconds: float = 5.0, *, what: str = "it") -> None:
    """Wait until ``check()`` holds (a function or a coroutine function), failing the test after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        held = check()
        if not isinstance(held, bool):
            held = await held
        if held:
            return
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds:g} s"
        await asyncio.sleep(0.02)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that takes the ``browser`` fixture ``browser`` (a test launching Chromium itself says so
    with the mark): ``scripts/test`` leaves them out of its runs with the fast paths off."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_admin(url: str, statement: str) -> None:
    """Run ``statement`` on the PostgreSQL server of ``url``, connected to its ``postgres`` database (creating
    and dropping test databases)."""
    parsed = make_url(url)

    async def run() -> None:
        conn = await asyncpg.connect(
            host=parsed.host or "127.0.0.1",
            port=parsed.port or 5432,
            user=parsed.username or "postgres",
            password=parsed.password,
            database="postgres",
        )
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A freshly migrated database for this test session."""
    configured = os.environ.get("SWITCHBOARD_TEST_DATABASE_URL", "sqlite")
    if configured == "sqlite":
        shorten_gil_switch_interval()  # as `switchboard serve` does on SQLite
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
        upgrade(url)
        yield url
        return
    name = f"switchboard_test_{uuid.uuid4().hex[:10]}"
    pg_admin(configured, f'CREATE DATABASE "{name}"')
    url = make_url(configured).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        pg_admin(configured, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def is_postgres(database_url: str) -> bool:
    return database_url.startswith("postgresql")


async def empty_tables(url: str) -> None:
    db = Database(url)
    try:
        async with db.begin() as conn:
            tables = [t.name for t in reversed(SQLModel.metadata.sorted_tables)]
            if db.is_sqlite:
                for name in tables:
                    await conn.execute(text(f'DELETE FROM "{name}"'))
                await conn.execute(text("DELETE FROM sqlite_sequence"))
            else:
                # TRUNCATE costs per table (~2 ms each, ~150 ms for all of them, before every test): only the
                # tables holding rows, then the sequences that rows since deleted or rolled back moved on.
                probe = " UNION ALL ".join(f"SELECT '{n}' WHERE EXISTS (SELECT 1 FROM \"{n}\")" for n in tables)
                used = [row[0] for row in await conn.execute(text(probe))]
                if used:
                    joined = ", ".join(f'"{n}"' for n in used)
                    await conn.execute(text(f"TRUNCATE {joined} RESTART IDENTITY CASCADE"))
                moved = await conn.execute(
                    text("SELECT schemaname, sequencename FROM pg_sequences WHERE last_value IS NOT NULL")
                )
                for schema, sequence in moved.all():
                    await conn.execute(text(f'ALTER SEQUENCE "{schema}"."{sequence}" RESTART'))
    finally:
        await db.dispose()


def sqlite_write_lock_free(path: str | Path) -> bool:
    """Whether a writing transaction could begin now on the SQLite database at ``path`` (without waiting)."""
    probe = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        probe.close()


def release_orphaned_write_lock(url: str) -> None:
    """If SQLite's write lock is held when a test starts, say by what, and collect the garbage once.

    Every test stops what it started before it ends, so no connection of this process should hold the lock
    now. CI once found it held for more than 40 s, with no thread of aiosqlite's left: a connection closed inside
    a transaction while a statement of it was unfinished, which SQLite keeps open until the statement is
    finalized by the garbage collector (fixed by ``hub.db.engine.RollbackOnClose``, tested in
    tests/hub/test_db.py). Should another such holder appear, what holds the lock is printed to the real stderr
    (shown even for a passing test) and the collector is run, so that the tests after it do not fail for it."""
    path = make_url(url).database
    if not path or sqlite_write_lock_free(path):
        return
    held = []
    for obj in gc.get_objects():
        if isinstance(obj, sqlite3.Connection):
            try:
                in_transaction = obj.in_transaction
            except sqlite3.ProgrammingError:  # closed
                continue
            if in_transaction:
                referrers = [f"{type(r).__module__}.{type(r).__qualname__}" for r in gc.get_referrers(obj)]
                held.append(f"sqlite3.Connection in a transaction, referred to by {referrers}")
    threads = [t.name for t in threading.enumerate()]
    print(
        f"\nSQLite's write lock is held as a test starts; threads {threads}; {held or 'no connection found'}",
        file=sys.__stderr__,
    )
    gc.collect()


@pytest.fixture
def settings(database_url: str, tmp_path: Any) -> Settings:
    """Settings for one test, on the session database emptied for it."""
    if database_url.startswith("sqlite"):
        release_orphaned_write_lock(database_url)
    asyncio.run(empty_tables(database_url))
    return Settings(
        database_url=database_url,
        secret_key="test-secret-key-0123456789",
        public_url="http://testserver.local",
        redis_url=None,
        heartbeat_seconds=25.0,
        outbox_backoff_base_seconds=0.05,
        outbox_poll_seconds=0.05,
        gc_freeze_seconds=0,  # servers in the test process leave its collector alone (tests/hub/test_workers.py)
        # Webhooks answer once their batch is processed, with its counts, as the tests expect; the inbox's own
        # tests set 0 (tests/channels/social/test_inbox.py).
        social_webhook_answer_seconds=30.0,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
async def rt(settings: Settings) -> AsyncIterator[Runtime]:
    """A started runtime in the test's own event loop (service-level tests), with the core's ports."""
    from ticketing.ports import register_ports

    db = Database(settings.database_url)
    hub = EventHub(db, LocalTransport())
    runtime = Runtime(settings=settings, db=db, events=hub, metrics=Metrics())
    register_ports(runtime)
    await hub.start()
    try:
        yield runtime
    finally:
        await runtime.stop_tasks()
        await hub.stop()
        await db.dispose()


@dataclass
class LiveServer:
    """A real uvicorn server running ``create_app`` in its own thread and event loop."""

    settings: Settings
    senders: Mapping[str, Sender] | None = None
    port: int = field(default_factory=free_port)
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def app(self) -> Any:
        assert self.server is not None
        return self.server.config.app

    def start(self) -> LiveServer:
        app = create_app(self.settings, senders=self.senders)
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            ws=server_protocol(self.settings),  # what `switchboard serve` runs
            ws_per_message_deflate=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=30)
            if self.thread.is_alive():
                # A server left running keeps its database connections (and maybe SQLite's write lock):
                # fail here, in the test that started it, not in the next test's setup.
                raise RuntimeError("test server did not stop within 30 s")


@pytest.fixture
def server(settings: Settings) -> Iterator[LiveServer]:
    live = LiveServer(settings).start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
async def client(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
        yield c


async def login(client: httpx.AsyncClient, username: str, password: str) -> dict[str, str]:
    """Log in and return the Authorization header for the token."""
    r = await client.post("/api/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


async def make_queue(rt: Runtime, name: str, channels: list[str] | None = None) -> int:
    from ticketing.models import QueueCreate
    from ticketing.queues import create_queue

    return (await create_queue(rt, data=QueueCreate(name=name, channels=channels or []))).id


async def make_agent(
    rt: Runtime,
    username: str,
    *,
    role: str = "agent",
    queues: list[str] | None = None,
    password: str = "password-123",
    available: bool = False,
) -> int:
    from ticketing.agents import create_agent
    from ticketing.models import AgentCreate, AgentStatus, Role
    from ticketing.routing_service import set_agent_status

    agent = await create_agent(
        rt, data=AgentCreate(username=username, password=password, role=Role(role), queues=queues or [])
    )
    if available:
        await set_agent_status(rt, agent_id=agent.id, status=AgentStatus.AVAILABLE)
    return agent.id


async def racing(rt: Runtime, hold: Callable[[Tx], Awaitable[Any]], other: Awaitable[R]) -> R:
    """Two writing transactions interleaved on PostgreSQL (SQLite runs one writer at a time, so callers skip
    there): ``hold`` writes in a transaction that stays open while ``other`` starts; ``other`` must then wait
    (it reached a row or lock the held transaction has), and runs on once that transaction commits. Returns
    ``other``'s result, or raises its error."""
    async with rt.write() as tx:
        await hold(tx)
        waiting = asyncio.ensure_future(other)
        await asyncio.sleep(0.3)
        assert not waiting.done(), "the second transaction did not wait for the held one"
    return await asyncio.wait_for(waiting, 10)


REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def redis_url() -> str:
    """The local Redis (``scripts/test`` starts it); the test is skipped, saying so, when it is not running."""
    import redis.asyncio as redis_client

    try:
        probe = redis_client.from_url(REDIS_URL)
        await probe.ping()
        await probe.aclose()
    except Exception:  # pragma: no cover - Redis is part of the test setup
        pytest.skip(f"Redis is not running at {REDIS_URL}")
    return REDIS_URL


@pytest.fixture
def fresh_database_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """An empty database of the same kind as the session's, for running the migrations step by step."""
    if database_url.startswith("sqlite"):
        yield f"sqlite+aiosqlite:///{tmp_path / 'migrating.db'}"
        return
    name = f"switchboard_mig_{uuid.uuid4().hex[:10]}"
    pg_admin(database_url, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(database_url).set(database=name).render_as_string(hide_password=False)
    finally:
        pg_admin(database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
