"""The knowledge base's JSON API under ``/api/kb``: articles (CRUD, versions, restore), search and a Markdown
preview for agents; writing is for supervisors and admins.

    GET    /api/kb/articles[?status=&locale=&category=&offset=&limit=]   summaries
    POST   /api/kb/articles                                              create (201)
    GET    /api/kb/articles/{id}                                         one article, with its sanitized HTML
    PATCH  /api/kb/articles/{id}                                         change fields (a new version)
    DELETE /api/kb/articles/{id}                                         delete with its versions
    GET    /api/kb/articles/{id}/versions                                the versions, newest first
    GET    /api/kb/articles/{id}/versions/{n}                            one version
    POST   /api/kb/articles/{id}/versions/{n}/restore                    its content as the next version
    GET    /api/kb/articles/{id}/learned                                 wordings learned from agents' feedback
    DELETE /api/kb/articles/{id}/learned/{wording}                       the ranking unlearns one
    GET    /api/kb/search?q=[&status=&locale=&category=&limit=]          ranked hits with HTML-safe snippets
    POST   /api/kb/preview {"body"}                                      {"html"}: the Markdown as it will show
    GET    /api/kb/suggest?ticket_id=N[&draft=]                          articles for the customer's words
    POST   /api/kb/feedback {"article_id", "helpful", "query"}           what the ranking learns from
    GET    /api/kb/stats                                                 deflections, articles, embedder
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel
from pydantic import Field as PField

from hub.deps import CurrentAgent, RuntimeDep
from hub.inputs import Count, Id, IdParam, Input
from knowledge_base import service
from knowledge_base.exceptions import ArticleNotFound
from knowledge_base.models import (
    MAX_BODY_CHARS,
    ArticleCreate,
    ArticleRead,
    ArticleStatus,
    ArticleSummary,
    ArticleUpdate,
    ArticleVersionRead,
    LearnedWording,
    SearchHit,
)
from knowledge_base.render import to_html
from knowledge_base.search import check_query, search
from knowledge_base.suggest import Suggestions, customer_query, describe, knowledge_index, suggest

# What agents search by default: everything but drafts.
AGENT_STATUSES = (ArticleStatus.PUBLISHED, ArticleStatus.INTERNAL)
PUBLISHED_ONLY = frozenset({ArticleStatus.PUBLISHED.value})


class Answer(BaseModel):
    """An article offered to a visitor in the widget."""

    id: int
    slug: str
    title: str
    url: str
    excerpt: str
    score: float


class Solved(Input):
    article_id: Id
    query: str = PField(default="", max_length=500)


class Stats(BaseModel):
    deflections: int = PField(description="times a visitor said an article offered in the widget solved it")
    articles: int
    embedder: str | None


class FeedbackRequest(Input):
    article_id: Id
    helpful: bool
    query: str = PField(min_length=1, max_length=500, description="the customer's words it was suggested for")
    ticket_id: Id | None = None


class PreviewRequest(Input):
    body: str = PField(max_length=MAX_BODY_CHARS)


class PreviewRead(BaseModel):
    html: str


router = APIRouter(prefix="/api/kb", tags=["knowledge base"])


@router.get("/articles", response_model=list[ArticleSummary])
async def list_articles(
    me: CurrentAgent,
    rt: RuntimeDep,
    status: Annotated[list[ArticleStatus] | None, Query()] = None,
    locale: str | None = None,
    category: str | None = None,
    offset: Annotated[Count, Query()] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[ArticleSummary]:
    """Articles of every status (or those asked), by category and title."""
    return await service.list_articles(
        rt, statuses=status, locale=locale, category=category, offset=offset, limit=limit
    )


@router.post("/articles", response_model=ArticleRead, status_code=201)
async def create_article(body: ArticleCreate, me: CurrentAgent, rt: RuntimeDep) -> ArticleRead:
    """Supervisors and admins: add an article (409 when its slug and locale exist)."""
    me.require_supervisor()
    return await service.create_article(rt, data=body, author_id=me.agent_id, actor=me)


@router.get("/articles/{article_id}", response_model=ArticleRead)
async def get_article(article_id: IdParam, me: CurrentAgent, rt: RuntimeDep) -> ArticleRead:
    return await service.get_article(rt, article_id=article_id)


@router.patch("/articles/{article_id}", response_model=ArticleRead)
async def update_article(article_id: IdParam, body: ArticleUpdate, me: CurrentAgent, rt: RuntimeDep) -> ArticleRead:
    """Supervisors and admins: change an article; with ``version``, 409 when someone saved meanwhile."""
    me.require_supervisor()
    return await service.update_article(rt, article_id=article_id, data=body, author_id=me.agent_id, actor=me)


@router.delete("/articles/{article_id}", status_code=204)
async def delete_article(article_id: IdParam, me: CurrentAgent, rt: RuntimeDep) -> Response:
    me.require_supervisor()
    await service.delete_article(rt, article_id=article_id, actor=me)
    return Response(status_code=204)


@router.get("/articles/{article_id}/versions", response_model=list[ArticleVersionRead])
async def list_versions(article_id: IdParam, me: CurrentAgent, rt: RuntimeDep) -> list[ArticleVersionRead]:
    return await service.list_versions(rt, article_id=article_id)


@router.get("/articles/{article_id}/versions/{version}", response_model=ArticleVersionRead)
async def get_version(article_id: IdParam, version: IdParam, me: CurrentAgent, rt: RuntimeDep) -> ArticleVersionRead:
    return await service.get_version(rt, article_id=article_id, version=version)


@router.post("/articles/{article_id}/versions/{version}/restore", response_model=ArticleRead)
async def restore_version(article_id: IdParam, version: IdParam, me: CurrentAgent, rt: RuntimeDep) -> ArticleRead:
    """Supervisors and admins: make an older version's content the next version."""
    me.require_supervisor()
    return await service.restore_version(rt, article_id=article_id, version=version, author_id=me.agent_id, actor=me)


@router.get("/articles/{article_id}/learned", response_model=list[LearnedWording])
async def learned_wordings(article_id: IdParam, me: CurrentAgent, rt: RuntimeDep) -> list[LearnedWording]:
    """The customers' wordings the ranking learned for the article from agents' "helpful", newest first (the
    admin page shows them under "also asked as")."""
    return await service.learned_wordings(rt, article_id=article_id)


@router.delete("/articles/{article_id}/learned/{wording_id}", status_code=204)
async def drop_learned_wording(article_id: IdParam, wording_id: IdParam, me: CurrentAgent, rt: RuntimeDep) -> Response:
    """Supervisors and admins: the ranking unlearns a wording (a "helpful" given by mistake); 404 when the
    article did not learn it."""
    me.require_supervisor()
    await service.drop_learned_wording(rt, article_id=article_id, wording_id=wording_id, actor=me)
    return Response(status_code=204)


@router.get("/search", response_model=list[SearchHit])
async def search_articles(
    me: CurrentAgent,
    rt: RuntimeDep,
    q: str = "",
    status: Annotated[list[ArticleStatus] | None, Query()] = None,
    locale: str | None = None,
    category: str | None = None,
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> list[SearchHit]:
    """Typo-tolerant full-text search (published and internal articles unless ``status`` says otherwise);
    an empty query or one over 200 characters is refused with 422."""
    index = await knowledge_index(rt).available()
    statuses = tuple(status) if status else AGENT_STATUSES
    return await search(rt, query=q, statuses=statuses, index=index, locale=locale, category=category, limit=limit)


@router.post("/preview", response_model=PreviewRead)
async def preview(body: PreviewRequest, me: CurrentAgent) -> PreviewRead:
    """The Markdown as readers will see it (sanitized HTML)."""
    return PreviewRead(html=to_html(body.body))


@router.get("/suggest", response_model=Suggestions)
async def suggestions(
    me: CurrentAgent,
    rt: RuntimeDep,
    ticket_id: IdParam,
    draft: Annotated[str, Query(max_length=2000, description="the agent's reply being written")] = "",
) -> Suggestions:
    """The best articles (published and internal) for the customer's newest messages in a ticket the agent may
    see, and the draft reply when given; 404 / 403 as the ticket API answers."""
    text = await rt.ports.tickets.customer_text(principal=me, ticket_id=ticket_id, messages=3)
    query = customer_query(text.texts or [text.subject], draft)
    items = await suggest(rt, query=query, limit=rt.settings.kb_suggestions)
    return Suggestions(ticket_id=ticket_id, query=query, items=items)


@router.post("/feedback", status_code=204)
async def feedback(body: FeedbackRequest, me: CurrentAgent, rt: RuntimeDep) -> Response:
    """An agent says whether a suggested article answered the customer's words: a helpful one learns the
    wording as a phrasing, an unhelpful one ranks lower for close wordings."""
    await service.record_feedback(
        rt,
        article_id=body.article_id,
        helpful=body.helpful,
        query=body.query,
        source=service.AGENT,
        ticket_id=body.ticket_id,
        agent_id=me.agent_id,
    )
    return Response(status_code=204)


@router.get("/stats", response_model=Stats)
async def stats(me: CurrentAgent, rt: RuntimeDep) -> Stats:
    """Self-service deflections counted, and what the ranking runs on."""
    index = knowledge_index(rt)
    await index.available()
    info = describe(index)
    return Stats(deflections=await service.deflections(rt), articles=info["articles"], embedder=info["embedder"])


public_router = APIRouter(prefix="/api/kb/public", tags=["knowledge base (public)"])
ANSWERS = 3


@public_router.get("/answers", response_model=list[Answer])
async def answers(rt: RuntimeDep, q: str = "", locale: str | None = None) -> list[Answer]:
    """What the widget offers while a visitor types: the best published articles for their words (anyone may
    ask; drafts and internal articles never answer). An empty query or one over 200 characters: 422."""
    query = check_query(q)
    offered = await suggest(rt, query=query, limit=ANSWERS * 2, statuses=PUBLISHED_ONLY)
    preferred = [s for s in offered if not locale or s.locale == locale] or offered
    return [
        Answer(id=s.id, slug=s.slug, title=s.title, url=s.url, excerpt=_cut(s.text), score=s.score)
        for s in preferred[:ANSWERS]
    ]


@public_router.post("/solved", status_code=204)
async def solved(body: Solved, rt: RuntimeDep) -> Response:
    """A visitor says an article offered in the widget solved their question: counted as a deflection."""
    found = await service.find_published(rt, article_id=body.article_id)
    if not found:
        raise ArticleNotFound(f"article {body.article_id} does not exist")
    await service.record_feedback(
        rt, article_id=body.article_id, helpful=True, query=body.query, source=service.VISITOR
    )
    return Response(status_code=204)


def _cut(text: str, length: int = 140) -> str:
    return text if len(text) <= length else text[:length].rsplit(" ", 1)[0] + "…"
