"""The chat channel's HTTP and websocket protocol against a live server: sessions, visitor tokens, resume,
idempotent resends, attachments, identity verification, ratings and typing indicators."""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import uuid
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select, update
from websockets.asyncio.client import ClientConnection, connect

from channels.webchat.service import identity_hash
from hub.config import Settings
from hub.events import events_after
from hub.runtime import Runtime
from tests.conftest import LiveServer, login, make_agent, make_queue
from ticketing.tables import contact_identities as I
from ticketing.tables import contacts as C
from ticketing.tables import messages as M
from ticketing.tables import queues as Q
from ticketing.tables import tickets as T

SECRET = "site-shared-secret-for-tests"


@pytest.fixture
def chat_settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(
        update={
            "attachment_dir": tmp_path / "attachments",
            "chat_identity_secret": SecretStr(SECRET),
            "chat_attachment_max_bytes": 64 * 1024,
        }
    )


@pytest.fixture
def live(chat_settings: Settings) -> Any:
    server = LiveServer(chat_settings).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def http(live: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as c:
        yield c


async def session(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await http.post("/api/chat/sessions", json={"name": "Vera", **body})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def recv(ws: ClientConnection, type_: str, timeout: float = 5.0) -> dict[str, Any]:
    """The next frame of ``type_`` (skipping heartbeats and others)."""
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == type_:
                return frame  # type: ignore[no-any-return]


def chat_url(live: LiveServer, token: str, last: int = 0) -> str:
    return f"{live.ws_url}/ws/chat?token={token}&last_message_id={last}"


async def say(ws: ClientConnection, client_id: str, text: str, **extra: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "message", "client_id": client_id, "text": text, **extra}))
    return await recv(ws, "ack")


def png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
        + chunk(b"IEND", b"")
    )


async def test_a_visitor_token_reads_only_its_own_conversation(live: LiveServer, http: httpx.AsyncClient) -> None:
    """Two visitors each see only their own messages; a token altered by one character, or an agent's session
    token, is refused with ``unauthorized``."""
    a, b = await session(http), await session(http, name="Bob")
    async with connect(chat_url(live, a["token"])) as ws:
        await recv(ws, "hello")
        await say(ws, "a1", "secret of A")
    async with connect(chat_url(live, b["token"])) as ws:
        hello = await recv(ws, "hello")
        assert hello["messages"] == []
        await say(ws, "b1", "hello from B")
    async with connect(chat_url(live, a["token"])) as ws:
        hello = await recv(ws, "hello")
        assert [m["text"] for m in hello["messages"]] == ["secret of A"]
    tampered = a["token"][:-2] + ("A" if a["token"][-2] != "A" else "B") + a["token"][-1]
    for bad in (tampered, "not-a-token"):
        async with connect(chat_url(live, bad)) as ws:
            frame = await recv(ws, "error")
            assert frame["code"] == "unauthorized"


async def test_agent_session_tokens_are_not_visitor_tokens(
    rt: Runtime, live: LiveServer, http: httpx.AsyncClient
) -> None:
    """The visitor tokens' salt is their own: an agent's bearer token opens no conversation."""
    await make_agent(rt, "alice")
    headers = await login(http, "alice", "password-123")
    token = headers["Authorization"].split()[1]
    async with connect(chat_url(live, token)) as ws:
        assert (await recv(ws, "error"))["code"] == "unauthorized"


async def test_resend_after_reconnect_is_stored_once_and_resume_skips_what_was_seen(
    rt: Runtime, live: LiveServer, http: httpx.AsyncClient
) -> None:
    """A message resent with the same client_id after a reconnect is acknowledged with the same id and stored
    once; reconnecting with last_message_id returns only newer messages; agents' notes never reach visitors."""
    await make_queue(rt, "support", ["webchat"])
    s = await session(http)
    async with connect(chat_url(live, s["token"])) as ws:
        await recv(ws, "hello")
        first = await say(ws, "c-1", "one")
    async with connect(chat_url(live, s["token"], first["message_id"])) as ws:
        hello = await recv(ws, "hello")
        assert hello["messages"] == []
        again = await say(ws, "c-1", "one")
        assert again["message_id"] == first["message_id"]
        second = await say(ws, "c-2", "two")
    await make_agent(rt, "sam", role="supervisor")
    headers = await login(http, "sam", "password-123")
    r = await http.post(f"/api/tickets/{first['ticket_id']}/notes", json={"text": "internal only"}, headers=headers)
    assert r.status_code == 201
    async with connect(chat_url(live, s["token"], first["message_id"])) as ws:
        hello = await recv(ws, "hello")
        assert [m["text"] for m in hello["messages"]] == ["two"]
        assert hello["messages"][0]["id"] == second["message_id"]
    ticket = (await http.get(f"/api/tickets/{first['ticket_id']}", headers=headers)).json()
    assert [m["text"] for m in ticket["messages"]] == ["one", "two", "internal only"]


async def test_agent_reply_typing_rating_flow(rt: Runtime, live: LiveServer, http: httpx.AsyncClient) -> None:
    """The agent's accept, typing and reply reach the visitor's socket (the reply marked delivered once the
    widget says so); the visitor's typing reaches the agent's stream; solving asks for a rating, which is stored
    on the ticket once."""
    await make_queue(rt, "support", ["webchat"])
    await make_agent(rt, "alice", queues=["support"], available=True)
    headers = await login(http, "alice", "password-123")
    s = await session(http)
    async with (
        connect(chat_url(live, s["token"])) as ws,
        connect(f"{live.ws_url}/ws/agent?token={headers['Authorization'].split()[1]}") as agent,
    ):
        await recv(ws, "hello")
        await recv(agent, "hello")
        ack = await say(ws, "m1", "help")
        tid = ack["ticket_id"]
        await recv(agent, "ticket.offered")
        assert (await http.post(f"/api/tickets/{tid}/accept", headers=headers)).status_code == 200
        assert (await recv(ws, "agent_joined"))["name"] == "alice"
        await agent.send(json.dumps({"type": "typing", "ticket_id": tid, "active": True}))
        assert (await recv(ws, "typing")) == {"type": "typing", "active": True, "name": "alice"}
        await ws.send(json.dumps({"type": "typing", "active": True}))
        typing = await recv(agent, "typing")
        if typing["data"]["who"] == "agent":  # the agent's own typing comes back to its stream too
            typing = await recv(agent, "typing")
        assert (typing["ticket_id"], typing["seq"], typing["data"]["who"]) == (tid, 0, "visitor")
        r = await http.post(f"/api/tickets/{tid}/reply", json={"text": "on it"}, headers=headers)
        reply = (await recv(ws, "message"))["message"]
        assert (reply["id"], reply["text"], reply["agent_name"]) == (r.json()["id"], "on it", "alice")
        await ws.send(json.dumps({"type": "delivered", "message_ids": [reply["id"]]}))
        while True:
            status = await recv(agent, "message.status")
            if status["data"]["status"] == "delivered":
                break
        await http.patch(f"/api/tickets/{tid}", json={"status": "solved"}, headers=headers)
        assert (await recv(ws, "rating_request"))["ticket_id"] == tid
        await ws.send(json.dumps({"type": "rating", "ticket_id": tid, "score": 4, "comment": "quick, thanks"}))
        await recv(ws, "rating_saved")
        await ws.send(json.dumps({"type": "rating", "ticket_id": tid, "score": 1}))
        assert (await recv(ws, "error"))["code"] == "already_rated"
    ticket = (await http.get(f"/api/tickets/{tid}", headers=headers)).json()
    assert (ticket["rating"], ticket["rating_comment"]) == (4, "quick, thanks")


async def test_solved_closes_the_waiting_conversation_as_deflected(
    rt: Runtime, live: LiveServer, http: httpx.AsyncClient
) -> None:
    """``solved`` (an article the widget offered answered the visitor): before anything was asked it closes
    nothing (``deflected`` with no ticket); once a ticket waits, offered to an agent, it closes as deflected:
    every tab hears ``deflected``, never a rating request, and the agent's stream sees the ticket closed and
    the offer gone. A malformed ``solved`` is a bad frame."""
    await make_queue(rt, "support", ["webchat"])
    await make_agent(rt, "alice", queues=["support"], available=True)
    headers = await login(http, "alice", "password-123")
    s = await session(http)
    async with (
        connect(chat_url(live, s["token"])) as ws,
        connect(chat_url(live, s["token"])) as other_tab,
        connect(f"{live.ws_url}/ws/agent?token={headers['Authorization'].split()[1]}") as agent,
    ):
        await recv(ws, "hello")
        await recv(other_tab, "hello")
        await recv(agent, "hello")
        await ws.send(json.dumps({"type": "solved", "article_id": 3, "title": "Return an item"}))
        assert await recv(ws, "deflected") == {"type": "deflected", "ticket_id": None}
        await ws.send(json.dumps({"type": "solved", "title": "no article"}))
        assert (await recv(ws, "error"))["code"] == "bad_frame"

        tid = (await say(ws, "m1", "how do I send this back?"))["ticket_id"]
        await recv(agent, "ticket.offered")
        await ws.send(json.dumps({"type": "solved", "article_id": 3, "title": "Return an item"}))
        assert (await recv(other_tab, "deflected"))["ticket_id"] == tid
        closed = await recv(agent, "ticket.updated")
        assert (closed["data"]["ticket"]["status"], closed["data"]["ticket"]["offered_agent_id"]) == ("closed", None)
        assert closed["data"]["ticket"]["tags"] == ["deflected"]
        frames = []
        with pytest.raises(TimeoutError):
            while True:
                frames.append(await recv(ws, "rating_request", timeout=0.5))
        assert frames == []
    ticket = (await http.get(f"/api/tickets/{tid}", headers=headers)).json()
    assert ticket["status"] == "closed" and ticket["tags"] == ["deflected"]
    assert any(m["direction"] == "note" and "Return an item" in m["text"] for m in ticket["messages"])


async def test_attachments_are_checked_by_content_and_size(live: LiveServer, http: httpx.AsyncClient) -> None:
    """A PNG is stored and can be sent; HTML named .png, an oversized file and an upload without a visitor
    token are refused; once sent, the stored file is served to its visitor with its sniffed type, sandboxed."""
    s = await session(http)
    auth = {"Authorization": f"Bearer {s['token']}"}
    r = await http.post("/api/chat/attachments", files={"file": ("pic.png", png(), "image/png")}, headers=auth)
    assert r.status_code == 201, r.text
    att = r.json()
    assert att["content_type"] == "image/png"
    bad = await http.post(
        "/api/chat/attachments",
        files={"file": ("x.png", b"<html><script>alert(1)</script>", "image/png")},
        headers=auth,
    )
    assert (bad.status_code, bad.json()["code"]) == (415, "bad_attachment")
    big = await http.post(
        "/api/chat/attachments", files={"file": ("big.pdf", b"%PDF-" + b"0" * 70_000, "application/pdf")}, headers=auth
    )
    assert big.status_code == 413
    anon = await http.post("/api/chat/attachments", files={"file": ("pic.png", png(), "image/png")})
    assert anon.status_code == 403
    async with connect(chat_url(live, s["token"])) as ws:
        await recv(ws, "hello")
        ack = await say(ws, "p1", "", attachments=[{"sha256": att["sha256"], "filename": "<b>pic</b>.png"}])
        assert ack["message_id"]
        served = await http.get(att["url"], headers=auth)
        assert served.headers["content-type"] == "image/png"
        assert "sandbox" in served.headers["content-security-policy"]
        await ws.send(
            json.dumps({"type": "message", "client_id": "p2", "text": "x", "attachments": [{"sha256": "0" * 64}]})
        )
        assert (await recv(ws, "error"))["code"] == "attachment_not_uploaded"


async def test_verified_visitors_join_their_contact_and_unverified_never_do(
    rt: Runtime, live: LiveServer, http: httpx.AsyncClient
) -> None:
    """A visitor whose user id and email the site signed is linked to the contact that already has that email;
    a wrong hash is refused; an unverified visitor giving the same email gets a contact of their own, which
    shows the agent that address, marked not verified, and has no email identity."""
    await make_queue(rt, "support", ["webchat"])
    async with rt.write() as tx:
        contact_id = (
            await tx.conn.execute(
                C.insert().values(name="Maria", attributes={}, created_at=_now(), updated_at=_now()).returning(C.c.id)
            )
        ).scalar_one()
        await tx.conn.execute(
            I.insert().values(contact_id=contact_id, kind="email", value="maria@example.com", created_at=_now())
        )
    good = {"user_id": "42", "email": "maria@example.com", "hash": identity_hash(SECRET, "42", "maria@example.com")}
    wrong = {**good, "hash": identity_hash(SECRET, "43", "maria@example.com")}
    r = await http.post("/api/chat/sessions", json={"identity": wrong})
    assert (r.status_code, r.json()["code"]) == (403, "identity_rejected")
    verified = await session(http, identity=good)
    assert verified["verified"] is True
    unverified = await session(http, email="maria@example.com")
    assert unverified["verified"] is False
    tickets = {}
    for name, s in (("verified", verified), ("unverified", unverified)):
        async with connect(chat_url(live, s["token"])) as ws:
            await recv(ws, "hello")
            tickets[name] = (await say(ws, "x1", f"hi from {name}"))["ticket_id"]
    async with rt.read() as conn:
        owners = dict((await conn.execute(select(T.c.id, T.c.contact_id).where(T.c.id.in_(tickets.values())))).all())
        idents = (await conn.execute(select(I.c.kind, I.c.value).where(I.c.contact_id == contact_id))).all()
    assert owners[tickets["verified"]] == contact_id
    assert owners[tickets["unverified"]] != contact_id
    assert ("webchat", "user:42") in idents and ("email", "maria@example.com") in idents
    stranger = owners[tickets["unverified"]]
    async with rt.read() as conn:
        attributes = dict((await conn.execute(select(C.c.id, C.c.attributes))).all())
        stranger_idents = (await conn.execute(select(I.c.kind).where(I.c.contact_id == stranger))).scalars().all()
    assert attributes[stranger] == {"email": "maria@example.com", "email_verified": False}
    assert stranger_idents == ["webchat"]
    assert attributes[contact_id] == {}


async def test_answering_by_email_links_the_address_only_for_a_verified_visitor(
    rt: Runtime, live: LiveServer, http: httpx.AsyncClient
) -> None:
    """Asking to be answered by email: the ticket replies to that address; the contact shows it, marked verified
    or not; a verified visitor's address becomes an identity of their contact, an unverified one's never does;
    a contact.updated event says which."""
    await make_queue(rt, "support", ["webchat"])
    verified = await session(http, identity={"user_id": "7", "hash": identity_hash(SECRET, "7")})
    unverified = await session(http, name="Bo")
    tickets = {}
    for name, s, address in (("verified", verified, "ann@example.com"), ("unverified", unverified, "bo@example.com")):
        async with connect(chat_url(live, s["token"])) as ws:
            await recv(ws, "hello")
            tickets[name] = (await say(ws, "x1", "can you mail me?"))["ticket_id"]
            await ws.send(json.dumps({"type": "email_fallback", "email": address.upper()}))
            assert (await recv(ws, "email_fallback"))["email"] == address
    async with rt.read() as conn:
        rows = {
            r.id: r
            for r in await conn.execute(
                select(T.c.id, T.c.reply_channel, T.c.reply_to, C.c.id.label("contact"), C.c.attributes).join(
                    C, C.c.id == T.c.contact_id
                )
            )
        }
        emails = dict((await conn.execute(select(I.c.value, I.c.contact_id).where(I.c.kind == "email"))).all())
        events = [e for e in await events_after(conn, 0) if e.type == "contact.updated"]
    ann, bo = rows[tickets["verified"]], rows[tickets["unverified"]]
    assert (ann.reply_channel, ann.reply_to, bo.reply_channel, bo.reply_to) == (
        "email",
        "ann@example.com",
        "email",
        "bo@example.com",
    )
    assert ann.attributes == {"email": "ann@example.com", "email_verified": True}
    assert bo.attributes == {"email": "bo@example.com", "email_verified": False}
    assert emails == {"ann@example.com": ann.contact}
    assert [(e.ticket_id, e.payload) for e in events] == [
        (ann.id, {"contact_id": ann.contact, "email": "ann@example.com", "linked": True}),
        (bo.id, {"contact_id": bo.contact, "email": "bo@example.com", "linked": False}),
    ]


async def test_config_and_cors_for_embedding_sites(rt: Runtime, live: LiveServer, http: httpx.AsyncClient) -> None:
    """The widget's config says whether anyone is available and whether the queue is within its hours; /api/chat
    answers cross-origin requests (no
    credentials) while the rest of the API does not; the widget script is served as JavaScript."""
    await make_queue(rt, "support", ["webchat"])
    config = (await http.get("/api/chat/config")).json()
    assert (config["available"], config["queue"]) == (False, "support")
    await make_agent(rt, "alice", queues=["support"], available=True)
    assert (await http.get("/api/chat/config?queue=support")).json()["available"] is True
    pre = await http.options(
        "/api/chat/sessions",
        headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"},
    )
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == "*"
    r = await http.get("/api/chat/config", headers={"Origin": "https://shop.example"})
    assert r.headers["access-control-allow-origin"] == "*"
    other = await http.get("/api/queues", headers={"Origin": "https://shop.example"})
    assert "access-control-allow-origin" not in other.headers
    js = await http.get("/widget.js")
    assert js.headers["content-type"].startswith("text/javascript")
    async with rt.write() as tx:  # business hours that never open: the queue is closed
        await tx.conn.execute(update(Q).values(hours={"timezone": "UTC", "weekly": {}}))
    closed = (await http.get("/api/chat/config?queue=support")).json()
    assert (closed["available"], closed["open"]) == (False, False)
    assert closed["offline_message"].startswith("We are closed")


def _now() -> Any:
    from hub.db import utcnow

    return utcnow()


async def test_idle_widget_sockets_get_heartbeats_and_busy_ones_do_not(chat_settings: Settings) -> None:
    """A widget socket that has been sent nothing for ``heartbeat_seconds`` gets ``{"type": "heartbeat"}``
    (within a quarter period more), again and again; one that is answered all the time gets none."""
    live = LiveServer(chat_settings.model_copy(update={"heartbeat_seconds": 0.4})).start()
    try:
        async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
            idle, busy = await session(http), await session(http, name="Bob")
        async with connect(chat_url(live, idle["token"])) as quiet, connect(chat_url(live, busy["token"])) as ws:
            await recv(quiet, "hello")
            await recv(ws, "hello")
            loop = asyncio.get_running_loop()
            started = loop.time()
            busy_frames = []
            while loop.time() - started < 1.6:  # four periods: a ping answered every 0.1 s
                await ws.send(json.dumps({"type": "ping"}))
                busy_frames.append(json.loads(await asyncio.wait_for(ws.recv(), 5))["type"])
                await asyncio.sleep(0.1)
            assert set(busy_frames) == {"pong"}
            beats = []
            while True:
                try:
                    frame = json.loads(await asyncio.wait_for(quiet.recv(), 0.01))
                except TimeoutError:
                    break
                beats.append(frame["type"])
            # 1.6 s idle at 0.4 s (+ up to 0.1 s) each: three or four heartbeats (two on a starved machine), and
            # never one per sweep (sixteen).
            assert set(beats) == {"heartbeat"} and 2 <= len(beats) <= 5, beats
    finally:
        live.stop()


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def test_a_widget_that_vanishes_while_its_message_commits_ends_quietly(
    rt: Runtime, chat_settings: Settings
) -> None:
    """A visitor's socket drops while the server is storing their message and a heartbeat to them fails: the
    message is still stored, and the connection ends without an error in the server's log (it used to read
    once more from the closed socket and log "Exception in ASGI application")."""
    await make_queue(rt, "support", ["webchat"])
    live = LiveServer(chat_settings.model_copy(update={"heartbeat_seconds": 0.1})).start()
    errors = _Records()
    logging.getLogger("uvicorn.error").addHandler(errors)
    try:
        async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
            visitor = await session(http)
        ws = await connect(chat_url(live, visitor["token"]))
        await recv(ws, "hello")
        ticket_id = (await say(ws, "m1", "first"))["ticket_id"]
        async with rt.db.begin() as conn:
            # Hold the ticket (on SQLite, the writer lock) so that storing the next message waits.
            await conn.execute(update(T).where(T.c.id == ticket_id).values(subject="held by the test"))
            await ws.send(json.dumps({"type": "message", "client_id": "m2", "text": "second"}))
            await asyncio.sleep(0.3)
            ws.transport.abort()
            await asyncio.sleep(0.5)  # heartbeats to the closed socket fail meanwhile
        async with asyncio.timeout(10):
            while True:
                async with rt.db.begin() as conn:
                    texts = (await conn.execute(select(M.c.text).where(M.c.ticket_id == ticket_id))).scalars().all()
                if "second" in texts:
                    break
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert not [m for m in errors.messages if "Exception in ASGI application" in m], errors.messages
    finally:
        logging.getLogger("uvicorn.error").removeHandler(errors)
        live.stop()


async def test_a_reply_reaches_a_widget_connected_to_another_process(
    rt: Runtime, chat_settings: Settings, redis_url: str
) -> None:
    """Several processes behind a load balancer: the visitor's socket is on B, the agent replies through A and
    A's dispatcher delivers it (B's polls only every ten minutes): the reply crosses to B through Redis."""
    shared = {"redis_url": redis_url, "redis_channel": f"switchboard:test:{uuid.uuid4().hex}"}
    await make_queue(rt, "support", ["webchat"])
    await make_agent(rt, "alice", queues=["support"], available=True)
    a = LiveServer(chat_settings.model_copy(update=shared)).start()
    b = LiveServer(chat_settings.model_copy(update={**shared, "outbox_poll_seconds": 600.0})).start()
    try:
        async with httpx.AsyncClient(base_url=a.url, timeout=10) as http_a:
            headers = await login(http_a, "alice", "password-123")
            s = await session(http_a)
            async with connect(chat_url(b, s["token"])) as ws:
                await recv(ws, "hello")
                tid = (await say(ws, "m1", "help"))["ticket_id"]
                assert (await http_a.post(f"/api/tickets/{tid}/accept", headers=headers)).status_code == 200
                r = await http_a.post(f"/api/tickets/{tid}/reply", json={"text": "from A"}, headers=headers)
                assert r.status_code == 201, r.text
                reply = (await recv(ws, "message"))["message"]
                assert (reply["id"], reply["text"], reply["agent_name"]) == (r.json()["id"], "from A", "alice")
    finally:
        a.stop()
        b.stop()
