"""social: a reply part's provider id is unbounded text (a media id longer than 255 characters failed the part's
insert on PostgreSQL, and cutting it would send a wrong id on the retry)

Revision ID: social_reply_parts_id_text
Revises: social_inbox
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "social_reply_parts_id_text"
down_revision: str | None = "social_inbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("social_reply_parts") as batch:
        batch.alter_column(
            "provider_id",
            existing_type=sqlmodel.sql.sqltypes.AutoString(length=255),
            type_=sa.Text(),
            existing_nullable=True,
        )


def downgrade() -> None:
    with op.batch_alter_table("social_reply_parts") as batch:
        batch.alter_column(
            "provider_id",
            existing_type=sa.Text(),
            type_=sqlmodel.sql.sqltypes.AutoString(length=255),
            existing_nullable=True,
        )
