"""message_files: which messages carry which stored files, so a file is served only to who may see one of them

Until now a file's hash was enough to read it. The rows are filled from the stored messages' attachment
metadata (``attachments[].sha256``) and their metadata's file keys (an email's ``raw_sha256``), as the core
records them for new messages (``hub.files.carried_files``).

Revision ID: files_scope_message_files
Revises: twilio_calls
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db
from hub.files import carried_files

revision: str = "files_scope_message_files"
down_revision: str | None = "twilio_calls"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 2000


def upgrade() -> None:
    message_files = op.create_table(
        "message_files",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"]),
        sa.PrimaryKeyConstraint("sha256", "message_id"),
    )
    messages = sa.table(
        "messages",
        sa.column("id", sa.Integer()),
        sa.column("attachments", hub.db.JSONType),
        sa.column("meta", hub.db.JSONType),
    )
    bind = op.get_bind()
    after = 0
    while True:
        rows = bind.execute(
            sa.select(messages.c.id, messages.c.attachments, messages.c.meta)
            .where(messages.c.id > after)
            .order_by(messages.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        after = rows[-1].id
        found = [
            {"sha256": sha, "message_id": r.id}
            for r in rows
            for sha in sorted(
                carried_files(
                    r.attachments if isinstance(r.attachments, list) else None,
                    r.meta if isinstance(r.meta, dict) else None,
                )
            )
        ]
        if found:
            op.bulk_insert(message_files, found)


def downgrade() -> None:
    op.drop_table("message_files")
