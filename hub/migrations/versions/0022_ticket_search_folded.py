"""ticket search on PostgreSQL folds diacritics, as FTS5 does on SQLite ("Jose" finds "José"): the stored tsvector
columns are built from the text with its accented Latin letters replaced by their base letters

Revision ID: ticket_search_folded
Revises: report_rollup

PostgreSQL's ``unaccent`` is an extension (CREATE EXTENSION needs rights a production role often lacks) and is not
IMMUTABLE, so no generated column may use it. Instead ``switchboard_fold(text)``, a plain SQL function (IMMUTABLE:
``translate`` with a fixed table), replaces each accented Latin letter that Unicode decomposes into an ASCII letter
and combining marks (``é`` -> ``e``, ``Ñ`` -> ``N``, ``ơ`` -> ``o``) by that letter; text that is all ASCII is
returned as it is without looking up each character. The table is computed here, frozen with the migration;
``ticketing.search.fold`` folds the query's words with the same table (a test checks the two agree).

The generated columns are dropped and added again (PostgreSQL 15 cannot change a generated column's expression):
this rewrites ``messages`` and ``tickets`` once and rebuilds their GIN indexes, now with a small pending list
(see ``_PENDING_LIST_KB``). SQLite: nothing to do.
"""

import unicodedata
from collections.abc import Sequence
from itertools import chain

from alembic import op

revision: str = "ticket_search_folded"
down_revision: str | None = "report_rollup"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _fold_table() -> tuple[str, str]:
    src, dst = [], []
    for cp in chain(range(0xC0, 0x250), range(0x1E00, 0x1F00)):
        ch = chr(cp)
        parts = unicodedata.normalize("NFD", ch)
        base, marks = parts[0], parts[1:]
        if marks and base.isascii() and all(unicodedata.combining(m) for m in marks):
            src.append(ch)
            dst.append(base)
    return "".join(src), "".join(dst)


_FROM, _TO = _fold_table()
_FOLD_FUNCTION = f"""CREATE OR REPLACE FUNCTION switchboard_fold(t text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $fold$ SELECT CASE WHEN octet_length(t) = char_length(t) THEN t
        ELSE translate(t, '{_FROM}', '{_TO}') END $fold$"""
_FOLDED = {
    "messages": "to_tsvector('simple'::regconfig, switchboard_fold(coalesce(subject, '') || ' ' || text))",
    "tickets": "to_tsvector('simple'::regconfig, switchboard_fold(subject))",
}
# As migration ``workspace_ticket_search`` made them.
_UNFOLDED = {
    "messages": "to_tsvector('simple'::regconfig, coalesce(subject, '') || ' ' || text)",
    "tickets": "to_tsvector('simple'::regconfig, subject)",
}


# GIN's pending list (new entries not yet merged into the index) is read in full by every search: at its default
# 4 MB, filled by ingest, it cost each search 3-8 ms (EXPLAIN ANALYZE: 442 buffers for a word found nowhere, at
# 200,000 messages). Kept small, it is merged into the index more often, in smaller pieces. No rights needed
# beyond the table's: an index storage parameter.
_PENDING_LIST_KB = 256


def _vectors(expressions: dict[str, str]) -> None:
    for table, expression in expressions.items():
        op.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS search_vector")  # its index goes with it
        op.execute(f"ALTER TABLE {table} ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ({expression}) STORED")
        op.execute(
            f"CREATE INDEX ix_{table}_search ON {table} USING gin (search_vector) "
            f"WITH (gin_pending_list_limit = {_PENDING_LIST_KB})"
        )
        op.execute(f"ANALYZE {table}")  # the planner chooses between the index and a walk by the column's words


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    assert "'" not in _FROM + _TO and ":" not in _FROM + _TO
    op.execute(_FOLD_FUNCTION)
    _vectors(_FOLDED)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _vectors(_UNFOLDED)
    op.execute("DROP FUNCTION IF EXISTS switchboard_fold(text)")
