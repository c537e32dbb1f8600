"""social: the messages of a webhook batch that ingest refused, kept with the reason (the batch is answered 200)

Revision ID: social_quarantine
Revises: files2_file_uploads
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db

revision: str = "social_quarantine"
down_revision: str | None = "files2_file_uploads"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "social_quarantine",
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("message", hub.db.JSONType, nullable=False),
        sa.Column("created_at", hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("channel", "external_id"),
    )


def downgrade() -> None:
    op.drop_table("social_quarantine")
