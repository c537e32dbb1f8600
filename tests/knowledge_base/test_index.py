"""Each process's ranking index of the articles (``knowledge_base.suggest.KnowledgeIndex``), on the database:
sentence embeddings are stored once computed, so a restart embeds nothing it embedded before, and an edit
re-indexes only the edited article (and embeds only its new sentences)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from hub.runtime import Runtime
from knowledge_base import service, suggest
from knowledge_base.models import ArticleUpdate
from knowledge_base.ranking import Vector
from knowledge_base.suggest import KnowledgeIndex
from tests.knowledge_base.test_ranking import WordHashEmbedder


class CountingEmbedder(WordHashEmbedder):
    """Remembers every sentence it was asked to embed."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def encode(self, texts: Sequence[str]) -> Vector:
        self.asked.extend(texts)
        return super().encode(texts)


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> CountingEmbedder:
    embedder = CountingEmbedder()
    real = suggest.embedder_for
    monkeypatch.setattr(suggest, "embedder_for", lambda name: embedder if name == embedder.name else real(name))
    return embedder


def index_of(rt: Runtime, embedder: CountingEmbedder) -> KnowledgeIndex:
    kb = KnowledgeIndex(rt)
    kb.embedder_name = embedder.name
    return kb


async def test_embeddings_are_stored_and_an_edit_costs_only_its_article(
    rt: Runtime, articles: dict[str, int], counting: CountingEmbedder
) -> None:
    """The first build embeds every title and phrasing of the published and internal articles and stores them;
    another index on the same database (a restart, another process) embeds none of them again. An edit is
    re-indexed on its own (``appended``), embeds only its new sentence, ranks by its new wording at once, and
    its vector is stored too."""
    first = index_of(rt, counting)
    index = await first.ready()
    assert index.embedder is counting and index.centroids is not None
    embedded = set(counting.asked) - {"dimensions"}
    assert {"Return an item", "How do I send something back?", "Secret goodwill credit policy"} <= embedded
    stored = await service.stored_embeddings(rt, embedder=counting.name)
    assert {service.text_hash(t) for t in embedded} <= set(stored)

    counting.asked.clear()
    restarted = index_of(rt, counting)
    again = await restarted.ready()
    assert set(counting.asked) <= {"dimensions"}  # read back, not embedded
    assert again.rank("how do I send something back", limit=1)[0].doc.slug == "returns"
    counting.asked.clear()

    await service.update_article(
        rt,
        article_id=articles["shipping:en"],
        data=ArticleUpdate(phrasings=["Will my quokka plush arrive before Friday?"]),
    )
    restarted.changed(articles["shipping:en"])
    edited = await restarted.current()
    assert edited.appended == 1 and edited.live == again.live
    assert set(counting.asked) - {"dimensions"} == {"Will my quokka plush arrive before Friday?"}
    assert edited.rank("quokka plush arrive friday", limit=1)[0].doc.slug == "shipping"
    stored = await service.stored_embeddings(rt, embedder=counting.name)
    assert service.text_hash("Will my quokka plush arrive before Friday?") in stored


async def test_the_index_is_built_afresh_after_many_edits(
    rt: Runtime, articles: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Edits are re-indexed one by one until more than ``REBUILD_AFTER`` articles changed since the last full
    build; then the index is built afresh (term statistics current again, no masked rows)."""
    monkeypatch.setattr(suggest, "REBUILD_AFTER", 2)
    kb = KnowledgeIndex(rt)
    kb.embedder_name = "none"
    await kb.current()
    for n, slug in enumerate(("shipping:en", "returns:en"), 1):
        kb.changed(articles[slug])
        assert (await kb.current()).appended == n
    kb.changed(articles["goodwill:en"])
    rebuilt = await kb.current()
    assert rebuilt.appended == 0 and rebuilt.dead is None and rebuilt.live == 5
    assert rebuilt.rank("how long is shipping", limit=1)[0].doc.slug == "shipping"
