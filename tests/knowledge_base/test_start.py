"""A start does not wait for the ranking index: until its first build is in, suggestions, the widget's answers
and search rank by the database's full text; then by the index."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest

from hub.config import Settings
from hub.runtime import Runtime
from knowledge_base import suggest
from knowledge_base.ranking import RankIndex
from tests.conftest import LiveServer, login, make_agent
from tests.hub.test_ports import inbound
from ticketing.ingest import ingest_batch


async def test_suggestions_work_right_after_start_while_the_index_is_built(
    rt: Runtime, articles: dict[str, int], kb_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index's build is held (a large knowledge base's takes long): the server answers suggestions for a
    ticket, the widget's answers and search at once, from full-text search, with the right articles; once the
    build is let through, the index answers (it corrects a misspelling full text cannot find)."""
    gate = threading.Event()

    class HeldBuild(RankIndex):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            assert gate.wait(60)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(suggest, "RankIndex", HeldBuild)
    await make_agent(rt, "sam", role="supervisor")
    [result] = await ingest_batch(rt, [inbound(1, text="How can I send the teapot back to you?")])
    ticket_id = result.ticket_id  # type: ignore[union-attr]
    live = LiveServer(kb_settings).start()
    try:
        async with httpx.AsyncClient(base_url=live.url, timeout=20) as client:
            sam = await login(client, "sam", "password-123")
            r = await client.get("/api/kb/suggest", params={"ticket_id": ticket_id}, headers=sam)
            assert r.status_code == 200, r.text
            assert [s["slug"] for s in r.json()["items"]][:1] == ["returns"]
            assert r.json()["items"][0]["url"] == "/help/returns"
            assert "30 days" in r.json()["items"][0]["text"]
            answers = (await client.get("/api/kb/public/answers", params={"q": "delivery days"})).json()
            assert [a["slug"] for a in answers][:1] == ["shipping"]
            assert "goodwill" not in {a["slug"] for a in answers}  # internal: never to visitors
            found = (await client.get("/api/kb/search", params={"q": "zanzibar"}, headers=sam)).json()
            assert [h["slug"] for h in found] == ["goodwill"]
            typo = (await client.get("/api/kb/search", params={"q": "zanzibr"}, headers=sam)).json()
            assert typo == []  # no index yet: full text knows no corrections
            assert suggest.knowledge_index(live.app.state.rt).index is None  # it was all full text

            gate.set()
            for _ in range(400):  # the build, let through, runs in the server's worker thread
                if (await client.get("/api/kb/stats", headers=sam)).json()["articles"] == 5:
                    break
                await asyncio.sleep(0.05)
            typo = (await client.get("/api/kb/search", params={"q": "zanzibr"}, headers=sam)).json()
            assert [h["slug"] for h in typo] == ["goodwill"]
            r = await client.get("/api/kb/suggest", params={"ticket_id": ticket_id}, headers=sam)
            assert [s["slug"] for s in r.json()["items"]][:1] == ["returns"]
    finally:
        gate.set()
        live.stop()


async def test_the_embedder_is_loaded_only_once_there_is_an_article(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hub with no articles does not load its sentence embedder when its index is first built (seconds of CPU
    that competed with every request of a new server's first seconds); the first article loads it, once."""
    from knowledge_base import service
    from knowledge_base.models import ArticleCreate, ArticleStatus

    loads: list[str] = []
    monkeypatch.setattr(suggest, "embedder_for", lambda name: loads.append(name))
    index = suggest.KnowledgeIndex(rt)
    await index.refresh()
    await index.embedded()
    assert loads == [] and index.index is not None

    article = await service.create_article(
        rt, data=ArticleCreate(slug="returns", title="Return an item", status=ArticleStatus.PUBLISHED, body="Free.")
    )
    index.changed(article.id)
    await index.refresh()
    await index.embedded()
    assert loads == [rt.settings.kb_embedder]
    index.changed(article.id)
    await index.refresh()
    await index.embedded()
    assert loads == [rt.settings.kb_embedder]
