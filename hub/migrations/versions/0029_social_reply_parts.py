"""social: what the provider already took of a reply sent in several calls, kept in the database (it was kept
per process), so that a retry in another process, or after a restart, does not send a file to the customer twice

Revision ID: social_reply_parts
Revises: kb_search_inline
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db

revision: str = "social_reply_parts"
down_revision: str | None = "kb_search_inline"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "social_reply_parts",
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("part", sa.String(length=20), nullable=False),
        sa.Column("provider_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("channel", "message_id", "part"),
    )


def downgrade() -> None:
    op.drop_table("social_reply_parts")
