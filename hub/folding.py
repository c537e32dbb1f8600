"""Accent folding, the same in Python and in SQL on both databases: ``fold`` replaces each accented Latin letter
that Unicode decomposes into an ASCII letter and combining marks (``é`` -> ``e``, ``Ñ`` -> ``N``, ``ơ`` -> ``o``)
by that letter, one character for one (so a match found in the folded text is at the same place in the text).

In SQL the function is ``switchboard_fold(text)``: on PostgreSQL a plain SQL function made by migration
``ticket_search_folded`` (``translate`` with this table, frozen in the migration; a test checks they agree), on
SQLite this module's ``fold``, registered on every connection (``register_sqlite``)."""

from __future__ import annotations

import unicodedata
from itertools import chain
from typing import Any

SQL_FUNCTION = "switchboard_fold"


def _fold_table() -> dict[int, int]:
    table = {}
    for cp in chain(range(0xC0, 0x250), range(0x1E00, 0x1F00)):
        parts = unicodedata.normalize("NFD", chr(cp))
        base, marks = parts[0], parts[1:]
        if marks and base.isascii() and all(unicodedata.combining(m) for m in marks):
            table[cp] = ord(base)
    return table


FOLD = _fold_table()


def fold(text: str) -> str:
    """``text`` with accented Latin letters replaced by their base letters, one character for one."""
    return text if text.isascii() else text.translate(FOLD)


def _sql_fold(value: object) -> object:
    return fold(value) if isinstance(value, str) else value  # NULL stays NULL, as PostgreSQL's (STRICT)


def register_sqlite(dbapi_connection: Any) -> None:
    """Make ``switchboard_fold`` callable in SQL on this SQLite connection (deterministic: the planner may reuse
    its results, as PostgreSQL may its IMMUTABLE function's)."""
    dbapi_connection.create_function(SQL_FUNCTION, 1, _sql_fold, deterministic=True)
