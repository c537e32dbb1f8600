"""The per-process runtime that service functions receive: settings, database, event hub, metrics, and the
core's ports (``hub.ports``: what channels and the knowledge base ask the ticketing core through).

``Runtime.write()`` is the one way to change state: it opens a transaction, collects the events the change
produces, appends them last (taking the event-order lock as late as possible), commits, and only then
publishes them. A change that raises rolls back and publishes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from hub.bus import EventHub
from hub.config import Settings
from hub.db import Database
from hub.events import EventRecord, NewEvent, append_events
from hub.messages import ReplyHook
from hub.metrics import Metrics
from hub.ports import Ports
from hub.workers import cancel_and_wait


@dataclass(slots=True)
class Tx:
    """A transaction in progress and the events it will append."""

    conn: AsyncConnection
    events: list[NewEvent] = field(default_factory=list)
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    records: list[EventRecord] = field(default_factory=list)

    def emit(self, event: NewEvent) -> None:
        self.events.append(event)


@dataclass(slots=True)
class Runtime:
    settings: Settings
    db: Database
    events: EventHub
    metrics: Metrics
    # Set after a commit that queued outbound messages, so the dispatcher sends them without waiting.
    outbox_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    # Per-process state that packages keep for this runtime, by name (e.g. the logged-in agents).
    caches: dict[str, Any] = field(default_factory=dict)
    # The core's ports, registered at start by ``hub/app.py`` (``ticketing.ports.register_ports``).
    ports: Ports = field(default_factory=Ports)
    # The channels' hooks on replies stored for them, by channel name (``hub.messages.ReplyHook``), registered
    # at start by ``hub/app.py``.
    reply_hooks: dict[str, ReplyHook] = field(default_factory=dict)
    # Work this runtime started in the background (``spawn``), until it ends or ``stop_tasks`` stops it.
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Run ``coro`` in the background for as long as this runtime runs: whoever stops the runtime stops it
        first (``stop_tasks``), before the database goes; a task still reading when the engine was disposed kept
        its connection checked out, and PostgreSQL's was never closed."""
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def stop_tasks(self) -> None:
        """Cancel what ``spawn`` started and wait until each has ended."""
        for task in list(self.tasks):
            await cancel_and_wait(task)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Tx]:
        async with self.db.begin() as conn:
            tx = Tx(conn)
            yield tx
            tx.records = await append_events(conn, tx.events)
        await self.events.publish(tx.records)
        for callback in tx.after_commit:
            callback()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.db.connect() as conn:
            yield conn


class _NoPublish:
    """A transport for short-lived commands: running servers read these events from the log instead."""

    async def start(self, hub: EventHub) -> None:
        return None

    async def publish(self, events: object) -> None:
        return None

    async def publish_ephemeral(self, frame: object) -> None:
        return None

    async def stop(self) -> None:
        return None


@asynccontextmanager
async def standalone(settings: Settings) -> AsyncIterator[Runtime]:
    """A runtime for a CLI command or script: no server, no live subscribers."""
    db = Database.of(settings)
    try:
        runtime = Runtime(settings=settings, db=db, events=EventHub(db, _NoPublish()), metrics=Metrics())
        try:
            yield runtime
        finally:
            await runtime.stop_tasks()
    finally:
        await db.dispose()
