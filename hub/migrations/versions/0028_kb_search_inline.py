"""knowledge base on PostgreSQL: each article's tsvector kept in its row, and the GIN index without a pending list

EXPLAIN (ANALYZE, BUFFERS) of the search statement at 10,000 articles showed two costs besides the ranking:

- An article's row (Markdown, HTML, plain text, keywords and the tsvector: about 2.2 kB) is over TOAST's 2 kB
  threshold, and the tsvector, the largest value and one pglz cannot shrink, was the one moved out of line: 97 %
  of the rows. Every row the search tested or ranked cost a TOAST index lookup and a TOAST page (45,000 buffers
  for one query of 7,000 matches). Stored MAIN, it stays in the row and the text columns go out of line instead;
  only the search's 50 candidates read their plain text back.
- The GIN index's pending list (fast update) held the half of a bulk import not yet merged: every search read it
  in full (489 buffers), and the planner, counting it, walked the table instead of using the index even for a
  rare word. Articles are written rarely and searched on every keystroke of the widget: each write now goes
  into the index itself.

Revision ID: kb_search_inline
Revises: social_delivery_parts
"""

from collections.abc import Sequence

from alembic import op

revision: str = "kb_search_inline"
down_revision: str | None = "social_delivery_parts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE kb_articles ALTER COLUMN search_vector SET STORAGE MAIN")
    # A storage change applies to rows written from now on: rewrite the generated column of the rows there are
    # (it is computed again only when a column it reads is set).
    op.execute("UPDATE kb_articles SET title = title")
    op.execute("ALTER INDEX ix_kb_articles_search SET (fastupdate = off)")
    op.execute("SELECT gin_clean_pending_list('ix_kb_articles_search'::regclass)")
    op.execute("ANALYZE kb_articles")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER INDEX ix_kb_articles_search RESET (fastupdate)")
    op.execute("ALTER TABLE kb_articles ALTER COLUMN search_vector SET STORAGE EXTENDED")
