"""Silent webhooks judged alike by several processes on one database (``channels.social.health``): an account's
webhooks reach one process behind the load balancer, and the others must not call it silent; a real silence is
raised once and cleared once, for every process.

Two ``SocialService`` on two runtimes (each its own engine, as two processes) on the test's database, with their
sweeps running and a silence setting of a few seconds: the tests wait in real time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from sqlalchemy import select

from channels.social.health import HealthStatus
from channels.social.service import SocialService, accounts_view
from hub.config import Settings
from hub.events import Event, EventType
from hub.runtime import Runtime, standalone
from tests.channels.social.conftest import BOT, IG, NUMBER, PAGE, no_ingest
from tests.conftest import until

_events = Event.__table__  # type: ignore[attr-defined]
ACCOUNTS = {("messenger", PAGE), ("instagram", IG), ("whatsapp", NUMBER), ("telegram", BOT)}
SILENCE = 2.0  # seconds: judged silent after 3 s (the setting plus a step of 1 s), swept every second


@asynccontextmanager
async def two_processes(rt: Runtime, social_settings: Settings) -> AsyncIterator[tuple[SocialService, SocialService]]:
    """Two started social services, each on its own runtime, sweeping every second."""
    settings = social_settings.model_copy(update={"social_silence_seconds": SILENCE})
    rt.settings = settings
    async with standalone(settings) as other:
        a, b = SocialService(rt, no_ingest, settings), SocialService(other, no_ingest, settings)
        await a.start()
        await b.start()
        try:
            yield a, b
        finally:
            await a.stop()
            await b.stop()


async def _health_events(rt: Runtime) -> list[tuple[str, str, str]]:
    async with rt.read() as conn:
        rows = await conn.execute(
            select(_events).where(_events.c.type == EventType.CHANNEL_HEALTH).order_by(_events.c.seq)
        )
        return [(r.payload["channel"], r.payload["account"], r.payload["status"]) for r in rows]


def _status(svc: SocialService, channel: str, account: str) -> HealthStatus:
    health = svc.health.get(channel, account)
    assert health is not None
    return health.status


async def test_webhooks_heard_by_one_process_keep_every_process_from_calling_the_account_silent(
    rt: Runtime, social_settings: Settings
) -> None:
    """Webhooks for the WhatsApp number reach only the first process, several a second, for more than twice
    the silence setting: the second, sweeping all along, never calls the number silent (no silent event is
    appended for it), and lists the time the first heard as the number's last webhook."""
    async with two_processes(rt, social_settings) as (a, b):
        until = time.monotonic() + 2.5 * SILENCE
        while time.monotonic() < until:
            await a.heard("whatsapp", NUMBER)
            await asyncio.sleep(0.2)
        assert _status(b, "whatsapp", NUMBER) == HealthStatus.OK
        assert ("whatsapp", NUMBER, "silent") not in await _health_events(rt)
        heard_at_a = a.health.get("whatsapp", NUMBER).last_webhook_at  # type: ignore[union-attr]
        [listed] = [x for x in await accounts_view(b) if x["channel"] == "whatsapp"]
        assert heard_at_a is not None and listed["last_webhook_at"] is not None
        assert (
            abs((heard_at_a - datetime.fromisoformat(str(listed["last_webhook_at"]))).total_seconds()) <= 1.0
        )  # a step at most


async def test_a_real_silence_is_raised_once_and_a_webhook_at_either_process_clears_it_for_both(
    rt: Runtime, social_settings: Settings
) -> None:
    """No webhook at all for longer than the setting: each account's silent event is appended once, though both
    processes sweep, and both show the alert. A webhook for the number at the second process clears it for both
    with one ok event; the other accounts stay silent."""
    async with two_processes(rt, social_settings) as (a, b):

        async def all_silent() -> bool:
            return all(_status(svc, c, acc) == HealthStatus.SILENT for svc in (a, b) for c, acc in ACCOUNTS)

        await until(all_silent, 10 * SILENCE)
        await asyncio.sleep(2.5)  # more sweeps of both: nothing more is appended
        events = await _health_events(rt)
        assert sorted(events) == sorted((c, acc, "silent") for c, acc in ACCOUNTS)

        await b.heard("whatsapp", NUMBER)
        assert _status(b, "whatsapp", NUMBER) == HealthStatus.OK

        async def cleared_at_a() -> bool:
            return _status(a, "whatsapp", NUMBER) == HealthStatus.OK

        await until(cleared_at_a, 5.0)
        await asyncio.sleep(1.5)  # a sweep of each after the webhook: the number stays ok, no second ok
        events = await _health_events(rt)
        assert events.count(("whatsapp", NUMBER, "ok")) == 1
        assert events.count(("whatsapp", NUMBER, "silent")) == 1
        assert all(
            _status(svc, c, acc) == HealthStatus.SILENT
            for svc in (a, b)
            for c, acc in ACCOUNTS - {("whatsapp", NUMBER)}
        )


async def test_a_stream_of_webhooks_stores_the_time_once_a_step_not_once_a_webhook(
    rt: Runtime, social_settings: Settings
) -> None:
    """The webhook path writes the account's last-webhook time only when the stored one is a step old (a tenth
    of the silence setting, at least a second): a burst stores the first webhook's time, not each one's; a
    webhook a step later stores its own."""
    from channels.social.models import AccountHeardRow

    heard = AccountHeardRow.__table__  # type: ignore[attr-defined]
    settings = social_settings.model_copy(update={"social_silence_seconds": 600.0})  # a step of 60 s
    rt.settings = settings
    svc = SocialService(rt, no_ingest, settings)
    try:
        await svc.start()

        async def stored() -> datetime | None:
            async with rt.read() as conn:
                row = (
                    await conn.execute(
                        select(heard.c.last_webhook_at).where(heard.c.channel == "telegram", heard.c.account == BOT)
                    )
                ).one()
            return row.last_webhook_at  # type: ignore[no-any-return]

        assert await stored() is None
        await svc.heard("telegram", BOT)
        first = await stored()
        assert first is not None
        for _ in range(50):
            await svc.heard("telegram", BOT)
        assert await stored() == first
        svc.health.recorded[("telegram", BOT)] -= timedelta(seconds=60)  # as if the step had gone by
        await svc.heard("telegram", BOT)
        later = await stored()
        assert later is not None and later > first
    finally:
        await svc.stop()
