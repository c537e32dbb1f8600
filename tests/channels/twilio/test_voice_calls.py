"""Whole calls replayed from recorded Twilio parameters, signed with a test token, through the demo flow."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import func, select

from channels.twilio.models import TwilioCall
from hub.events import Event
from hub.runtime import Runtime
from tests.channels.twilio.helpers import FakeTwilioApi, Phone, routed, sid
from tests.conftest import LiveServer, login, make_agent, make_queue
from ticketing.tables import messages, tickets

CALLS = TwilioCall.__table__  # type: ignore[attr-defined]
EVENTS = Event.__table__  # type: ignore[attr-defined]
VALID_ACCOUNT = "12345674"  # passes the demo flow's Luhn check


async def queues(rt: Runtime, closed: bool = False) -> None:
    for name in ("support", "billing", "sales"):
        await make_queue(rt, name, channels=["voice", "sms", "whatsapp"])
    if closed:
        from ticketing.models import QueueUpdate
        from ticketing.queues import list_queues, update_queue

        for q in await list_queues(rt):
            await update_queue(rt, queue_id=q.id, data=QueueUpdate(hours={"timezone": "UTC", "weekly": {}}))


async def count(rt: Runtime, table: Any) -> int:
    async with rt.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def voice_tickets(rt: Runtime) -> list[Any]:
    async with rt.read() as conn:
        return list((await conn.execute(select(tickets).where(tickets.c.channel == "voice"))).all())


async def notes(rt: Runtime, ticket_id: int) -> list[str]:
    async with rt.read() as conn:
        rows = await conn.execute(
            select(messages.c.text).where(messages.c.ticket_id == ticket_id, messages.c.direction == "note")
        )
        return [r[0] for r in rows]


async def to_billing_queue(phone: Phone, rt: Runtime) -> None:
    """The call goes into the billing queue; returns once its ticket has been through routing."""
    await phone.dial()
    await phone.press("1")  # English
    await phone.press("1")  # billing
    await phone.press(VALID_ACCOUNT)
    await phone.press("1")  # the number read back is right
    await routed(rt)


async def test_unsigned_or_wrongly_signed_webhooks_are_refused_and_store_nothing(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    """Missing or wrong X-Twilio-Signature → 403 on every webhook; nothing is stored."""
    phone = Phone(client, sid("CA", 1))
    params = phone.params()
    for path in ("/webhooks/twilio/voice", "/webhooks/twilio/voice/gather?s=1", "/webhooks/twilio/voice/status"):
        assert (await phone.post(path, params, sign=False)).status_code == 403
        assert (await phone.post(path, params, token="not-the-token")).status_code == 403
    # Signed for another URL (a replay against another endpoint) is wrong too.
    from twilio.request_validator import RequestValidator

    other = RequestValidator(phone.token).compute_signature("http://testserver.local/webhooks/twilio/voice/x", params)
    r = await client.post("/webhooks/twilio/voice", data=params, headers={"X-Twilio-Signature": other})
    assert r.status_code == 403
    assert await count(rt, CALLS) == 0
    assert await count(rt, tickets) == 0


async def test_a_call_walks_the_menu_into_the_billing_queue_as_a_voice_ticket(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    """Language, billing, a Luhn-checked account number read back, then the queue: the caller waits in the
    call's conference room, and the call is a voice ticket in billing for the caller's contact."""
    await queues(rt)
    phone = Phone(client, sid("CA", 2))
    root = await phone.dial()
    assert root.find(".//Gather") is not None
    assert "For English, press 1" in " ".join(phone.texts)
    await to_billing_queue(phone, rt)
    assert "You entered 1 2 3 4 5 6 7 4" in " ".join(phone.texts)
    conference = phone.last.find("./Dial/Conference") if phone.last is not None else None
    assert conference is not None
    assert conference.text == f"switchboard-{phone.call_sid}"
    assert conference.get("startConferenceOnEnter") == "false"
    assert conference.get("waitUrl") == "http://testserver.local/webhooks/twilio/voice/wait"
    [ticket] = await voice_tickets(rt)
    detail = await client.get(f"/api/tickets/{ticket.id}", headers=await login_sup(client, rt))
    body = detail.json()
    assert body["channel"] == "voice"
    assert "+14155550142" in detail.text
    assert "billing_account" in detail.text  # the IVR path is on the ticket
    # The hold loop tells the caller their place in line.
    wait = await phone.twiml("/webhooks/twilio/voice/wait", phone.params(CallStatus="in-progress"))
    assert wait.find("Play") is not None
    assert "number 1 in line" in " ".join(phone.texts)


async def login_sup(client: httpx.AsyncClient, rt: Runtime) -> dict[str, str]:
    await make_agent(rt, "sup", role="supervisor")
    return await login(client, "sup", "password-123")


async def test_wrong_keys_and_silence_get_their_prompts_then_the_menu_gives_up_to_support(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    """An unknown key hears "not one of the options", silence hears "I did not hear anything"; after the
    retries the main menu sends the caller to support."""
    await queues(rt)
    phone = Phone(client, sid("CA", 3))
    await phone.dial()
    await phone.press("1")
    await phone.press("9")
    assert "Sorry, that is not one of the options." in phone.texts
    await phone.silence()
    assert "Sorry, I did not hear anything." in phone.texts
    for _ in range(3):
        if "Conference" in phone.tags():
            break
        await phone.silence()
    assert "Conference" in phone.tags()
    [ticket] = await voice_tickets(rt)
    async with rt.read() as conn:
        queue = (await conn.execute(select(CALLS.c.queue).where(CALLS.c.call_sid == phone.call_sid))).scalar_one()
    assert queue == "support"


async def test_speech_choices_reach_the_menu(client: httpx.AsyncClient, rt: Runtime) -> None:
    """Saying "sales" chooses sales."""
    await queues(rt)
    phone = Phone(client, sid("CA", 4))
    await phone.dial()
    await phone.say("English")
    await phone.say("I want to buy something, sales please")
    assert "Conference" in phone.tags()
    async with rt.read() as conn:
        queue = (await conn.execute(select(CALLS.c.queue).where(CALLS.c.call_sid == phone.call_sid))).scalar_one()
    assert queue == "sales"


async def test_a_retried_webhook_gets_the_same_twiml_and_steps_nothing(client: httpx.AsyncClient, rt: Runtime) -> None:
    """Twilio retrying a request (same URL, same parameters) is answered as the first time; the call moved once."""
    await queues(rt)
    phone = Phone(client, sid("CA", 5))
    await phone.dial()
    await phone.press("1")
    url = phone.action()
    params = phone.params(CallStatus="in-progress", Digits="9")
    first, second = await asyncio.gather(phone.post(url, params), phone.post(url, params))
    assert first.text == second.text
    third = await phone.post(url, params)
    assert third.text == first.text
    async with rt.read() as conn:
        state = (await conn.execute(select(CALLS.c.state).where(CALLS.c.call_sid == phone.call_sid))).scalar_one()
    assert state["call"]["tries"] == 1  # one wrong key, not three
    again = await phone.post("/webhooks/twilio/voice", phone.params(CallStatus="ringing"))
    assert again.status_code == 200 and "<Response" in again.text
    assert await count(rt, CALLS) == 1


async def test_an_unknown_call_on_an_action_url_gets_a_polite_goodbye(client: httpx.AsyncClient, rt: Runtime) -> None:
    phone = Phone(client, sid("CA", 6))
    root = await phone.twiml("/webhooks/twilio/voice/gather?s=3", phone.params(Digits="1"))
    assert root.find("Say") is not None and root.find("Hangup") is not None
    assert await count(rt, CALLS) == 0


async def test_malformed_or_oversized_parameters_are_refused_with_400(client: httpx.AsyncClient, rt: Runtime) -> None:
    phone = Phone(client, sid("CA", 7))
    bad_sid = phone.params(CallSid="not-a-call")
    r = await phone.post("/webhooks/twilio/voice", bad_sid)
    assert r.status_code == 400, r.text
    huge = phone.params(CallerName="x" * 5000)
    assert (await phone.post("/webhooks/twilio/voice", huge)).status_code == 400
    await phone.dial()  # a real call, then keys that are no keys on its gather
    r = await phone.post(phone.action(), phone.params(Digits="1; DROP TABLE"))
    assert r.status_code == 400, r.text
    url = "http://testserver.local/webhooks/twilio/voice"
    from twilio.request_validator import RequestValidator

    signature = RequestValidator(phone.token).compute_signature(url, {})
    r = await client.post(
        "/webhooks/twilio/voice",
        content=b'{"CallSid": 1}',
        headers={"X-Twilio-Signature": signature, "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert await count(rt, tickets) == 0


async def test_closed_queue_takes_a_voicemail_that_agents_play_through_the_hub(
    client: httpx.AsyncClient, rt: Runtime, api: FakeTwilioApi
) -> None:
    """Outside business hours the caller leaves a voicemail: a voice ticket with the recording, played through
    the hub's authenticated proxy (never Twilio's URL)."""
    await queues(rt, closed=True)
    phone = Phone(client, sid("CA", 8))
    await phone.dial()
    await phone.press("1")
    await phone.press("2")  # technical support: closed
    assert "Record" in phone.tags()
    assert await voice_tickets(rt) == []
    await phone.record(seconds=14)
    assert "Hangup" in phone.tags()
    assert "Thank you, we have your message. Goodbye." in phone.texts
    [ticket] = await voice_tickets(rt)
    async with rt.read() as conn:
        msg = (await conn.execute(select(messages).where(messages.c.ticket_id == ticket.id))).first()
    assert msg is not None
    [attachment] = msg.attachments
    assert attachment["url"] == f"/api/twilio/recordings/{phone.call_sid}"
    assert "api.twilio.com" not in str(msg.attachments) + msg.text
    assert (await client.get(attachment["url"])).status_code in (401, 403)
    audio = await client.get(attachment["url"], headers=await login_sup(client, rt))
    assert audio.status_code == 200 and audio.content == b"ID3fake-mp3"
    assert any(path.endswith(f"/Recordings/{sid('RE', 1)}.mp3") for _, path, _ in api.requests)


async def test_a_caller_who_hangs_up_while_waiting_is_abandoned(client: httpx.AsyncClient, rt: Runtime) -> None:
    """Hang-up in the queue: the ticket leaves the queue, is tagged abandoned, and a call.abandoned event is
    appended; a repeated status callback changes nothing more."""
    await queues(rt)
    phone = Phone(client, sid("CA", 9))
    await to_billing_queue(phone, rt)
    assert (await phone.hang_up(duration=95)).status_code == 200
    assert (await phone.hang_up(duration=95)).status_code == 200
    [ticket] = await voice_tickets(rt)
    assert ticket.status == "solved" and "abandoned" in ticket.tags and ticket.queued_at is None
    assert ticket.abandoned_at is not None  # the wallboard's and the reports' abandoned
    async with rt.read() as conn:
        abandoned = (
            await conn.execute(select(func.count()).select_from(EVENTS).where(EVENTS.c.type == "call.abandoned"))
        ).scalar_one()
        counted = (
            await conn.execute(select(func.count()).select_from(EVENTS).where(EVENTS.c.type == "ticket.abandoned"))
        ).scalar_one()
        row = (await conn.execute(select(CALLS).where(CALLS.c.call_sid == phone.call_sid))).one()
    assert abandoned == 1 and counted == 1
    assert row.ended_at is not None and row.duration_seconds == 95 and row.waiting_since is None
    assert any("abandoned" in n for n in await notes(rt, ticket.id))
    summary = (await client.get("/api/twilio/calls/summary", headers=await login_sup(client, rt))).json()
    assert summary["calls"] == 1 and summary["abandoned"] == 1 and summary["answered"] == 0


async def test_an_agent_accepts_the_call_and_is_dialled_into_the_callers_room(
    server: LiveServer, client: httpx.AsyncClient, rt: Runtime, api: FakeTwilioApi
) -> None:
    """Routing offers the voice ticket to an available agent; accepting it calls the agent's own phone (Twilio
    REST) into the caller's room; the call is answered when that leg picks up (its signed status callback):
    then the ticket's answered_at, the timeline says who answered, and the hold loop says so; the end of the
    call closes the record with its duration."""
    await queues(rt)
    await make_agent(rt, "alice", queues=["billing"], available=True)
    phone = Phone(client, sid("CA", 10))
    await to_billing_queue(phone, rt)
    [ticket] = await voice_tickets(rt)
    assert ticket.offered_agent_id is not None
    headers = await login(client, "alice", "password-123")
    r = await client.post(f"/api/tickets/{ticket.id}/accept", headers=headers)
    assert r.status_code == 200, r.text
    for _ in range(100):
        if api.posts("/Calls.json"):
            break
        await asyncio.sleep(0.05)
    [placed] = api.posts("/Calls.json")
    assert placed["To"] == "+14155550777" and placed["From"] == "+14155550199"
    assert f"switchboard-{phone.call_sid}" in placed["Twiml"]
    assert placed["StatusCallback"].startswith("http://testserver.local/webhooks/twilio/voice/agent?call=")
    [taken] = await voice_tickets(rt)
    assert taken.assignee_id is not None and taken.answered_at is None  # ringing: not answered yet
    assert not any(t.startswith("Answered by") for t in await notes(rt, ticket.id))
    assert (await phone.agent_leg(placed, "in-progress")).status_code == 200
    assert (await phone.agent_leg(placed, "in-progress")).status_code == 200  # a retry changes nothing
    [answered] = await voice_tickets(rt)
    assert answered.answered_at is not None
    assert len([t for t in await notes(rt, ticket.id) if t.startswith("Answered by")]) == 1
    await phone.twiml("/webhooks/twilio/voice/wait", phone.params(CallStatus="in-progress"))
    assert "You are now connected to" in " ".join(phone.texts)
    await phone.hang_up(duration=200)
    texts = await notes(rt, ticket.id)
    assert any(t.startswith("Answered by") for t in texts)
    assert any("Call ended after 200 s, answered by" in t for t in texts)
    [after] = await voice_tickets(rt)
    assert after.status != "solved" and "abandoned" not in after.tags


async def test_a_long_wait_offers_a_callback_that_keeps_the_place_in_line(
    client: httpx.AsyncClient, rt: Runtime, api: FakeTwilioApi
) -> None:
    """With callers ahead, the estimated wait offers a callback; taking it ends the call, keeps the ticket in
    its queue (its place in line), and says so on the timeline; the hang-up is not an abandonment. The agent
    who accepts the callback ticket calls the customer back through the outbox (Twilio's REST API, retried
    while it is down), into the call's room, and is dialled in on their own phone."""
    await queues(rt)
    for n in range(3):  # three callers ahead in billing
        await to_billing_queue(Phone(client, sid("CA", 100 + n), caller=f"+1415555020{n}"), rt)
    phone = Phone(client, sid("CA", 11), caller="+14155550300")
    await to_billing_queue(phone, rt)
    assert "To be called back" in " ".join(phone.texts)
    await phone.press("1")
    assert "Hangup" in phone.tags()
    await phone.hang_up()
    async with rt.read() as conn:
        ticket = (
            await conn.execute(
                select(tickets).join(CALLS, CALLS.c.ticket_id == tickets.c.id).where(CALLS.c.call_sid == phone.call_sid)
            )
        ).one()
    assert ticket.status != "solved" and ticket.queued_at is not None
    assert any("Callback requested" in t for t in await notes(rt, ticket.id))

    api.down = True
    alice = await make_agent(rt, "alice", queues=["billing"])
    r = await client.post(
        f"/api/tickets/{ticket.id}/assign", json={"agent_id": alice}, headers=await login_sup(client, rt)
    )
    assert r.status_code == 200, r.text
    for _ in range(200):
        if len(api.posts("/Calls.json")) >= 2:
            break
        await asyncio.sleep(0.05)
    assert len(api.posts("/Calls.json")) >= 2  # tried, and tried again
    api.down = False
    for _ in range(400):
        if any(p.get("To") == "+14155550777" for p in api.posts("/Calls.json")):
            break
        await asyncio.sleep(0.05)
    customer = [p for p in api.posts("/Calls.json") if p["To"] == "+14155550300"]
    agent_leg = [p for p in api.posts("/Calls.json") if p["To"] == "+14155550777"]
    assert customer and agent_leg
    assert f"switchboard-{phone.call_sid}" in customer[-1]["Twiml"] and "call back" in customer[-1]["Twiml"]
    assert any("Callback to +14155550300 taken by" in t for t in await notes(rt, ticket.id))


async def test_a_known_caller_hears_about_their_open_request(client: httpx.AsyncClient, rt: Runtime) -> None:
    """The lookup finds the caller's contact by E.164 (the same person as their SMS) and reads their request."""
    await queues(rt)
    sms = Phone(client, sid("SM", 1))
    from tests.channels.twilio.helpers import recorded

    params = recorded("sms_incoming")
    params["From"] = "(415) 555-0142"
    r = await sms.post("/webhooks/twilio/messaging", params)
    assert r.status_code == 200
    phone = Phone(client, sid("CA", 12))
    await phone.dial()
    await phone.press("1")
    await phone.press("4")
    assert any("is being worked on" in t for t in phone.texts)


async def test_hanging_up_at_the_callback_offer_abandons_the_waiting_call(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    """A caller already in line who hangs up while hearing the callback offer is abandoned too: no agent is
    offered a call nobody is on."""
    await queues(rt)
    for n in range(3):
        await to_billing_queue(Phone(client, sid("CA", 200 + n), caller=f"+1415555021{n}"), rt)
    phone = Phone(client, sid("CA", 13), caller="+14155550301")
    await to_billing_queue(phone, rt)
    assert "To be called back" in " ".join(phone.texts)
    await phone.hang_up(duration=40)
    async with rt.read() as conn:
        ticket = (
            await conn.execute(
                select(tickets).join(CALLS, CALLS.c.ticket_id == tickets.c.id).where(CALLS.c.call_sid == phone.call_sid)
            )
        ).one()
    assert ticket.status == "solved" and "abandoned" in ticket.tags


async def test_a_supervisor_listens_in_and_a_colleague_takes_a_warm_transfer(
    client: httpx.AsyncClient, rt: Runtime, api: FakeTwilioApi
) -> None:
    """On a call in progress, a supervisor's own phone joins the caller's room muted; a colleague brought in for a
    warm transfer joins it speaking, and neither's leaving ends the room; both are on the timeline."""
    await queues(rt)
    alice = await make_agent(rt, "alice", queues=["billing"], available=True)
    phone = Phone(client, sid("CA", 14))
    await to_billing_queue(phone, rt)
    [ticket] = await voice_tickets(rt)
    r = await client.post(f"/api/tickets/{ticket.id}/accept", headers=await login(client, "alice", "password-123"))
    assert r.status_code == 200
    for _ in range(100):
        if api.posts("/Calls.json"):
            break
        await asyncio.sleep(0.05)
    assert (await phone.agent_leg(api.posts("/Calls.json")[0], "in-progress")).status_code == 200
    sup_headers = await login_sup(client, rt)

    # the live call shows under alice on the wallboard, where the supervisor's Listen in button posts
    board = (await client.get("/api/supervisor/wallboard", headers=sup_headers)).json()
    assert next(a for a in board["agents"] if a["id"] == alice)["calls"] == [ticket.id]
    r = await client.post(f"/api/twilio/tickets/{ticket.id}/listen", headers=sup_headers)
    assert r.status_code == 200, r.text
    # audited, as the other supervisor actions are
    await make_agent(rt, "root", role="admin")
    root = await login(client, "root", "password-123")
    entries = (await client.get("/api/audit", params={"action": "ticket.listen_in"}, headers=root)).json()
    entries = entries["items"] if isinstance(entries, dict) else entries
    assert [(e["action"], e["target"]) for e in entries] == [("ticket.listen_in", f"ticket:{ticket.id}")]
    listening = api.posts("/Calls.json")[-1]
    assert listening["To"] == "+14155550888" and 'muted="true"' in listening["Twiml"]
    assert 'startConferenceOnEnter="false"' in listening["Twiml"]
    alice_headers = await login(client, "alice", "password-123")
    r = await client.post(f"/api/twilio/tickets/{ticket.id}/listen", headers=alice_headers)
    assert r.status_code == 403  # supervisors only
    r = await client.post(
        f"/api/twilio/tickets/{ticket.id}/warm-transfer", json={"agent_id": alice}, headers=alice_headers
    )
    assert r.status_code == 200, r.text
    joined = api.posts("/Calls.json")[-1]
    assert joined["To"] == "+14155550777" and f"switchboard-{phone.call_sid}" in joined["Twiml"]
    assert 'endConferenceOnExit="false"' in joined["Twiml"] and "handing a caller over" in joined["Twiml"]
    assert any("warm transfer" in n for n in await notes(rt, ticket.id))


async def test_the_server_times_each_answered_webhook_by_path(client: httpx.AsyncClient, rt: Runtime) -> None:
    """/metrics' ``switchboard_webhook_seconds`` counts every answered webhook under its path (a refused one
    too: the server answered it); a path no endpoint answers (404) is not counted, so the label's values stay
    the app's own paths."""
    await queues(rt)
    phone = Phone(client, sid("CA", 0x77))
    await phone.dial()
    await phone.press("1")
    assert (await phone.post("/webhooks/twilio/voice/nonsense", phone.params())).status_code == 404
    assert (await phone.post("/webhooks/twilio/voice", phone.params(), sign=False)).status_code == 403
    text = (await client.get("/metrics")).text
    assert 'switchboard_webhook_seconds_count{path="/webhooks/twilio/voice"} 2.0' in text
    assert 'switchboard_webhook_seconds_count{path="/webhooks/twilio/voice/gather"} 1.0' in text
    assert "nonsense" not in text


async def test_a_call_whose_ticket_is_accepted_before_its_webhook_stored_the_ticket_is_still_connected(
    client: httpx.AsyncClient, rt: Runtime, server: LiveServer, api: FakeTwilioApi
) -> None:
    """Under load an agent may accept a call's ticket between the ingest's commit and the commit of the call's
    row naming that ticket: the accept's ``connect`` then finds no call of the ticket. The webhook that queued
    the call connects it once its row is stored, so the caller is not left on hold for ever (bench/voice.py
    left 2 of 200 calls so)."""
    await queues(rt)
    alice_id = await make_agent(rt, "alice", queues=["support"], available=True)
    alice = await login(client, "alice", "password-123")
    voice = server.app.state.channels["voice"].service.voice
    position = voice.position
    accepted: list[int] = []

    async def accept_first(queue: str, since: Any) -> int:
        """Runs in the server after the ingest committed, before the call's row names the ticket (once routing,
        which goes on beside the webhook, has offered it)."""
        await routed(voice.rt)
        async with voice.rt.read() as conn:
            ticket_id = (await conn.execute(select(tickets.c.id).where(tickets.c.channel == "voice"))).scalar_one()
        async with httpx.AsyncClient(base_url=server.url) as http:
            r = await http.post(f"/api/tickets/{ticket_id}/accept", headers=alice)
        assert r.status_code == 200, r.text
        accepted.append(ticket_id)
        await asyncio.gather(*list(voice._tasks))  # the accept's connect: it finds no call of the ticket yet
        return await position(queue, since)

    voice.position = accept_first
    phone = Phone(client, sid("CA", 0x78))
    await phone.dial()
    await phone.press("1")  # English
    await phone.press("2")  # technical support: queued, and accepted meanwhile
    voice.position = position
    assert accepted
    answered_by = None
    for _ in range(100):  # connected after the webhook answered
        async with rt.read() as conn:
            answered_by = (
                await conn.execute(select(CALLS.c.answered_by).where(CALLS.c.call_sid == phone.call_sid))
            ).scalar_one()
        if answered_by is not None:
            break
        await asyncio.sleep(0.05)
    assert answered_by == alice_id
    for _ in range(100):
        if api.posts("/Calls.json"):
            break
        await asyncio.sleep(0.05)
    assert len(api.posts("/Calls.json")) == 1  # alice's phone rings into the caller's room, once
