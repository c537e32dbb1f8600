"""The knowledge base's JSON API: articles with versions, search, preview; who may write; bad input answered
with a clear 4xx and nothing half-stored."""

from __future__ import annotations

import httpx
import pytest

from hub import audit
from hub.runtime import Runtime
from knowledge_base import service
from tests.conftest import login, make_agent
from tests.knowledge_base.conftest import HOSTILE


@pytest.fixture
async def staff(rt: Runtime) -> None:
    await make_agent(rt, "sam", role="supervisor")
    await make_agent(rt, "alice")


ARTICLE = {
    "slug": "track-your-order",
    "title": "Track your order",
    "body": "Open the **shipping email** and click *Track parcel*.",
    "category": "Orders",
    "tags": ["tracking"],
    "status": "published",
    "phrasings": ["Where is my order?", "Where is my order?", " "],
}


async def test_articles_are_created_changed_versioned_and_restored(
    staff: None, articles: dict[str, int], kb_client: httpx.AsyncClient, rt: Runtime
) -> None:
    """Each change made by a person (not a PATCH that changes nothing) is in the admins' audit log."""
    sam = await login(kb_client, "sam", "password-123")
    r = await kb_client.post("/api/kb/articles", json=ARTICLE, headers=sam)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["version"] == 1 and created["url"] == "/help/track-your-order"
    assert created["phrasings"] == ["Where is my order?"]  # duplicates and blanks dropped
    assert "<strong>shipping email</strong>" in created["html"]
    aid = created["id"]
    r = await kb_client.patch(f"/api/kb/articles/{aid}", json={"title": "Track an order", "version": 1}, headers=sam)
    assert r.status_code == 200 and r.json()["version"] == 2
    stale = await kb_client.patch(f"/api/kb/articles/{aid}", json={"title": "Again", "version": 1}, headers=sam)
    assert stale.status_code == 409 and stale.json()["code"] == "article_changed"
    same = await kb_client.patch(f"/api/kb/articles/{aid}", json={"title": "Track an order"}, headers=sam)
    assert same.json()["version"] == 2  # nothing changed, no new version
    versions = (await kb_client.get(f"/api/kb/articles/{aid}/versions", headers=sam)).json()
    assert [(v["version"], v["title"]) for v in versions] == [(2, "Track an order"), (1, "Track your order")]
    restored = await kb_client.post(f"/api/kb/articles/{aid}/versions/1/restore", headers=sam)
    assert restored.json()["version"] == 3 and restored.json()["title"] == "Track your order"
    assert (await kb_client.get(f"/api/kb/articles/{aid}/versions/9", headers=sam)).status_code == 404
    assert (await kb_client.delete(f"/api/kb/articles/{aid}", headers=sam)).status_code == 204
    assert (await kb_client.get(f"/api/kb/articles/{aid}", headers=sam)).status_code == 404
    async with rt.read() as conn:
        logged = [(e.actor, e.action, e.target, e.detail) for e in await audit.entries(conn, action="kb.")]
    article = {"slug": "track-your-order", "locale": "en"}
    assert logged[::-1] == [
        ("sam", "kb.article_create", f"article:{aid}", {**article, "title": "Track your order", "version": 1}),
        ("sam", "kb.article_update", f"article:{aid}",
         {**article, "title": "Track an order", "version": 2, "fields": ["title"]}),
        ("sam", "kb.article_restore", f"article:{aid}",
         {**article, "title": "Track your order", "version": 3, "restored": 1}),
        ("sam", "kb.article_delete", f"article:{aid}", {**article, "title": "Track your order", "version": 3}),
    ]  # fmt: skip


async def test_agents_read_but_only_supervisors_write(
    staff: None, articles: dict[str, int], kb_client: httpx.AsyncClient
) -> None:
    assert (await kb_client.get("/api/kb/articles")).status_code == 401
    alice = await login(kb_client, "alice", "password-123")
    listed = (await kb_client.get("/api/kb/articles", headers=alice)).json()
    assert {a["slug"] for a in listed} >= {"returns", "goodwill", "upcoming"}
    r = await kb_client.post("/api/kb/articles", json=ARTICLE, headers=alice)
    assert r.status_code == 403
    r = await kb_client.patch(f"/api/kb/articles/{articles['returns:en']}", json={"title": "x"}, headers=alice)
    assert r.status_code == 403


async def test_bad_input_is_refused_and_nothing_is_stored(
    staff: None, articles: dict[str, int], kb_client: httpx.AsyncClient, rt: Runtime
) -> None:
    sam = await login(kb_client, "sam", "password-123")
    before = len(await service.all_articles(rt))
    bad = [
        {**ARTICLE, "slug": "Not A Slug!"},
        {**ARTICLE, "title": "   "},
        {**ARTICLE, "status": "secret"},
        {**ARTICLE, "phrasings": ["x" * 501]},
        {**ARTICLE, "locale": "english please"},
    ]
    for body in bad:
        r = await kb_client.post("/api/kb/articles", json=body, headers=sam)
        assert r.status_code == 422, (body, r.text)
    taken = await kb_client.post("/api/kb/articles", json={**ARTICLE, "slug": "returns"}, headers=sam)
    assert taken.status_code == 409 and taken.json()["code"] == "article_slug_taken"
    assert len(await service.all_articles(rt)) == before
    # Text no database can store is cleaned where it enters (hub.inputs), as in every other body.
    nul = await kb_client.post("/api/kb/articles", json={**ARTICLE, "body": "nul \x00 byte"}, headers=sam)
    assert nul.status_code == 201 and nul.json()["body"] == "nul  byte"
    blank = await kb_client.patch(f"/api/kb/articles/{articles['returns:en']}", json={"title": " "}, headers=sam)
    assert blank.status_code == 422
    assert (await kb_client.patch("/api/kb/articles/999999", json={"title": "x"}, headers=sam)).status_code == 404


async def test_search_finds_misspelled_words_filters_and_refuses_empty_or_huge_queries(
    staff: None, articles: dict[str, int], kb_client: httpx.AsyncClient
) -> None:
    alice = await login(kb_client, "alice", "password-123")
    hits = (await kb_client.get("/api/kb/search", params={"q": "zanzibr"}, headers=alice)).json()
    assert [h["slug"] for h in hits] == ["goodwill"]  # internal: agents see it; the draft is left out
    assert "<mark>zanzibar</mark>" in hits[0]["snippet"]
    drafts = (await kb_client.get("/api/kb/search", params={"q": "zanzibar", "status": "draft"}, headers=alice)).json()
    assert [h["slug"] for h in drafts] == ["upcoming"]
    de = (await kb_client.get("/api/kb/search", params={"q": "zurücksenden", "locale": "de"}, headers=alice)).json()
    assert [(h["slug"], h["locale"]) for h in de] == [("returns", "de")]
    days = (await kb_client.get("/api/kb/search", params={"q": "days"}, headers=alice)).json()
    assert {"returns", "shipping"} <= {h["slug"] for h in days}
    for category, slug in (("Shipping", "shipping"), ("Returns", "returns")):
        hits = (await kb_client.get("/api/kb/search", params={"q": "days", "category": category}, headers=alice)).json()
        assert slug in {h["slug"] for h in hits} and {h["category"] for h in hits} == {category}, category
    for q in ("", "   ", "x" * 201):
        r = await kb_client.get("/api/kb/search", params={"q": q}, headers=alice)
        assert r.status_code == 422
        assert [e["loc"] for e in r.json()["detail"]] == [["query", "q"]]


async def test_preview_sanitizes_hostile_markdown(staff: None, kb_client: httpx.AsyncClient) -> None:
    alice = await login(kb_client, "alice", "password-123")
    html = (await kb_client.post("/api/kb/preview", json={"body": HOSTILE}, headers=alice)).json()["html"]
    for bad in ("<script", "onerror", "onload", "onmouseover", 'href="javascript', "<iframe", "<svg"):
        assert bad not in html
    assert "Returns are free within 30 days." in html


async def test_agent_feedback_teaches_the_ranking(
    staff: None, articles: dict[str, int], kb_client: httpx.AsyncClient
) -> None:
    """A wording marked helpful becomes a phrasing of the article, so close wordings find it from then on (the
    server's index refreshes after the feedback's event); feedback on a missing article is 404."""
    import asyncio

    alice = await login(kb_client, "alice", "password-123")
    wording = "my quokka wants its parcel faster"
    r = await kb_client.post(
        "/api/kb/feedback",
        json={"article_id": articles["shipping:en"], "helpful": True, "query": wording, "ticket_id": 1},
        headers=alice,
    )
    assert r.status_code == 204
    for _ in range(100):
        after = (await kb_client.get("/api/kb/public/answers", params={"q": "quokka parcel faster"})).json()
        if after and after[0]["slug"] == "shipping":
            break
        await asyncio.sleep(0.05)
    assert after[0]["slug"] == "shipping"
    missing = await kb_client.post(
        "/api/kb/feedback", json={"article_id": 999999, "helpful": False, "query": "x"}, headers=alice
    )
    assert missing.status_code == 404
    empty = await kb_client.post(
        "/api/kb/feedback", json={"article_id": articles["shipping:en"], "helpful": False, "query": ""}, headers=alice
    )
    assert empty.status_code == 422


async def test_learned_wordings_are_listed_apart_and_a_supervisor_drops_one(
    staff: None, articles: dict[str, int], kb_client: httpx.AsyncClient, rt: Runtime
) -> None:
    """Wordings agents marked an article helpful for are listed under the article (newest first, counted, not
    its own phrasings, never visitors' "solved it"); a supervisor drops one and the ranking reads it no more;
    an agent may not, and an unknown wording is 404."""
    returns = articles["returns:en"]
    for query, source in [
        ("teapot going home", "agent"),
        ("How do I send something back?", "agent"),
        ("teapot going home", "agent"),
        ("lid is cracked", "agent"),
        ("visitor words", "visitor"),
    ]:
        await service.record_feedback(rt, article_id=returns, helpful=True, query=query, source=source)
    alice = await login(kb_client, "alice", "password-123")
    sam = await login(kb_client, "sam", "password-123")
    learned = (await kb_client.get(f"/api/kb/articles/{returns}/learned", headers=alice)).json()
    assert [(w["wording"], w["times"]) for w in learned] == [("lid is cracked", 1), ("teapot going home", 2)]
    teapot = learned[1]["id"]
    assert (await kb_client.delete(f"/api/kb/articles/{returns}/learned/{teapot}", headers=alice)).status_code == 403
    r = await kb_client.delete(f"/api/kb/articles/{returns}/learned/{teapot}", headers=sam)
    assert r.status_code == 204
    after = (await kb_client.get(f"/api/kb/articles/{returns}/learned", headers=alice)).json()
    assert [w["wording"] for w in after] == ["lid is cracked"]
    [doc] = await service.ranking_docs(rt, article_ids=[returns])
    assert "teapot going home" not in doc.phrasings and "lid is cracked" in doc.phrasings
    assert (await service.feedback_counts(rt))[returns] == (5, 0)  # the votes stay, their words went
    again = await kb_client.delete(f"/api/kb/articles/{returns}/learned/{teapot}", headers=sam)
    assert again.status_code == 404 and again.json()["code"] == "learned_wording_not_found"
    shipping, lid = articles["shipping:en"], learned[0]["id"]
    other = await kb_client.delete(f"/api/kb/articles/{shipping}/learned/{lid}", headers=sam)
    assert other.status_code == 404
