"""social: when each account last heard a webhook, shared, so that silence is judged alike by every process

Revision ID: social_account_heard
Revises: social_account_health
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db

revision: str = "social_account_heard"
down_revision: str | None = "social_account_health"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "social_account_heard",
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("configured_at", hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_webhook_at", hub.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("channel", "account"),
    )


def downgrade() -> None:
    op.drop_table("social_account_heard")
