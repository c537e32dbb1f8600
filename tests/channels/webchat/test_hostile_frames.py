"""Hostile frames on both websocket protocols, against a live server: the widget's ``/ws/chat`` and the console's
``/ws/agent``. A bad frame (binary, not JSON, not an object, wrong types, ids no column holds, too large, NUL)
gets an ``error`` frame and the connection keeps working; a NUL in a chat message is no poison (issue 19)."""

from __future__ import annotations

import json
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from hub.inputs import DB_INT_MAX
from hub.runtime import Runtime
from tests.channels.webchat.test_protocol import (  # noqa: F401 - fixtures
    chat_settings,
    chat_url,
    live,
    recv,
    say,
    session,
)
from tests.conftest import LiveServer, login, make_agent, make_queue

BIG = DB_INT_MAX + 1


async def bad(ws: ClientConnection, frame: str | bytes, code: str) -> dict[str, Any]:
    """Send ``frame``; the next error frame has ``code``."""
    await ws.send(frame)
    error = await recv(ws, "error")
    assert error["code"] == code, (frame[:80], error)
    return error


async def test_bad_chat_frames_get_an_error_and_the_chat_goes_on(rt: Runtime, live: LiveServer) -> None:  # noqa: F811
    """Every kind of bad frame from the widget is answered with an error frame naming what is wrong; after all
    of them the same socket still stores and acknowledges messages."""
    await make_queue(rt, "support", channels=["webchat"])
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        visitor = await session(http)
    async with connect(chat_url(live, visitor["token"])) as ws:
        await recv(ws, "hello")
        await bad(ws, b"\x00\x01binary", "bad_frame")
        await bad(ws, "{not json", "bad_frame")
        await bad(ws, '"a string"', "bad_frame")
        await bad(ws, "[1, 2]", "bad_frame")
        await bad(ws, '{"type": "message", "client_id": "c", "text": "\\ud800"}', "bad_frame")  # lone surrogate
        await bad(ws, json.dumps({"type": "nope"}), "bad_frame")
        await bad(ws, json.dumps({"type": "message", "client_id": 5, "text": []}), "bad_frame")
        attached = {"type": "message", "client_id": "c", "text": "x", "attachments": "a"}
        await bad(ws, json.dumps(attached), "bad_attachment")
        await bad(ws, json.dumps({"type": "rating", "ticket_id": BIG, "score": 5}), "bad_frame")
        await bad(ws, json.dumps({"type": "rating", "ticket_id": True, "score": 5}), "bad_frame")
        await bad(ws, json.dumps({"type": "delivered", "message_ids": "123"}), "bad_frame")
        await bad(ws, json.dumps({"type": "email_fallback", "email": 5}), "bad_frame")
        await bad(ws, json.dumps({"type": "message", "client_id": "c", "text": "x" * 30_000}), "too_long")
        await ws.send(json.dumps({"type": "delivered", "message_ids": [BIG, -1, True]}))  # nothing to mark: no error
        ack = await say(ws, "after", "still here")
        assert ack["status"] == "sent"


async def test_a_nul_in_a_chat_message_is_no_poison(rt: Runtime, live: LiveServer) -> None:  # noqa: F811
    """A message with NUL characters is stored without them and acknowledged, and so is the next one (on
    PostgreSQL the socket used to close with no error frame, and the widget resent the message for ever)."""
    await make_queue(rt, "support", channels=["webchat"])
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        visitor = await session(http)
    async with connect(chat_url(live, visitor["token"])) as ws:
        await recv(ws, "hello")
        first = await say(ws, "p1", "hello\x00 world\x00")
        second = await say(ws, "p2", "and\x00 again")
    async with connect(chat_url(live, visitor["token"])) as ws:
        hello = await recv(ws, "hello")
    assert [m["id"] for m in hello["messages"]] == [first["message_id"], second["message_id"]]
    assert [m["text"] for m in hello["messages"]] == ["hello world", "and again"]


async def test_a_failing_chat_message_gets_an_error_naming_it(rt: Runtime, live: LiveServer) -> None:  # noqa: F811
    """Whatever goes wrong storing a message, the visitor gets an error frame with its ``client_id`` (which takes
    it off the widget's resend list) and the socket keeps working."""
    await make_queue(rt, "support", channels=["webchat"])
    service = live.app.state.channels["webchat"].service
    real = service.ingest

    async def failing(message: Any, **kw: Any) -> Any:
        if message.text == "poison":
            raise RuntimeError("the database said no")
        return await real(message, **kw)

    service.ingest = failing
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        visitor = await session(http)
    async with connect(chat_url(live, visitor["token"])) as ws:
        await recv(ws, "hello")
        await ws.send(json.dumps({"type": "message", "client_id": "bad1", "text": "poison"}))
        error = await recv(ws, "error")
        assert (error["code"], error["client_id"]) == ("internal", "bad1")
        assert (await say(ws, "good1", "fine"))["status"] == "sent"


async def test_bad_console_frames_get_an_error_and_events_keep_coming(
    rt: Runtime,
    live: LiveServer,  # noqa: F811
) -> None:
    """On ``/ws/agent`` every bad frame gets an error frame (binary, not JSON, not an object, an unknown type,
    a ticket id of the wrong type or beyond the column, too large), a frame with NUL in it is taken as the
    clean one, and the socket still carries events afterwards."""
    await make_queue(rt, "support", channels=["webchat"])
    await make_agent(rt, "sue", role="supervisor")
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        sue = await login(http, "sue", "password-123")
        token = sue["Authorization"].removeprefix("Bearer ")
        async with connect(f"{live.ws_url}/ws/agent?token={token}") as ws:
            await recv(ws, "hello")
            await bad(ws, b"\x00binary", "bad_frame")
            await bad(ws, "{oops", "bad_json")
            await bad(ws, "[]", "bad_frame")
            await bad(ws, json.dumps({"type": "nope"}), "bad_frame")
            for wrong in (True, "5", BIG, 2**70, None):
                await bad(ws, json.dumps({"type": "typing", "ticket_id": wrong, "active": True}), "bad_frame")
            await bad(ws, json.dumps({"type": "typing", "pad": "x" * 100_000}), "too_long")
            await ws.send(json.dumps({"type": "typ\x00ing", "ticket_id": 1, "active": True}))  # cleaned: valid
            r = await http.post("/api/canned", json={"shortcut": "hi", "title": "Hi", "text": "Hello"}, headers=sue)
            assert r.status_code == 201, r.text
            event = await recv(ws, "canned.created")
            assert event["data"]["shortcut"] == "hi"
