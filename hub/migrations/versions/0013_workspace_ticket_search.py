"""ticket search: full-text indexes over messages (subject and text) and ticket subjects (SQLite: FTS5 tables
kept by triggers; PostgreSQL: stored 'simple' tsvector columns with GIN indexes)

Revision ID: workspace_ticket_search
Revises: files_scope_message_files
"""

from collections.abc import Sequence

from alembic import op

revision: str = "workspace_ticket_search"
down_revision: str | None = "files_scope_message_files"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# External-content FTS5 tables: the text stays in messages and tickets; these triggers keep the index in step
# with every insert, change of the indexed text (an erase included) and delete, whoever makes them. No stemming
# (messages come in every language), diacritics folded, as PostgreSQL's 'simple' configuration nearly does.
_TOKENIZE = "tokenize='unicode61 remove_diacritics 2'"
_SQLITE = [
    f"""CREATE VIRTUAL TABLE messages_fts USING fts5(
        subject, text, content='messages', content_rowid='id', {_TOKENIZE})""",
    """CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts(rowid, subject, text) VALUES (new.id, new.subject, new.text);
    END""",
    """CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, subject, text) VALUES ('delete', old.id, old.subject, old.text);
    END""",
    """CREATE TRIGGER messages_fts_update AFTER UPDATE OF subject, text ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, subject, text) VALUES ('delete', old.id, old.subject, old.text);
        INSERT INTO messages_fts(rowid, subject, text) VALUES (new.id, new.subject, new.text);
    END""",
    "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
    f"""CREATE VIRTUAL TABLE tickets_fts USING fts5(subject, content='tickets', content_rowid='id', {_TOKENIZE})""",
    """CREATE TRIGGER tickets_fts_insert AFTER INSERT ON tickets BEGIN
        INSERT INTO tickets_fts(rowid, subject) VALUES (new.id, new.subject);
    END""",
    """CREATE TRIGGER tickets_fts_delete AFTER DELETE ON tickets BEGIN
        INSERT INTO tickets_fts(tickets_fts, rowid, subject) VALUES ('delete', old.id, old.subject);
    END""",
    """CREATE TRIGGER tickets_fts_update AFTER UPDATE OF subject ON tickets BEGIN
        INSERT INTO tickets_fts(tickets_fts, rowid, subject) VALUES ('delete', old.id, old.subject);
        INSERT INTO tickets_fts(rowid, subject) VALUES (new.id, new.subject);
    END""",
    "INSERT INTO tickets_fts(tickets_fts) VALUES ('rebuild')",
]
# PostgreSQL: the 'simple' tsvector of the searched text as a stored generated column, with a GIN index. Stored,
# not an expression index: a search for a common word walks the newest rows and tests each one's vector, which an
# expression index would recompute per row; and ANALYZE keeps statistics of a column's words, which lets the
# planner choose between the index (rare words) and that walk (common ones). Adding it rewrites the table once.
PG_MESSAGE_VECTOR = "to_tsvector('simple'::regconfig, coalesce(subject, '') || ' ' || text)"
PG_TICKET_VECTOR = "to_tsvector('simple'::regconfig, subject)"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in _SQLITE:
            op.execute(statement)
    else:
        op.execute(
            f"ALTER TABLE messages ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ({PG_MESSAGE_VECTOR}) STORED"
        )
        op.execute("CREATE INDEX ix_messages_search ON messages USING gin (search_vector)")
        op.execute(
            f"ALTER TABLE tickets ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ({PG_TICKET_VECTOR}) STORED"
        )
        op.execute("CREATE INDEX ix_tickets_search ON tickets USING gin (search_vector)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in ("messages", "tickets"):
            for event in ("insert", "delete", "update"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_fts_{event}")
            op.execute(f"DROP TABLE IF EXISTS {table}_fts")
    else:
        for table in ("messages", "tickets"):
            op.execute(f"DROP INDEX IF EXISTS ix_{table}_search")
            op.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS search_vector")
