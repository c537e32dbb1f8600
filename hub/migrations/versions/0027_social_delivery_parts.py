"""social: every provider message of a reply sent in several calls maps to the reply, each with its own status
(receipts of the earlier parts move the reply too), and the parts of a message are found by its id

Revision ID: social_delivery_parts
Revises: social_account_heard
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "social_delivery_parts"
down_revision: str | None = "social_account_heard"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The rows already there are replies recorded whole, by their one (last) provider id, not yet receipted.
    with op.batch_alter_table("social_deliveries") as batch:
        batch.add_column(sa.Column("status", sa.String(length=20), nullable=False, server_default="sent"))
        batch.add_column(sa.Column("error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("whole", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch.create_index("ix_social_deliveries_message_id", ["message_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("social_deliveries") as batch:
        batch.drop_index("ix_social_deliveries_message_id")
        batch.drop_column("whole")
        batch.drop_column("error")
        batch.drop_column("status")
