"""Full-text search over articles: one interface (``search``) over SQLite FTS5 and PostgreSQL's full text
(``tsvector`` + GIN), made typo- and prefix-tolerant with the ranking index's vocabulary and re-scored with
rapidfuzz.

1. The query's words; each unknown word is corrected to the closest indexed word (rapidfuzz, ratio ≥ 80) or
   expanded to the indexed words it starts (a word still being typed), by ``RankIndex.query_terms``.
2. The database finds candidates: any word, as a prefix, ranked by BM25 (FTS5) or ``ts_rank``, filtered
   by status, locale and category in the same statement.
3. Candidates are re-scored: the database's rank scaled to 0..1 plus rapidfuzz's partial match of the query
   with the title. When the database finds nothing (every word misspelled beyond correction), the ranking
   index (which understands wordings it has never seen) answers instead.

Snippets are built here, the same on both databases: the plain text around the first match, HTML-escaped,
with matched words wrapped in ``<mark>``; nothing else in them is markup.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import Any

from rapidfuzz import fuzz
from sqlalchemy import bindparam, text

from hub.runtime import Runtime
from knowledge_base.exceptions import InvalidQuery
from knowledge_base.models import ArticleStatus, SearchHit
from knowledge_base.ranking import STOPWORDS, RankIndex, fold
from knowledge_base.service import help_url

MAX_QUERY_CHARS = 200
CANDIDATES = 50
SNIPPET_CHARS = 180
_WORD = re.compile(r"[^\W_]+", re.UNICODE)  # letters and digits: nothing tsquery or FTS5 would parse


def check_query(query: str | None) -> str:
    """The query stripped; empty or longer than ``MAX_QUERY_CHARS`` is refused (422)."""
    q = (query or "").replace("\x00", " ").strip()
    if not q:
        raise InvalidQuery("the search query is empty", loc=("query", "q"))
    if len(q) > MAX_QUERY_CHARS:
        raise InvalidQuery(f"the search query is longer than {MAX_QUERY_CHARS} characters", loc=("query", "q"))
    return q


def query_words(query: str, index: RankIndex | None) -> list[str]:
    """The words to look for: the query's own (stop words dropped) and, with an index, its corrections; the
    query's last word last (it may be half typed: it is also looked for as a prefix)."""
    own = [w for w in _WORD.findall(fold(query)) if w not in STOPWORDS and (len(w) >= 2 or w.isdigit())]
    fixed = [w for t in index.query_terms(query) for w in _WORD.findall(t)] if index is not None else []
    last = own[-1:]
    return [w for w in dict.fromkeys(own[:-1] + fixed) if w not in last] + last


async def _candidates(
    rt: Runtime, words: Sequence[str], *, statuses: Sequence[ArticleStatus], locale: str | None, category: str | None
) -> list[tuple[int, float]]:
    """(article id, database rank — higher is better) of articles matching any of ``words`` as a prefix."""
    if not words:
        return []
    filters = ["a.status IN :statuses"]
    params: dict[str, Any] = {"statuses": [s.value for s in statuses], "limit": CANDIDATES}
    if locale:
        filters.append("a.locale = :locale")
        params["locale"] = locale
    if category:
        filters.append("a.category = :category")
        params["category"] = category
    where = " AND ".join(filters)
    if rt.db.engine.dialect.name == "sqlite":
        # Each word quoted (FTS5 syntax characters stay literal); the last one, which may be half typed, as a
        # prefix too. The title weighs 5, phrasings and tags 2, the body 1.
        quoted = ['"' + w.replace('"', '""') + '"' for w in words]
        params["match"] = " OR ".join([*quoted, quoted[-1] + "*"] if len(words[-1]) >= 3 else quoted)
        sql = (
            "SELECT a.id, -bm25(kb_articles_fts, 5.0, 2.0, 1.0) AS rank FROM kb_articles_fts "
            "JOIN kb_articles a ON a.id = kb_articles_fts.rowid "
            f"WHERE kb_articles_fts MATCH :match AND {where} ORDER BY rank DESC LIMIT :limit"
        )
    else:
        # Only word characters reach to_tsquery, any of them (|); the last also as a prefix (:*). ts_rank, not
        # ts_rank_cd: a common word matches most articles and every match is ranked; cover density cost three
        # times as much per article (p99 of the search at 10,000 articles, bench.kb), and for "any of these
        # words" it only counts the matches, where ts_rank lets each word's repeats count less and less, as
        # BM25 does: on the sample sets it put the expected article first more often (test set: 65 % against 61 %).
        terms = [*words, f"{words[-1]}:*"] if len(words[-1]) >= 3 else list(words)
        params["tsquery"] = " | ".join(terms)
        sql = (
            "SELECT a.id, ts_rank(a.search_vector, q) AS rank "
            "FROM kb_articles a, to_tsquery('english', :tsquery) q "
            f"WHERE a.search_vector @@ q AND {where} ORDER BY rank DESC LIMIT :limit"
        )
    stmt = text(sql).bindparams(bindparam("statuses", expanding=True))
    async with rt.read() as conn:
        return [(int(r[0]), float(r[1])) for r in (await conn.execute(stmt, params)).all()]


async def _rows(rt: Runtime, ids: Sequence[int]) -> dict[int, Any]:
    if not ids:
        return {}
    stmt = text(
        "SELECT id, slug, locale, title, category, status, body_text FROM kb_articles WHERE id IN :ids"
    ).bindparams(bindparam("ids", expanding=True))
    async with rt.read() as conn:
        return {r.id: r for r in (await conn.execute(stmt, {"ids": list(ids)})).all()}


def snippet(plain: str, words: Sequence[str], length: int = SNIPPET_CHARS) -> str:
    """HTML: the part of ``plain`` around the first word of ``words`` found, escaped, matches in <mark>."""
    usable = [re.escape(w) for w in words if len(w) >= 2]
    pattern = re.compile(r"\b(?:" + "|".join(usable) + r")\w*", re.IGNORECASE) if usable else None
    start = 0
    if pattern is not None:
        first = pattern.search(fold_keep_length(plain))
        if first is not None:
            start = max(0, first.start() - length // 3)
            while start > 0 and not plain[start - 1].isspace():
                start -= 1
    end = min(len(plain), start + length)
    while end < len(plain) and not plain[end].isspace() and end - start < length + 20:
        end += 1
    piece = plain[start:end]
    out: list[str] = ["…" if start > 0 else ""]
    last = 0
    if pattern is not None:
        for m in pattern.finditer(fold_keep_length(piece)):
            out.append(html.escape(piece[last : m.start()]))
            out.append(f"<mark>{html.escape(piece[m.start() : m.end()])}</mark>")
            last = m.end()
    out.append(html.escape(piece[last:]))
    if end < len(plain):
        out.append("…")
    return "".join(out)


def fold_keep_length(value: str) -> str:
    """Lower case with each accented letter replaced by its base letter, keeping every offset."""
    return "".join(fold(c)[:1] or c for c in value)


async def search(
    rt: Runtime,
    *,
    query: str,
    statuses: Sequence[ArticleStatus],
    index: RankIndex | None = None,
    locale: str | None = None,
    category: str | None = None,
    limit: int = 10,
) -> list[SearchHit]:
    """Articles for ``query`` in one of ``statuses``, best first, with HTML-safe snippets."""
    q = check_query(query)
    words = query_words(q, index)
    found = await _candidates(rt, words, statuses=statuses, locale=locale, category=category)
    if not found and index is not None:
        allowed = {s.value for s in statuses}
        ranked = index.rank(q, limit=limit * 3)
        found = [
            (r.doc.article_id, r.score)
            for r in ranked
            if r.doc.status in allowed and (not locale or r.doc.locale == locale) and r.score > 0
        ]
    rows = await _rows(rt, [i for i, _ in found])
    top = max((rank for _, rank in found), default=0.0) or 1.0
    folded = fold(q)
    scored: list[tuple[float, Any]] = []
    for article_id, rank in found:
        row = rows.get(article_id)
        if row is None or (category and row.category != category):
            continue
        scored.append((rank / top + 0.5 * fuzz.partial_ratio(folded, fold(row.title)) / 100.0, row))
    scored.sort(key=lambda item: -item[0])
    hits: list[SearchHit] = []
    for score, row in scored[:limit]:
        status = ArticleStatus(row.status)
        hits.append(
            SearchHit(
                id=row.id,
                slug=row.slug,
                locale=row.locale,
                title=row.title,
                category=row.category,
                status=status,
                score=round(score, 4),
                snippet=snippet(row.body_text, words),
                url=help_url(row.slug, row.locale) if status is ArticleStatus.PUBLISHED else "",
            )
        )
    return hits
