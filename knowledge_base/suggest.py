"""Each process's ranking index of the knowledge base, kept up to date with the articles.

``knowledge_index(rt)`` gives the runtime's ``KnowledgeIndex``. It is built once (in a worker thread, the
sentence embedder loaded then, once per process and embedder name), then refreshed after every
``kb.article.changed`` or ``kb.feedback`` event, from this process or another: only the articles named are
read again and re-indexed (``RankIndex.updated``; a full build now and then), and only sentences never seen
before are embedded (the others are read from ``kb_embeddings``). Readers always get a complete index: the
new one replaces the old in one assignment.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel

from hub.events import EventRecord
from hub.runtime import Runtime
from knowledge_base import service
from knowledge_base.embedders import Embedder, load_embedder
from knowledge_base.ranking import Doc, RankCache, RankIndex

log = logging.getLogger(__name__)

AGENT_VISIBLE = frozenset({"published", "internal"})
# A full build once the articles changed since the last one (see ``RankIndex.updated``) exceed this many, or
# this share of all articles: their rows are weighted with term statistics that drift as articles change.
REBUILD_AFTER = 50
REBUILD_SHARE = 0.1


class Suggestion(BaseModel):
    """An article suggested to an agent: its link (published ones) or its text to insert, and its score."""

    id: int
    slug: str
    locale: str
    title: str
    status: str
    url: str
    score: float
    text: str


class Suggestions(BaseModel):
    ticket_id: int
    query: str
    items: list[Suggestion]


_embedders: dict[str, Embedder | None] = {}
_embedders_lock = threading.Lock()


def embedder_for(name: str) -> Embedder | None:
    """The process's embedder of that name (loaded once; None, with one warning, when it cannot be)."""
    with _embedders_lock:
        if name not in _embedders:
            _embedders[name] = load_embedder(name)
        return _embedders[name]


def install_embedder(name: str, embedder: Embedder | None) -> Embedder | None:
    """Make ``embedder`` the process's embedder of that name (a model of one's own; tests), or with None forget
    it (the next ``embedder_for`` loads it again); answers the one it replaces (None when there was none)."""
    with _embedders_lock:
        previous = _embedders.pop(name, None)
        if embedder is not None:
            _embedders[name] = embedder
        return previous


class KnowledgeIndex:
    """The ranking index of one runtime's articles (published and internal)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.embedder_name = rt.settings.kb_embedder
        self.index: RankIndex | None = None
        self.built_at = 0.0
        self._docs: dict[int, Doc] = {}
        self._cache = RankCache()
        self._dirty: set[int] = set()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._embedding: asyncio.Task[None] | None = None
        self._sizes: dict[str, int] = {}

    @property
    def embedder(self) -> Embedder | None:
        return self.index.embedder if self.index is not None else None

    async def current(self) -> RankIndex:
        """The index, brought up to date first when articles changed since it was built."""
        if self.index is None or self._dirty:
            await self.refresh()
        assert self.index is not None
        return self.index

    async def refresh(self) -> None:
        """Build the index (first by words alone, see ``_embed``), or read the changed articles again."""
        async with self._lock:
            if self.index is None:
                docs = await service.ranking_docs(self.rt)
                self._dirty.clear()
                self._docs = {d.article_id: d for d in docs}
                self.index = await asyncio.to_thread(RankIndex, docs, None, cache=self._cache)
                self.built_at = time.monotonic()
                self._embedding = asyncio.get_running_loop().create_task(self._embed())
                return
            if not self._dirty:
                return
            changed = sorted(self._dirty)
            self._dirty.clear()
            fresh = await service.ranking_docs(self.rt, article_ids=changed)
            for article_id in changed:
                self._docs.pop(article_id, None)
            for doc in fresh:
                self._docs[doc.article_id] = doc
            index, embedder = self.index, self.index.embedder
            if index.appended + len(fresh) > max(REBUILD_AFTER, REBUILD_SHARE * len(self._docs)):
                await self._rebuild(embedder)
                return
            # The usual case: a few articles changed, and only they cost time (an edit ranks within a second
            # in 10,000 articles, where a full build takes several).
            missing = await self._load_stored(embedder, fresh) if embedder is not None else []
            kept = {d.article_id for d in fresh}
            self.index = await asyncio.to_thread(index.updated, fresh, [a for a in changed if a not in kept])
            self.built_at = time.monotonic()
            if embedder is not None and missing:
                await self._store_new(embedder, missing)

    async def _embed(self) -> None:
        """Load the embedder and embed every title and phrasing, in the background, and the lexical index answers
        meanwhile: embeddings are stored (``kb_embeddings``), so only sentences never embedded before cost time
        (for a large knowledge base, minutes the first time; reading them back, seconds)."""
        try:
            embedder = await asyncio.to_thread(embedder_for, self.embedder_name)
            if embedder is not None:
                async with self._lock:
                    await self._rebuild(embedder)
        except Exception:
            log.exception("knowledge base: embedding the articles failed; ranking by words alone")

    async def _rebuild(self, embedder: Embedder | None) -> None:
        docs = sorted(self._docs.values(), key=lambda d: d.article_id)
        missing: list[str] = []
        if embedder is not None:
            missing = await self._load_stored(embedder, docs)
        self.index = await asyncio.to_thread(RankIndex, docs, embedder, cache=self._cache)
        self.built_at = time.monotonic()
        if embedder is not None and missing:
            await self._store_new(embedder, missing)

    async def _load_stored(self, embedder: Embedder, docs: Sequence[Doc]) -> list[str]:
        """Put the stored embeddings of the sentences the cache lacks into it (all of the embedder's, the first
        time); answers the sentences still to embed."""
        vectors = self._cache.vectors
        wanted = {t for d in docs for t in (d.title, *d.phrasings, *d.rejected)}
        missing = [t for t in wanted if t not in vectors]
        if not missing:
            return []
        hashes = {service.text_hash(t): t for t in missing}
        stored = await service.stored_embeddings(
            self.rt, embedder=embedder.name, hashes=None if not vectors else list(hashes)
        )
        dimensions = await asyncio.to_thread(self._dimensions, embedder)
        for key, blob in stored.items():
            text = hashes.get(key)
            if text is not None and len(blob) == 4 * dimensions:
                vectors[text] = np.frombuffer(blob, dtype="<f4").astype(np.float32)
        return [t for t in missing if t not in vectors]

    async def _store_new(self, embedder: Embedder, texts: Sequence[str]) -> None:
        """Keep the vectors just computed, for the next start, the other processes and the next edit."""
        vectors = self._cache.vectors
        fresh = {service.text_hash(t): vectors[t].astype("<f4").tobytes() for t in texts if t in vectors}
        try:
            await service.store_embeddings(self.rt, embedder=embedder.name, vectors=fresh)
        except Exception:
            log.exception("knowledge base: storing %d sentence embeddings failed; they are computed again", len(fresh))

    def _dimensions(self, embedder: Embedder) -> int:
        """The embedder's vector length (a stored vector of another length, from another version of its
        package, is embedded again)."""
        if embedder.name not in self._sizes:
            self._sizes[embedder.name] = int(embedder.encode(["dimensions"]).shape[1])
        return self._sizes[embedder.name]

    async def ready(self) -> RankIndex:
        """The index once the embedder (if any) has been applied: for commands and tests that want the full
        ranking, not the first answers."""
        await self.current()
        if self._embedding is not None:
            await self._embedding
        return await self.current()

    def on_event(self, event: EventRecord, _text: str) -> None:
        """Event hub listener: an article changed, or feedback taught the ranking something."""
        if event.type not in (service.CHANGED, service.FEEDBACK):
            return
        article_id = event.payload.get("id")
        if isinstance(article_id, int):
            self.changed(article_id)

    def changed(self, article_id: int) -> None:
        """Read ``article_id`` again (and refresh the index in the background)."""
        self._dirty.add(article_id)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._refresh_soon())

    async def _refresh_soon(self) -> None:
        try:
            await self.refresh()
        except Exception:
            log.exception("knowledge base: refreshing the ranking index failed; the next search retries")

    async def start(self) -> None:
        """Build the index in the background, so the first suggestion does not wait for it."""
        self._task = asyncio.get_running_loop().create_task(self._refresh_soon())

    async def stop(self) -> None:
        for task in (self._task, self._embedding):
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass


def knowledge_index(rt: Runtime) -> KnowledgeIndex:
    """This runtime's index, created (and subscribed to the event hub) on first use."""
    index = rt.caches.get("kb_index")
    if not isinstance(index, KnowledgeIndex):
        index = rt.caches["kb_index"] = KnowledgeIndex(rt)
        rt.events.listen(index.on_event)
    return index


QUERY_CHARS = 400  # the customer's newest words the ranking reads (older ones dilute it)


def customer_query(texts: Sequence[str], draft: str = "") -> str:
    """What suggestions are ranked for: the agent's draft reply once it has a few words (the agent is looking
    for something: the draft steers); else the customer's newest message (with the one before when the newest
    is only a few words, like "and the lid?"), cut to ``QUERY_CHARS`` at a word. Older messages are left out:
    they asked what earlier suggestions answered."""
    if len(draft.split()) >= 3:
        return draft.strip()[:300]
    said = [t.strip() for t in texts if t and t.strip()]
    picked = said[-2:] if len(said) >= 2 and len(said[-1].split()) < 5 else said[-1:]
    joined = " ".join(picked)
    if len(joined) > QUERY_CHARS:
        joined = joined[-QUERY_CHARS:].split(" ", 1)[-1]
    return joined


async def suggest(rt: Runtime, *, query: str, limit: int, statuses: frozenset[str] = AGENT_VISIBLE) -> list[Suggestion]:
    """The best articles for ``query``: published and internal ones for agents, with scores."""
    if not query.strip():
        return []
    index = await knowledge_index(rt).current()
    return [
        Suggestion(
            id=r.doc.article_id,
            slug=r.doc.slug,
            locale=r.doc.locale,
            title=r.doc.title,
            status=r.doc.status,
            url=service.help_url(r.doc.slug, r.doc.locale) if r.doc.status == "published" else "",
            score=round(r.score, 4),
            text=r.doc.body[:2000],
        )
        for r in index.rank(query, limit=limit, statuses=statuses)
    ]


def describe(index: KnowledgeIndex) -> dict[str, Any]:
    return {
        "articles": len(index.index.docs) if index.index else 0,
        "embedder": index.embedder.name if index.embedder else None,
    }
