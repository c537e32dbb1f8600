"""PostgreSQL's full-text search reads what it needs from the table's own pages: each article's tsvector in its
row (not in TOAST), and every written article already in the GIN index (no pending list to read)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from hub.runtime import Runtime
from knowledge_base import service
from knowledge_base.models import ArticleCreate, ArticleStatus

# About the size of a real article's row (Markdown, HTML, plain text, phrasings, tsvector: over TOAST's 2 kB).
BODY = "\n\n".join(
    f"Step {n}: open **your order** in the account page, choose *return item {n}*, print label number {n} and "
    f"drop parcel {n} at any post office; refund {n} follows within five working days of arrival."
    for n in range(8)
)


@pytest.fixture
async def long_articles(rt: Runtime, is_postgres: bool) -> None:
    if not is_postgres:
        pytest.skip("SQLite's FTS5 keeps its own index tables")
    for n in range(12):
        await service.create_article(
            rt,
            data=ArticleCreate(
                slug=f"returns-{n}",
                title=f"Return an item, part {n}",
                body=BODY,
                phrasings=[f"how do I send item {n} back", f"refund for parcel {n}"],
                status=ArticleStatus.PUBLISHED,
            ),
        )


async def test_reading_every_vector_reads_the_table_pages_alone(long_articles: None, rt: Runtime) -> None:
    """A stored tsvector is kept in the article's row: walking every article's vector touches no more pages
    than the table has (out of line, each row cost a TOAST index lookup and a TOAST page besides)."""
    async with rt.read() as conn:
        plan = (
            await conn.execute(
                text("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT sum(length(search_vector)) FROM kb_articles")
            )
        ).scalar_one()
        pages = (await conn.execute(text("SELECT pg_relation_size('kb_articles') / 8192"))).scalar_one()
    top = (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]
    touched = top["Shared Hit Blocks"] + top["Shared Read Blocks"]
    assert touched <= pages, (touched, pages)


async def test_a_written_article_is_in_the_index_itself(long_articles: None, rt: Runtime) -> None:
    """No GIN pending list: every search would read it in full, and the planner, counting it, would walk the
    table instead of using the index."""
    async with rt.write() as tx:
        cleaned = (
            await tx.conn.execute(text("SELECT gin_clean_pending_list('ix_kb_articles_search'::regclass)"))
        ).scalar_one()
    assert cleaned == 0
