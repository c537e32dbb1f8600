"""A mailbox worker in a process of its own, for the crash test (which kills it with SIGKILL) and manual
runs: ``python -m tests.channels.email.worker_process`` with the usual SWITCHBOARD_* variables."""

from __future__ import annotations

import asyncio

from channels.email.service import EmailService
from hub.bus import EventHub, LocalTransport
from hub.config import Settings
from hub.db import Database
from hub.metrics import Metrics
from hub.runtime import Runtime
from ticketing.ingest import IngestPipeline
from ticketing.ports import register_ports


async def main() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    db = Database(settings.database_url)
    hub = EventHub(db, LocalTransport())
    rt = Runtime(settings=settings, db=db, events=hub, metrics=Metrics())
    register_ports(rt)
    await hub.start()
    pipeline = IngestPipeline(rt)
    await pipeline.start()
    channel = EmailService(rt, pipeline.submit)
    await channel.start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
