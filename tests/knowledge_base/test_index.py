"""Each process's ranking index of the articles (``knowledge_base.suggest.KnowledgeIndex``), on the database:
sentence embeddings are stored once computed, so a restart embeds nothing it embedded before, and an edit
re-indexes only the edited article (and embeds only its new sentences)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

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
def counting() -> Iterator[CountingEmbedder]:
    embedder = CountingEmbedder()
    previous = suggest.install_embedder(embedder.name, embedder)
    yield embedder
    suggest.install_embedder(embedder.name, previous)


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


async def stored_texts(rt: Runtime, texts: Sequence[str]) -> set[str]:
    """Which of ``texts`` have a vector in ``kb_embeddings``."""
    stored = await service.stored_embeddings(rt, embedder=CountingEmbedder.name)
    return {t for t in texts if service.text_hash(t) in stored}


async def test_stored_embeddings_are_pruned_as_their_sentences_go_out_of_use(
    rt: Runtime, articles: dict[str, int], counting: CountingEmbedder
) -> None:
    """A sentence's stored vector goes when no article uses it any more: a phrasing edited away, an article
    deleted, a learned wording dropped; a sentence another article still uses keeps its vector."""
    shared = "How long is shipping?"
    await service.update_article(rt, article_id=articles["goodwill:en"], data=ArticleUpdate(phrasings=[shared]))
    await service.record_feedback(
        rt, article_id=articles["returns:en"], helpful=True, query="my teapot wants to go home", source="agent"
    )
    kb = index_of(rt, counting)
    await kb.ready()
    watched = [shared, "Delivery times", "Return an item", "How do I send something back?",
               "my teapot wants to go home", "Secret goodwill credit policy"]  # fmt: skip
    assert await stored_texts(rt, watched) == set(watched)

    # edited away from shipping, still a phrasing of goodwill: kept
    await service.update_article(
        rt, article_id=articles["shipping:en"], data=ArticleUpdate(phrasings=["Will my parcel come on Friday?"])
    )
    kb.changed(articles["shipping:en"])
    await kb.current()
    await kb.pruned()
    assert await stored_texts(rt, [shared, "Delivery times", "Will my parcel come on Friday?"]) == {
        shared,
        "Delivery times",
        "Will my parcel come on Friday?",
    }

    # goodwill deleted: its title and the phrasing nobody else uses go
    await service.delete_article(rt, article_id=articles["goodwill:en"])
    kb.changed(articles["goodwill:en"])
    await kb.current()
    await kb.pruned()
    assert await stored_texts(rt, [shared, "Secret goodwill credit policy"]) == set()

    # a learned wording dropped from returns goes; the article's own sentences stay
    (learned,) = await service.learned_wordings(rt, article_id=articles["returns:en"])
    await service.drop_learned_wording(rt, article_id=articles["returns:en"], wording_id=learned.id)
    kb.changed(articles["returns:en"])
    index = await kb.current()
    await kb.pruned()
    assert await stored_texts(rt, watched) == {"Delivery times", "Return an item", "How do I send something back?"}
    assert "my teapot wants to go home" not in index.rank("teapot go home", limit=1)[0].doc.phrasings


async def test_a_start_sweeps_vectors_left_while_no_process_ran(
    rt: Runtime, articles: dict[str, int], counting: CountingEmbedder
) -> None:
    """Articles deleted while no process kept an index leave vectors behind: the next start's first build
    sweeps every stored vector no published or internal article uses, and keeps the ones they use."""
    await index_of(rt, counting).ready()
    await service.delete_article(rt, article_id=articles["shipping:en"])  # nobody listening
    assert await stored_texts(rt, ["Delivery times", "How long is shipping?"]) == {
        "Delivery times",
        "How long is shipping?",
    }
    await index_of(rt, counting).ready()
    assert await stored_texts(rt, ["Delivery times", "How long is shipping?", "Return an item"]) == {"Return an item"}
