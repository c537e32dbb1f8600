"""knowledge base: articles (one row per slug and locale), their versions, feedback on suggestions, and the
full-text index (SQLite: an FTS5 table kept by triggers; PostgreSQL: a generated tsvector with a GIN index)

Revision ID: 0007_knowledge_base
Revises: 0006_merge_heads
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db

revision: str = "0007_knowledge_base"
down_revision: str | None = "0006_merge_heads"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite's FTS5 table reads its text from kb_articles (external content); these triggers keep it in step
# with every insert, update and delete, whoever makes them (the service, a test emptying tables, a script).
_SQLITE_FTS = [
    """CREATE VIRTUAL TABLE kb_articles_fts USING fts5(
        title, keywords, body_text, content='kb_articles', content_rowid='id',
        tokenize='porter unicode61 remove_diacritics 2')""",
    """CREATE TRIGGER kb_articles_fts_insert AFTER INSERT ON kb_articles BEGIN
        INSERT INTO kb_articles_fts(rowid, title, keywords, body_text)
        VALUES (new.id, new.title, new.keywords, new.body_text);
    END""",
    """CREATE TRIGGER kb_articles_fts_delete AFTER DELETE ON kb_articles BEGIN
        INSERT INTO kb_articles_fts(kb_articles_fts, rowid, title, keywords, body_text)
        VALUES ('delete', old.id, old.title, old.keywords, old.body_text);
    END""",
    """CREATE TRIGGER kb_articles_fts_update AFTER UPDATE OF title, keywords, body_text ON kb_articles BEGIN
        INSERT INTO kb_articles_fts(kb_articles_fts, rowid, title, keywords, body_text)
        VALUES ('delete', old.id, old.title, old.keywords, old.body_text);
        INSERT INTO kb_articles_fts(rowid, title, keywords, body_text)
        VALUES (new.id, new.title, new.keywords, new.body_text);
    END""",
]
# 'simple' (no stemming, no stop words) would miss "returns" for "return"; 'english' stems, and the title
# weighs more than the rest.
_PG_VECTOR = (
    "setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(keywords, '')), 'B') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(body_text, '')), 'C')"
)


def upgrade() -> None:
    op.create_table(
        "kb_articles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=120), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column("keywords", sa.Text(), nullable=False),
        sa.Column("category", sa.String(length=100), nullable=False),
        sa.Column("tags", hub.db.JSONType, nullable=False),
        sa.Column("phrasings", hub.db.JSONType, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("slug", "locale", name="uq_kb_articles_slug_locale"),
    )
    op.create_index("ix_kb_articles_status_locale", "kb_articles", ["status", "locale"])
    op.create_table(
        "kb_article_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.Integer(), sa.ForeignKey("kb_articles.id", ondelete="CASCADE"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=120), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("category", sa.String(length=100), nullable=False),
        sa.Column("tags", hub.db.JSONType, nullable=False),
        sa.Column("phrasings", hub.db.JSONType, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("article_id", "version", name="uq_kb_article_versions"),
    )
    op.create_table(
        "kb_feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.Integer(), sa.ForeignKey("kb_articles.id", ondelete="CASCADE"), nullable=False),
        sa.Column("helpful", sa.Boolean(), nullable=False),
        sa.Column("query", sa.String(length=500), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("created_at", hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_kb_feedback_article", "kb_feedback", ["article_id", "helpful"])
    if op.get_bind().dialect.name == "sqlite":
        for statement in _SQLITE_FTS:
            op.execute(statement)
    else:
        op.execute(
            f"ALTER TABLE kb_articles ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ({_PG_VECTOR}) STORED"
        )
        op.execute("CREATE INDEX ix_kb_articles_search ON kb_articles USING gin (search_vector)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("kb_articles_fts_insert", "kb_articles_fts_delete", "kb_articles_fts_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS kb_articles_fts")
    op.drop_index("ix_kb_feedback_article", table_name="kb_feedback")
    op.drop_table("kb_feedback")
    op.drop_table("kb_article_versions")
    op.drop_index("ix_kb_articles_status_locale", table_name="kb_articles")
    op.drop_table("kb_articles")
