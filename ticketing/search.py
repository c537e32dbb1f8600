"""Ticket search for agents: full text over messages (subject and text) and ticket subjects, by number, and
filtered by status, contact, tag and channel, within the tickets the agent may see.

The full-text indexes are made by migration ``workspace_ticket_search``: on SQLite FTS5 tables
(``messages_fts``, ``tickets_fts``, filled once per transaction by ``ticketing.search_index``), on PostgreSQL
stored 'simple' tsvector columns (``search_vector``) with GIN indexes. Both fold diacritics: FTS5's tokenizer
does, and on PostgreSQL the columns are built from the text folded by ``switchboard_fold`` (migration
``ticket_search_folded``), the query's words by ``fold``, the same table, so "jose" finds "José" and "josé"
finds "Jose" on either database.
Only the query's words reach them, letters and digits only, each one quoted for FTS5 and ANDed
(the last also as a prefix: it may be half typed); nothing else of the query is ever parsed as FTS5 or tsquery
syntax, so quotes, operators, brackets or emoji in a query are just not searched for. Matches are read newest
first (FTS5 walks its index in rowid order; a LIMIT stops it), grouped by ticket.

Highlights are built here, the same on both databases: the text around the first match, HTML-escaped, with
matched words wrapped in ``<mark>``; nothing else in them is markup.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from sqlalchemy import column, func, select, table, text
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.folding import fold
from hub.principals import Principal
from hub.runtime import Runtime
from ticketing.models import TicketRead
from ticketing.search_index import catch_up
from ticketing.tables import messages, tickets
from ticketing.workspace import scope, tag_condition

# What the migration makes that no model declares (tests/hub/test_cli.py leaves them out of its comparison).
TICKET_SEARCH_TABLES = frozenset(
    f"{table}_fts{suffix}"
    for table in ("messages", "tickets")
    for suffix in ("", "_data", "_idx", "_docsize", "_config")
) | {"search_index_progress"}
TICKET_SEARCH_INDEXES = frozenset({"ix_messages_search", "ix_tickets_search"})
TICKET_SEARCH_COLUMNS = frozenset({("messages", "search_vector"), ("tickets", "search_vector")})

MAX_QUERY_CHARS = 200
MAX_WORDS = 8
MAX_WORD_CHARS = 64
CANDIDATES = 200  # newest matching messages read per search, grouped into tickets
SNIPPET_CHARS = 160
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_NUMBER = re.compile(r"^\s*#?(\d{1,9})\s*$")
# PostgreSQL: the migration's stored tsvector columns (no model declares them).
_PG_MESSAGE_VECTOR = "messages.search_vector"
_PG_TICKET_VECTOR = "tickets.search_vector"
_MESSAGES_FTS = table("messages_fts", column("rowid"))
_TICKETS_FTS = table("tickets_fts", column("rowid"))


class TicketHit(BaseModel):
    """One ticket found: the ticket, and HTML-safe highlights (escaped text, matches in ``<mark>``)."""

    ticket: TicketRead
    subject_html: str
    snippet_html: str
    message_id: int | None = None
    matched_by: str  # number, subject, message or filters


class TicketSearchResult(BaseModel):
    query: str
    words: list[str]
    items: list[TicketHit]


def query_words(query: str) -> list[str]:
    """The words searched for: letters and digits, case-folded, at most ``MAX_WORDS`` of them."""
    found = [w[:MAX_WORD_CHARS] for w in _WORD.findall(query.casefold())]
    return list(dict.fromkeys(found))[:MAX_WORDS]


def _fts5_match(words: Sequence[str]) -> str:
    quoted = ['"' + w.replace('"', '""') + '"' for w in words]
    quoted[-1] += "*"  # the last word may be half typed
    return " ".join(quoted)


def _tsquery(words: Sequence[str]) -> str:
    folded = [fold(w) for w in words]  # as the stored vectors are (``switchboard_fold``)
    return " & ".join([*folded[:-1], folded[-1] + ":*"])


def highlight(plain: str, words: Sequence[str], length: int | None = None) -> str:
    """``plain`` (or, with ``length``, the part around the first match) HTML-escaped, each word found (the last
    also as a prefix; case and accents aside, as the search) in ``<mark>``."""
    if not words:
        return html.escape(plain[:length] if length else plain)
    alternatives = "|".join(re.escape(fold(w)) for w in sorted(words, key=len, reverse=True))
    pattern = re.compile(rf"(?<![^\W_])(?:{alternatives})[^\W_]*", re.IGNORECASE)
    if length is not None and len(plain) > length:
        first = pattern.search(fold(plain))
        start = max(0, (first.start() if first else 0) - length // 4)
        piece = plain[start : start + length]
        plain = ("…" if start else "") + piece + ("…" if start + length < len(plain) else "")
    out, at = [], 0
    for m in pattern.finditer(fold(plain)):  # ``fold`` keeps every character's place
        out.append(html.escape(plain[at : m.start()]))
        out.append(f"<mark>{html.escape(plain[m.start() : m.end()])}</mark>")
        at = m.end()
    out.append(html.escape(plain[at:]))
    return "".join(out)


async def _message_hits(conn: AsyncConnection, words: Sequence[str], conds: Sequence[Any]) -> list[tuple[int, int]]:
    """(message id, ticket id) of the newest messages matching every word, on tickets meeting ``conds``."""
    if conn.dialect.name == "sqlite":
        fts = text("messages_fts MATCH :match").bindparams(match=_fts5_match(words))
        stmt = (
            select(messages.c.id, messages.c.ticket_id)
            .select_from(
                _MESSAGES_FTS.join(messages, messages.c.id == _MESSAGES_FTS.c.rowid).join(
                    tickets, tickets.c.id == messages.c.ticket_id
                )
            )
            .where(fts, *conds)
            .order_by(_MESSAGES_FTS.c.rowid.desc())
            .limit(CANDIDATES)
        )
    else:
        fts = text(f"{_PG_MESSAGE_VECTOR} @@ to_tsquery('simple', :tsq)").bindparams(tsq=_tsquery(words))
        stmt = (
            select(messages.c.id, messages.c.ticket_id)
            .join(tickets, tickets.c.id == messages.c.ticket_id)
            .where(fts, *conds)
            .order_by(messages.c.id.desc())
            .limit(CANDIDATES)
        )
    return [(r[0], r[1]) for r in await conn.execute(stmt)]


async def _subject_hits(conn: AsyncConnection, words: Sequence[str], conds: Sequence[Any], limit: int) -> list[int]:
    """Tickets whose subject matches every word, newest first."""
    if conn.dialect.name == "sqlite":
        fts = text("tickets_fts MATCH :tmatch").bindparams(tmatch=_fts5_match(words))
        stmt = (
            select(tickets.c.id)
            .select_from(_TICKETS_FTS.join(tickets, tickets.c.id == _TICKETS_FTS.c.rowid))
            .where(fts, *conds)
            .order_by(_TICKETS_FTS.c.rowid.desc())
            .limit(limit)
        )
    else:
        fts = text(f"{_PG_TICKET_VECTOR} @@ to_tsquery('simple', :ttsq)").bindparams(ttsq=_tsquery(words))
        stmt = select(tickets.c.id).where(fts, *conds).order_by(tickets.c.id.desc()).limit(limit)
    return [r[0] for r in await conn.execute(stmt)]


async def search_tickets(
    rt: Runtime,
    *,
    principal: Principal,
    query: str = "",
    status: Sequence[str] = (),
    contact_id: int | None = None,
    tag: str | None = None,
    channel: str | None = None,
    limit: int = 20,
) -> TicketSearchResult:
    """Tickets the principal may see matching ``query`` (its words in a subject or a message, or a ticket
    number: ``#12`` or ``12``) and the filters; with no query, the filters alone, newest activity first; a query
    with no word or number in it finds nothing."""
    query = query[:MAX_QUERY_CHARS]
    words = query_words(query)
    number = _NUMBER.match(query)
    if words:
        await catch_up(rt)
    # Each search is planned for its own words (a generic plan, made without knowing them, walked every message
    # backwards for a rare word where the GIN index answers at once): the engine's connections plan every
    # execution (``plan_cache_mode``, ``hub.db.engine``). A ``SET LOCAL`` here cost a round trip and did nothing
    # on the reads' autocommit connections.
    async with rt.read() as conn:
        conds: list[Any] = [scope(principal)]
        if status:
            conds.append(tickets.c.status.in_(list(status)))
        if contact_id is not None:
            conds.append(tickets.c.contact_id == contact_id)
        if tag:
            conds.append(tag_condition(conn, tag.strip().lower()))
        if channel:
            conds.append(tickets.c.channel == channel)
        found: dict[int, tuple[str, int | None]] = {}  # ticket id -> (matched by, message id)
        if number:
            for r in await conn.execute(select(tickets.c.id).where(tickets.c.id == int(number.group(1)), *conds)):
                found[r[0]] = ("number", None)
        if words:
            for ticket_id in await _subject_hits(conn, words, conds, limit):
                found.setdefault(ticket_id, ("subject", None))
            for message_id, ticket_id in await _message_hits(conn, words, conds):
                if len(found) >= limit and ticket_id not in found:
                    continue
                kind, newest = found.get(ticket_id, ("message", None))
                if newest is None:
                    found[ticket_id] = (kind, message_id)  # the newest matching message of the ticket
        elif not number and not query.strip():
            # No query: the filters alone. A query with nothing searchable in it (only symbols or emoji) finds
            # nothing, rather than every ticket.
            activity = func.coalesce(tickets.c.last_message_at, tickets.c.created_at)
            for r in await conn.execute(
                select(tickets.c.id).where(*conds).order_by(activity.desc(), tickets.c.id.desc()).limit(limit)
            ):
                found[r[0]] = ("filters", None)
        ids = list(found)[:limit]
        rows = {r.id: r for r in await conn.execute(select(tickets).where(tickets.c.id.in_(ids)))} if ids else {}
        wanted = [mid for _, mid in (found[i] for i in ids) if mid is not None]
        texts = (
            {
                r.id: r.text
                for r in await conn.execute(select(messages.c.id, messages.c.text).where(messages.c.id.in_(wanted)))
            }
            if wanted
            else {}
        )
    items = []
    for ticket_id in ids:
        row = rows.get(ticket_id)
        if row is None:
            continue
        kind, hit = found[ticket_id]
        items.append(
            TicketHit(
                ticket=TicketRead.model_validate(row._mapping),
                subject_html=highlight(row.subject or "", words),
                snippet_html=highlight(texts.get(hit, "") if hit else "", words, SNIPPET_CHARS),
                message_id=hit,
                matched_by=kind,
            )
        )
    return TicketSearchResult(query=query, words=words, items=items)
