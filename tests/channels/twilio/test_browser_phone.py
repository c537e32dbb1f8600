"""The browser phone: access tokens for the logged-in agent (twilio.jwt.access_token, a VoiceGrant for incoming
calls to ``client:agent-<id>``), the agent's choice of browser or own number, and the hand-off that rings the
browser instead of a number. Whole calls replayed from recorded Twilio parameters, signed with a test token; the
REST calls the hub places are captured on a local server. (A real Twilio connection cannot be made offline: what
Twilio does with the token and the ``client:`` call is not tested here.)"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import jwt
import pytest
from pydantic import SecretStr

from hub.config import Settings
from hub.runtime import Runtime
from tests.channels.twilio.helpers import ACCOUNT, FakeTwilioApi, Phone, sid
from tests.channels.twilio.test_voice_calls import queues, to_billing_queue, voice_tickets
from tests.channels.twilio.test_voice_routing import placed_call
from tests.conftest import LiveServer, login, make_agent

KEY_SID = "SK" + "b" * 32
KEY_SECRET = "browser-phone-key-secret-0123456789"  # 32+ bytes, as Twilio's are


@pytest.fixture
def twilio_settings(twilio_settings: Settings) -> Settings:
    """The channel's test settings with an API key for the browser phone; alice has her own number, bob none."""
    return twilio_settings.model_copy(
        update={
            "twilio_api_key_sid": KEY_SID,
            "twilio_api_key_secret": SecretStr(KEY_SECRET),
            "twilio_browser_token_seconds": 900,
        }
    )


async def test_a_token_names_the_logged_in_agent_with_an_incoming_voice_grant(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    """The token is signed with the API key's secret, issued by the key for the account, names the agent
    (agent-<id>), grants incoming calls only, and lasts SWITCHBOARD_TWILIO_BROWSER_TOKEN_SECONDS; no token
    without a login."""
    alice = await make_agent(rt, "alice")
    assert (await client.post("/api/twilio/phone/token")).status_code == 401
    before = int(time.time())
    r = await client.post("/api/twilio/phone/token", headers=await login(client, "alice", "password-123"))
    assert r.status_code == 200, r.text
    body = r.json()
    claims = jwt.decode(body["token"], KEY_SECRET, algorithms=["HS256"])
    assert claims["iss"] == KEY_SID and claims["sub"] == ACCOUNT
    assert claims["grants"]["identity"] == body["identity"] == f"agent-{alice}"
    assert claims["grants"]["voice"] == {"incoming": {"allow": True}}
    assert before + 900 <= claims["exp"] <= int(time.time()) + 900 and body["expires_in"] == 900
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(body["token"], KEY_SECRET.upper(), algorithms=["HS256"])


async def test_an_agent_chooses_browser_or_own_number(client: httpx.AsyncClient, rt: Runtime) -> None:
    """Alice (her own number) rings there until she picks the browser; bob (no number) rings in the browser
    and cannot pick a number he does not have; a choice that is neither is refused."""
    await make_agent(rt, "alice")
    await make_agent(rt, "bob")
    assert (await client.get("/api/twilio/phone")).status_code == 401
    alice = await login(client, "alice", "password-123")
    bob = await login(client, "bob", "password-123")
    mine = (await client.get("/api/twilio/phone", headers=alice)).json()
    assert mine["answer_on"] == "phone" and mine["own_number"] and mine["browser_available"]
    r = await client.put("/api/twilio/phone", json={"answer_on": "browser"}, headers=alice)
    assert r.status_code == 200 and r.json()["answer_on"] == "browser", r.text
    assert (await client.get("/api/twilio/phone", headers=alice)).json()["answer_on"] == "browser"
    assert (await client.get("/api/twilio/phone", headers=bob)).json()["answer_on"] == "browser"
    r = await client.put("/api/twilio/phone", json={"answer_on": "phone"}, headers=bob)
    assert r.status_code == 422 and r.json()["code"] == "no_agent_phone"
    r = await client.put("/api/twilio/phone", json={"answer_on": "fax"}, headers=bob)
    assert r.status_code == 422


async def test_an_accepted_call_rings_the_agents_browser(
    client: httpx.AsyncClient, rt: Runtime, api: FakeTwilioApi
) -> None:
    """Alice picked the browser: accepting the waiting call places a call to client:agent-<id> (not her number)
    whose TwiML joins the caller's room; the call is answered when that leg picks up (its signed status
    callback), as with a number."""
    await queues(rt)
    alice = await make_agent(rt, "alice", queues=["billing"], available=True)
    headers = await login(client, "alice", "password-123")
    assert (await client.put("/api/twilio/phone", json={"answer_on": "browser"}, headers=headers)).status_code == 200
    phone = Phone(client, sid("CA", 40))
    await to_billing_queue(phone, rt)
    [ticket] = await voice_tickets(rt)
    assert ticket.offered_agent_id == alice
    assert (await client.post(f"/api/tickets/{ticket.id}/accept", headers=headers)).status_code == 200
    placed = await placed_call(api, 1)
    assert placed["To"] == f"client:agent-{alice}" and placed["From"] == "+14155550199"
    assert "<Conference" in placed["Twiml"] and f"switchboard-{phone.call_sid}" in placed["Twiml"]
    assert placed["StatusCallback"].endswith(f"/webhooks/twilio/voice/agent?call={phone.call_sid}&agent={alice}")
    assert (await phone.agent_leg(placed, "in-progress")).status_code == 200
    [answered] = await voice_tickets(rt)
    assert answered.assignee_id == alice and answered.answered_at is not None


@pytest.fixture
def plain_server(settings: Settings) -> Iterator[LiveServer]:
    server = LiveServer(settings).start()
    try:
        yield server
    finally:
        server.stop()


async def test_without_twilio_credentials_the_browser_phone_says_it_is_unavailable(
    plain_server: LiveServer, rt: Runtime
) -> None:
    """No account, no API key: no token (a 4xx naming the settings it needs), and the agent's phone says
    calls are answered in the console alone and why the browser phone is unavailable."""
    await make_agent(rt, "alice")
    async with httpx.AsyncClient(base_url=plain_server.url, timeout=10) as c:
        headers = await login(c, "alice", "password-123")
        r = await c.post("/api/twilio/phone/token", headers=headers)
        assert r.status_code == 422 and r.json()["code"] == "browser_phone_unavailable"
        assert "_API_KEY_SID" in r.text and "no Twilio credentials" in r.text
        info = (await c.get("/api/twilio/phone", headers=headers)).json()
        assert info["answer_on"] == "console" and not info["browser_available"]
        assert "no Twilio credentials" in info["browser_unavailable_reason"]
        r = await c.put("/api/twilio/phone", json={"answer_on": "browser"}, headers=headers)
        assert r.status_code == 422 and r.json()["code"] == "browser_phone_unavailable"
