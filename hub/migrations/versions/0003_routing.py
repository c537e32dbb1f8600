"""routing engine: queue routing configuration, agent wrap-up and missed offers, ticket routing state, rules

Revision ID: 0003_routing
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db

revision: str = "0003_routing"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WAITING = "assignee_id IS NULL AND offered_agent_id IS NULL"
_WAITING_HIGH = "assignee_id IS NULL AND offered_agent_id IS NULL AND priority IN ('high', 'urgent')"


def upgrade() -> None:
    with op.batch_alter_table("queues") as batch:
        batch.add_column(sa.Column("hours", hub.db.JSONType, nullable=True))
        batch.add_column(sa.Column("sla_first_response_seconds", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("sla_resolution_seconds", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("overflow", hub.db.JSONType, nullable=True))
        batch.add_column(sa.Column("max_wait_seconds", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("overflow_queue", sa.String(length=100), nullable=True))
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("missed_offers", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("wrap_up_until", hub.db.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("queued_at", hub.db.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("overflow_stage", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("skills", hub.db.JSONType, nullable=True))
        batch.add_column(sa.Column("routing", hub.db.JSONType, nullable=True))
        batch.create_index("ix_tickets_offered_agent_id", ["offered_agent_id"], unique=False)
        batch.create_index("ix_tickets_offer_expires_at", ["offer_expires_at"], unique=False)
        batch.create_index("ix_tickets_queue_queued_at", ["queue_id", "queued_at"], unique=False)
        # Partial indexes of waiting work, in the orders routing reads it (ticketing.routing_reads.waiting_rows).
        for name, columns, where in (
            ("ix_tickets_waiting_queued", ["queue_id", "channel", "queued_at"], _WAITING),
            ("ix_tickets_waiting_due", ["queue_id", "channel", "first_response_due_at"], _WAITING),
            ("ix_tickets_waiting_high", ["queue_id", "channel", "queued_at"], _WAITING_HIGH),
        ):
            batch.create_index(
                name, columns, unique=False, sqlite_where=sa.text(where), postgresql_where=sa.text(where)
            )
    op.create_table(
        "routing_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rules", hub.db.JSONType, nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("updated_at", hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("routing_rules")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_index("ix_tickets_waiting_high")
        batch.drop_index("ix_tickets_waiting_due")
        batch.drop_index("ix_tickets_waiting_queued")
        batch.drop_index("ix_tickets_queue_queued_at")
        batch.drop_index("ix_tickets_offer_expires_at")
        batch.drop_index("ix_tickets_offered_agent_id")
        batch.drop_column("routing")
        batch.drop_column("skills")
        batch.drop_column("overflow_stage")
        batch.drop_column("queued_at")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("wrap_up_until")
        batch.drop_column("missed_offers")
    with op.batch_alter_table("queues") as batch:
        batch.drop_column("overflow_queue")
        batch.drop_column("max_wait_seconds")
        batch.drop_column("overflow")
        batch.drop_column("sla_resolution_seconds")
        batch.drop_column("sla_first_response_seconds")
        batch.drop_column("hours")
