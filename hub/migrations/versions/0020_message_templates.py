"""message templates: the approved WhatsApp templates, editable in the admin page (settings seed them)

Revision ID: message_templates
Revises: social_quarantine
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db

revision: str = "message_templates"
down_revision: str | None = "social_quarantine"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "message_templates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("language", sa.String(length=15), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("channels", hub.db.JSONType, nullable=False),
        sa.Column("content_sid", sa.String(length=34), nullable=True),
        sa.Column("created_at", hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", hub.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", "language", name="uq_message_templates_name_language"),
    )


def downgrade() -> None:
    op.drop_table("message_templates")
