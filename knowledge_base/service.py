"""The knowledge base's service functions: every change to articles goes through here, commits, stores a
version, and publishes a ``kb.article.changed`` event after commit (which keeps every process's ranking
index up to date, see ``suggest.py``)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import audit
from hub.db import taken_as, utcnow
from hub.events import EventPayload, NewEvent, event_payload
from hub.principals import Principal
from hub.runtime import Runtime, Tx
from knowledge_base.exceptions import ArticleNotFound, SlugTaken, StaleArticle, VersionNotFound, WordingNotFound
from knowledge_base.models import (
    Article,
    ArticleCreate,
    ArticleFields,
    ArticleRead,
    ArticleStatus,
    ArticleSummary,
    ArticleUpdate,
    ArticleVersion,
    ArticleVersionRead,
    Embedding,
    Feedback,
    LearnedWording,
)
from knowledge_base.ranking import Doc
from knowledge_base.render import to_html, to_text

A = Article.__table__  # type: ignore[attr-defined]
V = ArticleVersion.__table__  # type: ignore[attr-defined]
F = Feedback.__table__  # type: ignore[attr-defined]
E = Embedding.__table__  # type: ignore[attr-defined]

CHANGED = "kb.article.changed"
FEEDBACK = "kb.feedback"


@event_payload(CHANGED)
class ArticleChanged(EventPayload):
    """An article was created, edited, published, archived or deleted, or lost a wording learned from feedback
    (``action``: created, updated, deleted, wording_dropped); its state after."""

    id: int
    slug: str
    locale: str
    status: str
    version: int
    action: str


@event_payload(FEEDBACK)
class ArticleFeedback(EventPayload):
    """An agent or reader said whether an article helped."""

    id: int
    slug: str
    helpful: bool


# Wordings from feedback an article keeps for ranking: the newest ones.
FEEDBACK_PHRASINGS = 30
VERSIONED = ("slug", "locale", "title", "body", "category", "tags", "phrasings", "status")

Outcome = Literal["created", "updated", "unchanged"]
AGENT = "agent"  # feedback from the console
VISITOR = "visitor"  # "this solved it" in the widget: a deflection


def _derived(fields: ArticleFields) -> dict[str, Any]:
    """The stored columns computed from an article's fields."""
    keywords = "\n".join((*fields.phrasings, " ".join(fields.tags)))
    return {"html": to_html(fields.body), "body_text": to_text(fields.body), "keywords": keywords}


def help_url(slug: str, locale: str) -> str:
    return f"/help/{slug}" + ("" if locale == "en" else f"?lang={locale}")


def _read(row: Any) -> ArticleRead:
    article = ArticleRead.model_validate(row._mapping)
    if article.status is ArticleStatus.PUBLISHED:
        article.url = help_url(article.slug, article.locale)
    return article


async def _store_version(tx: Tx, row: Any, *, author_id: int | None, source: str) -> None:
    await tx.conn.execute(
        V.insert().values(
            article_id=row.id,
            version=row.version,
            created_at=row.updated_at,
            author_id=author_id,
            source=source,
            **{k: getattr(row, k) for k in VERSIONED},
        )
    )


def _changed(tx: Tx, row: Any, action: str) -> None:
    tx.emit(
        NewEvent(
            type=CHANGED,
            payload={
                "id": row.id,
                "slug": row.slug,
                "locale": row.locale,
                "status": row.status,
                "version": row.version,
                "action": action,
            },
        )
    )


async def _audit(tx: Tx, actor: Principal | None, action: str, row: Any, **detail: Any) -> None:
    """A person's change to an article, in the admins' audit log (imports and seeds pass no actor)."""
    if actor is not None:
        info = {"slug": row.slug, "locale": row.locale, "title": row.title, "version": row.version, **detail}
        await audit.record(tx.conn, actor=actor, action=action, target=f"article:{row.id}", detail=info)


async def create_article(
    rt: Runtime,
    *,
    data: ArticleCreate,
    author_id: int | None = None,
    source: str = "api",
    actor: Principal | None = None,
) -> ArticleRead:
    """Add an article (version 1)."""
    async with rt.write() as tx:
        row = await _insert(tx, data, author_id=author_id, source=source)
        await _audit(tx, actor, "kb.article_create", row)
    return _read(row)


async def _insert(tx: Tx, data: ArticleCreate, *, author_id: int | None, source: str) -> Any:
    taken = SlugTaken(f"an article {data.slug!r} in locale {data.locale!r} exists")
    existing = await tx.conn.execute(select(A.c.id).where(A.c.slug == data.slug, A.c.locale == data.locale))
    if existing.first():
        raise taken
    now = utcnow()
    with taken_as(taken):
        inserted = await tx.conn.execute(
            A.insert()
            .values(
                **data.model_dump(mode="json"),
                **_derived(data),
                version=1,
                created_at=now,
                updated_at=now,
                updated_by=author_id,
            )
            .returning(*A.c)
        )
    row = inserted.one()
    await _store_version(tx, row, author_id=author_id, source=source)
    _changed(tx, row, "created")
    return row


async def _locked(conn: AsyncConnection, article_id: int) -> Any:
    stmt = select(A).where(A.c.id == article_id)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = (await conn.execute(stmt)).first()
    if row is None:
        raise ArticleNotFound(f"article {article_id} does not exist")
    return row


async def _apply(tx: Tx, row: Any, changes: dict[str, Any], *, author_id: int | None, source: str) -> Any:
    """Write ``changes`` as the next version of ``row``; the row unchanged when nothing differs."""
    changes = {k: v for k, v in changes.items() if getattr(row, k) != v}
    if not changes:
        return row
    merged = ArticleFields.model_validate({**{k: getattr(row, k) for k in VERSIONED}, **changes})
    values = {
        **changes,
        **_derived(merged),
        "version": row.version + 1,
        "updated_at": utcnow(),
        "updated_by": author_id,
    }
    updated = await tx.conn.execute(update(A).where(A.c.id == row.id).values(**values).returning(*A.c))
    new = updated.one()
    await _store_version(tx, new, author_id=author_id, source=source)
    _changed(tx, new, "updated")
    return new


async def update_article(
    rt: Runtime,
    *,
    article_id: int,
    data: ArticleUpdate,
    author_id: int | None = None,
    source: str = "api",
    actor: Principal | None = None,
) -> ArticleRead:
    """Change an article's fields as the next version (none when nothing differs)."""
    async with rt.write() as tx:
        row = await _locked(tx.conn, article_id)
        if data.version is not None and data.version != row.version:
            raise StaleArticle(f"article {article_id} is at version {row.version}, not {data.version}: reload it")
        changes = data.model_dump(exclude_unset=True, exclude={"version"}, mode="json")
        changes = {k: v for k, v in changes.items() if v is not None}
        before = row
        row = await _apply(tx, row, changes, author_id=author_id, source=source)
        if row.version != before.version:  # nothing differed: no new version, nothing to log
            fields = sorted(k for k in changes if getattr(before, k, None) != getattr(row, k, None))
            await _audit(tx, actor, "kb.article_update", row, fields=fields)
    return _read(row)


async def upsert_article(
    rt: Runtime, *, data: ArticleCreate, author_id: int | None = None, source: str = "import"
) -> tuple[ArticleRead, Outcome]:
    """Create the article of ``data.slug`` and ``data.locale``, or update it to ``data`` as a new version."""
    async with rt.write() as tx:
        found = await tx.conn.execute(select(A.c.id).where(A.c.slug == data.slug, A.c.locale == data.locale))
        existing = found.first()
        if existing is None:
            return _read(await _insert(tx, data, author_id=author_id, source=source)), "created"
        row = await _locked(tx.conn, existing.id)
        changes = data.model_dump(mode="json", exclude={"slug", "locale"})
        new = await _apply(tx, row, changes, author_id=author_id, source=source)
    return _read(new), ("unchanged" if new.version == row.version else "updated")


async def delete_article(rt: Runtime, *, article_id: int, actor: Principal | None = None) -> None:
    """Delete an article with its versions and feedback."""
    async with rt.write() as tx:
        row = await _locked(tx.conn, article_id)
        await tx.conn.execute(delete(A).where(A.c.id == article_id))
        await _audit(tx, actor, "kb.article_delete", row)
        _changed(tx, row, "deleted")


async def get_article(rt: Runtime, *, article_id: int) -> ArticleRead:
    async with rt.read() as conn:
        row = (await conn.execute(select(A).where(A.c.id == article_id))).first()
    if row is None:
        raise ArticleNotFound(f"article {article_id} does not exist")
    return _read(row)


async def find_published(rt: Runtime, *, article_id: int) -> bool:
    async with rt.read() as conn:
        stmt = select(A.c.id).where(A.c.id == article_id, A.c.status == ArticleStatus.PUBLISHED.value)
        return (await conn.execute(stmt)).first() is not None


async def find_article(
    rt: Runtime, *, slug: str, locale: str | None = None, statuses: Sequence[ArticleStatus] = (ArticleStatus.PUBLISHED,)
) -> list[ArticleRead]:
    """Every locale of ``slug`` in one of ``statuses`` (only ``locale`` when given)."""
    stmt = select(A).where(A.c.slug == slug, A.c.status.in_([s.value for s in statuses]))
    if locale:
        stmt = stmt.where(A.c.locale == locale)
    async with rt.read() as conn:
        rows = (await conn.execute(stmt.order_by(A.c.locale))).all()
    return [_read(r) for r in rows]


async def list_articles(
    rt: Runtime,
    *,
    statuses: Sequence[ArticleStatus] | None = None,
    locale: str | None = None,
    category: str | None = None,
    offset: int = 0,
    limit: int = 100,
) -> list[ArticleSummary]:
    stmt = select(A.c.id, A.c.slug, A.c.locale, A.c.title, A.c.category, A.c.status, A.c.version, A.c.updated_at)
    if statuses:
        stmt = stmt.where(A.c.status.in_([s.value for s in statuses]))
    if locale:
        stmt = stmt.where(A.c.locale == locale)
    if category:
        stmt = stmt.where(A.c.category == category)
    stmt = stmt.order_by(A.c.category, A.c.title, A.c.id).offset(offset).limit(limit)
    async with rt.read() as conn:
        rows = (await conn.execute(stmt)).all()
    return [ArticleSummary.model_validate(dict(r._mapping)) for r in rows]


async def plain_texts(rt: Runtime, *, article_ids: Sequence[int]) -> dict[int, str]:
    """The bodies of ``article_ids`` as plain text."""
    if not article_ids:
        return {}
    stmt = select(A.c.id, A.c.body_text).where(A.c.id.in_(list(article_ids)))
    async with rt.read() as conn:
        return {r.id: r.body_text for r in (await conn.execute(stmt)).all()}


async def all_articles(rt: Runtime) -> list[ArticleRead]:
    """Every article, every locale and status (for export)."""
    async with rt.read() as conn:
        rows = (await conn.execute(select(A).order_by(A.c.slug, A.c.locale))).all()
    return [_read(r) for r in rows]


async def categories(rt: Runtime, *, locale: str) -> list[tuple[str, int]]:
    """The categories of published articles in ``locale``, with their article counts."""
    stmt = (
        select(A.c.category, func.count())
        .where(A.c.status == ArticleStatus.PUBLISHED.value, A.c.locale == locale)
        .group_by(A.c.category)
        .order_by(A.c.category)
    )
    async with rt.read() as conn:
        return [(r[0], r[1]) for r in (await conn.execute(stmt)).all()]


async def locales_of(rt: Runtime, *, statuses: Sequence[ArticleStatus] = (ArticleStatus.PUBLISHED,)) -> list[str]:
    stmt = select(A.c.locale).where(A.c.status.in_([s.value for s in statuses])).distinct().order_by(A.c.locale)
    async with rt.read() as conn:
        return [r[0] for r in (await conn.execute(stmt)).all()]


async def list_versions(rt: Runtime, *, article_id: int) -> list[ArticleVersionRead]:
    """The article's versions, newest first."""
    await get_article(rt, article_id=article_id)
    async with rt.read() as conn:
        rows = (await conn.execute(select(V).where(V.c.article_id == article_id).order_by(V.c.version.desc()))).all()
    return [ArticleVersionRead.model_validate(r._mapping) for r in rows]


async def get_version(rt: Runtime, *, article_id: int, version: int) -> ArticleVersionRead:
    async with rt.read() as conn:
        row = (await conn.execute(select(V).where(V.c.article_id == article_id, V.c.version == version))).first()
    if row is None:
        raise VersionNotFound(f"article {article_id} has no version {version}")
    return ArticleVersionRead.model_validate(row._mapping)


async def restore_version(
    rt: Runtime, *, article_id: int, version: int, author_id: int | None = None, actor: Principal | None = None
) -> ArticleRead:
    """Make an older version's content the article's next version."""
    old = await get_version(rt, article_id=article_id, version=version)
    async with rt.write() as tx:
        row = await _locked(tx.conn, article_id)
        fields = old.model_dump(mode="json", include={"title", "body", "category", "tags", "phrasings", "status"})
        row = await _apply(tx, row, fields, author_id=author_id, source="restore")
        await _audit(tx, actor, "kb.article_restore", row, restored=version)
    return _read(row)


async def record_feedback(
    rt: Runtime,
    *,
    article_id: int,
    helpful: bool,
    query: str,
    source: str,
    ticket_id: int | None = None,
    agent_id: int | None = None,
) -> None:
    """Store what an agent or visitor said of an article suggested for ``query`` (the next ranking learns it)."""
    async with rt.write() as tx:
        row = await _locked(tx.conn, article_id)
        await tx.conn.execute(
            F.insert().values(
                article_id=article_id,
                helpful=helpful,
                query=query.strip()[:500],
                source=source,
                ticket_id=ticket_id,
                agent_id=agent_id,
                created_at=utcnow(),
            )
        )
        tx.emit(NewEvent(type=FEEDBACK, payload={"id": row.id, "slug": row.slug, "helpful": helpful}))


async def deflections(rt: Runtime) -> int:
    """How many times a visitor said an article offered in the widget solved their question."""
    stmt = select(func.count()).select_from(F).where(F.c.source == VISITOR)
    async with rt.read() as conn:
        return int((await conn.execute(stmt)).scalar_one())


async def feedback_counts(rt: Runtime) -> dict[int, tuple[int, int]]:
    """Article id -> (helpful, not helpful) counts."""
    stmt = select(F.c.article_id, F.c.helpful, func.count()).group_by(F.c.article_id, F.c.helpful)
    out: dict[int, tuple[int, int]] = {}
    async with rt.read() as conn:
        for article_id, helpful, count in (await conn.execute(stmt)).all():
            yes, no = out.get(article_id, (0, 0))
            out[article_id] = (yes + count, no) if helpful else (yes, no + count)
    return out


def _learned_wordings(feedback: Sequence[Any]) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """Per article, the wordings agents marked helpful (learned) and not helpful (rejected), newest first, at most
    ``FEEDBACK_PHRASINGS`` of each: ``feedback`` is (article id, helpful, query) rows, newest first."""
    learned: dict[int, list[str]] = {}
    rejected: dict[int, list[str]] = {}
    for article_id, helpful, query in feedback:
        bucket = (learned if helpful else rejected).setdefault(article_id, [])
        if len(bucket) < FEEDBACK_PHRASINGS and query not in bucket:
            bucket.append(query)
    return learned, rejected


def _taught() -> Any:
    """Agents' feedback with a wording, newest first. Agents' word only: visitors' "this solved it" is counted,
    but anyone on the web could send it, so it never teaches the ranking. A dropped wording is blanked."""
    return (
        select(F.c.article_id, F.c.helpful, F.c.query)
        .where(F.c.source == AGENT, F.c.query != "")
        .order_by(F.c.id.desc())
    )


async def ranking_docs(rt: Runtime, *, article_ids: Sequence[int] | None = None) -> list[Doc]:
    """What the ranker needs of every published and internal article (or of ``article_ids``), with the
    wordings agents' and visitors' feedback taught it."""
    live = [ArticleStatus.PUBLISHED.value, ArticleStatus.INTERNAL.value]
    stmt = select(A.c.id, A.c.slug, A.c.locale, A.c.title, A.c.status, A.c.body_text, A.c.tags, A.c.phrasings).where(
        A.c.status.in_(live)
    )
    fb = _taught()
    if article_ids is not None:
        stmt = stmt.where(A.c.id.in_(list(article_ids)))
        fb = fb.where(F.c.article_id.in_(list(article_ids)))
    async with rt.read() as conn:
        rows = (await conn.execute(stmt.order_by(A.c.id))).all()
        feedback = (await conn.execute(fb)).all()
    learned, rejected = _learned_wordings(feedback)
    return [
        Doc(
            article_id=r.id,
            slug=r.slug,
            locale=r.locale,
            title=r.title,
            body=r.body_text,
            tags=tuple(r.tags or ()),
            phrasings=tuple(dict.fromkeys([*(r.phrasings or ()), *learned.get(r.id, ())])),
            rejected=tuple(q for q in rejected.get(r.id, ()) if q not in learned.get(r.id, ())),
            status=r.status,
        )
        for r in rows
    ]


async def learned_wordings(rt: Runtime, *, article_id: int) -> list[LearnedWording]:
    """The customers' wordings the ranking learned for an article from agents marking it helpful (those it
    ranks by, newest first), beside the article's own phrasings: the admin's "also asked as" shows them."""
    article = await get_article(rt, article_id=article_id)
    stmt = (
        select(F.c.id, F.c.query, F.c.created_at)
        .where(F.c.article_id == article_id, F.c.source == AGENT, F.c.helpful.is_(True), F.c.query != "")
        .order_by(F.c.id.desc())
    )
    async with rt.read() as conn:
        rows = (await conn.execute(stmt)).all()
    learned, _ = _learned_wordings([(article_id, True, r.query) for r in rows])
    ranked = set(learned.get(article_id, ()))
    out: dict[str, LearnedWording] = {}
    for row in rows:
        if row.query in article.phrasings or row.query not in ranked:
            continue
        if row.query in out:
            out[row.query].times += 1
        else:
            out[row.query] = LearnedWording(id=row.id, wording=row.query, times=1, last_at=row.created_at)
    return list(out.values())


async def drop_learned_wording(
    rt: Runtime, *, article_id: int, wording_id: int, actor: Principal | None = None
) -> None:
    """Make the ranking unlearn a wording (``wording_id``: the id ``learned_wordings`` gave it): every agent's
    "helpful" with that wording for the article keeps its vote but loses its words, so the ranking reads it no
    more; the article's index entry is refreshed (and the wording's stored embedding pruned) after commit."""
    async with rt.write() as tx:
        row = await _locked(tx.conn, article_id)
        stmt = select(F.c.query).where(
            F.c.id == wording_id, F.c.article_id == article_id, F.c.source == AGENT, F.c.helpful.is_(True)
        )
        found = (await tx.conn.execute(stmt)).first()
        if found is None or not found.query:
            raise WordingNotFound(f"article {article_id} learned no wording {wording_id}")
        await tx.conn.execute(
            update(F)
            .where(F.c.article_id == article_id, F.c.source == AGENT, F.c.helpful.is_(True), F.c.query == found.query)
            .values(query="")
        )
        await _audit(tx, actor, "kb.wording_drop", row, wording=found.query)
        _changed(tx, row, "wording_dropped")


# --- stored embeddings ----------------------------------------------------------------------------------------

EMBEDDING_BATCH = 500  # rows per statement (an IN list, or one transaction of inserts)


def text_hash(text: str) -> str:
    """The key a sentence's embedding is stored under."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


async def stored_embeddings(rt: Runtime, *, embedder: str, hashes: Sequence[str] | None = None) -> dict[str, bytes]:
    """The stored vectors of ``embedder`` (all of them, or those of ``hashes``), by sentence hash."""
    out: dict[str, bytes] = {}
    stmt = select(E.c.text_hash, E.c.vector).where(E.c.embedder == embedder)
    async with rt.read() as conn:
        if hashes is None:
            out.update((h, bytes(v)) for h, v in (await conn.execute(stmt)).all())
            return out
        wanted = list(dict.fromkeys(hashes))
        for start in range(0, len(wanted), EMBEDDING_BATCH):
            chunk = wanted[start : start + EMBEDDING_BATCH]
            out.update((h, bytes(v)) for h, v in (await conn.execute(stmt.where(E.c.text_hash.in_(chunk)))).all())
    return out


async def store_embeddings(rt: Runtime, *, embedder: str, vectors: dict[str, bytes]) -> None:
    """Keep freshly computed vectors (by sentence hash); one already stored, by another process say, stays."""
    items = list(vectors.items())
    now = utcnow()
    for start in range(0, len(items), EMBEDDING_BATCH):
        rows = [
            {"embedder": embedder, "text_hash": h, "vector": v, "created_at": now}
            for h, v in items[start : start + EMBEDDING_BATCH]
        ]
        async with rt.write() as tx:
            await tx.conn.execute(rt.db.insert_ignore(E), rows)


async def stored_hashes(rt: Runtime, *, before: datetime) -> set[str]:
    """The sentence hashes with a vector stored (by any embedder) before ``before``."""
    stmt = select(E.c.text_hash).where(E.c.created_at < before).distinct()
    async with rt.read() as conn:
        return {h for (h,) in (await conn.execute(stmt)).all()}


async def prune_embeddings(rt: Runtime, *, hashes: Sequence[str], before: datetime) -> int:
    """Delete the stored vectors (of every embedder) of sentences no article uses any more, stored before
    ``before`` (when the caller read the articles: a vector stored since may be another process's, for a
    sentence used again meanwhile). Answers how many rows went."""
    wanted = list(dict.fromkeys(hashes))
    gone = 0
    for start in range(0, len(wanted), EMBEDDING_BATCH):
        chunk = wanted[start : start + EMBEDDING_BATCH]
        async with rt.write() as tx:
            result = await tx.conn.execute(delete(E).where(E.c.text_hash.in_(chunk), E.c.created_at < before))
            gone += result.rowcount or 0
    return gone
