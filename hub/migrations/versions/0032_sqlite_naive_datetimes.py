"""SQLite: datetimes written with a "+00:00" suffix are rewritten as SQLAlchemy writes them (naive UTC text)

Before, statements sent to the driver directly (``hub.db.fast``) bound their parameters without the columns'
bind processors, so an aware datetime reached sqlite3 as is and was stored as ``2026-12-07 10:00:00.000000+00:00``
where SQLAlchemy stores ``2026-12-07 10:00:00.000000``: an equality comparison through SQLAlchemy missed such a
row (reading it back was right). Every datetime the hub writes is UTC, so the suffix is always "+00:00"; a row
with another offset is left as it is. PostgreSQL stores timestamps, not text: nothing to do there.

Revision ID: sqlite_naive_datetimes
Revises: social_reply_parts_id_text
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "sqlite_naive_datetimes"
down_revision: str | None = "social_reply_parts_id_text"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SUFFIX = "+00:00"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    inspector = sa.inspect(bind)
    quote = bind.dialect.identifier_preparer.quote
    for table in inspector.get_table_names():
        for column in inspector.get_columns(table):
            if not isinstance(column["type"], sa.DateTime):
                continue
            t, c = quote(table), quote(column["name"])
            bind.execute(
                sa.text(f"UPDATE {t} SET {c} = substr({c}, 1, length({c}) - :n) WHERE {c} LIKE :pattern"),
                {"n": len(SUFFIX), "pattern": f"%{SUFFIX}"},
            )


def downgrade() -> None:
    """Nothing to undo: the rows read back the same either way."""
