"""Tables and API schemas of the knowledge base (the multiple-models pattern: table + Create/Update/Read).

An article is one locale of one slug: ``(slug, locale)`` is unique, and the translations of an article share
its slug. Every change to an article stores its new state as a numbered version, so the history can be read
and an older version restored. ``kb_feedback`` holds what agents said of suggestions (and visitors of
self-service answers): helpful wordings become extra phrasings for ranking, unhelpful ones count against
the article for close wordings. ``kb_embeddings`` keeps the sentence embeddings the ranking computed.

Full-text search: on SQLite an FTS5 table ``kb_articles_fts`` (external content, kept in step by triggers); on
PostgreSQL a generated ``tsvector`` column ``search_vector`` with a GIN index. Both are made by the migrations
(``hub/migrations/versions/0007_knowledge_base.py``; on PostgreSQL the column is stored in the row and the index
has no pending list since ``0028_kb_search_inline.py``), not declared here. Both index the title (weighing most),
``keywords`` (phrasings and tags) and ``body_text``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic import Field as PField
from sqlalchemy import Column, ForeignKey, Index, Integer, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from hub.db import JSONType, UTCDateTime, utcnow
from hub.inputs import Count, Id, Input

DEFAULT_LOCALE = "en"
SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,119}$"
LOCALE_PATTERN = r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$"
MAX_BODY_CHARS = 200_000
MAX_PHRASINGS = 50
MAX_PHRASING_CHARS = 500


# What the migration makes for full-text search that SQLModel cannot describe (a virtual table and its shadow
# tables on SQLite, a generated column on PostgreSQL): the schema comparison leaves these alone.
SEARCH_INDEX_TABLES = frozenset(
    f"kb_articles_fts{suffix}" for suffix in ("", "_data", "_idx", "_docsize", "_config", "_content")
)
SEARCH_INDEX_COLUMNS = frozenset({("kb_articles", "search_vector")})
SEARCH_INDEX_INDEXES = frozenset({"ix_kb_articles_search"})


class ArticleStatus(StrEnum):
    DRAFT = "draft"  # being written: agents with the admin pages see it, nobody else
    INTERNAL = "internal"  # for agents: suggested in the console, never shown to customers
    PUBLISHED = "published"  # on the help center and offered in the widget


# --- tables -------------------------------------------------------------------------------------------


class Article(SQLModel, table=True):
    __tablename__ = "kb_articles"
    __table_args__ = (
        UniqueConstraint("slug", "locale", name="uq_kb_articles_slug_locale"),
        Index("ix_kb_articles_status_locale", "status", "locale"),
    )

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(max_length=120)
    locale: str = Field(max_length=16, default=DEFAULT_LOCALE)
    title: str = Field(max_length=300)
    body: str = Field(sa_column=Column(Text, nullable=False))  # Markdown, as written
    html: str = Field(sa_column=Column(Text, nullable=False))  # rendered and sanitized (render.py)
    body_text: str = Field(sa_column=Column(Text, nullable=False))  # the body as plain text (search, snippets)
    keywords: str = Field(sa_column=Column(Text, nullable=False))  # phrasings and tags, for full-text search
    category: str = Field(max_length=100, default="General")
    tags: list[str] = Field(default_factory=list, sa_type=JSONType)
    phrasings: list[str] = Field(default_factory=list, sa_type=JSONType)
    status: str = Field(max_length=16, default=ArticleStatus.DRAFT)
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_by: int | None = None  # the agent's id (no foreign key: agents belong to ticketing)


class ArticleVersion(SQLModel, table=True):
    __tablename__ = "kb_article_versions"
    __table_args__ = (UniqueConstraint("article_id", "version", name="uq_kb_article_versions"),)

    id: int | None = Field(default=None, primary_key=True)
    article_id: int = Field(sa_column=Column(Integer, ForeignKey("kb_articles.id", ondelete="CASCADE"), nullable=False))
    version: int
    slug: str = Field(max_length=120)
    locale: str = Field(max_length=16)
    title: str = Field(max_length=300)
    body: str = Field(sa_column=Column(Text, nullable=False))
    category: str = Field(max_length=100)
    tags: list[str] = Field(default_factory=list, sa_type=JSONType)
    phrasings: list[str] = Field(default_factory=list, sa_type=JSONType)
    status: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    author_id: int | None = None
    source: str = Field(max_length=20, default="api")  # api, import, restore, demo


class Feedback(SQLModel, table=True):
    __tablename__ = "kb_feedback"
    __table_args__ = (Index("ix_kb_feedback_article", "article_id", "helpful"),)

    id: int | None = Field(default=None, primary_key=True)
    article_id: int = Field(sa_column=Column(Integer, ForeignKey("kb_articles.id", ondelete="CASCADE"), nullable=False))
    helpful: bool
    query: str = Field(max_length=MAX_PHRASING_CHARS)  # the customer's words the article was suggested for
    source: str = Field(max_length=20)  # agent (console) or visitor (widget self-service)
    ticket_id: int | None = None
    agent_id: int | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Embedding(SQLModel, table=True):
    """A sentence's embedding (an article's title or phrasing, a wording from feedback), stored once computed so
    that a restart, another process or an edit embeds only sentences never seen before. Keyed by the embedder
    and the SHA-256 of the sentence; ``vector`` is float32, little-endian."""

    __tablename__ = "kb_embeddings"

    embedder: str = Field(max_length=40, primary_key=True)
    text_hash: str = Field(max_length=64, primary_key=True)
    vector: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


# --- API schemas --------------------------------------------------------------------------------------


def _clean_list(values: list[str], *, most: int, longest: int, what: str) -> list[str]:
    out: list[str] = []
    for value in values:
        value = value.strip()
        if not value:
            continue
        if len(value) > longest:
            raise ValueError(f"each {what} has at most {longest} characters")
        if value not in out:
            out.append(value)
    if len(out) > most:
        raise ValueError(f"at most {most} {what}s")
    return out


class ArticleFields(Input):
    title: str = PField(min_length=1, max_length=300)
    body: str = PField(default="", max_length=MAX_BODY_CHARS)
    category: str = PField(default="General", min_length=1, max_length=100)
    tags: list[str] = PField(default_factory=list)
    locale: str = PField(default=DEFAULT_LOCALE, pattern=LOCALE_PATTERN)
    status: ArticleStatus = ArticleStatus.DRAFT
    phrasings: list[str] = PField(default_factory=list, description='questions the article answers ("also asked as")')

    @field_validator("title", "category", mode="after")
    @classmethod
    def _stripped(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value

    @field_validator("tags", mode="after")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        return _clean_list(value, most=20, longest=50, what="tag")

    @field_validator("phrasings", mode="after")
    @classmethod
    def _phrasings(cls, value: list[str]) -> list[str]:
        return _clean_list(value, most=MAX_PHRASINGS, longest=MAX_PHRASING_CHARS, what="phrasing")


class ArticleCreate(ArticleFields):
    slug: str = PField(pattern=SLUG_PATTERN, description="lower-case letters, digits, - and _")


class ArticleUpdate(Input):
    """Fields to change; ``version`` (optional) refuses the change with 409 when the article moved on."""

    title: str | None = PField(default=None, min_length=1, max_length=300)
    body: str | None = PField(default=None, max_length=MAX_BODY_CHARS)
    category: str | None = PField(default=None, min_length=1, max_length=100)
    tags: list[str] | None = None
    status: ArticleStatus | None = None
    phrasings: list[str] | None = None
    version: Count | None = None

    @field_validator("title", "category", mode="after")
    @classmethod
    def _stripped(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value

    @field_validator("tags", mode="after")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _clean_list(value, most=20, longest=50, what="tag")

    @field_validator("phrasings", mode="after")
    @classmethod
    def _phrasings(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        return _clean_list(value, most=MAX_PHRASINGS, longest=MAX_PHRASING_CHARS, what="phrasing")


class ArticleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    slug: str
    locale: str
    title: str
    body: str
    html: str
    category: str
    tags: list[str]
    phrasings: list[str]
    status: ArticleStatus
    version: int
    created_at: datetime
    updated_at: datetime
    updated_by: int | None = None
    url: str = ""  # its page on the help center (published articles only)


class ArticleSummary(BaseModel):
    id: int
    slug: str
    locale: str
    title: str
    category: str
    status: ArticleStatus
    version: int
    updated_at: datetime


class ArticleVersionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    article_id: int
    version: int
    slug: str
    locale: str
    title: str
    body: str
    category: str
    tags: list[str]
    phrasings: list[str]
    status: ArticleStatus
    created_at: datetime
    author_id: int | None
    source: str


class SearchHit(BaseModel):
    id: int
    slug: str
    locale: str
    title: str
    category: str
    status: ArticleStatus
    score: float
    snippet: str = PField(description="HTML: the text escaped, matched words in <mark>")
    url: str = ""


class LearnedWording(BaseModel):
    """A customer's wording the ranking learned for an article from agents marking the article helpful for it."""

    id: int = PField(description="the newest feedback that taught it; DELETE .../learned/{id} drops the wording")
    wording: str
    times: int = PField(description="how many times agents marked the article helpful for these words")
    last_at: datetime


class FeedbackCreate(Input):
    article_id: Id
    helpful: bool
    ticket_id: Id | None = None
    query: str | None = PField(default=None, max_length=MAX_PHRASING_CHARS)


def row_dict(row: Any) -> dict[str, Any]:
    return dict(row._mapping)
