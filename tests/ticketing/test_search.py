"""Ticket search: full text over subjects and messages (FTS5 on SQLite, tsvector on PostgreSQL), by number,
contact, tag and status, within what the agent may see; highlights are escaped; no query breaks it."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from hub.messages import Identity, InboundMessage
from hub.principals import Principal
from hub.runtime import Runtime
from tests.conftest import login
from tests.ticketing.routing_helpers import SUPERVISOR, agent, queue
from ticketing import tables
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
    (nor diacritics, on SQLite); ``#N`` finds ticket N; status, contact and tag narrow the results; newest first."""
    await queue(rt, "support")
    kettle = await mail(rt, "<1@x>", "Kettle leaks", "The Aurora kettle leaks from the base.")
    refund = await mail(rt, "<2@x>", "Refund please", "I want my money back for order 4411.", sender="bo@example.com")
    await mail(rt, "<3@x>", "Re: Kettle leaks", "Also the lid is loose. Café crème.", references=["<1@x>"])
    assert await found(rt, "kettle") == [kettle]
    assert await found(rt, "KETTLE base") == [kettle]
    assert await found(rt, "kettle money") == []
    assert await found(rt, "lid loo") == [kettle]  # the last word as a prefix
    assert await found(rt, "café crème") == [kettle]
    if rt.db.engine.dialect.name == "sqlite":  # FTS5 folds diacritics; PostgreSQL's 'simple' keeps them
        assert await found(rt, "cafe creme") == [kettle]
    assert await found(rt, "4411") == [refund]
    assert await found(rt, f"#{refund}") == [refund]
    assert await found(rt, str(kettle)) == [kettle]
    assert set(await found(rt, "")) == {kettle, refund}  # no words: the filters alone
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
