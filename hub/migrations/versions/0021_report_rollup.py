"""reports: an hourly rollup per queue and channel kept from the event log (report_hours), what each ticket
added to it (report_tickets) and the last event taken in (report_cursor). New tables only: the rollup is built
from the tickets by the first run of the ``report-rollup`` job (ticketing.report_rollup), not here.

Revision ID: report_rollup
Revises: message_templates
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db

revision: str = "report_rollup"
down_revision: str | None = "message_templates"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INTS = ("volume", "first_responses", "rated", "rating_sum", "answered", "answered_within", "abandoned",
         "abandoned_after", "solved", "handled")  # fmt: skip
_FLOATS = ("first_response_sum", "wait_sum", "handle_sum", "resolution_sum")


def upgrade() -> None:
    op.create_table(
        "report_hours",
        sa.Column("hour", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("queue_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in _INTS),
        *(sa.Column(name, sa.Float(), nullable=False) for name in _FLOATS),
        sa.PrimaryKeyConstraint("hour", "queue_id", "channel"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "report_tickets",
        sa.Column("ticket_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("cells", hub.db.JSONType, nullable=False),
        sa.PrimaryKeyConstraint("ticket_id"),
    )
    op.create_table(
        "report_cursor",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("report_cursor")
    op.drop_table("report_tickets")
    op.drop_table("report_hours")
