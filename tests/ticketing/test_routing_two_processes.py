"""Two hub processes routing at once on one PostgreSQL database: no invariant breaks."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hub.events import events_after
from hub.runtime import Runtime
from tests.ticketing.routing_helpers import agent, check_state, queue, replay_events

ROOT = Path(__file__).resolve().parents[2]
SECONDS = 12.0


async def test_two_processes_routing_at_once_keep_every_invariant(rt: Runtime, is_postgres: bool) -> None:
    """Two processes, each with its own engine, ingest bursts, accept, decline, expire, solve, change agent
    status, pull tickets from their views and run routing ticks against the same database at the same time.
    Afterwards: no agent over capacity and nothing both offered and assigned (database), and, replaying the
    shared event log in commit order, no ticket ever offered to two agents at once, none assigned twice (by
    an accept or a pull), no agent ever over capacity on any channel."""
    if not is_postgres:
        pytest.skip("several processes share a database only on PostgreSQL (SQLite is one process)")
    await queue(rt, "support")
    await queue(rt, "sales", required_skills={"language:es": 1})
    capacity = {}
    for i in range(6):
        cap = {"webchat": 1 + i % 3, "voice": 1, "email": 2}
        aid = await agent(
            rt, f"agent{i}", ["support", "sales"] if i % 2 else ["support"], skills={"language:es": 1}, capacity=cap
        )
        capacity[aid] = cap
    start_at = time.time() + 3.0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.ticketing.routing_worker",
                rt.settings.database_url,
                str(seed),
                str(start_at),
                str(SECONDS),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for seed in (1, 2)
    ]
    outs = await asyncio.gather(*(asyncio.to_thread(p.communicate, timeout=90) for p in procs))
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert int(out.split()[-1]) > 20, "the worker did too little to test anything"
    await check_state(rt)
    async with rt.read() as conn:
        records = await events_after(conn, 0, limit=1_000_000)
    counts = replay_events(records, capacity)
    assert counts.get("ticket.offered", 0) > 50 and counts.get("offer.accepted", 0) > 10, counts
    assert counts.get("offer.declined", 0) > 0 and counts.get("offer.expired", 0) > 0, counts
    pulled = sum(1 for e in records if e.type == "ticket.assigned" and e.payload.get("pulled"))
    assert pulled > 0, "no ticket was pulled from a view"
