"""A call's way to an agent: the skills and priority the IVR flow's ``set`` nodes give it are the voice ticket's
(routing offers it only to an agent with the skills, and a more urgent call first); the call is answered when the
agent's phone leg picks up, and a leg not answered puts the caller back in line for the next agent. Whole calls
replayed from recorded Twilio parameters, signed with a test token, through a flow of the test's."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from hub.config import Settings, TwilioNumberSettings
from hub.runtime import Runtime
from tests.channels.twilio.helpers import FakeTwilioApi, Phone, routed, sid
from tests.conftest import login, make_agent, make_queue
from ticketing.agents import update_agent
from ticketing.models import AgentStatus, AgentUpdate
from ticketing.routing_service import set_agent_status
from ticketing.tables import messages, tickets

LINES = """
name: lines
description: a line whose menu asks routing for a skill or a priority
start: menu
queue: support
languages:
  en: {locale: en-US}
nodes:
  menu:
    type: menu
    prompt: {en: For Spanish press 1. For an urgent matter press 2. For anything else press 3.}
    choices:
      - {key: 1, label: spanish, next: spanish}
      - {key: 2, label: urgent, next: urgent}
      - {key: 3, label: other, next: to_agent}
  spanish:
    type: set
    skills: {spanish: 2}
    next: to_agent
  urgent:
    type: set
    priority: urgent
    next: to_agent
  to_agent:
    type: transfer
    prompt: {en: Connecting you to an agent.}
"""


@pytest.fixture
def twilio_settings(twilio_settings: Settings, tmp_path: Path) -> Settings:
    """The channel's test settings, the number answered by the ``lines`` flow."""
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "lines.yaml").write_text(LINES)
    return twilio_settings.model_copy(
        update={
            "twilio_flows_dir": flows,
            "twilio_numbers": [TwilioNumberSettings(number="+14155550199", flow="lines")],
            "twilio_agent_numbers": {"alice": "+14155550777", "bob": "+14155550778", "sup": "+14155550888"},
        }
    )


async def call_in(client: httpx.AsyncClient, rt: Runtime, n: int, key: str) -> Phone:
    """Call ``n`` presses ``key`` into the queue; returns once its ticket has been through routing."""
    phone = Phone(client, sid("CA", n), caller=f"+1415555{n:04d}")
    await phone.dial()
    await phone.press(key)
    assert phone.last is not None and phone.last.find("./Dial/Conference") is not None, phone.texts
    await routed(rt)
    return phone


async def ticket_of(rt: Runtime, caller: str) -> Any:
    async with rt.read() as conn:
        return (
            await conn.execute(select(tickets).where(tickets.c.channel == "voice", tickets.c.subject.contains(caller)))
        ).one()


async def test_a_skill_set_by_the_flow_routes_the_call_only_to_an_agent_with_it(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    """The flow's ``set skills: {spanish: 2}``: the voice ticket requires it; the available agent without the
    skill (or with too low a level) is not offered the call, the one with it is."""
    await make_queue(rt, "support", channels=["voice"])
    plain = await make_agent(rt, "plain", queues=["support"])
    low = await make_agent(rt, "low", queues=["support"])
    await update_agent(rt, agent_id=low, data=AgentUpdate(skills={"spanish": 1}))
    fluent = await make_agent(rt, "fluent", queues=["support"])
    await update_agent(rt, agent_id=fluent, data=AgentUpdate(skills={"spanish": 3}))
    for agent in (plain, low):
        await set_agent_status(rt, agent_id=agent, status=AgentStatus.AVAILABLE)

    phone = await call_in(client, rt, 1, "1")
    ticket = await ticket_of(rt, phone.caller)
    assert ticket.skills == {"spanish": 2}
    assert ticket.offered_agent_id is None and ticket.queued_at is not None  # nobody fit: it waits

    other = await call_in(client, rt, 2, "3")  # no skill asked: offered to an agent without it
    assert (await ticket_of(rt, other.caller)).offered_agent_id in (plain, low)

    await set_agent_status(rt, agent_id=fluent, status=AgentStatus.AVAILABLE)
    assert (await ticket_of(rt, phone.caller)).offered_agent_id == fluent


async def test_a_call_the_flow_made_urgent_is_offered_before_an_earlier_normal_one(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    """Two calls wait with nobody available, the urgent one (``set priority: urgent``) second in line; the
    agent who becomes available is offered the urgent call first."""
    await make_queue(rt, "support", channels=["voice"])
    agent = await make_agent(rt, "alice", queues=["support"])
    first = await call_in(client, rt, 3, "3")
    urgent = await call_in(client, rt, 4, "2")
    assert (await ticket_of(rt, first.caller)).priority == "normal"
    assert (await ticket_of(rt, urgent.caller)).priority == "urgent"

    await set_agent_status(rt, agent_id=agent, status=AgentStatus.AVAILABLE)
    assert (await ticket_of(rt, urgent.caller)).offered_agent_id == agent
    assert (await ticket_of(rt, first.caller)).offered_agent_id is None


async def placed_call(api: FakeTwilioApi, n: int) -> dict[str, str]:
    """The ``n``-th call the hub placed through Twilio's REST API (waited for: the hub dials after the accept)."""
    for _ in range(200):
        calls = api.posts("/Calls.json")
        if len(calls) >= n:
            return {**calls[n - 1], "_n": str(n)}
        await asyncio.sleep(0.05)
    raise AssertionError(f"the hub placed {len(api.posts('/Calls.json'))} calls, not {n}")


async def answered_today(client: httpx.AsyncClient, headers: dict[str, str]) -> tuple[int, float | None]:
    board = (await client.get("/api/supervisor/wallboard", headers=headers)).json()
    [row] = [q for q in board["queues"] if q["name"] == "support"]
    return row["answered_today"], row["asa_today"]


async def test_a_call_is_answered_when_the_agents_phone_picks_up_and_a_missed_leg_goes_to_the_next_agent(
    client: httpx.AsyncClient, rt: Runtime, api: FakeTwilioApi
) -> None:
    """Alice accepts and her phone rings (not answered yet: no answered_at, the wallboard counts nothing);
    her leg's signed status callback says no-answer: the call goes back in line, keeping its place
    (queued_at), offered to Bob, not to her again. Bob accepts, his leg picks up (in-progress): answered_at is
    stamped then, the wallboard counts one answered call, and the timeline tells both."""
    await make_queue(rt, "support", channels=["voice"])
    await make_agent(rt, "sup", role="supervisor")
    sup = await login(client, "sup", "password-123")
    alice = await make_agent(rt, "alice", queues=["support"], available=True)
    phone = await call_in(client, rt, 5, "3")
    ticket = await ticket_of(rt, phone.caller)
    assert ticket.offered_agent_id == alice
    bob = await make_agent(rt, "bob", queues=["support"], available=True)

    r = await client.post(f"/api/tickets/{ticket.id}/accept", headers=await login(client, "alice", "password-123"))
    assert r.status_code == 200, r.text
    ringing = await placed_call(api, 1)
    assert ringing["To"] == "+14155550777"
    taken = await ticket_of(rt, phone.caller)
    assert taken.assignee_id == alice and taken.answered_at is None
    assert (await answered_today(client, sup))[0] == 0

    assert (await phone.agent_leg(ringing, "no-answer")).status_code == 200
    back = await ticket_of(rt, phone.caller)
    assert back.assignee_id is None and back.answered_at is None
    assert back.offered_agent_id == bob and back.queued_at == ticket.queued_at
    assert (await phone.agent_leg(ringing, "no-answer")).status_code == 200  # a retry changes nothing
    assert (await ticket_of(rt, phone.caller)).offered_agent_id == bob

    r = await client.post(f"/api/tickets/{ticket.id}/accept", headers=await login(client, "bob", "password-123"))
    assert r.status_code == 200, r.text
    second = await placed_call(api, 2)
    assert second["To"] == "+14155550778"
    assert (await phone.agent_leg(second, "in-progress")).status_code == 200
    done = await ticket_of(rt, phone.caller)
    assert done.assignee_id == bob and done.answered_at is not None
    for _ in range(100):  # the server's wallboard applies the event after its commit
        answered, asa = await answered_today(client, sup)
        if answered:
            break
        await asyncio.sleep(0.05)
    assert answered == 1 and asa is not None
    async with rt.read() as conn:
        texts = [
            r[0]
            for r in await conn.execute(
                select(messages.c.text).where(messages.c.ticket_id == ticket.id, messages.c.direction == "note")
            )
        ]
    assert any("did not pick up (no-answer): the caller is back in line" in t for t in texts)
    assert any(t.startswith("Answered by") for t in texts)


async def test_a_caller_who_hangs_up_while_the_agents_phone_rings_is_abandoned(
    client: httpx.AsyncClient, rt: Runtime, api: FakeTwilioApi
) -> None:
    """Taken but never picked up: the caller hanging up is an abandoned call (the ticket leaves the agent)."""
    await make_queue(rt, "support", channels=["voice"])
    await make_agent(rt, "alice", queues=["support"], available=True)
    phone = await call_in(client, rt, 6, "3")
    ticket = await ticket_of(rt, phone.caller)
    r = await client.post(f"/api/tickets/{ticket.id}/accept", headers=await login(client, "alice", "password-123"))
    assert r.status_code == 200, r.text
    ringing = await placed_call(api, 1)
    assert (await phone.hang_up(duration=40)).status_code == 200
    gone = await ticket_of(rt, phone.caller)
    assert gone.status == "solved" and "abandoned" in gone.tags and gone.assignee_id is None
    assert (await phone.agent_leg(ringing, "in-progress")).status_code == 200  # too late: nothing changes
    assert (await ticket_of(rt, phone.caller)).answered_at is None


async def test_a_waiting_call_transferred_to_an_agent_rings_their_phone(
    client: httpx.AsyncClient, rt: Runtime, api: FakeTwilioApi
) -> None:
    """A supervisor hands a waiting call straight to Bob (a transfer, not an offer): Bob's phone is dialled into
    the caller's room, and the call is answered only when it picks up."""
    await make_queue(rt, "support", channels=["voice"])
    await make_agent(rt, "sup", role="supervisor")
    bob = await make_agent(rt, "bob", queues=["support"])
    phone = await call_in(client, rt, 7, "3")
    ticket = await ticket_of(rt, phone.caller)
    r = await client.post(
        f"/api/tickets/{ticket.id}/transfer", json={"agent_id": bob}, headers=await login(client, "sup", "password-123")
    )
    assert r.status_code == 200, r.text
    ringing = await placed_call(api, 1)
    assert ringing["To"] == "+14155550778"
    assert (await ticket_of(rt, phone.caller)).answered_at is None
    assert (await phone.agent_leg(ringing, "in-progress")).status_code == 200
    assert (await ticket_of(rt, phone.caller)).answered_at is not None


async def _answered_by_alice(client: httpx.AsyncClient, rt: Runtime, api: FakeTwilioApi, n: int) -> tuple[Any, int]:
    """A first call answered by Alice and ended; her ticket stays open with her."""
    await make_queue(rt, "support", channels=["voice"])
    alice = await make_agent(rt, "alice", queues=["support"], available=True)
    first = await call_in(client, rt, n, "3")
    ticket = await ticket_of(rt, first.caller)
    r = await client.post(f"/api/tickets/{ticket.id}/accept", headers=await login(client, "alice", "password-123"))
    assert r.status_code == 200, r.text
    assert (await first.agent_leg(await placed_call(api, 1), "in-progress")).status_code == 200
    assert (await first.hang_up(duration=60)).status_code == 200
    held = await ticket_of(rt, first.caller)
    assert held.assignee_id == alice and held.status in ("new", "open", "pending")
    return held, alice


async def test_a_repeat_call_about_a_held_ticket_rings_the_agent_who_holds_it(
    client: httpx.AsyncClient, rt: Runtime, api: FakeTwilioApi
) -> None:
    """The caller rings again while Alice (available) still holds their open ticket: the new call joins that
    ticket and Alice's phone is dialled into the new call's room; it is answered when she picks up."""
    held, alice = await _answered_by_alice(client, rt, api, 8)
    again = Phone(client, sid("CA", 9), caller=f"+1415555{8:04d}")
    await again.dial()
    await again.press("3")
    assert again.last is not None and again.last.find("./Dial/Conference") is not None, again.texts
    assert (await ticket_of(rt, again.caller)).id == held.id
    ringing = await placed_call(api, 2)
    assert ringing["To"] == "+14155550777" and f"switchboard-{again.call_sid}" in ringing["Twiml"]
    assert ringing["StatusCallback"].endswith(f"call={again.call_sid}&agent={alice}")
    assert (await again.agent_leg(ringing, "in-progress")).status_code == 200
    await again.twiml("/webhooks/twilio/voice/wait", again.params(CallStatus="in-progress"))
    assert "You are now connected to" in " ".join(again.texts)


async def test_a_repeat_call_while_the_holder_is_away_goes_to_another_agent(
    client: httpx.AsyncClient, rt: Runtime, api: FakeTwilioApi
) -> None:
    """Alice went away holding the caller's ticket: the repeat call puts the ticket back in line (she keeps
    nothing she cannot answer) and routing offers it to Bob, whose phone rings into the new call's room when he
    accepts."""
    held, alice = await _answered_by_alice(client, rt, api, 10)
    await set_agent_status(rt, agent_id=alice, status=AgentStatus.AWAY)
    bob = await make_agent(rt, "bob", queues=["support"], available=True)
    again = Phone(client, sid("CA", 11), caller=f"+1415555{10:04d}")
    await again.dial()
    await again.press("3")
    for _ in range(100):
        offered = await ticket_of(rt, again.caller)
        if offered.offered_agent_id == bob:
            break
        await asyncio.sleep(0.05)
    assert offered.id == held.id and offered.assignee_id is None and offered.offered_agent_id == bob
    r = await client.post(f"/api/tickets/{held.id}/accept", headers=await login(client, "bob", "password-123"))
    assert r.status_code == 200, r.text
    ringing = await placed_call(api, 2)
    assert ringing["To"] == "+14155550778" and f"switchboard-{again.call_sid}" in ringing["Twiml"]


async def test_a_repeat_call_the_holder_does_not_pick_up_goes_to_another_agent(
    client: httpx.AsyncClient, rt: Runtime, api: FakeTwilioApi
) -> None:
    """Alice holds the caller's (already answered) ticket and her phone rings for the repeat call, but she
    does not pick up: the ticket goes back in line and is offered to Bob, not left with her."""
    held, alice = await _answered_by_alice(client, rt, api, 12)
    bob = await make_agent(rt, "bob", queues=["support"], available=True)
    again = Phone(client, sid("CA", 13), caller=f"+1415555{12:04d}")
    await again.dial()
    await again.press("3")
    ringing = await placed_call(api, 2)
    assert ringing["To"] == "+14155550777"
    assert (await again.agent_leg(ringing, "no-answer")).status_code == 200
    back = await ticket_of(rt, again.caller)
    assert back.id == held.id and back.assignee_id is None and back.offered_agent_id == bob
