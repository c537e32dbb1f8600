"""reports: the seconds the abandoned waited, per rollup hour (the staffing forecast's patience, now read from
the rollup), and the queues whose service-level threshold changed, being counted again (report_recounts).
The rollup is emptied of its cursor so that the ``report-rollup`` job builds it again from the tickets with the
new column (until then reports and the forecast read the tickets directly).

Revision ID: report_recount
Revises: ticket_search_folded
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "report_recount"
down_revision: str | None = "ticket_search_folded"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("report_hours", sa.Column("abandon_wait_sum", sa.Float(), nullable=False, server_default="0"))
    op.create_table(
        "report_recounts",
        sa.Column("queue_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("next_ticket_id", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("queue_id"),
    )
    op.execute("DELETE FROM report_cursor")


def downgrade() -> None:
    op.drop_table("report_recounts")
    with op.batch_alter_table("report_hours") as batch:
        batch.drop_column("abandon_wait_sum")
