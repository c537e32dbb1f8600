"""webchat: satisfaction rating, reply channel for conversations answered elsewhere, canned responses

Revision ID: 0004_webchat
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db

revision: str = "0004_webchat"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("rating", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("rating_comment", sa.String(length=2000), nullable=True))
        batch.add_column(sa.Column("reply_channel", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("reply_to", sa.String(length=320), nullable=True))
    op.create_table(
        "canned_responses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("shortcut", sa.String(length=50), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("shortcut"),
    )


def downgrade() -> None:
    op.drop_table("canned_responses")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("reply_to")
        batch.drop_column("reply_channel")
        batch.drop_column("rating_comment")
        batch.drop_column("rating")
