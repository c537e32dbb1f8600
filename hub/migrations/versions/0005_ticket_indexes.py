"""tickets: fewer index entries per insert (ingest's hottest write)

The index on contact_id alone goes (ix_tickets_contact_channel_status starts with contact_id and serves the
same lookups); the indexes on assignee, offered agent, offer expiry and thread key become partial, holding
only the rows where the column is set: a new ticket has none of them but a thread key on chat channels.

Revision ID: 0005_ticket_indexes
Revises: 0003_routing
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_ticket_indexes"
down_revision: str | None = "0003_routing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PARTIAL = ("assignee_id", "offered_agent_id", "offer_expires_at", "thread_key")


def upgrade() -> None:
    op.drop_index("ix_tickets_contact_id", table_name="tickets")
    for column in _PARTIAL:
        name = f"ix_tickets_{column}"
        where = sa.text(f"{column} IS NOT NULL")
        op.drop_index(name, table_name="tickets")
        op.create_index(name, "tickets", [column], unique=False, sqlite_where=where, postgresql_where=where)


def downgrade() -> None:
    for column in _PARTIAL:
        name = f"ix_tickets_{column}"
        op.drop_index(name, table_name="tickets")
        op.create_index(name, "tickets", [column], unique=False)
    op.create_index("ix_tickets_contact_id", "tickets", ["contact_id"], unique=False)
