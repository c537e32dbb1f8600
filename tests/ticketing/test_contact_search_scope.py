"""Contact search as an agent sees it (only the contacts they may open) and while the search index is first
built (in the background, the database answering meanwhile). On the real database."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import select

from hub.db import insert_rows, utcnow
from hub.messages import Identity, InboundMessage
from hub.principals import Principal
from hub.runtime import Runtime
from tests.conftest import login, make_agent, make_queue
from ticketing import tables
from ticketing.contact_index import FIRST_BUILD_WAIT_SECONDS, contact_index, index_state, search_contacts
from ticketing.contacts import contact_page
from ticketing.ingest import ingest_batch

SUPERVISOR = Principal(agent_id=0, username="sup", display_name="", role="supervisor", queue_ids=frozenset())


async def mail(rt: Runtime, ext: str, address: str, name: str, queue: str) -> int:
    [r] = await ingest_batch(
        rt,
        [
            InboundMessage(
                channel="email",
                external_id=ext,
                sender=Identity(kind="email", value=address, name=name),
                subject="Hello",
                text="hi",
                queue=queue,
            )
        ],
    )
    assert not isinstance(r, Exception)
    return r.contact_id


async def agent_principal(rt: Runtime, agent_id: int, username: str) -> Principal:
    async with rt.read() as conn:
        qs = frozenset(
            q
            for (q,) in await conn.execute(
                select(tables.agent_queues.c.queue_id).where(tables.agent_queues.c.agent_id == agent_id)
            )
        )
    return Principal(agent_id=agent_id, username=username, display_name="", role="agent", queue_ids=qs)


async def test_an_agent_finds_only_contacts_of_tickets_they_may_see(rt: Runtime, client: httpx.AsyncClient) -> None:
    """An agent's search (by name, typo, address) and their contact page's duplicate suggestions name only the
    contacts with a ticket in their queues (or none at all), as the contact page allows; supervisors and admins
    find every contact."""
    await make_queue(rt, "support", channels=["email"])
    await make_queue(rt, "billing", channels=["email"])
    ann = await make_agent(rt, "ann", queues=["support"])
    await make_agent(rt, "sam", role="supervisor")
    mine = await mail(rt, "<1@x>", "maria.garcia@acme-corp.com", "Maria Garcia", "support")
    theirs = await mail(rt, "<2@x>", "m.garcia@acme-corp.com", "Maria Garcia", "billing")
    async with rt.db.begin() as conn:  # a contact with no ticket at all (as the contact page allows agents)
        lone = (
            await conn.execute(
                tables.contacts.insert()
                .values(name="Maria Garcia", attributes={}, created_at=utcnow(), updated_at=utcnow())
                .returning(tables.contacts.c.id)
            )
        ).scalar_one()
    ann_p = await agent_principal(rt, ann, "ann")
    for q in ("Maria Garcia", "Mraia Garcai", "garcia"):
        assert {h.id for h in await search_contacts(rt, query=q, principal=SUPERVISOR)} == {mine, theirs, lone}, q
        assert {h.id for h in await search_contacts(rt, query=q, principal=ann_p)} == {mine, lone}, q
    assert await search_contacts(rt, query="m.garcia@acme-corp.com", principal=ann_p) == []
    # The duplicates the contact page suggests to her leave out the one she may not open.
    assert theirs in {d.other_id for d in (await contact_page(rt, contact_id=mine, principal=SUPERVISOR)).duplicates}
    assert theirs not in {d.other_id for d in (await contact_page(rt, contact_id=mine, principal=ann_p)).duplicates}
    # Over HTTP, the same.
    auth = await login(client, "ann", "password-123")
    r = await client.get("/api/contacts", params={"q": "Maria Garcia"}, headers=auth)
    assert r.status_code == 200 and {h["id"] for h in r.json()} == {mine, lone}
    sam = await login(client, "sam", "password-123")
    r = await client.get("/api/contacts", params={"q": "Maria Garcia"}, headers=sam)
    assert {h["id"] for h in r.json()} == {mine, theirs, lone}


async def test_searches_during_the_first_build_are_answered_by_the_database(rt: Runtime) -> None:
    """The index's first build runs in the background, chunk by chunk: while it runs, a search is answered at
    once by the database (exact addresses, whole name words; no typos) within the agent's scope, and the index
    state says "building" with its progress, which moves chunk by chunk; once built, typos are forgiven."""
    await make_queue(rt, "support", channels=["email"])
    await make_queue(rt, "billing", channels=["email"])
    ann = await agent_principal(rt, await make_agent(rt, "ann", queues=["support"]), "ann")
    mine = await mail(rt, "<1@x>", "jose.nunez@example.org", "José Núñez", "support")
    theirs = await mail(rt, "<2@x>", "jnunez@example.net", "José Núñez", "billing")
    now = utcnow()
    async with rt.db.begin() as conn:
        await insert_rows(
            conn,
            tables.contacts,
            [{"name": f"Person {i}", "attributes": {}, "created_at": now, "updated_at": now} for i in range(300)],
        )
    index = contact_index(rt)
    index.build_chunk = 20
    # Holding the index's lock keeps the build from starting: every search meanwhile is the database's.
    async with index.lock:
        t = asyncio.get_running_loop().time()
        hits = await search_contacts(rt, query="jose.nunez@example.org", principal=SUPERVISOR)
        assert asyncio.get_running_loop().time() - t < FIRST_BUILD_WAIT_SECONDS + 1
        assert [h.id for h in hits] == [mine] and hits[0].score == 100
        assert {h.id for h in await search_contacts(rt, query="josé NÚÑEZ", principal=SUPERVISOR)} == {mine, theirs}
        assert [h.id for h in await search_contacts(rt, query="josé núñez", principal=ann)] == [mine]
        assert await search_contacts(rt, query="Jsoe Nunes", principal=SUPERVISOR) == []  # no typos yet
        assert await search_contacts(rt, query="50% _ \\ ' \" 😀", principal=SUPERVISOR) == []
        state = index_state(rt)
        assert state.state == "building" and state.indexed == 0
    seen: list[int] = []
    while (state := index_state(rt)).state == "building":
        seen.append(state.indexed)
        await search_contacts(rt, query="Person 7", principal=SUPERVISOR)  # answered meanwhile
        await asyncio.sleep(0)
    assert state.indexed == state.total == 302
    assert any(0 < n < 302 for n in seen), seen  # it went chunk by chunk, the event loop serving in between
    hits = await search_contacts(rt, query="Jsoe Nunes", principal=SUPERVISOR)
    assert {h.id for h in hits[:2]} == {mine, theirs}
    assert [h.id for h in await search_contacts(rt, query="Jsoe Nunes", principal=ann)] == [mine]


async def test_index_state_over_http(rt: Runtime, client: httpx.AsyncClient) -> None:
    """GET /api/contacts/index says whether searches use the index, and how far its first build got."""
    await make_agent(rt, "ann", queues=[])
    auth = await login(client, "ann", "password-123")
    for _ in range(200):
        state = (await client.get("/api/contacts/index", headers=auth)).json()
        if state["state"] == "ready":
            break
        await asyncio.sleep(0.05)
    assert state["state"] == "ready" and state["indexed"] == state["total"]


async def test_the_databases_first_build_answers_fold_case_and_accents(rt: Runtime) -> None:
    """While the index is first built, the database's name match forgives case and accents together, as the
    index does, also for capital accented letters (which SQLite's ``lower`` leaves as they are): "elodie" and
    "élodie" find "ÉLODIE MARTIN", "JOSE nunez" finds "José Núñez", and "élodie" does not find "Eloise"."""
    await make_queue(rt, "support", channels=["email"])
    elodie = await mail(rt, "<1@x>", "em@example.org", "ÉLODIE MARTIN", "support")
    jose = await mail(rt, "<2@x>", "jn@example.org", "José Núñez", "support")
    await mail(rt, "<3@x>", "eloise@example.org", "Eloise Martin", "support")
    index = contact_index(rt)
    async with index.lock:  # the build cannot start: every search meanwhile is the database's
        for q in ("elodie", "Élodie martin", "ÉLODIE", "elodié"):
            assert [h.id for h in await search_contacts(rt, query=q, principal=SUPERVISOR)] == [elodie], q
        for q in ("JOSE nunez", "josé NÚÑEZ", "Nunez"):
            assert [h.id for h in await search_contacts(rt, query=q, principal=SUPERVISOR)] == [jose], q
        assert index_state(rt).state == "building"


async def test_a_build_under_way_is_stopped_with_the_runtime(rt: Runtime) -> None:
    """The index's first build runs in the background; when the runtime stops (a server's shutdown), it is
    stopped before the database goes. Left running, it kept the connection it read with checked out past the
    engine's disposal, and PostgreSQL's connection was never closed."""
    await make_queue(rt, "support", channels=["email"])
    await mail(rt, "<1@x>", "em@example.org", "Elodie Martin", "support")
    index = contact_index(rt)
    async with index.lock:  # the build has started and waits for this
        assert index_state(rt).state == "building"
        [build] = [t for t in asyncio.all_tasks() if t.get_name() == "contact-index-build"]
        await rt.stop_tasks()
        assert build.cancelled()
    assert not index.ready
