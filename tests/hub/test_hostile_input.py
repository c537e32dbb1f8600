"""Hostile and careless input to the REST API, on a real server: every bad request gets a 4xx that says what is
wrong (422 naming the field, 404, 413), never a 500, and nothing is half-stored (issue 19)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from hub.config import Settings
from hub.inputs import DB_INT_MAX, clean, clean_text
from hub.messages import Identity, InboundMessage
from hub.runtime import Runtime
from tests.conftest import LiveServer, login, make_agent, make_queue
from ticketing.ingest import ingest_batch

TOO_BIG = (DB_INT_MAX + 1, 2**63, 2**64 + 5)


@pytest.fixture
async def world(rt: Runtime) -> dict[str, int]:
    ids = {
        "support": await make_queue(rt, "support", channels=["email", "webchat"]),
        "billing": await make_queue(rt, "billing"),
        "alice": await make_agent(rt, "alice", queues=["support"]),
        "sam": await make_agent(rt, "sam", role="supervisor"),
        "ada": await make_agent(rt, "ada", role="admin"),
    }
    [result] = await ingest_batch(
        rt,
        [
            InboundMessage(
                channel="email",
                external_id="<s@x>",
                sender=Identity(kind="email", value="ann@example.com"),
                subject="Order late",
                text="Where is it?",
                queue="support",
            )
        ],
    )
    ids["ticket"] = result.ticket_id  # type: ignore[union-attr]
    return ids


@pytest.fixture
async def api(client: httpx.AsyncClient, world: dict[str, int]) -> AsyncIterator[dict[str, dict[str, str]]]:
    yield {
        "ada": await login(client, "ada", "password-123"),
        "alice": await login(client, "alice", "password-123"),
        "sam": await login(client, "sam", "password-123"),
    }


def field_error(r: httpx.Response, field: str) -> str:
    """The message of the 422 that names ``field``; fails unless the answer is such a 422."""
    assert r.status_code == 422, (r.status_code, r.text)
    detail = r.json()["detail"]
    assert isinstance(detail, list), r.text
    for item in detail:
        if field in [str(p) for p in item["loc"]]:
            return str(item["msg"])
    raise AssertionError(f"no error names {field}: {r.text}")


async def test_overflow_null_clears_it_and_is_checked_before_anything(
    client: httpx.AsyncClient, world: dict[str, int], api: dict[str, dict[str, str]]
) -> None:
    """``{"overflow": null}`` clears a queue's overflow steps, as the README says; an agent sending it gets
    403, not a 500 from validating the body."""
    queue = f"/api/queues/{world['support']}"
    steps = {"overflow": [{"after_seconds": 60, "widen_to": ["billing"]}]}
    r = await client.patch(queue, json=steps, headers=api["ada"])
    assert r.status_code == 200 and r.json()["overflow"][0]["after_seconds"] == 60, r.text
    assert (await client.patch(queue, json={"overflow": None}, headers=api["alice"])).status_code == 403
    r = await client.patch(queue, json={"overflow": None}, headers=api["ada"])
    assert r.status_code == 200 and not r.json()["overflow"], r.text
    listed = {q["id"]: q for q in (await client.get("/api/queues", headers=api["ada"])).json()}
    assert not listed[world["support"]]["overflow"]


async def test_ids_beyond_the_column_are_refused_in_paths_queries_and_bodies(
    client: httpx.AsyncClient, world: dict[str, int], api: dict[str, dict[str, str]]
) -> None:
    """An id no column can hold is a 422 naming it, wherever it is given (PostgreSQL's integer ends at 2^31-1,
    SQLite's at 2^63-1); the largest one that fits is an ordinary 404."""
    ada = api["ada"]
    assert (await client.get(f"/api/tickets/{DB_INT_MAX}", headers=ada)).status_code == 404
    for big in TOO_BIG:
        for path, field in (
            (f"/api/tickets/{big}", "ticket_id"),
            (f"/api/tickets/{big}/routing", "ticket_id"),
            (f"/api/contacts/{big}", "contact_id"),
            (f"/api/email/quarantine/{big}/raw", "quarantine_id"),
        ):
            field_error(await client.get(path, headers=ada), field)
        for path, field in (
            (f"/api/tickets/{big}/accept", "ticket_id"),
            (f"/api/agents/{big}/requeue", "agent_id"),
            (f"/api/email/quarantine/{big}/reprocess", "quarantine_id"),
        ):
            field_error(await client.post(path, headers=ada), field)
        field_error(await client.patch(f"/api/queues/{big}", json={}, headers=ada), "queue_id")
        field_error(await client.delete(f"/api/canned/{big}", headers=ada), "canned_id")
        for name in ("queue_id", "assignee_id", "contact_id", "offset"):
            field_error(await client.get("/api/tickets", params={name: big}, headers=ada), name)
        ticket = f"/api/tickets/{world['ticket']}"
        field_error(await client.post(f"{ticket}/assign", json={"agent_id": big}, headers=ada), "agent_id")
        field_error(await client.post(f"{ticket}/transfer", json={"queue_id": big}, headers=ada), "queue_id")
        queue = {"name": f"q{big}", "priority": big}
        field_error(await client.post("/api/queues", json=queue, headers=ada), "priority")
        skills = {"skills": {"billing": big}}
        field_error(await client.patch(f"/api/agents/{world['alice']}", json=skills, headers=ada), "billing")
        agent = {"username": f"u{big}", "password": "password-123", "capacity": {"email": big}}
        field_error(await client.post("/api/agents", json=agent, headers=ada), "email")
    names = [q["name"] for q in (await client.get("/api/queues", headers=ada)).json()]
    assert names == ["support", "billing"]  # nothing half-made
    agent = (await client.get("/api/auth/me", headers=api["alice"])).json()
    assert agent["skills"] == {}


async def test_agent_patch_refuses_null_for_fields_that_cannot_be_empty(
    client: httpx.AsyncClient, world: dict[str, int], api: dict[str, dict[str, str]]
) -> None:
    """``null`` for role, display name, active, skills or capacity is a 422 naming the field, and the agent is
    unchanged; ``null`` queues or password mean no change."""
    path = f"/api/agents/{world['alice']}"
    for field in ("role", "display_name", "active", "skills", "capacity"):
        field_error(await client.patch(path, json={"display_name": "x", field: None}, headers=api["ada"]), field)
    me = (await client.get("/api/auth/me", headers=api["alice"])).json()
    assert (me["role"], me["display_name"], me["active"]) == ("agent", "alice", True)
    r = await client.patch(path, json={"queues": None, "password": None, "display_name": "Alice"}, headers=api["ada"])
    assert r.status_code == 200 and r.json()["display_name"] == "Alice" and r.json()["queue_ids"] == [world["support"]]


async def test_ids_in_bodies_are_strict_integers(
    client: httpx.AsyncClient, world: dict[str, int], api: dict[str, dict[str, str]]
) -> None:
    """``true`` is not agent 1, nor is ``"1"`` or ``1.0``: each is a 422 naming ``agent_id``, and the ticket
    is not transferred."""
    ticket = f"/api/tickets/{world['ticket']}"
    for wrong in (True, "1", 1.0, 0, -3):
        r = await client.post(f"{ticket}/transfer", json={"agent_id": wrong}, headers=api["sam"])
        field_error(r, "agent_id")
    assert (await client.get(ticket, headers=api["sam"])).json()["assignee_id"] is None


async def test_every_422_has_the_documented_shape(
    client: httpx.AsyncClient, world: dict[str, int], api: dict[str, dict[str, str]]
) -> None:
    """A 422 raised by the domain (not by FastAPI's validation) carries ``detail`` as the documented list of
    ``{loc, msg, type}``, plus its stable ``code``; the OpenAPI schema documents every error answer."""
    ticket = f"/api/tickets/{world['ticket']}"
    r = await client.post(f"{ticket}/transfer", json={}, headers=api["sam"])
    assert r.status_code == 422 and r.json()["code"] == "transfer_target_missing", r.text
    [item] = r.json()["detail"]
    assert item["loc"] == ["body"] and "queue_id" in item["msg"] and item["type"] == "transfer_target_missing"
    r = await client.put("/api/routing/rules", json={"rules": [{"name": "x"}]}, headers=api["ada"])
    assert r.status_code == 422 and r.json()["code"] == "invalid_routing_config", r.text
    [item] = r.json()["detail"]  # the missing field is named where the list shape names it: its loc
    assert item["loc"] == ["body", "rules", 0, "queue"] and item["type"] == "invalid_routing_config", r.text
    schema = (await client.get("/openapi.json")).json()
    answers = schema["paths"]["/api/tickets/{ticket_id}/transfer"]["post"]["responses"]
    assert answers["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ValidationAnswer")
    assert answers["4XX"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorAnswer")


async def test_options_and_405_name_every_method_of_the_path(
    client: httpx.AsyncClient, world: dict[str, int], api: dict[str, dict[str, str]]
) -> None:
    """``OPTIONS`` answers 204 with ``Allow`` listing every method the path's routes take, as the OpenAPI schema
    does; a 405 lists them all as well."""
    schema = (await client.get("/openapi.json")).json()
    for path, concrete in (
        ("/api/queues", "/api/queues"),
        ("/api/tickets/{ticket_id}", f"/api/tickets/{world['ticket']}"),
        ("/api/email/mailboxes/{name}", "/api/email/mailboxes/support"),
        ("/api/canned", "/api/canned"),
    ):
        documented = {m.upper() for m in schema["paths"][path]}
        r = await client.options(concrete, headers=api["ada"])
        assert r.status_code == 204, (path, r.status_code)
        assert {m.strip() for m in r.headers["allow"].split(",")} == documented | {"OPTIONS"}, path
    r = await client.delete("/api/queues", headers=api["ada"])
    assert r.status_code == 405 and {m.strip() for m in r.headers["allow"].split(",")} == {"GET", "POST", "OPTIONS"}


async def test_nul_and_lone_surrogates_are_cleaned_where_text_enters(
    client: httpx.AsyncClient, world: dict[str, int], api: dict[str, dict[str, str]]
) -> None:
    """Text no database can store (U+0000; a lone surrogate, which JSON's ``\\ud800`` lets through) is cleaned
    where it enters: login, canned search and create, queues, agents, ingest and notes all answer as for the
    clean text (PostgreSQL answered 500 to each)."""
    ada = api["ada"]
    r = await client.post("/api/auth/login", json={"username": "ada\x00", "password": "password-123\x00"})
    assert r.status_code == 200, r.text  # the same as the clean login: NUL is dropped, not refused
    r = await client.post(
        "/api/auth/login",
        content=b'{"username": "ada\\ud800", "password": "x\\udfff-wrong"}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 401, r.text
    assert (await client.get("/api/canned", params={"q": "a\x00b"}, headers=ada)).status_code == 200
    canned = {"shortcut": "hi", "title": "Hi\x00", "text": "Hello\x00 there"}
    r = await client.post("/api/canned", json=canned, headers=ada)
    assert r.status_code == 201 and r.json()["text"] == "Hello there", r.text
    r = await client.post("/api/queues", json={"name": "vip\x00", "description": "\x00d"}, headers=ada)
    assert r.status_code == 201 and r.json()["name"] == "vip", r.text
    r = await client.post(
        "/api/agents", json={"username": "bob", "password": "password-123", "display_name": "B\x00ob"}, headers=ada
    )
    assert r.status_code == 201 and r.json()["display_name"] == "Bob", r.text
    inbound = {
        "channel": "email",
        "external_id": "<nul\x00@x>",
        "sender": {"kind": "email", "value": "nul@example.com", "name": "N\x00"},
        "subject": "S\x00",
        "text": "body \x00 with a lone \ud800 surrogate",
        "metadata": {"k\x00": ["v\x00"]},
    }
    r = await client.post(
        "/api/inbound",
        content=httpx_json(inbound),
        headers={**ada, "Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    detail = (await client.get(f"/api/tickets/{r.json()['ticket_id']}", headers=ada)).json()
    assert detail["messages"][0]["text"] == "body  with a lone \ufffd surrogate"
    assert detail["subject"] == "S"
    r = await client.post(f"/api/tickets/{world['ticket']}/notes", json={"text": "note\x00"}, headers=ada)
    assert r.status_code == 201 and r.json()["text"] == "note", r.text
    r = await client.get("/api/email/mailboxes/x%00y", headers=ada)
    assert r.status_code == 404


def httpx_json(value: object) -> bytes:
    """JSON as a careless client writes it: lone surrogates escaped (``\\ud800``) rather than refused."""
    import json

    return json.dumps(value).encode()


def test_clean_returns_clean_input_itself() -> None:
    """Cleaning is free for clean input (the ingest and chat hot paths): the very same objects come back; only
    what held a NUL or a lone surrogate is copied."""
    frame = {"type": "message", "client_id": "c1", "text": "héllo", "attachments": [{"sha256": "ab"}], "n": 1}
    assert clean(frame) is frame
    assert clean_text("plain") == "plain"
    dirty = {"a": 1, "b": ["x", "y\x00"], "c\x00": "z"}
    assert clean(dirty) == {"a": 1, "b": ["x", "y"], "c": "z"}
    assert clean_text("a\ud800b\x00") == "a\ufffdb"


async def test_a_chunked_body_over_the_limit_is_413(settings: Settings, world: dict[str, int]) -> None:
    """A body sent in chunks, with no Content-Length to refuse up front, is 413 once it passes the limit, as one
    with an honest Content-Length is (it was a 400 "error parsing the body")."""
    live = LiveServer(settings.model_copy(update={"max_body_bytes": 10_000})).start()
    try:
        async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
            ada = await login(client, "ada", "password-123")

            async def chunks() -> AsyncIterator[bytes]:
                yield b'{"text": "'
                for _ in range(20):
                    yield b"x" * 1000
                yield b'"}'

            r = await client.post(
                f"/api/tickets/{world['ticket']}/notes",
                content=chunks(),
                headers={**ada, "Content-Type": "application/json"},
            )
            assert r.status_code == 413 and r.json()["code"] == "body_too_large", r.text
            assert "content-length" not in r.request.headers  # it went chunked
            detail = (await client.get(f"/api/tickets/{world['ticket']}", headers=ada)).json()
            assert len(detail["messages"]) == 1  # no note stored
    finally:
        live.stop()


async def test_a_422_echoing_a_lone_surrogate_is_still_a_422(
    client: httpx.AsyncClient, world: dict[str, int], api: dict[str, dict[str, str]]
) -> None:
    """A refused body whose input holds a lone surrogate answers its 422 (FastAPI echoes the input, which could
    not be encoded: a 500)."""
    r = await client.put(
        "/api/routing/rules", content=b'["\\ud800"]', headers={**api["ada"], "Content-Type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["detail"][0]["input"] == ["\ufffd"], r.text
