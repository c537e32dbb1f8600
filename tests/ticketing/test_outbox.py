"""The outbox: replies commit with their outbox row and are delivered through the channel adapter with
retries and backoff, exactly once on success, and marked failed on a permanent error."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from hub.config import Settings
from hub.db import utcnow
from hub.messages import DeliveryError, DeliveryResult, Identity, InboundMessage, OutboundMessage
from hub.principals import Principal
from hub.runtime import Runtime, Tx
from tests.conftest import LiveServer, login, make_agent, make_queue, racing
from ticketing.ingest import ingest_batch
from ticketing.models import DeliveryStatus
from ticketing.outbox import OutboxDispatcher, StatusChange, backoff_seconds, set_delivery_statuses
from ticketing.replies import reply
from ticketing.tables import messages as M
from ticketing.tables import outbox as O


class FlakySender:
    """Fails the first ``failures`` attempts (temporarily, or permanently), then delivers."""

    def __init__(self, failures: int, permanent: bool = False) -> None:
        self.failures = failures
        self.permanent = permanent
        self.attempts: list[OutboundMessage] = []
        self.delivered: list[OutboundMessage] = []

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        self.attempts.append(message)
        if len(self.attempts) <= self.failures:
            raise DeliveryError(
                "smtp: 421 try again later" if not self.permanent else "550 no such user", permanent=self.permanent
            )
        self.delivered.append(message)
        return DeliveryResult(provider_id=f"P{len(self.delivered)}")


@pytest.fixture
async def ticket_id(rt: Runtime) -> int:
    await make_queue(rt, "support")
    await make_agent(rt, "alice", queues=["support"])
    [r] = await ingest_batch(
        rt,
        [
            InboundMessage(
                channel="sms", external_id="SM1", text="help", sender=Identity(kind="phone", value="+14155550100")
            )
        ],
    )
    return r.ticket_id  # type: ignore[union-attr]


async def wait_for_status(client: httpx.AsyncClient, headers: dict[str, str], ticket_id: int, status: str) -> Any:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        detail = (await client.get(f"/api/tickets/{ticket_id}", headers=headers)).json()
        outbound = [m for m in detail["messages"] if m["direction"] == "outbound"]
        if outbound and outbound[-1]["delivery_status"] == status:
            return outbound[-1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"reply never reached {status}: {outbound}")


async def test_reply_is_retried_after_failures_and_delivered_once(ticket_id: int, settings: Settings) -> None:
    """Two temporary failures, then success: three attempts, one delivery, status sent with the provider id."""
    sender = FlakySender(failures=2)
    server = LiveServer(settings, senders={"sms": sender}).start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            alice = await login(client, "alice", "password-123")
            r = await client.post(f"/api/tickets/{ticket_id}/reply", json={"text": "On its way"}, headers=alice)
            assert r.status_code == 201
            assert r.json()["delivery_status"] == "pending"
            sent = await wait_for_status(client, alice, ticket_id, "sent")
            await asyncio.sleep(0.3)  # give a wrongly repeated delivery the chance to happen
    finally:
        server.stop()
    assert len(sender.attempts) == 3
    assert [m.text for m in sender.delivered] == ["On its way"]
    assert sender.delivered[0].recipient == "+14155550100"
    assert sent["delivery_error"] is None


async def test_permanent_failure_marks_message_failed_with_reason(ticket_id: int, settings: Settings) -> None:
    """A permanent error is not retried: the message shows failed and why, for the agent to see."""
    sender = FlakySender(failures=100, permanent=True)
    server = LiveServer(settings, senders={"sms": sender}).start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            alice = await login(client, "alice", "password-123")
            await client.post(f"/api/tickets/{ticket_id}/reply", json={"text": "hello"}, headers=alice)
            failed = await wait_for_status(client, alice, ticket_id, "failed")
            await asyncio.sleep(0.3)
    finally:
        server.stop()
    assert len(sender.attempts) == 1
    assert "550" in failed["delivery_error"]


async def test_gives_up_after_max_attempts(ticket_id: int, settings: Settings) -> None:
    """Temporary failures stop after outbox_max_attempts and the message is marked failed."""
    sender = FlakySender(failures=100)
    server = LiveServer(settings.model_copy(update={"outbox_max_attempts": 3}), senders={"sms": sender}).start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            alice = await login(client, "alice", "password-123")
            await client.post(f"/api/tickets/{ticket_id}/reply", json={"text": "hello"}, headers=alice)
            await wait_for_status(client, alice, ticket_id, "failed")
    finally:
        server.stop()
    assert len(sender.attempts) == 3


async def test_reply_without_adapter_fails_visibly(ticket_id: int, server: LiveServer) -> None:
    """No adapter for the channel: the reply is marked failed saying so, not silently dropped."""
    async with httpx.AsyncClient(base_url=server.url) as client:
        alice = await login(client, "alice", "password-123")
        await client.post(f"/api/tickets/{ticket_id}/reply", json={"text": "hello"}, headers=alice)
        failed = await wait_for_status(client, alice, ticket_id, "failed")
    assert "no adapter" in failed["delivery_error"]


def test_backoff_doubles_and_is_capped() -> None:
    """Retry delays double from the base and never exceed an hour."""
    assert [backoff_seconds(n, 2.0) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert backoff_seconds(40, 2.0) == 3600.0


async def test_many_status_changes_in_one_transaction_move_forward_only(rt: Runtime) -> None:
    """``set_delivery_statuses`` applies a batch in order: each message moves forward only (a late "sent" never
    overwrites "delivered"), keeps its metadata with the update merged in, and emits one event per move."""
    await make_queue(rt, "support")
    results = await ingest_batch(
        rt,
        [
            InboundMessage(
                channel="sms",
                external_id=f"SM{n}",
                text="help",
                sender=Identity(kind="phone", value="+14155550100"),
                metadata={"kept": n},
            )
            for n in (1, 2)
        ],
    )
    m1, m2 = (r.message_id for r in results)  # type: ignore[union-attr]
    async with rt.write() as tx:
        moved = await set_delivery_statuses(
            tx,
            [
                StatusChange(m1, DeliveryStatus.SENT),
                StatusChange(m1, DeliveryStatus.DELIVERED),
                StatusChange(m2, DeliveryStatus.SENT, meta_update={"provider_id": "P2"}),
                StatusChange(m1, DeliveryStatus.SENT),
            ],
        )
        events = [(e.payload["message_id"], e.payload["status"]) for e in tx.events]
    assert moved == [m1, m1, m2]
    assert events == [(m1, "sent"), (m1, "delivered"), (m2, "sent")]
    async with rt.write() as tx:
        assert await set_delivery_statuses(tx, [StatusChange(m2, DeliveryStatus.PENDING)]) == []
        assert tx.events == []
    async with rt.read() as conn:
        rows = {r.id: r for r in await conn.execute(select(M.c.id, M.c.delivery_status, M.c.meta))}
    assert rows[m1].delivery_status == "delivered"
    assert rows[m2].delivery_status == "sent"
    assert rows[m2].meta == {"kept": 2, "provider_id": "P2"}


async def test_a_late_sent_racing_a_delivered_receipt_never_moves_the_status_back(rt: Runtime) -> None:
    """A widget acknowledges a reply ("delivered") while the outbox is still recording that it sent it: when the
    receipt's transaction writes first, the outbox's "sent", read before that commit and written after it, must
    not move the message back (the console would show "sent" for good). PostgreSQL only: SQLite runs one
    writer at a time, so the two cannot interleave."""
    if rt.db.is_sqlite:
        pytest.skip("SQLite runs one writing transaction at a time")
    await make_queue(rt, "support")
    sender = Identity(kind="phone", value="+14155550100")
    [r] = await ingest_batch(rt, [InboundMessage(channel="sms", external_id="SM1", text="hi", sender=sender)])
    message_id = r.message_id  # type: ignore[union-attr]

    async def receipt(tx: Tx) -> None:
        assert await set_delivery_statuses(tx, [StatusChange(message_id, DeliveryStatus.DELIVERED)]) == [message_id]

    async def outbox() -> list[int]:
        async with rt.write() as tx:
            return await set_delivery_statuses(tx, [StatusChange(message_id, DeliveryStatus.SENT)])

    assert await racing(rt, receipt, outbox()) == []
    async with rt.read() as conn:
        status = (await conn.execute(select(M.c.delivery_status).where(M.c.id == message_id))).scalar_one()
    assert status == "delivered"


async def test_a_pass_with_nothing_due_does_not_wait_for_the_writer(rt: Runtime, ticket_id: int) -> None:
    """The dispatcher polls every second and looks again after every batch; finding nothing must not take a
    writer's turn (on SQLite every ingest batch and reply waits for that turn). A pass with a due row does."""
    sender = FlakySender(failures=0)
    dispatcher = OutboxDispatcher(rt, {"sms": sender})
    async with rt.db.begin():  # a long write elsewhere in the process holds the writer's turn
        assert await asyncio.wait_for(dispatcher.dispatch_due(), 2) == 0
    bob = await make_agent(rt, "bob", role="supervisor")
    boss = Principal(agent_id=bob, username="bob", display_name="Bob", role="supervisor", queue_ids=frozenset())
    await reply(rt, ticket_id=ticket_id, principal=boss, text="hi")
    assert await asyncio.wait_for(dispatcher.dispatch_due(), 10) == 1
    assert [m.text for m in sender.delivered] == ["hi"]


async def test_two_dispatchers_never_send_the_same_row(rt: Runtime, ticket_id: int) -> None:
    """Two dispatchers (two processes, or two passes) claim due rows at the same time: every reply is sent
    exactly once, whichever claims it, and each is recorded as sent."""

    class SlowSender(FlakySender):
        async def send(self, message: OutboundMessage) -> DeliveryResult:
            await asyncio.sleep(0.01)  # the claim's lease must cover the time it takes
            return await super().send(message)

    bob = await make_agent(rt, "bob", role="supervisor")
    boss = Principal(agent_id=bob, username="bob", display_name="Bob", role="supervisor", queue_ids=frozenset())
    texts = [f"reply {i}" for i in range(30)]
    await asyncio.gather(*(reply(rt, ticket_id=ticket_id, principal=boss, text=t) for t in texts))
    senders = [SlowSender(failures=0), SlowSender(failures=0)]
    dispatchers = [OutboxDispatcher(rt, {"sms": s}) for s in senders]

    async def drain(d: OutboxDispatcher) -> None:
        while await d.dispatch_due(limit=7) > 0:
            pass

    await asyncio.gather(*(drain(d) for d in dispatchers))
    sent = [m.text for s in senders for m in s.delivered]
    assert sorted(sent) == sorted(texts)
    async with rt.read() as conn:
        statuses = (await conn.execute(select(M.c.delivery_status).where(M.c.direction == "outbound"))).scalars()
        assert set(statuses) == {DeliveryStatus.SENT.value}


async def test_an_attempt_failing_after_its_lease_ended_leaves_the_row_sent_by_another(
    rt: Runtime, ticket_id: int
) -> None:
    """A send that outlasts its lease: another dispatcher takes the row over and sends it. When the first
    attempt then fails (permanently), the row and its message stay sent, not failed."""

    class HungSender(FlakySender):
        def __init__(self) -> None:
            super().__init__(failures=1, permanent=True)
            self.started, self.go = asyncio.Event(), asyncio.Event()

        async def send(self, message: OutboundMessage) -> DeliveryResult:
            self.started.set()
            await self.go.wait()
            return await super().send(message)

    bob = await make_agent(rt, "bob", role="supervisor")
    boss = Principal(agent_id=bob, username="bob", display_name="Bob", role="supervisor", queue_ids=frozenset())
    await reply(rt, ticket_id=ticket_id, principal=boss, text="on its way")
    hung, other = HungSender(), FlakySender(failures=0)
    first = OutboxDispatcher(rt, {"sms": hung})
    first.lease = timedelta(milliseconds=1)
    attempt = asyncio.create_task(first.dispatch_due())
    await asyncio.wait_for(hung.started.wait(), 5)
    await asyncio.sleep(0.05)  # the lease has ended
    assert await OutboxDispatcher(rt, {"sms": other}).dispatch_due() == 1
    hung.go.set()
    assert await attempt == 1
    assert [m.text for m in other.delivered] == ["on its way"] and hung.delivered == []
    async with rt.read() as conn:
        row = (await conn.execute(select(O.c.status, O.c.last_error))).one()
        status = (await conn.execute(select(M.c.delivery_status).where(M.c.direction == "outbound"))).scalar_one()
    assert (row.status, row.last_error, status) == ("sent", None, DeliveryStatus.SENT.value)


async def test_a_reply_committed_while_a_pass_runs_is_sent_without_waiting_for_the_poll(
    rt: Runtime, ticket_id: int
) -> None:
    """The dispatcher sleeps until a commit wakes it or its poll comes. A reply that commits while a pass is
    reading (and finds nothing yet) must still wake the next pass: it is sent long before the poll."""
    rt.settings.outbox_poll_seconds = 30.0
    bob = await make_agent(rt, "bob", role="supervisor")
    boss = Principal(agent_id=bob, username="bob", display_name="Bob", role="supervisor", queue_ids=frozenset())
    sender = FlakySender(failures=0)

    class Racing(OutboxDispatcher):
        raced = False

        async def _claim(self, limit: int) -> Any:
            rows = await super()._claim(limit)
            if not rows and not self.raced:
                self.raced = True  # this pass found nothing; a reply commits before it ends
                await reply(rt, ticket_id=ticket_id, principal=boss, text="during the pass")
            return rows

    dispatcher = Racing(rt, {"sms": sender})
    await dispatcher.start()
    try:
        for _ in range(100):
            if sender.delivered:
                break
            await asyncio.sleep(0.05)
        assert [m.text for m in sender.delivered] == ["during the pass"]
    finally:
        await dispatcher.stop()


async def test_a_reply_is_handed_to_the_running_dispatcher_leased_not_claimed(rt: Runtime, ticket_id: int) -> None:
    """With the process's dispatcher running, a reply's outbox row is written leased to it and handed over
    after the commit: it is sent without a pass reading the table for it and claiming it."""
    rt.settings.outbox_poll_seconds = 30.0
    bob = await make_agent(rt, "bob", role="supervisor")
    boss = Principal(agent_id=bob, username="bob", display_name="Bob", role="supervisor", queue_ids=frozenset())
    sender = FlakySender(failures=0)
    claimed: list[int] = []

    class Watched(OutboxDispatcher):
        async def _claim(self, limit: int) -> Any:
            rows = await super()._claim(limit)
            claimed.extend(r.id for r in rows)
            return rows

    dispatcher = Watched(rt, {"sms": sender})
    await dispatcher.start()
    try:
        await asyncio.sleep(0.05)  # its first pass, which reads the table, is over
        await reply(rt, ticket_id=ticket_id, principal=boss, text="handed over")
        # Until the delivery is recorded, not only made: stopping the dispatcher between the two (a loaded
        # machine widens that gap) leaves the row to be sent again once its lease ends, as designed.
        deadline = asyncio.get_running_loop().time() + 10
        while asyncio.get_running_loop().time() < deadline:
            async with rt.read() as conn:
                if sender.delivered and (await conn.execute(select(O.c.status))).scalar_one() != "pending":
                    break
            await asyncio.sleep(0.02)
    finally:
        await dispatcher.stop()
    assert [m.text for m in sender.delivered] == ["handed over"]
    assert claimed == []
    async with rt.read() as conn:
        row = (await conn.execute(select(O.c.status, O.c.locked_until))).one()
    assert row.status == "sent" and row.locked_until is None


async def test_rows_handed_but_not_sent_are_freed_when_the_dispatcher_stops(rt: Runtime, ticket_id: int) -> None:
    """A row handed to a dispatcher that stops before sending it is released at once for the next one (its
    lease would otherwise hold it back); a row whose sending was under way keeps its lease, as a claimed one
    does, and is sent again once the lease ends."""
    rt.settings.outbox_poll_seconds = 30.0
    bob = await make_agent(rt, "bob", role="supervisor")
    boss = Principal(agent_id=bob, username="bob", display_name="Bob", role="supervisor", queue_ids=frozenset())
    started = asyncio.Event()

    class Stuck(FlakySender):
        async def send(self, message: OutboundMessage) -> DeliveryResult:
            started.set()
            await asyncio.Event().wait()  # never returns
            raise AssertionError

    dispatcher = OutboxDispatcher(rt, {"sms": Stuck(failures=0)})
    await dispatcher.start()
    first = await reply(rt, ticket_id=ticket_id, principal=boss, text="under way")
    await asyncio.wait_for(started.wait(), 5)
    second = await reply(rt, ticket_id=ticket_id, principal=boss, text="still waiting")
    await dispatcher.stop()
    async with rt.read() as conn:
        leases = {r.message_id: r.locked_until for r in await conn.execute(select(O.c.message_id, O.c.locked_until))}
    assert leases[first.id] is not None and leases[first.id] > utcnow()
    assert leases[second.id] is None
    # The next dispatcher takes the freed row at once.
    sender = FlakySender(failures=0)
    assert await OutboxDispatcher(rt, {"sms": sender}).dispatch_due() == 1
    assert [m.text for m in sender.delivered] == ["still waiting"]


async def test_a_pending_reply_shows_why_it_waits(ticket_id: int, settings: Settings) -> None:
    """While a reply is retried after failures, the message carries the last attempt's error (in the API and in
    a ``message.status`` event the console shows), and the error goes once it is sent."""
    sender = FlakySender(failures=2)
    server = LiveServer(settings.model_copy(update={"outbox_backoff_base_seconds": 0.3}), senders={"sms": sender})
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            alice = await login(client, "alice", "password-123")
            r = await client.post(f"/api/tickets/{ticket_id}/reply", json={"text": "On its way"}, headers=alice)
            assert r.status_code == 201
            deadline = time.monotonic() + 10
            pending = None
            while time.monotonic() < deadline:
                detail = (await client.get(f"/api/tickets/{ticket_id}", headers=alice)).json()
                pending = [m for m in detail["messages"] if m["id"] == r.json()["id"]][0]
                if pending["delivery_error"] or pending["delivery_status"] != "pending":
                    break
                await asyncio.sleep(0.02)
            assert pending is not None and pending["delivery_status"] == "pending", pending
            assert pending["delivery_error"] == "smtp: 421 try again later"
            sent = await wait_for_status(client, alice, ticket_id, "sent")
            assert sent["delivery_error"] is None
    finally:
        server.stop()
    async with server_events(settings) as events:
        retries = [e for e in events if e.type == "message.status" and e.payload["status"] == "pending"]
    assert retries and retries[0].payload["error"] == "smtp: 421 try again later"


@contextlib.asynccontextmanager
async def server_events(settings: Settings) -> Any:
    from hub.db import Database
    from hub.events import events_after

    db = Database(settings.database_url)
    try:
        async with db.connect() as conn:
            yield await events_after(conn, 0)
    finally:
        await db.dispose()
