"""Two `switchboard serve` processes on one PostgreSQL database with Redis (the production layout of DESIGN.md):
each keeps its own wallboard from the events, and changes made through either show the same figures on both."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.runtime import Runtime
from tests.conftest import free_port, login, make_agent, make_queue

ROOT = Path(__file__).resolve().parents[2]


def _serve(rt: Runtime, redis_url: str, port: int) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SWITCHBOARD_DATABASE_URL": rt.settings.database_url,
        "SWITCHBOARD_REDIS_URL": redis_url,
        "SWITCHBOARD_SECRET_KEY": rt.settings.secret_key.get_secret_value()
        if hasattr(rt.settings.secret_key, "get_secret_value")
        else str(rt.settings.secret_key),
        "SWITCHBOARD_GC_FREEZE_SECONDS": "0",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "hub", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _up(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"the server exited: {proc.stderr.read() if proc.stderr else ''}")
            try:
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("the server did not start within 60 s")


def _figures(board: dict[str, Any]) -> dict[str, Any]:
    """What both boards must agree on: each queue's counts and each agent's status and load."""
    return {
        "queues": {
            q["name"]: (q["waiting"], q["queued_today"], q["answered_today"], q["abandoned_today"])
            for q in board["queues"]
        },
        "agents": {a["name"]: (a["status"], a["load"]) for a in board["agents"]},
    }


async def test_two_serve_processes_show_the_same_wallboard(rt: Runtime, is_postgres: bool, redis_url: str) -> None:
    """Arrivals and an abandonment through one process, a status change and an answer through the other: both
    processes' wallboards (each kept from the events it hears over Redis) show the same, expected figures."""
    if not is_postgres:
        pytest.skip("several processes share a database only on PostgreSQL (SQLite is one process)")
    await make_queue(rt, "support", ["webchat"])
    await make_agent(rt, "alice", queues=["support"])
    bob = await make_agent(rt, "bob", queues=["support"])
    await make_agent(rt, "sam", role="supervisor")
    await make_agent(rt, "ada", role="admin")
    ports = [free_port(), free_port()]
    procs = [_serve(rt, redis_url, port) for port in ports]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        await asyncio.gather(*(_up(url, p) for url, p in zip(urls, procs, strict=True)))
        async with httpx.AsyncClient(timeout=10) as a, httpx.AsyncClient(timeout=10) as b:
            a.base_url, b.base_url = httpx.URL(urls[0]), httpx.URL(urls[1])
            admin_a = await login(a, "ada", "password-123")
            sup_b = await login(b, "sam", "password-123")
            ids = []
            for n in range(3):
                body = {"channel": "webchat", "external_id": f"two-{n}", "thread_key": f"two-{n}", "text": "hi",
                        "sender": {"kind": "webchat", "value": f"visitor-{n}"}, "queue": "support"}  # fmt: skip
                r = await a.post("/api/inbound", json=body, headers=admin_a)
                assert r.status_code in (200, 201, 202), r.text
                ids.append(r.json()["ticket_id"])
            r = await b.put(f"/api/supervisor/agents/{bob}/status", json={"status": "away"}, headers=sup_b)
            assert r.status_code == 200, r.text
            r = await b.post(f"/api/supervisor/tickets/{ids[0]}/reassign", json={"agent_id": bob}, headers=sup_b)
            assert r.status_code == 200, r.text
            r = await a.patch(f"/api/tickets/{ids[1]}", json={"status": "closed"}, headers=admin_a)
            assert r.status_code == 200, r.text
            expected = {
                "queues": {"support": (1, 3, 1, 1)},
                "agents": {"alice": ("offline", {}), "bob": ("away", {"webchat": 1})},
            }
            deadline = time.monotonic() + 30
            while True:
                boards = [
                    (await a.get("/api/supervisor/wallboard", headers=admin_a)).json(),
                    (await b.get("/api/supervisor/wallboard", headers=sup_b)).json(),
                ]
                seen = [_figures(board) for board in boards]
                if seen[0] == seen[1] == expected:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"the boards differ or are wrong: {seen}")
                await asyncio.sleep(0.2)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
            if p.stderr is not None:
                p.stderr.close()
