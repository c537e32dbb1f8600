"""Ticket search: full text over subjects and messages (FTS5 on SQLite, tsvector on PostgreSQL), by number,
contact, tag and status, within what the agent may see; highlights are escaped; no query breaks it."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, text, update

from hub.db import Database, utcnow
from hub.folding import FOLD, fold
from hub.messages import Identity, InboundMessage
from hub.migrate import alembic_config, upgrade
from hub.principals import Principal
from hub.runtime import Runtime
from tests.conftest import login
from tests.ticketing.routing_helpers import SUPERVISOR, agent, queue
from ticketing import search_index, tables
from ticketing.ingest import ingest_batch
from ticketing.models import TicketStatus, TicketUpdate
from ticketing.search import highlight, query_words, search_tickets
from ticketing.ticket_updates import update_ticket


async def mail(rt: Runtime, ext: str, subject: str, text: str, sender: str = "ann@example.com", **kw: object) -> int:
    [r] = await ingest_batch(
        rt,
        [
            InboundMessage(
                channel="email",
                external_id=ext,
                sender=Identity(kind="email", value=sender),
                subject=subject,
                text=text,
                **kw,  # type: ignore[arg-type]
            )
        ],
    )
    assert not isinstance(r, Exception)
    return r.ticket_id


async def found(rt: Runtime, q: str, principal: Principal = SUPERVISOR, **kw: object) -> list[int]:
    return [h.ticket.id for h in (await search_tickets(rt, principal=principal, query=q, **kw)).items]  # type: ignore[arg-type]


async def test_words_in_subjects_and_messages_numbers_and_filters(rt: Runtime) -> None:
    """Every word must match (the last also as a prefix), in a subject or any message; case does not matter
    nor diacritics, either way, on both databases; ``#N`` finds ticket N; status, contact and tag narrow the
    results; newest first."""
    await queue(rt, "support")
    kettle = await mail(rt, "<1@x>", "Kettle leaks", "The Aurora kettle leaks from the base.")
    refund = await mail(rt, "<2@x>", "Refund please", "I want my money back for order 4411.", sender="bo@example.com")
    await mail(rt, "<3@x>", "Re: Kettle leaks", "Also the lid is loose. Café crème.", references=["<1@x>"])
    assert await found(rt, "kettle") == [kettle]
    assert await found(rt, "KETTLE base") == [kettle]
    assert await found(rt, "kettle money") == []
    assert await found(rt, "lid loo") == [kettle]  # the last word as a prefix
    assert await found(rt, "café crème") == [kettle]
    assert await found(rt, "cafe creme") == [kettle]
    jose = await mail(rt, "<4@x>", "Pedido de José Núñez", "Señor Müller's Ærø order", sender="jn@example.org")
    assert await found(rt, "jose nunez") == [jose]  # in the subject
    assert await found(rt, "senor mull") == [jose]  # in a message, the last word a prefix
    assert await found(rt, "JOSÉ") == [jose]
    assert await found(rt, "Pédido") == [jose]  # an accent the text does not have
    assert await found(rt, "4411") == [refund]
    assert await found(rt, f"#{refund}") == [refund]
    assert await found(rt, str(kettle)) == [kettle]
    assert set(await found(rt, "")) == {kettle, refund, jose}  # no words: the filters alone
    assert await found(rt, "😀 *") == []  # something typed, nothing searchable in it: nothing, not everything
    await update_ticket(rt, ticket_id=refund, principal=SUPERVISOR, data=TicketUpdate(tags=["billing"]))
    assert await found(rt, "", tag="billing") == [refund]
    await update_ticket(rt, ticket_id=kettle, principal=SUPERVISOR, data=TicketUpdate(status=TicketStatus.SOLVED))
    assert await found(rt, "", status=["solved"]) == [kettle]
    hit = (await search_tickets(rt, principal=SUPERVISOR, query="refund", status=[])).items[0]
    assert await found(rt, "", contact_id=hit.ticket.contact_id) == [refund]
    # An edited subject is found by its new words.
    await update_ticket(rt, ticket_id=refund, principal=SUPERVISOR, data=TicketUpdate(subject="Double charge"))
    assert await found(rt, "double charge") == [refund]


async def test_agents_find_only_tickets_they_may_see(rt: Runtime) -> None:
    await queue(rt, "support")
    await queue(rt, "billing")
    support = await mail(rt, "<1@x>", "Kettle", "kettle text")
    await mail(rt, "<2@x>", "Kettle bill", "kettle invoice", sender="b@example.com", queue="billing")
    ann = await agent(rt, "ann", ["support"], available=False)
    async with rt.read() as conn:
        from sqlalchemy import select

        qs = frozenset(
            r.queue_id
            for r in await conn.execute(
                select(tables.agent_queues.c.queue_id).where(tables.agent_queues.c.agent_id == ann)
            )
        )
    who = Principal(agent_id=ann, username="ann", display_name="", role="agent", queue_ids=qs)
    assert await found(rt, "kettle", who) == [support]


async def test_erased_text_is_no_longer_found(rt: Runtime) -> None:
    """The index follows changes of a message's text (an erase, say): the old words find nothing."""
    await queue(rt, "support")
    await mail(rt, "<1@x>", "Hello", "my secret passphrase is marmalade")
    assert await found(rt, "marmalade")
    async with rt.db.begin() as conn:
        await conn.execute(update(tables.messages).values(text="", subject=None))
    assert await found(rt, "marmalade") == []


async def _raw_message(rt: Runtime, ticket_id: int, text: str) -> int:
    """A message stored by a statement of its own, as a tool would, not by any of the core's write paths."""
    async with rt.db.begin() as conn:
        row = await conn.execute(
            tables.messages.insert()
            .values(
                ticket_id=ticket_id,
                direction="in",
                channel="email",
                text=text,
                attachments=[],
                meta={},
                delivery_status="received",
                created_at=utcnow(),
            )
            .returning(tables.messages.c.id)
        )
        return int(row.scalar_one())


async def _waiting_messages(rt: Runtime) -> int:
    """SQLite: messages stored and not yet in the full-text index."""
    async with rt.read() as conn:
        sql = "SELECT (SELECT max(id) FROM messages) - upto FROM search_index_progress WHERE name = 'messages'"
        return int((await conn.execute(text(sql))).scalar_one())


async def test_every_stored_message_is_found_however_it_was_stored(rt: Runtime) -> None:
    """SQLite indexes once per transaction, above a mark (``ticketing.search_index``): a message stored around
    the core's write paths is indexed by the next search; deleting the newest messages (whose ids SQLite then
    gives out again) neither hides the new messages that get them nor leaves the deleted words findable."""
    await queue(rt, "support")
    tid = await mail(rt, "<1@x>", "Kettle", "first words: apricot")
    raw = await _raw_message(rt, tid, "second words: blueberry")
    assert await found(rt, "blueberry") == [tid]
    # The newest (indexed) message deleted, then an unindexed one stored and deleted before any indexing, and a
    # message stored in its place: on SQLite it gets the same id as both deleted ones.
    async with rt.db.begin() as conn:
        await conn.execute(delete(tables.messages).where(tables.messages.c.id == raw))
    again = await _raw_message(rt, tid, "unindexed words: cranberry")
    async with rt.db.begin() as conn:
        await conn.execute(delete(tables.messages).where(tables.messages.c.id == again))
    third = await _raw_message(rt, tid, "third words: damson")
    if rt.db.engine.dialect.name == "sqlite":
        assert raw == again == third  # the case the mark must survive
    assert await found(rt, "damson") == [tid]
    assert await found(rt, "blueberry") == []
    assert await found(rt, "cranberry") == []
    assert await found(rt, "apricot") == [tid]
    # A change of text of a message not yet indexed: indexed with its new text.
    fourth = await _raw_message(rt, tid, "elderberry")
    async with rt.db.begin() as conn:
        await conn.execute(update(tables.messages).where(tables.messages.c.id == fourth).values(text="fig"))
    assert await found(rt, "elderberry") == []
    assert await found(rt, "fig") == [tid]
    # The core's own write paths index in batches: once INDEX_BATCH messages wait, none is left for a search.
    await mail(rt, "<2@x>", "Gooseberry", "gooseberry jam", sender="g@example.com")
    if rt.db.engine.dialect.name == "sqlite":
        assert await _waiting_messages(rt) == 1
    await ingest_batch(
        rt,
        [
            InboundMessage(
                channel="sms", external_id=f"SM{n}", sender=Identity(kind="phone", value="+14155550100"), text=f"n{n}"
            )
            for n in range(search_index.INDEX_BATCH)
        ],
    )
    if rt.db.engine.dialect.name == "sqlite":
        assert await _waiting_messages(rt) == 0
    assert await found(rt, "gooseberry") == [await mail(rt, "<2@x>", "Gooseberry", "again", sender="g@example.com")]


async def test_sql_folds_as_python_does(rt: Runtime) -> None:
    """``switchboard_fold`` in SQL (PostgreSQL's from the migration, which its stored vectors use; SQLite's
    registered on each connection) and ``fold`` (the query's words, the highlights) map every accented letter
    alike, ASCII text is left as it is, and NULL stays NULL."""
    accented = "".join(chr(c) for c in sorted(FOLD))
    assert len(FOLD) > 400
    async with rt.read() as conn:
        folded = (await conn.execute(text("SELECT switchboard_fold(:t)"), {"t": accented + " Ærø ß"})).scalar()
        ascii_text = (await conn.execute(text("SELECT switchboard_fold(:t)"), {"t": "plain ASCII 123"})).scalar()
    assert folded == fold(accented + " Ærø ß") == "".join(chr(FOLD[c]) for c in sorted(FOLD)) + " Ærø ß"
    assert ascii_text == "plain ASCII 123"
    async with rt.read() as conn:
        assert (await conn.execute(text("SELECT switchboard_fold(NULL)"))).scalar() is None


def test_highlights_mark_words_accents_aside() -> None:
    """A word found without its accent (or with one the text lacks) is marked in the text as written."""
    assert highlight("Pedido de José Núñez", ["jose", "núnez"]) == "Pedido de <mark>José</mark> <mark>Núñez</mark>"
    assert highlight("Cafe & crème", ["café"]) == "<mark>Cafe</mark> &amp; crème"


def test_highlights_escape_everything_but_their_marks() -> None:
    words = query_words('<b>Kettle</b> "leak')
    assert words == ["b", "kettle", "leak"]
    out = highlight("<script>x</script> Kettle leaks & <b>boils</b>", ["kettle", "leak"])
    assert out == "&lt;script&gt;x&lt;/script&gt; <mark>Kettle</mark> <mark>leaks</mark> &amp; &lt;b&gt;boils&lt;/b&gt;"
    long = "a " * 200 + "kettle here " + "b " * 200
    cut = highlight(long, ["kettle"], 60)
    assert "<mark>kettle</mark>" in cut and cut.startswith("…") and cut.endswith("…") and len(cut) < 120


SYNTAX = st.sampled_from(
    ['"', "'", "*", "(", ")", ":", "^", "-", "+", "NEAR", "AND", "OR", "NOT", "&", "|", "!", "<->", "\\", "%", "_"]
    + ["{", "}", "[", "]", "😀", "\u0301", "\ud800", "\x00", "#", " "]
)


@pytest.mark.timeout(300)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(q=st.lists(st.one_of(SYNTAX, st.text(max_size=6)), max_size=12).map("".join))
async def test_no_query_breaks_the_search(rt: Runtime, q: str) -> None:
    """FTS5 and tsquery syntax, quotes, emoji, combining marks, lone surrogates, NUL: an answer, never an
    error."""
    result = await search_tickets(rt, principal=SUPERVISOR, query=q)
    assert result.items == [] or all(h.ticket.id for h in result.items)


async def test_search_over_http(rt: Runtime, client: httpx.AsyncClient) -> None:
    """GET /api/search/tickets answers hits with escaped highlights; odd characters in q are 200, a q over 200
    characters or a bad status is 422."""
    await queue(rt, "support")
    await agent(rt, "ann", ["support"], available=False)
    tid = await mail(rt, "<1@x>", "Kettle <b>leaks</b>", "It <i>leaks</i> a lot")
    auth = await login(client, "ann", "password-123")
    r = await client.get("/api/search/tickets", params={"q": "leaks"}, headers=auth)
    assert r.status_code == 200, r.text
    [hit] = r.json()["items"]
    assert hit["ticket"]["id"] == tid
    assert hit["subject_html"] == "Kettle &lt;b&gt;<mark>leaks</mark>&lt;/b&gt;"
    assert hit["snippet_html"] == "It &lt;i&gt;<mark>leaks</mark>&lt;/i&gt; a lot"
    for q in ['"', "a*", "NEAR(a b)", "x OR", "😀", "' OR 1=1 --", "-kettle", "kettle:*", "\\"]:
        assert (await client.get("/api/search/tickets", params={"q": q}, headers=auth)).status_code == 200, q
    assert (await client.get("/api/search/tickets", params={"q": "x" * 201}, headers=auth)).status_code == 422
    bad = await client.get("/api/search/tickets", params={"status": "later"}, headers=auth)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "status", 0]


def test_the_migration_keeps_the_index_whole_both_ways(fresh_database_url: str) -> None:
    """``search_index_batched`` on a database with messages: what was indexed stays found; rows stored after it
    are indexed by ``index_new``; its downgrade indexes what was stored since and puts the row triggers back."""
    if not fresh_database_url.startswith("sqlite"):
        pytest.skip("SQLite's FTS5 tables only: PostgreSQL's stored tsvector is unchanged")
    upgrade(fresh_database_url, "kb2_embeddings")

    async def store(db: Database, text: str, index: bool) -> None:
        async with db.begin() as conn:
            now = utcnow()
            contact = (
                await conn.execute(
                    tables.contacts.insert()
                    .values(name="Ann", attributes={}, created_at=now, updated_at=now)
                    .returning(tables.contacts.c.id)
                )
            ).scalar_one()
            ticket = (
                await conn.execute(
                    tables.tickets.insert()
                    .values(
                        contact_id=contact,
                        channel="email",
                        status="open",
                        priority="normal",
                        subject=text,
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(tables.tickets.c.id)
                )
            ).scalar_one()
            await conn.execute(
                tables.messages.insert().values(
                    ticket_id=ticket,
                    direction="in",
                    channel="email",
                    text=text,
                    attachments=[],
                    meta={},
                    delivery_status="received",
                    created_at=now,
                )
            )
            if index:
                await search_index.index_new(conn, every=True)

    async def matches(db: Database, word: str) -> tuple[int, int]:
        async with db.connect() as conn:
            msgs = (
                await conn.execute(text("SELECT count(*) FROM messages_fts WHERE messages_fts MATCH :w"), {"w": word})
            ).scalar()
            subj = (
                await conn.execute(text("SELECT count(*) FROM tickets_fts WHERE tickets_fts MATCH :w"), {"w": word})
            ).scalar()
        return int(msgs or 0), int(subj or 0)

    async def run(step: str) -> None:
        db = Database(fresh_database_url)
        try:
            if step == "before":
                await store(db, "quince", index=False)  # the row triggers index it
            elif step == "after":
                assert await matches(db, "quince") == (1, 1)
                await store(db, "rhubarb", index=True)
                await store(db, "sloe", index=False)  # stored around the core: not indexed yet
                assert await matches(db, "rhubarb") == (1, 1)
                assert await matches(db, "sloe") == (0, 0)
            else:
                assert await matches(db, "sloe") == (1, 1)  # the downgrade indexed it
                await store(db, "tayberry", index=False)  # the row triggers are back
                assert await matches(db, "tayberry") == (1, 1)
                assert await matches(db, "quince") == (1, 1)
        finally:
            await db.dispose()

    asyncio.run(run("before"))
    upgrade(fresh_database_url)
    asyncio.run(run("after"))
    command.downgrade(alembic_config(fresh_database_url), "kb2_embeddings")
    asyncio.run(run("down"))
