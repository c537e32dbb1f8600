"""social: an account's health (token refused, provider failing) kept, so every process and a restart show it

Revision ID: social_account_health
Revises: twilio_agent_phones
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db

revision: str = "social_account_health"
down_revision: str | None = "twilio_agent_phones"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "social_account_health",
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("since", hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("channel", "account"),
    )


def downgrade() -> None:
    op.drop_table("social_account_health")
