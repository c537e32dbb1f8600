"""Each process's ranking index of the knowledge base, kept up to date with the articles.

``knowledge_index(rt)`` gives the runtime's ``KnowledgeIndex``. It is built once (in a worker thread, the
sentence embedder loaded then, once per process and embedder name), then refreshed after every
``kb.article.changed`` or ``kb.feedback`` event, from this process or another: only the articles named are
read again and re-indexed (``RankIndex.updated``; a full build now and then), and only sentences never seen
before are embedded (the others are read from ``kb_embeddings``). Readers always get a complete index: the
new one replaces the old in one assignment.

A start never makes a request wait for the build (seconds to a minute for 10,000 articles on a busy machine):
``available()`` answers None until the first build is in, and suggestions, the widget's answers and search rank
by the database's full text alone meanwhile (``by_full_text``).

Stored embeddings are pruned as the sentences they belong to go out of use: the index counts, per sentence,
the articles using it (title, phrasings, wordings learned or rejected from feedback); when an edit, a deletion,
a dropped wording or an article leaving the published and internal ones brings a sentence's count to zero, its
vector goes from memory and from ``kb_embeddings`` (of every embedder). What changed while no process ran is
swept once the first build is in (``_sweep``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from pydantic import BaseModel

from hub.db import utcnow
from hub.events import EventRecord
from hub.runtime import Runtime
from knowledge_base import service
from knowledge_base.embedders import Embedder, load_embedder
from knowledge_base.exceptions import InvalidQuery
from knowledge_base.models import ArticleStatus
from knowledge_base.ranking import Doc, RankCache, RankIndex
from knowledge_base.search import MAX_QUERY_CHARS, search

log = logging.getLogger(__name__)

AGENT_VISIBLE = frozenset({"published", "internal"})
# A full build once the articles changed since the last one (see ``RankIndex.updated``) exceed this many, or
# this share of all articles: their rows are weighted with term statistics that drift as articles change.
REBUILD_AFTER = 50
REBUILD_SHARE = 0.1
# How long a request waits for the index's first build (a small knowledge base's takes milliseconds) before it
# ranks by the database's full text alone.
BUILD_GRACE = 0.25


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
        self._uses: Counter[str] = Counter()  # sentence -> how many of the articles in ``_docs`` use it
        self._pruning: set[asyncio.Task[None]] = set()
        self._rebuilding = False
        # No article when the first build ran: the embedder (seconds of CPU to load) waits for the first one.
        self._embed_later = False

    @property
    def embedder(self) -> Embedder | None:
        return self.index.embedder if self.index is not None else None

    async def current(self) -> RankIndex:
        """The index, brought up to date first when articles changed since it was built."""
        if self.index is None or self._dirty:
            await self.refresh()
        assert self.index is not None
        return self.index

    async def available(self) -> RankIndex | None:
        """The index for a request that must not wait for a build: None while the first one is not in after
        ``BUILD_GRACE`` (it is started in the background if it was not; callers rank by the database's full text
        meanwhile), then the index, brought up to date first when articles changed (a few articles:
        milliseconds; while a full build runs, the index as it is, the build reading them afterwards)."""
        if self.index is None:
            if self._task is None or self._task.done():
                self._task = asyncio.get_running_loop().create_task(self._refresh_soon())
            await asyncio.wait({self._task}, timeout=BUILD_GRACE)
            return self.index
        if self._dirty and not self._rebuilding:
            await self.refresh()
        return self.index

    async def refresh(self) -> None:
        """Build the index (first by words alone, see ``_embed``), or read the changed articles again."""
        async with self._lock:
            read_at = utcnow()
            if self.index is None:
                docs = await service.ranking_docs(self.rt)
                self._dirty.clear()
                self._docs = {d.article_id: d for d in docs}
                self._uses = Counter(t for d in docs for t in sentences(d))
                self.index = await asyncio.to_thread(RankIndex, docs, None, cache=self._cache)
                self.built_at = time.monotonic()
                self._embedding = asyncio.get_running_loop().create_task(self._embed(read_at))
                return
            if not self._dirty:
                return
            changed = sorted(self._dirty)
            self._dirty.clear()
            fresh = await service.ranking_docs(self.rt, article_ids=changed)
            unused = self._replace(changed, fresh)
            self._prune_soon(unused, read_at)
            if self._embed_later and self._docs:
                self._embed_later = False
                self._embedding = asyncio.get_running_loop().create_task(self._embed(read_at))
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

    def _replace(self, changed: Sequence[int], fresh: Sequence[Doc]) -> list[str]:
        """Put the articles read again (``fresh``: those of ``changed`` still published or internal) in place of
        their old versions; answers the sentences no article uses any more (forgotten from memory here)."""
        dropped: list[str] = []
        for article_id in changed:
            old = self._docs.pop(article_id, None)
            if old is not None:
                dropped.extend(sentences(old))
                self._uses.subtract(sentences(old))
        for doc in fresh:
            self._docs[doc.article_id] = doc
            self._uses.update(sentences(doc))
        unused = [t for t in dict.fromkeys(dropped) if self._uses[t] <= 0]
        for text in unused:
            del self._uses[text]
            self._cache.vectors.pop(text, None)
        return unused

    def _prune_soon(self, unused: Sequence[str], read_at: datetime) -> None:
        """Delete the stored vectors of ``unused`` sentences after the refresh (not on a request's time)."""
        if unused:
            task = asyncio.get_running_loop().create_task(self._prune(unused, read_at))
            self._pruning.add(task)
            task.add_done_callback(self._pruning.discard)

    async def _prune(self, unused: Sequence[str], read_at: datetime) -> None:
        try:
            hashes = [service.text_hash(t) for t in unused]
            await service.prune_embeddings(self.rt, hashes=hashes, before=read_at)
        except Exception:
            log.exception("knowledge base: pruning %d unused sentence embeddings failed", len(unused))

    async def _sweep(self, read_at: datetime) -> None:
        """Prune the stored vectors of sentences no article used when the first build read them (left by changes
        made while no process ran, or by a process that stopped before pruning)."""
        stored = await service.stored_hashes(self.rt, before=read_at)
        used = list(self._uses)
        wanted = await asyncio.to_thread(lambda: {service.text_hash(t) for t in used})
        unused = stored - wanted
        if unused:
            gone = await service.prune_embeddings(self.rt, hashes=sorted(unused), before=read_at)
            log.info("knowledge base: pruned %d stored embeddings no article uses", gone)

    async def embedded(self) -> None:
        """Wait for the embedding started so far (for tests and commands)."""
        if self._embedding is not None:
            await asyncio.gather(self._embedding, return_exceptions=True)

    async def pruned(self) -> None:
        """Wait for the pruning started so far (for tests and commands)."""
        while self._pruning:
            await asyncio.gather(*self._pruning, return_exceptions=True)

    async def _embed(self, read_at: datetime) -> None:
        """Load the embedder and embed every title and phrasing, in the background, and the lexical index answers
        meanwhile: embeddings are stored (``kb_embeddings``), so only sentences never embedded before cost time
        (for a large knowledge base, minutes the first time; reading them back, seconds). Then sweep the stored
        vectors no article uses."""
        try:
            # A hub with no articles yet (a new install, or one that uses no knowledge base) does not load it: its
            # load competed with every request of a new server's first seconds. The first article loads it.
            self._embed_later = not self._docs
            embedder = None if self._embed_later else await asyncio.to_thread(embedder_for, self.embedder_name)
            if embedder is not None:
                async with self._lock:
                    await self._rebuild(embedder)
        except Exception:
            log.exception("knowledge base: embedding the articles failed; ranking by words alone")
        try:
            await self._sweep(read_at)
        except Exception:
            log.exception("knowledge base: sweeping unused sentence embeddings failed")

    async def _rebuild(self, embedder: Embedder | None) -> None:
        docs = sorted(self._docs.values(), key=lambda d: d.article_id)
        missing: list[str] = []
        self._rebuilding = True
        try:
            if embedder is not None:
                missing = await self._load_stored(embedder, docs)
            self.index = await asyncio.to_thread(RankIndex, docs, embedder, cache=self._cache)
        finally:
            self._rebuilding = False
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
        for task in (self._task, self._embedding, *self._pruning):
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass


def sentences(doc: Doc) -> tuple[str, ...]:
    """An article's sentences the ranking embeds (and stores the vectors of)."""
    return (doc.title, *doc.phrasings, *doc.rejected)


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
    """The best articles for ``query``: published and internal ones for agents, with scores (by the database's
    full text alone while the index's first build runs)."""
    if not query.strip():
        return []
    index = await knowledge_index(rt).available()
    if index is None:
        return await by_full_text(rt, query=query, limit=limit, statuses=statuses)
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


async def by_full_text(rt: Runtime, *, query: str, limit: int, statuses: frozenset[str]) -> list[Suggestion]:
    """Suggestions from the database's full-text search alone (the ranking index not built yet): its newest
    ``MAX_QUERY_CHARS`` of ``query``, one article per slug."""
    words = query.strip()
    if len(words) > MAX_QUERY_CHARS:
        words = words[-MAX_QUERY_CHARS:].split(" ", 1)[-1]
    try:
        hits = await search(
            rt, query=words, statuses=[ArticleStatus(s) for s in sorted(statuses)], index=None, limit=3 * limit
        )
    except InvalidQuery:
        return []
    texts = await service.plain_texts(rt, article_ids=[h.id for h in hits])
    out: list[Suggestion] = []
    for hit in hits:
        if any(s.slug == hit.slug for s in out):
            continue
        out.append(
            Suggestion(
                id=hit.id,
                slug=hit.slug,
                locale=hit.locale,
                title=hit.title,
                status=hit.status.value,
                url=hit.url,
                score=hit.score,
                text=texts.get(hit.id, "")[:2000],
            )
        )
    return out[:limit]


def describe(index: KnowledgeIndex) -> dict[str, Any]:
    return {
        "articles": index.index.live if index.index else 0,
        "embedder": index.embedder.name if index.embedder else None,
    }
