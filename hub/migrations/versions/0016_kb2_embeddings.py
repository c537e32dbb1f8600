"""knowledge base: stored sentence embeddings, so a restart or an edit embeds only sentences never seen before

Revision ID: kb2_embeddings
Revises: social_tables
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db

revision: str = "kb2_embeddings"
down_revision: str | None = "social_tables"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "kb_embeddings",
        sa.Column("embedder", sa.String(length=40), nullable=False),
        sa.Column("text_hash", sa.String(length=64), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("embedder", "text_hash"),
    )


def downgrade() -> None:
    op.drop_table("kb_embeddings")
