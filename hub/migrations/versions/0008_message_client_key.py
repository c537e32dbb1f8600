"""messages: the client key of an agent's reply or note, unique per ticket, so a repeated send stores nothing new

An agent who clicks Send again after a network error sends the same key: the first message is answered again.
The index is partial: only agents' messages sent with a key have one.

Revision ID: 0008_message_client_key
Revises: 0007_knowledge_base
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_message_client_key"
down_revision: str | None = "0007_knowledge_base"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WHERE = sa.text("client_key IS NOT NULL")


def upgrade() -> None:
    op.add_column("messages", sa.Column("client_key", sa.String(length=64), nullable=True))
    op.create_index(
        "ix_messages_ticket_client_key",
        "messages",
        ["ticket_id", "client_key"],
        unique=True,
        sqlite_where=_WHERE,
        postgresql_where=_WHERE,
    )


def downgrade() -> None:
    op.drop_index("ix_messages_ticket_client_key", table_name="messages")
    op.drop_column("messages", "client_key")
