"""merge the email, webchat and routing branches into one history

The email, routing and webchat migrations were written side by side, each on top of 0001, so the history had
three heads. This revision changes nothing in the schema; later migrations build on it alone.

Revision ID: 0006_merge_heads
Revises: 0002_email, 0004_webchat, 0005_ticket_indexes
"""

from collections.abc import Sequence

revision: str = "0006_merge_heads"
down_revision: str | Sequence[str] | None = ("0002_email", "0004_webchat", "0005_ticket_indexes")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
