"""The social webhooks' inbox (``channels.social.inbox``): a webhook is answered once its batch is committed,
queued when processing takes longer than SWITCHBOARD_SOCIAL_WEBHOOK_ANSWER_SECONDS (0 here); every batch
acknowledged is stored, once, also when its process died before it was processed; bad input is refused with
nothing kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select

from channels.social import inbox as inbox_module
from channels.social.models import SocialInboxRow
from channels.social.service import SocialService
from hub.audit import AuditEntry
from hub.config import Settings
from hub.db import utcnow
from hub.messages import InboundMessage, IngestResult
from hub.runtime import Runtime
from tests.channels.social.conftest import (
    BOT,
    NUMBER,
    TG_SECRET,
    Provider,
    encode,
    fixture,
    sign,
    whatsapp_text,
    with_social,
)
from tests.conftest import LiveServer, login, make_agent, until
from ticketing.tables import messages as M

N = SocialInboxRow.__table__  # type: ignore[attr-defined]
A = AuditEntry.__table__  # type: ignore[attr-defined]


@pytest.fixture
def social_settings(settings: Settings, provider: Provider, tmp_path: Path) -> Settings:
    """The social accounts, with webhooks answered at once: never waiting for their batch."""
    return with_social(
        settings, provider.url, attachment_dir=tmp_path / "attachments", social_webhook_answer_seconds=0.0
    )


def _batch(prefix: str, n: int) -> bytes:
    """A WhatsApp batch of ``n`` messages from ``n`` senders."""
    entries = [whatsapp_text(f"{prefix}.{i}", f"hello {i}", sender=f"49151{i:08d}")["entry"][0] for i in range(n)]
    return encode({"object": "whatsapp_business_account", "entry": entries})


async def _stored(rt: Runtime, prefix: str = "") -> list[str]:
    async with rt.read() as conn:
        found = await conn.execute(select(M.c.external_id).where(M.c.external_id.startswith(prefix)))
        return sorted(str(r[0]) for r in found)


async def _inbox(rt: Runtime) -> list[Any]:
    async with rt.read() as conn:
        return list(await conn.execute(select(N).order_by(N.c.id)))


async def _inbox_empty(rt: Runtime) -> bool:
    async with rt.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(N))).scalar_one()) == 0


async def test_a_webhook_is_answered_queued_and_its_messages_are_stored_shortly_after(
    hub: httpx.AsyncClient, rt: Runtime
) -> None:
    """With no time to wait, Meta's webhook answers 200 ``queued`` with what the batch carries (what it stored
    not known yet), and every message is stored soon after, once; the inbox is then empty. Telegram's too."""
    body = _batch("wamid.queued", 30)
    r = await hub.post("/webhooks/meta", content=body, headers=sign(body))
    assert r.status_code == 200, r.text
    assert r.json() == {"messages": 30, "stored": 0, "receipts": 0, "skipped": 0, "quarantined": 0, "queued": True}
    update = encode(fixture("telegram_message.json"))
    r = await hub.post(
        f"/webhooks/telegram/{BOT}", content=update, headers={"X-Telegram-Bot-Api-Secret-Token": TG_SECRET}
    )
    assert r.status_code == 200, r.text
    assert r.json()["queued"] is True and r.json()["messages"] == 1

    async def all_stored() -> bool:
        return len(await _stored(rt, "wamid.queued.")) == 30 and await _stored(rt, f"{BOT}:") == [f"{BOT}:10000"]

    await until(all_stored, 20, what="the queued batches stored")
    await until(lambda: _inbox_empty(rt), 10, what="the inbox emptied")
    assert await _stored(rt, "wamid.queued.") == sorted(f"wamid.queued.{i}" for i in range(30))


async def test_a_batch_delivered_twice_while_queued_is_stored_once(hub: httpx.AsyncClient, rt: Runtime) -> None:
    """Meta sends a batch again before the first copy was processed (both answered queued): each message is
    stored once, and both rows leave the inbox."""
    body = _batch("wamid.twice", 20)
    answers = await asyncio.gather(*(hub.post("/webhooks/meta", content=body, headers=sign(body)) for _ in range(2)))
    assert [a.status_code for a in answers] == [200, 200]
    assert all(a.json()["queued"] for a in answers)
    await until(lambda: _inbox_empty(rt), 20, what="both copies processed")
    assert await _stored(rt, "wamid.twice.") == sorted(f"wamid.twice.{i}" for i in range(20))


async def test_bad_input_is_refused_with_nothing_in_the_inbox(hub: httpx.AsyncClient, rt: Runtime) -> None:
    """What was refused before the inbox is refused as before, synchronously, and nothing is kept: a wrong
    signature, broken JSON, an unknown object, an unknown account, a bot's wrong secret, an unknown bot."""
    body = _batch("wamid.bad", 2)
    assert (await hub.post("/webhooks/meta", content=body, headers=sign(body, "wrong"))).status_code == 403
    assert (await hub.post("/webhooks/meta", content=body)).status_code == 403
    broken = b'{"object": "whatsapp_business_account", "entry": ['
    assert (await hub.post("/webhooks/meta", content=broken, headers=sign(broken))).status_code == 422
    other = encode({"object": "permissions", "entry": []})
    assert (await hub.post("/webhooks/meta", content=other, headers=sign(other))).status_code == 422
    unknown = body.replace(NUMBER.encode(), b"999999999")
    assert (await hub.post("/webhooks/meta", content=unknown, headers=sign(unknown))).status_code == 404
    update = encode(fixture("telegram_message.json"))
    tg, good = f"/webhooks/telegram/{BOT}", {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET}
    assert (await hub.post(tg, content=update, headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"})).status_code == 403
    assert (await hub.post("/webhooks/telegram/nobody", content=update, headers=good)).status_code == 404
    assert (await hub.post(tg, content=b'{"update": 1}', headers=good)).status_code == 422
    assert await _inbox(rt) == []
    assert await _stored(rt) == []


async def test_batches_left_in_the_inbox_are_processed_at_start_once_and_leased_ones_left(
    social_settings: Settings, rt: Runtime
) -> None:
    """A process died with batches in the inbox: one it had taken (its lease ended), twice (it died between
    storing it and removing its row, so the copy is a re-run), one not taken yet, a bot's update. A fresh process
    stores their messages once each and empties the inbox of them; a row another live process holds (its lease
    runs) is left to that process; the update of a bot no longer configured is kept, with the reason."""
    body = _batch("wamid.left", 10)
    waiting = _batch("wamid.waiting", 3)
    held = _batch("wamid.held", 2)
    now = utcnow()
    update = encode(fixture("telegram_message.json"))
    meta: dict[str, Any] = {"provider": "meta", "account": ""}
    rows = [
        {**meta, "body": body, "claimed_until": now - timedelta(seconds=1)},
        {**meta, "body": body, "claimed_until": now - timedelta(minutes=5)},
        {**meta, "body": waiting, "claimed_until": None},
        {**meta, "body": held, "claimed_until": now + timedelta(minutes=10)},
        {"provider": "telegram", "account": BOT, "body": update, "claimed_until": None},
        {"provider": "telegram", "account": "gone", "body": update, "claimed_until": None},
    ]
    async with rt.db.begin() as conn:
        for row in rows:
            await conn.execute(insert(N).values(received_at=now, attempts=0, **row))
    live = LiveServer(social_settings).start()
    try:

        async def processed() -> bool:
            left = await _inbox(rt)
            return len(left) == 2 and left[1].attempts == 1

        await until(processed, 20, what="the left batches processed")
    finally:
        live.stop()
    assert await _stored(rt, "wamid.left.") == sorted(f"wamid.left.{i}" for i in range(10))
    assert await _stored(rt, "wamid.waiting.") == sorted(f"wamid.waiting.{i}" for i in range(3))
    assert await _stored(rt, "wamid.held.") == []
    assert await _stored(rt, f"{BOT}:") == [f"{BOT}:10000"]
    kept, gone = await _inbox(rt)
    assert bytes(kept.body) == held and kept.attempts == 0
    assert gone.account == "gone" and "gone" in gone.error and gone.claimed_until > utcnow()


class Gate:
    """An ingest that holds every message until opened, and remembers what it stored (once per id)."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.waiting = 0
        self.most_waiting = 0
        self.stored: dict[str, int] = {}
        self.fail_next = 0

    async def ingest(self, message: InboundMessage, **_: object) -> IngestResult:
        self.waiting += 1
        self.most_waiting = max(self.most_waiting, self.waiting)
        try:
            await self.open.wait()
        finally:
            self.waiting -= 1
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("the database went away")
        created = message.external_id not in self.stored
        self.stored.setdefault(message.external_id, len(self.stored) + 1)
        return IngestResult(message_id=self.stored[message.external_id], ticket_id=1, contact_id=1, created=created)


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
async def gated(rt: Runtime, social_settings: Settings, gate: Gate) -> AsyncIterator[SocialService]:
    """A ``SocialService`` whose ingest is ``gate``'s (one message per call)."""
    rt.settings = social_settings
    svc = SocialService(rt, gate.ingest, social_settings)
    yield svc
    gate.open.set()
    await svc.stop()


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(inbox_module, "BACKOFF_BASE_SECONDS", 0.05)
    yield


async def test_the_answer_does_not_wait_for_ingest_and_the_batch_is_kept_until_stored(
    gated: SocialService, gate: Gate, rt: Runtime
) -> None:
    """While ingest holds the batch, the webhook has already answered queued and the batch is in the inbox,
    leased to this process; once ingest lets it through, it is stored and its row gone."""
    body = _batch("wamid.gate", 5)
    answer = await gated.meta_webhook(body, sign(body)["X-Hub-Signature-256"])
    assert answer["queued"] and answer["stored"] == 0 and answer["messages"] == 5
    await until(lambda: gate.waiting == 5, what="the batch handed to ingest")
    assert gate.stored == {}
    [row] = await _inbox(rt)
    assert bytes(row.body) == body and row.provider == "meta" and row.claimed_until > utcnow()
    gate.open.set()
    await until(lambda: _inbox_empty(rt), what="the processed batch removed from the inbox")
    assert sorted(gate.stored) == sorted(f"wamid.gate.{i}" for i in range(5))


async def test_at_most_a_few_batches_are_processed_at_once_and_the_rest_wait_in_order(
    gated: SocialService, gate: Gate, rt: Runtime
) -> None:
    """Ten batches arrive while ingest holds everything: only SWITCHBOARD_SOCIAL_INBOX_WORKERS are processed, the others
    wait in the table untaken; once ingest goes on, all are stored, the waiting ones oldest first."""
    bodies = [_batch(f"wamid.many{n}", 2) for n in range(10)]
    for body in bodies:
        assert (await gated.meta_webhook(body, sign(body)["X-Hub-Signature-256"]))["queued"]
    limit = gated.inbox.in_flight
    await until(lambda: gate.waiting == 2 * limit, what="the first batches handed to ingest")
    await asyncio.sleep(0.2)
    assert gate.waiting == 2 * limit and len(gated.inbox.running) == limit
    rows = await _inbox(rt)
    assert len(rows) == 10 and sum(r.claimed_until is None for r in rows) == 10 - limit
    gate.open.set()
    await until(lambda: _inbox_empty(rt), 10, what="every batch processed")
    assert len(gate.stored) == 20 and gate.most_waiting <= 2 * limit
    order = [gate.stored[f"wamid.many{n}.0"] for n in range(limit, 10)]
    assert order == sorted(order)


async def test_a_batch_whose_processing_fails_stays_in_the_inbox_and_is_stored_when_tried_again(
    gated: SocialService, gate: Gate, rt: Runtime, fast_retries: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Ingest fails (not a refusal: the database away): the batch is not dropped but kept with the reason and
    logged, then tried again and stored."""
    gated.inbox.poll_seconds = 0.05
    gate.fail_next = 10**6
    gate.open.set()
    body = _batch("wamid.fail", 1)
    assert (await gated.meta_webhook(body, sign(body)["X-Hub-Signature-256"]))["queued"]

    async def failed_once() -> bool:
        rows = await _inbox(rt)
        return bool(rows) and rows[0].attempts >= 1

    await until(failed_once, what="the failure recorded")
    [row] = await _inbox(rt)
    assert "the database went away" in (row.error or "")
    assert any("not processed" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    assert gate.stored == {}
    gate.fail_next = 0
    await until(lambda: _inbox_empty(rt), what="the batch tried again")
    assert list(gate.stored) == ["wamid.fail.0"]


async def test_the_admin_sees_failing_batches_and_tries_one_now_or_discards_it(
    hub: httpx.AsyncClient, rt: Runtime
) -> None:
    """Two batches failed and wait out their backoff (an hour): one whose cause has passed (the database was
    away), and a bot's update for a bot no longer configured. The admin sees both with the reason and the next
    try; "try now" stores the first's messages at once, and the second fails again, saying why; discarding it
    empties the inbox. All three actions are audited; agents are refused; an unknown batch is a 404."""
    await make_agent(rt, "root", role="admin")
    await make_agent(rt, "ann", role="agent")
    later = utcnow() + timedelta(hours=1)
    rows = [
        {"provider": "meta", "account": "", "body": _batch("wamid.fixed", 2), "attempts": 2, "error": "the db"},
        {"provider": "telegram", "account": "gone", "body": encode(fixture("telegram_message.json")), "attempts": 1},
    ]
    async with rt.db.begin() as conn:
        ids = [
            (
                await conn.execute(insert(N).values(received_at=utcnow(), claimed_until=later, **r).returning(N.c.id))
            ).scalar_one()
            for r in rows
        ]
    fixed, gone = ids
    async with httpx.AsyncClient(base_url=str(hub.base_url), timeout=30) as client:
        admin = await login(client, "root", "password-123")
        agent = await login(client, "ann", "password-123")
        state = (await client.get("/api/social/inbox", headers=admin)).json()
        assert state["waiting"] == 2
        assert [(b["id"], b["provider"], b["account"], b["attempts"], b["error"]) for b in state["failing"]] == [
            (fixed, "meta", "", 2, "the db"),
            (gone, "telegram", "gone", 1, None),
        ]
        assert all(b["next_try_at"] is not None for b in state["failing"])
        assert (await client.get("/api/social/inbox", headers=agent)).status_code == 403
        assert (await client.post(f"/api/social/inbox/{fixed}/retry", headers=agent)).status_code == 403
        assert (await client.post(f"/api/social/inbox/{gone}/discard", headers=agent)).status_code == 403

        assert (await client.post(f"/api/social/inbox/{fixed}/retry", headers=admin)).status_code == 204

        async def fixed_stored() -> bool:
            return await _stored(rt, "wamid.fixed.") == ["wamid.fixed.0", "wamid.fixed.1"]

        await until(fixed_stored, 10, what="the retried batch stored")
        assert (await client.post(f"/api/social/inbox/{gone}/retry", headers=admin)).status_code == 204

        async def failed_again() -> bool:
            left = await _inbox(rt)
            return [r.id for r in left] == [gone] and left[0].attempts == 2

        await until(failed_again, 10, what="the unknown bot's update failed again")
        [failing] = (await client.get("/api/social/inbox", headers=admin)).json()["failing"]
        assert "gone" in failing["error"]
        assert (await client.post(f"/api/social/inbox/{gone}/discard", headers=admin)).status_code == 204
        assert await _inbox(rt) == []
        assert (await client.get("/api/social/inbox", headers=admin)).json() == {"waiting": 0, "failing": []}
        for what in ("retry", "discard"):
            r = await client.post(f"/api/social/inbox/{gone}/{what}", headers=admin)
            assert r.status_code == 404 and "no failing webhook batch" in r.text, r.text
    async with rt.read() as conn:
        audited = [
            (r.action, r.target)
            for r in await conn.execute(select(A.c.action, A.c.target).where(A.c.action.startswith("social_inbox.")))
        ]
    assert sorted(audited) == sorted(
        [
            ("social_inbox.retry", f"social_inbox:{fixed}"),
            ("social_inbox.retry", f"social_inbox:{gone}"),
            ("social_inbox.discard", f"social_inbox:{gone}"),
        ]
    )
