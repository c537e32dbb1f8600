"""where each agent answers the calls they accept: the browser (Twilio's Voice JavaScript SDK) or their own phone

Revision ID: twilio_agent_phones
Revises: report_recount
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db

revision: str = "twilio_agent_phones"
down_revision: str | None = "report_recount"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "twilio_agent_phones",
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("answer_on", sa.String(length=10), nullable=False),
        sa.Column("updated_at", hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("agent_id"),
    )


def downgrade() -> None:
    op.drop_table("twilio_agent_phones")
