"""The wallboard's figures, from seeded rows (its first load) and from the event stream (kept up to date),
against values computed by hand."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from hub.db import utcnow
from hub.runtime import Runtime
from tests.conftest import until
from tests.ticketing.routing_helpers import SUPERVISOR, agent, arrive, message, queue, ticket, who
from ticketing import routing_service, tables
from ticketing.models import AgentStatus, QueueUpdate, TicketStatus, TicketUpdate
from ticketing.queues import update_queue
from ticketing.ticket_updates import update_ticket
from ticketing.wallboard import Wallboard, service_level, start_wallboard


def test_service_level_counts_abandoned_after_the_threshold_only() -> None:
    # 8 answered, 6 of them within T; 3 abandoned after T (those abandoned within T count on neither side)
    assert service_level(6, 8, 3) == pytest.approx(6 / 11)
    assert service_level(0, 0, 0) is None


def _queue_row(board: Wallboard, name: str) -> dict[str, Any]:
    return next(q for q in board.snapshot()["queues"] if q["name"] == name)


def _agent_row(board: Wallboard, agent_id: int) -> dict[str, Any]:
    return next(a for a in board.snapshot()["agents"] if a["id"] == agent_id)


async def _set(rt: Runtime, ticket_id: int, **values: Any) -> None:
    async with rt.write() as tx:
        await tx.conn.execute(update(tables.tickets).where(tables.tickets.c.id == ticket_id).values(**values))


async def test_first_load_computes_every_figure_from_seeded_rows(rt: Runtime) -> None:
    """Five tickets today in a queue with T = 60 s: answered after 30 s and after 90 s, abandoned after 10 s
    and after 120 s, one still waiting for 200 s; one more answered after 45 s and solved 100 s later.
    SL = answered within T / (answered + abandoned after T) = 2 / (3 + 1); abandonment = 2 / 6;
    ASA = (30 + 90 + 45) / 3 = 55 s; AHT of the agent = 100 s."""
    now = utcnow()
    if (now - now.replace(hour=0, minute=0, second=0, microsecond=0)).total_seconds() < 600:
        pytest.skip("too close to midnight UTC: the seeded times would fall on two days")
    qid = await queue(rt, "sales", channels=["email"])
    await update_queue(rt, queue_id=qid, data=QueueUpdate(service_level_seconds=60, service_level_target=80))
    ada = await agent(rt, "ada", ["sales"])
    ids = await arrive(rt, *(message("email", queue="sales") for _ in range(6)))
    base = now - timedelta(seconds=400)
    at = lambda s: base + timedelta(seconds=s)  # noqa: E731
    closed = {"status": "solved", "assignee_id": None, "offered_agent_id": None}
    await _set(rt, ids[0], queued_at=at(0), answered_at=at(30), assignee_id=ada, offered_agent_id=None)
    await _set(rt, ids[1], queued_at=at(0), answered_at=at(90), assignee_id=ada, offered_agent_id=None)
    await _set(rt, ids[2], queued_at=at(0), abandoned_at=at(10), **closed)
    await _set(rt, ids[3], queued_at=at(0), abandoned_at=at(120), **closed)
    await _set(rt, ids[4], queued_at=at(200), assignee_id=None, offered_agent_id=None)
    await _set(
        rt, ids[5], queued_at=at(0), answered_at=at(45), solved_at=at(145), status="solved", assignee_id=ada,
        offered_agent_id=None,
    )  # fmt: skip
    board = await start_wallboard(rt)
    try:
        q = _queue_row(board, "sales")
        assert q["queued_today"] == 6
        assert q["answered_today"] == 3 and q["abandoned_today"] == 2
        assert q["service_level_today"] == pytest.approx(2 / 4)
        assert q["service_level_30m"] == pytest.approx(2 / 4)
        assert q["abandonment_today"] == pytest.approx(2 / 6)
        assert q["asa_today"] == pytest.approx(55.0, abs=0.01)
        assert q["waiting"] == 1
        assert q["longest_wait"] == pytest.approx(200, abs=5)
        assert q["channels"]["email"]["waiting"] == 1
        a = _agent_row(board, ada)
        assert a["handled_today"] == 1 and a["aht_today"] == pytest.approx(100.0, abs=0.01)
        assert a["load"]["email"] == 2
        # SL 50 % is under the 80 % target: the queue alerts
        assert any("under the target" in text for text in q["alerts"])
    finally:
        board.stop()


async def test_events_move_the_figures_arrival_answer_abandon_and_status(rt: Runtime) -> None:
    qid = await queue(rt, "support", channels=["webchat"])
    ada = await agent(rt, "ada", ["support"])
    board = await start_wallboard(rt)
    try:
        [t1] = await arrive(rt, message("webchat", queue="support"))
        await until(lambda: _queue_row(board, "support")["waiting"] == 1)
        assert _queue_row(board, "support")["queued_today"] == 1
        # the agent goes available: offered (still waiting), then accepts: answered
        await routing_service.set_agent_status(rt, agent_id=ada, status=AgentStatus.AVAILABLE)
        await until(lambda: _agent_row(board, ada)["status"] == "available")
        assert (await ticket(rt, t1)).offered_agent_id == ada
        assert _queue_row(board, "support")["waiting"] == 1
        await routing_service.accept_offer(rt, ticket_id=t1, principal=who(ada))
        await until(lambda: _queue_row(board, "support")["answered_today"] == 1)
        q = _queue_row(board, "support")
        assert q["waiting"] == 0 and q["service_level_today"] == 1.0
        assert _agent_row(board, ada)["load"]["webchat"] == 1
        assert q["agents"]["busy"] == 1
        assert (await ticket(rt, t1)).answered_at is not None
        # solved: handled, the load freed
        await update_ticket(rt, ticket_id=t1, principal=who(ada), data=TicketUpdate(status=TicketStatus.SOLVED))
        await until(lambda: _agent_row(board, ada)["handled_today"] == 1)
        assert _agent_row(board, ada)["load"].get("webchat", 0) == 0
        # the agent goes away; a new ticket waits and is closed unanswered: abandoned
        await routing_service.set_agent_status(rt, agent_id=ada, status=AgentStatus.AWAY)
        await until(lambda: _agent_row(board, ada)["status"] == "away")
        assert _queue_row(board, "support")["agents"]["away"] == 1
        [t2] = await arrive(rt, message("webchat", queue="support"))
        await until(lambda: _queue_row(board, "support")["waiting"] == 1)
        await update_ticket(rt, ticket_id=t2, principal=SUPERVISOR, data=TicketUpdate(status=TicketStatus.CLOSED))
        await until(lambda: _queue_row(board, "support")["abandoned_today"] == 1)
        q = _queue_row(board, "support")
        assert q["waiting"] == 0 and q["queued_today"] == 2
        assert q["abandonment_today"] == pytest.approx(1 / 2)
        # abandoned within T (60 s by default): the service level stays 1 / 1
        assert q["service_level_today"] == 1.0
        assert (await ticket(rt, t2)).abandoned_at is not None
        assert qid == q["id"]
    finally:
        board.stop()


def test_a_day_across_a_dst_change_is_25_or_23_hours() -> None:
    """New York's "today" on the day DST ends (1 Nov 2026) runs 25 hours, from 04:00 UTC to 05:00 UTC the next
    day; on the day it starts (8 Mar 2026), 23 hours."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from ticketing.wallboard import day_bounds

    ny = ZoneInfo("America/New_York")
    start, end = day_bounds(datetime(2026, 11, 1, 12, tzinfo=UTC).timestamp(), ny)
    assert (start, end) == (
        datetime(2026, 11, 1, 4, tzinfo=UTC).timestamp(),
        datetime(2026, 11, 2, 5, tzinfo=UTC).timestamp(),
    )
    start, end = day_bounds(datetime(2026, 3, 8, 12, tzinfo=UTC).timestamp(), ny)
    assert end - start == 23 * 3600


async def test_each_queue_counts_today_from_its_own_midnight(rt: Runtime) -> None:
    """Two queues, one at UTC+14 and one at UTC-12 (their days begin two hours apart): a ticket answered just
    before the later midnight counts today in the queue whose day began earlier, and not in the other."""
    from zoneinfo import ZoneInfo

    from ticketing.wallboard import day_bounds

    east = await queue(rt, "east", channels=["email"])
    await update_queue(rt, queue_id=east, data=QueueUpdate(hours={"timezone": "Etc/GMT-14"}))
    west = await queue(rt, "west", channels=["email"])
    await update_queue(rt, queue_id=west, data=QueueUpdate(hours={"timezone": "Etc/GMT+12"}))
    now = time.time()
    starts = {east: day_bounds(now, ZoneInfo("Etc/GMT-14"))[0], west: day_bounds(now, ZoneInfo("Etc/GMT+12"))[0]}
    later = max(starts, key=lambda q: starts[q])
    earlier = east if later == west else west
    moment = utcnow() - timedelta(seconds=now - starts[later] + 60)  # a minute before the later midnight
    ids = await arrive(rt, message("email", queue="east"), message("email", queue="west"))
    for ticket_id in ids:
        await _set(rt, ticket_id, queued_at=moment, answered_at=moment + timedelta(seconds=5), offered_agent_id=None,
                   assignee_id=None, status="solved", solved_at=moment + timedelta(seconds=6))  # fmt: skip
    board = Wallboard(rt)
    await board.load()
    rows = {q["id"]: q for q in board.snapshot()["queues"]}
    assert (rows[earlier]["queued_today"], rows[earlier]["answered_today"]) == (1, 1)
    assert (rows[later]["queued_today"], rows[later]["answered_today"]) == (0, 0)
    assert rows[east]["timezone"] == "Etc/GMT-14"


def _health(status: str, detail: str | None) -> Any:
    from hub.events import EventType, NewEvent

    payload = {"channel": "whatsapp", "account": "1555000", "queue": "social", "status": status, "detail": detail,
               "since": utcnow().isoformat(), "last_webhook_at": None, "last_sent_at": None}  # fmt: skip
    return NewEvent(type=EventType.CHANNEL_HEALTH, payload=payload)


async def test_a_channel_accounts_health_is_a_wallboard_alert_until_it_is_ok(rt: Runtime) -> None:
    """A ``channel.health`` event with an expired token shows among the wallboard's channel alerts, also on a
    board loaded later (from the log); the account's return to ok takes the alert away."""
    import channels.social.events  # noqa: F401 - registers the channel.health payload model

    board = await start_wallboard(rt)
    try:
        async with rt.write() as tx:
            tx.emit(_health("token_expired", "token expired — reconnect the WhatsApp number in Admin"))
        await until(lambda: bool(board.snapshot()["channel_alerts"]))
        [alert] = board.snapshot()["channel_alerts"]
        assert (alert["channel"], alert["account"], alert["status"]) == ("whatsapp", "1555000", "token_expired")
        later = Wallboard(rt)
        await later.load()
        assert [a["status"] for a in later.snapshot()["channel_alerts"]] == ["token_expired"]
        async with rt.write() as tx:
            tx.emit(_health("ok", None))
        await until(lambda: board.snapshot()["channel_alerts"] == [])
        fresh = Wallboard(rt)
        await fresh.load()
        assert fresh.snapshot()["channel_alerts"] == []
    finally:
        board.stop()
