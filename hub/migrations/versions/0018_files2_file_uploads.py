"""file_uploads: which conversation each customer upload was made in, so a message may carry only its own files

Until now a chat visitor could send a message naming any stored file's hash, and so read it through their own
conversation. A message now carries only files uploaded in its conversation or already carried by one of its
messages. A new table: nothing to fill from stored data (files already sent are in ``message_files``).

Revision ID: files2_file_uploads
Revises: search_index_batched
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db

revision: str = "files2_file_uploads"
down_revision: str | None = "search_index_batched"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "file_uploads",
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("thread_key", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("channel", "thread_key", "sha256"),
    )


def downgrade() -> None:
    op.drop_table("file_uploads")
