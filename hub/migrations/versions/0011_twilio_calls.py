"""twilio: calls by CallSid (the IVR's state between webhooks), numbers and their flows, messages sent

Revision ID: twilio_calls
Revises: supervisor_wallboard_sla
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db

revision: str = "twilio_calls"
down_revision: str | None = "supervisor_wallboard_sla"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "twilio_calls",
        sa.Column("call_sid", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=20), nullable=False),
        sa.Column("caller", sa.String(length=64), nullable=False),
        sa.Column("called", sa.String(length=64), nullable=False),
        sa.Column("flow", sa.String(length=100), nullable=False),
        sa.Column("state", hub.db.JSONType, nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("queue", sa.String(length=100), nullable=True),
        sa.Column("outcome", sa.String(length=30), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("waiting_since", hub.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("answered_at", hub.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("answered_by", sa.Integer(), nullable=True),
        sa.Column("ended_at", hub.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("duration_seconds", sa.Integer(), nullable=True),
        sa.Column("recording_sid", sa.String(length=64), nullable=True),
        sa.Column("recording_url", sa.String(length=2000), nullable=True),
        sa.Column("last_request", sa.String(length=64), nullable=True),
        sa.Column("last_twiml", sa.Text(), nullable=True),
        sa.Column("statuses_seen", hub.db.JSONType, nullable=False),
        sa.Column("created_at", hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("call_sid"),
    )
    op.create_index("ix_twilio_calls_ticket_id", "twilio_calls", ["ticket_id"])
    op.create_index("ix_twilio_calls_queue_waiting", "twilio_calls", ["queue", "waiting_since"])
    op.create_table(
        "twilio_numbers",
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("flow", sa.String(length=100), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("created_at", hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("number"),
    )
    op.create_table(
        "twilio_messages",
        sa.Column("message_sid", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("statuses_seen", hub.db.JSONType, nullable=False),
        sa.Column("created_at", hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("message_sid"),
    )
    op.create_index("ix_twilio_messages_message_id", "twilio_messages", ["message_id"])


def downgrade() -> None:
    op.drop_table("twilio_messages")
    op.drop_table("twilio_numbers")
    op.drop_index("ix_twilio_calls_queue_waiting", table_name="twilio_calls")
    op.drop_index("ix_twilio_calls_ticket_id", table_name="twilio_calls")
    op.drop_table("twilio_calls")
