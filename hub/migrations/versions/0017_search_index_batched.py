"""ticket search on SQLite: the FTS5 indexes filled once per transaction, not by a trigger per inserted row

A row trigger made every stored message pay FTS5's per-statement cost (about 13 µs of CPU each, against under 2
for the same rows indexed by one INSERT ... SELECT at the end of a 250-message batch), which put ingest on
SQLite a quarter slower. The insert triggers go; ``search_index_progress`` keeps, per table, the highest id
indexed; ``ticketing.search_index`` indexes the rows above it in batches, and a search first indexes what waits.
The delete and update triggers stay, for indexed rows only, and a delete keeps the invariant that makes the mark
safe: no row above it is indexed, and every row at or below it is (SQLite gives a new row the highest id plus
one, so a delete of the highest rows lowers the mark with them).

Revision ID: search_index_batched
Revises: kb2_embeddings
"""

from collections.abc import Sequence

from alembic import op

revision: str = "search_index_batched"
down_revision: str | None = "kb2_embeddings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table -> the columns its FTS5 index holds
_INDEXED = {"messages": ("subject", "text"), "tickets": ("subject",)}


def _mark(table: str) -> str:
    return f"(SELECT upto FROM search_index_progress WHERE name = '{table}')"


def _triggers(table: str) -> list[str]:
    cols = _INDEXED[table]
    names, old, new = ", ".join(cols), ", ".join(f"old.{c}" for c in cols), ", ".join(f"new.{c}" for c in cols)
    highest = f"(SELECT coalesce(max(id), 0) FROM {table})"
    return [
        f"""CREATE TRIGGER {table}_fts_delete AFTER DELETE ON {table} BEGIN
            INSERT INTO {table}_fts({table}_fts, rowid, {names})
                SELECT 'delete', old.id, {old} WHERE old.id <= {_mark(table)};
            UPDATE search_index_progress SET upto = {highest} WHERE name = '{table}' AND upto > {highest};
        END""",
        f"""CREATE TRIGGER {table}_fts_update AFTER UPDATE OF {names} ON {table}
            WHEN old.id <= {_mark(table)} BEGIN
            INSERT INTO {table}_fts({table}_fts, rowid, {names}) VALUES ('delete', old.id, {old});
            INSERT INTO {table}_fts(rowid, {names}) VALUES (new.id, {new});
        END""",
    ]


def _row_triggers(table: str) -> list[str]:
    """The revision before's: every insert, delete and change of the indexed text, row by row."""
    cols = _INDEXED[table]
    names, old, new = ", ".join(cols), ", ".join(f"old.{c}" for c in cols), ", ".join(f"new.{c}" for c in cols)
    return [
        f"""CREATE TRIGGER {table}_fts_insert AFTER INSERT ON {table} BEGIN
            INSERT INTO {table}_fts(rowid, {names}) VALUES (new.id, {new});
        END""",
        f"""CREATE TRIGGER {table}_fts_delete AFTER DELETE ON {table} BEGIN
            INSERT INTO {table}_fts({table}_fts, rowid, {names}) VALUES ('delete', old.id, {old});
        END""",
        f"""CREATE TRIGGER {table}_fts_update AFTER UPDATE OF {names} ON {table} BEGIN
            INSERT INTO {table}_fts({table}_fts, rowid, {names}) VALUES ('delete', old.id, {old});
            INSERT INTO {table}_fts(rowid, {names}) VALUES (new.id, {new});
        END""",
    ]


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return  # PostgreSQL's stored tsvector costs ingest nothing measurable (bench.ingest, within noise)
    op.execute("CREATE TABLE search_index_progress (name VARCHAR(20) NOT NULL PRIMARY KEY, upto INTEGER NOT NULL)")
    for table in _INDEXED:
        # Every row is indexed by now (the triggers being replaced kept the index in step).
        op.execute(
            f"INSERT INTO search_index_progress (name, upto) SELECT '{table}', coalesce(max(id), 0) FROM {table}"
        )
        for event in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER {table}_fts_{event}")
        for statement in _triggers(table):
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table, cols in _INDEXED.items():
        names = ", ".join(cols)
        # Rows stored since the last indexing, then the row triggers back.
        op.execute(f"INSERT INTO {table}_fts(rowid, {names}) SELECT id, {names} FROM {table} WHERE id > {_mark(table)}")
        for event in ("delete", "update"):
            op.execute(f"DROP TRIGGER {table}_fts_{event}")
        for statement in _row_triggers(table):
            op.execute(statement)
    op.execute("DROP TABLE search_index_progress")
