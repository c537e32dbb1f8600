"""Helpers shared by the benchmarks: a fresh, migrated database, agent rows to bulk-insert, percentiles, and a
process's CPU time."""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url

from hub.auth import hash_password
from hub.cli import shorten_gil_switch_interval
from hub.migrate import upgrade

PG_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def agent_rows(count: int, *, status: str, capacity: dict[str, int]) -> list[dict[str, Any]]:
    """``count`` agents (agent0, agent1...) for ``tables.agents``, all with password "password-123" through one
    shared hash (hundreds of argon2 runs would dominate the seeding)."""
    pw_hash = hash_password("password-123")
    now = datetime.now(UTC)
    return [
        {
            "username": f"agent{i}",
            "display_name": f"Agent {i}",
            "password_hash": pw_hash,
            "role": "agent",
            "status": status,
            "status_changed_at": now,
            "skills": {},
            "capacity": capacity,
            "active": True,
            "created_at": now,
        }
        for i in range(count)
    ]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used so far (Linux's /proc); 0 if it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def settled(pid: int, *, busy: float = 0.1, timeout: float = 120.0) -> float:
    """Wait until process ``pid`` has finished what it does at start: until it used under ``busy`` of a core over a
    second, twice in a row (at most ``timeout`` seconds); answers how long that took. A server starts work in the
    background at start (the knowledge base loads its sentence embedder in a thread, several CPU seconds even
    with no article), which measured as part of a run taxed its first seconds: a figure of the steady state
    waits for it."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    quiet = 0
    while quiet < 2 and loop.time() - started < timeout:
        before = cpu_seconds(pid)
        await asyncio.sleep(1.0)
        quiet = quiet + 1 if cpu_seconds(pid) - before < busy else 0
    return round(loop.time() - started, 1)


async def postgres_cpu(rt: Any) -> dict[int, float]:
    """PostgreSQL: CPU seconds used so far by each server process connected to the bench's database (the
    bench runs on the database's machine). Empty on SQLite, which runs inside this process."""
    if rt.db.is_sqlite:
        return {}
    async with rt.read() as conn:
        pids = (
            await conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"))
        ).scalars()
        return {pid: cpu_seconds(pid) for pid in pids}


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


async def pg_admin(url: str, statement: str) -> None:
    u = make_url(url)
    conn = await asyncpg.connect(
        host=u.host, port=u.port or 5432, user=u.username or "postgres", password=u.password, database="postgres"
    )
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextmanager
def fresh_database(kind: str, pg_url: str = PG_DEFAULT) -> Iterator[str]:
    """A new, migrated database of ``kind`` ("sqlite" or "postgres"), dropped afterwards. On SQLite the process
    shortens its GIL switch interval first, as `switchboard serve` does."""
    if kind == "sqlite":
        shorten_gil_switch_interval()
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite+aiosqlite:///{os.path.join(tmp, 'bench.db')}"
            upgrade(url)
            yield url
        return
    name = f"switchboard_bench_{uuid.uuid4().hex[:8]}"
    asyncio.run(pg_admin(pg_url, f'CREATE DATABASE "{name}"'))
    url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        asyncio.run(pg_admin(pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
