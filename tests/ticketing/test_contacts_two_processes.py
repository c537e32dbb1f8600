"""Two hub processes on one PostgreSQL database with Redis: a merge made through one process is heard by the
other, whose ingest identity cache then sends the merged identity's next message to the surviving contact."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from hub.config import Settings
from hub.events import Event
from hub.runtime import Runtime
from tests.conftest import LiveServer, free_port, login, make_agent, make_queue

ROOT = Path(__file__).resolve().parents[2]


def sms(ext: str, text: str) -> dict[str, object]:
    return {"channel": "sms", "external_id": ext, "sender": {"kind": "phone", "value": "+1 415 555 0123"}, "text": text}


async def wait_until(check: object, what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_merge_in_one_process_reaches_the_identity_cache_of_the_other(
    rt: Runtime, settings: Settings, is_postgres: bool, redis_url: str, tmp_path: Path
) -> None:
    """Process A ingests an SMS (its cache learns the number's contact) and an email from another contact;
    process B merges the SMS contact into the email one. Once A has heard the merge's event (through Redis),
    the number's next SMS, ingested by A, lands on the surviving contact; after B undoes the merge, on the
    first contact again."""
    if not is_postgres:
        pytest.skip("several processes share a database only on PostgreSQL (SQLite is one process)")
    await make_queue(rt, "support", channels=["sms", "email"])
    await make_agent(rt, "ada", role="admin")
    shared = settings.model_copy(update={"redis_url": redis_url, "redis_channel": f"contacts-test-{os.getpid()}"})
    a = LiveServer(shared).start()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env |= {
        "SWITCHBOARD_DATABASE_URL": shared.database_url,
        "SWITCHBOARD_REDIS_URL": redis_url,
        "SWITCHBOARD_REDIS_CHANNEL": shared.redis_channel,
        "SWITCHBOARD_SECRET_KEY": shared.secret_key.get_secret_value(),
        "PYTHONPATH": str(ROOT),
    }
    log = open(tmp_path / "b.log", "w")
    b = subprocess.Popen(
        [sys.executable, "-m", "hub", "serve", "--port", str(port)], cwd=tmp_path, env=env, stdout=log, stderr=log
    )
    try:
        async with (
            httpx.AsyncClient(base_url=a.url, timeout=20) as ca,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as cb,
        ):

            async def b_up() -> bool:
                assert b.poll() is None, (tmp_path / "b.log").read_text()
                try:
                    return (await cb.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(b_up, "process B to start", 60)
            ha, hb = await login(ca, "ada", "password-123"), await login(cb, "ada", "password-123")
            first = (await ca.post("/api/inbound", json=sms("SM1", "hello"), headers=ha)).json()
            email = {"channel": "email", "external_id": "<e1@x>", "sender": {"kind": "email", "value": "m@x.org"}}
            other = (await ca.post("/api/inbound", json={**email, "text": "hi"}, headers=ha)).json()
            survivor, merged = other["contact_id"], first["contact_id"]
            r = await cb.post(f"/api/contacts/{survivor}/merge", json={"contact_id": merged}, headers=hb)
            assert r.status_code == 201, r.text
            merge_id = r.json()["id"]

            async def a_heard() -> bool:
                async with rt.read() as conn:
                    newest = (await conn.execute(select(func.max(Event.__table__.c.seq)))).scalar()  # type: ignore[attr-defined]
                return bool((await ca.get("/healthz")).json()["last_seq"] >= newest)

            await wait_until(a_heard, "process A to hear the merge")
            second = (await ca.post("/api/inbound", json=sms("SM2", "me again"), headers=ha)).json()
            assert second["contact_id"] == survivor

            r = await cb.post(f"/api/contacts/merges/{merge_id}/undo", headers=hb)
            assert r.status_code == 200, r.text
            await wait_until(a_heard, "process A to hear the undo")
            third = (await ca.post("/api/inbound", json=sms("SM3", "and again"), headers=ha)).json()
            assert third["contact_id"] == merged
    finally:
        b.terminate()
        b.wait(timeout=30)
        log.close()
        a.stop()
