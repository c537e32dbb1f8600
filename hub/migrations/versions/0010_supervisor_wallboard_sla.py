"""supervisor: what the wallboard, SLA clocks and reports need

- tickets.answered_at: when the ticket was first taken by an agent (accepted, assigned); waiting time to
  answer is answered_at - queued_at (ASA, service level);
- tickets.abandoned_at: when the ticket left its queue unanswered (solved or closed while waiting);
- tickets.sla_paused_at: while pending on the customer, when the pause began (the SLA clocks stop);
- tickets.first_response_breached_at, resolution_breached_at: when a breach was announced (once each);
- queues.sla_policies: first-response and resolution targets per priority ({"urgent": {...}});
- queues.service_level_seconds, service_level_target, wait_alert_seconds: the wallboard's service level
  threshold T, its target share (percent) and the longest-wait alert threshold.

Revision ID: supervisor_wallboard_sla
Revises: 0009_audit_log
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db

revision: str = "supervisor_wallboard_sla"
down_revision: str | None = "0009_audit_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TICKET_TIMES = ("answered_at", "abandoned_at", "sla_paused_at", "first_response_breached_at", "resolution_breached_at")


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        for name in _TICKET_TIMES:
            batch.add_column(sa.Column(name, hub.db.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("queues") as batch:
        batch.add_column(sa.Column("sla_policies", hub.db.JSONType, nullable=True))
        batch.add_column(sa.Column("service_level_seconds", sa.Integer(), nullable=False, server_default="60"))
        batch.add_column(sa.Column("service_level_target", sa.Integer(), nullable=False, server_default="80"))
        batch.add_column(sa.Column("wait_alert_seconds", sa.Integer(), nullable=False, server_default="300"))
    # The reports read tickets by when they were created, answered and solved.
    op.create_index("ix_tickets_created_at", "tickets", ["created_at"])
    op.create_index("ix_tickets_answered_at", "tickets", ["answered_at"])
    op.create_index("ix_tickets_solved_at", "tickets", ["solved_at"])


def downgrade() -> None:
    op.drop_index("ix_tickets_solved_at", table_name="tickets")
    op.drop_index("ix_tickets_answered_at", table_name="tickets")
    op.drop_index("ix_tickets_created_at", table_name="tickets")
    with op.batch_alter_table("queues") as batch:
        for name in ("wait_alert_seconds", "service_level_target", "service_level_seconds", "sla_policies"):
            batch.drop_column(name)
    with op.batch_alter_table("tickets") as batch:
        for name in reversed(_TICKET_TIMES):
            batch.drop_column(name)
