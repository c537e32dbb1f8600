"""One worker per mailbox: IMAP in through aioimaplib, exactly once.

The session: connect, log in, select the folder (its UIDVALIDITY), catch up on every UID above the last one
committed, then wait — IDLE when the server offers it, polling otherwise — and catch up again. Any error ends
the session; the worker reconnects with exponential backoff (capped), so a failing mailbox only ever
retries itself. Every aioimaplib call runs under ``asyncio.timeout``.

Exactly once. ``email_mailbox_state`` holds (UIDVALIDITY, last_uid) per mailbox with the invariant that every
UID up to ``last_uid`` is committed, as a message or in quarantine. A fetched chunk is handled so:

1. parse every mail (in a thread); a mail that cannot be parsed goes to quarantine at once (its own
   commit, idempotent on the raw bytes' hash) — it is durable before any later UID can be marked done;
2. submit the parsed mails to ingest in UID order; each carries an ``also`` that moves ``last_uid`` from
   the previous submitted UID to its own *in the same transaction as the message*, and only if the state
   still is at that previous UID. Ingest commits in submission order, so the state only ever covers a
   prefix of committed mails: a mail whose ingest failed stops the chain until it is quarantined;
3. quarantine what ingest refused, then move ``last_uid`` to the chunk's highest UID.

A crash at any point leaves ``last_uid`` at or below the first mail not yet durable; after a restart the
worker fetches from there, and ingest's uniqueness on the Message-ID (generated from the bytes when
missing) stores each mail once. A changed UIDVALIDITY restarts from UID 1 and relies on the same dedupe.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import re
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aioimaplib
from sqlalchemy import select, update

from channels.email.models import QT, S
from channels.email.parse import MailboxInfo, MailParseError, ParsedMail, parse_mail
from hub.config import MailboxSettings
from hub.db import utcnow
from hub.files import FileStore
from hub.messages import Ingest, IngestResult
from hub.runtime import Runtime
from hub.workers import cancel_and_wait, raise_if_cancelled

log = logging.getLogger(__name__)

_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_FETCH_UID = re.compile(rb"UID (\d+)")
_FETCH_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
# Bytes of mail fetched in one round trip at most (a single bigger mail is fetched alone).
FETCH_BUDGET_BYTES = 32 * 1024 * 1024


class ImapError(Exception):
    """The IMAP server refused or misbehaved; the session ends and the worker reconnects."""


OnIngested = Callable[[MailboxSettings, ParsedMail, IngestResult], None]


@dataclass(slots=True)
class Fetched:
    uid: int
    raw: bytes
    too_large: int | None = None  # the real size, when only the header was fetched


class MailboxWorker:
    """Runs one mailbox until cancelled."""

    def __init__(
        self,
        box: MailboxSettings,
        *,
        rt: Runtime,
        ingest: Ingest,
        store: FileStore,
        own_addresses: Callable[[], Sequence[str]],
        on_ingested: OnIngested | None = None,
    ) -> None:
        self.box = box
        self.rt = rt
        self.ingest = ingest
        self.store = store
        self.own_addresses = own_addresses
        self.on_ingested = on_ingested
        s = rt.settings
        self.timeout = s.email_timeout_seconds
        self.batch = max(1, s.email_fetch_batch)
        self.connected = False
        self.last_error: str | None = None
        self.idle_supported: bool | None = None
        self._selected = False
        # Set each time a catch-up finishes (tests and the bench wait on it).
        self.caught_up = asyncio.Event()

    # --- the session loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        delay = 1.0
        while True:
            had_connected = False
            try:
                had_connected = await self._watched_session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"[:500]
                log.warning("mailbox %s: %s; reconnecting in %.0f s", self.box.name, self.last_error, delay)
            self.connected = False
            if had_connected:
                delay = 1.0
            await asyncio.sleep(delay * (0.8 + 0.4 * random.random()))
            delay = min(delay * 2, self.rt.settings.email_reconnect_max_seconds)

    async def _watched_session(self) -> bool:
        """One session; ended at once when the connection drops (aioimaplib would otherwise leave a pending
        command, or IDLE, waiting for its timeout). Whether it got as far as selecting the folder."""
        lost = asyncio.Event()
        session = asyncio.create_task(self._session(lost), name=f"imap-session-{self.box.name}")
        watcher = asyncio.create_task(lost.wait())
        self._selected = False
        try:
            await asyncio.wait({session, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if session.done():
                session.result()
            else:
                raise ImapError("the connection to the IMAP server was lost")
        finally:
            for task in (watcher, session):
                # A session that ended by itself has been dealt with above (its error is the caller's to log
                # and retry); only one still running is stopped.
                if not task.done():
                    await cancel_and_wait(task)
        return self._selected

    def _client(self, lost: asyncio.Event) -> aioimaplib.IMAP4:
        context = ssl.create_default_context() if self.box.imap_tls else None
        return aioimaplib.IMAP4(
            host=self.box.imap_host,
            port=self.box.imap_port,
            timeout=self.timeout,
            conn_lost_cb=lambda _exc: lost.set(),
            ssl_context=context,
        )

    async def _session(self, lost: asyncio.Event) -> None:
        client = self._client(lost)
        try:
            async with asyncio.timeout(self.timeout):
                await client.wait_hello_from_server()
                response = await client.login(self.box.username, self.box.password.get_secret_value())
            if response.result != "OK":
                raise ImapError(f"login refused: {_text(response.lines)}")
            async with asyncio.timeout(self.timeout):
                response = await client.select(self.box.folder)
            if response.result != "OK":
                raise ImapError(f"cannot select {self.box.folder!r}: {_text(response.lines)}")
            found = _UIDVALIDITY.search(b" ".join(bytes(line) for line in response.lines))
            if not found:
                raise ImapError("the server sent no UIDVALIDITY")
            uidvalidity = int(found.group(1))
            last_uid = await self._load_state(uidvalidity)
            self.connected = True
            self._selected = True
            self.last_error = None
            self.idle_supported = client.has_capability("IDLE")
            while True:
                raise_if_cancelled()
                last_uid = await self._catch_up(client, uidvalidity, last_uid)
                self.caught_up.set()
                if self.idle_supported:
                    await self._idle(client, lost)
                else:
                    await asyncio.sleep(self.rt.settings.email_poll_seconds)
        finally:
            self.connected = False
            if not lost.is_set():
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2):
                        await client.logout()
            transport = client.protocol.transport if client.protocol else None
            if transport is not None:
                transport.close()

    async def _idle(self, client: aioimaplib.IMAP4, lost: asyncio.Event) -> None:
        """Wait until the server reports new mail, the IDLE period ends, or the connection drops."""
        idle_seconds = self.rt.settings.email_idle_seconds
        async with asyncio.timeout(self.timeout):
            idle = await client.idle_start(timeout=idle_seconds)
        try:
            async with asyncio.timeout(idle_seconds + self.timeout):
                while True:
                    push = await client.wait_server_push(timeout=idle_seconds + self.timeout)
                    raise_if_cancelled()
                    if isinstance(push, str):  # aioimaplib's end-of-IDLE-period marker
                        break
                    if any(bytes(line).startswith(b"BYE") for line in push):
                        lost.set()  # the server closes; nothing more to say to it
                        raise ImapError(f"the server ended the session: {_text(push)}")
                    if any(b"EXISTS" in bytes(line) for line in push):
                        break
        finally:
            if client.has_pending_idle() and not lost.is_set():
                client.idle_done()
                async with asyncio.timeout(self.timeout):
                    await idle

    # --- fetching ----------------------------------------------------------------------------------------

    async def _catch_up(self, client: aioimaplib.IMAP4, uidvalidity: int, last_uid: int) -> int:
        async with asyncio.timeout(self.timeout):
            response = await client.uid_search("UID", f"{last_uid + 1}:*", charset=None)
        if response.result != "OK":
            raise ImapError(f"UID SEARCH failed: {_text(response.lines)}")
        # "N:*" always matches the newest message, even below N: filter ourselves.
        uids = sorted({int(u) for u in bytes(response.lines[0]).split() if u.isdigit() and int(u) > last_uid})
        # Pipelined: while one chunk commits, the next is fetched and parsed. Chunks are bounded in count and
        # in bytes (sizes asked first), so a run of big mails never has to fit in memory at once.
        pending: _Chunk | None = None
        head = last_uid
        limit = self.rt.settings.email_max_message_bytes
        try:
            for start in range(0, len(uids), self.batch):
                sizes = await self._sizes(client, uids[start : start + self.batch])
                for uid_chunk in by_budget(sorted(sizes), sizes, FETCH_BUDGET_BYTES, limit):
                    fetched = await self._fetch(client, uid_chunk, sizes, limit)
                    chunk, head = await self._submit(uidvalidity, head, fetched, uid_chunk[-1])
                    if pending is not None:
                        last_uid = await self._finish(uidvalidity, last_uid, pending)
                    pending = chunk
        except Exception:
            if pending is not None:  # what was submitted still commits; keep its bookkeeping straight
                await self._finish(uidvalidity, last_uid, pending)
            raise
        if pending is not None:
            last_uid = await self._finish(uidvalidity, last_uid, pending)
        return last_uid

    async def _sizes(self, client: aioimaplib.IMAP4, uids: list[int]) -> dict[int, int]:
        """UID → size in bytes, for the UIDs that still exist."""
        async with asyncio.timeout(self.timeout):
            response = await client.uid("fetch", _uid_set(uids), "(UID RFC822.SIZE)")
        if response.result != "OK":
            raise ImapError(f"UID FETCH (sizes) failed: {_text(response.lines)}")
        wanted = set(uids)
        sizes = {}
        for line in response.lines:
            uid, size = _FETCH_UID.search(bytes(line)), _FETCH_SIZE.search(bytes(line))
            if uid and size and int(uid.group(1)) in wanted:
                sizes[int(uid.group(1))] = int(size.group(1))
        return sizes

    async def _fetch(
        self, client: aioimaplib.IMAP4, uids: list[int], sizes: dict[int, int], limit: int
    ) -> list[Fetched]:
        """The mails of ``uids``; of those over ``limit`` only the header (they go to quarantine)."""
        small = [u for u in uids if sizes.get(u, 0) <= limit]
        big = [u for u in uids if sizes.get(u, 0) > limit]
        out = await self._fetch_part(client, small, "BODY.PEEK[]") if small else {}
        headers = await self._fetch_part(client, big, "BODY.PEEK[HEADER]") if big else {}
        fetched = [Fetched(uid, raw) for uid, raw in out.items()]
        fetched += [Fetched(uid, raw, too_large=sizes[uid]) for uid, raw in headers.items()]
        missing = sorted(set(uids) - set(out) - set(headers))
        if missing:
            # Expunged since the sizes were asked is fine (nothing to ingest); a mail still there whose bytes
            # did not come is not: end the session and try again rather than move past it.
            still_there = await self._sizes(client, missing)
            if still_there:
                raise ImapError(f"the server sent no content for UIDs {sorted(still_there)[:10]}")
        return sorted(fetched, key=lambda f: f.uid)

    async def _fetch_part(self, client: aioimaplib.IMAP4, uids: list[int], part: str) -> dict[int, bytes]:
        async with asyncio.timeout(self.timeout * 4):
            response = await client.uid("fetch", _uid_set(uids), f"(UID {part})")
        if response.result != "OK":
            raise ImapError(f"UID FETCH failed: {_text(response.lines)}")
        wanted = set(uids)
        out: dict[int, bytes] = {}
        lines = response.lines
        for i, line in enumerate(lines):
            if not isinstance(line, bytes | bytearray) or i + 1 >= len(lines):
                continue
            literal = lines[i + 1]
            if isinstance(line, bytearray) or not isinstance(literal, bytearray) or b" FETCH " not in line:
                continue
            found = _FETCH_UID.search(line)
            if found is None and i + 2 < len(lines) and isinstance(lines[i + 2], bytes):
                found = _FETCH_UID.search(lines[i + 2])  # UID after the literal
            if found and int(found.group(1)) in wanted:
                out[int(found.group(1))] = bytes(literal)
        return out

    # --- exactly-once bookkeeping --------------------------------------------------------------------------

    async def _load_state(self, uidvalidity: int) -> int:
        name = self.box.name
        async with self.rt.db.begin() as conn:
            row = (await conn.execute(select(S).where(S.c.mailbox == name))).first()
            if row is None:
                await conn.execute(
                    self.rt.db.insert_ignore(S).values(
                        mailbox=name, uidvalidity=uidvalidity, last_uid=0, updated_at=utcnow()
                    )
                )
                row = (await conn.execute(select(S).where(S.c.mailbox == name))).one()
            if row.uidvalidity != uidvalidity:
                log.warning(
                    "mailbox %s: UIDVALIDITY changed from %s to %s; rescanning (duplicates are skipped)",
                    name,
                    row.uidvalidity,
                    uidvalidity,
                )
                await conn.execute(
                    update(S)
                    .where(S.c.mailbox == name)
                    .values(uidvalidity=uidvalidity, last_uid=0, updated_at=utcnow())
                )
                return 0
            return int(row.last_uid)

    def _advance(self, uidvalidity: int, previous: int, uid: int) -> Callable[[Any], Awaitable[None]]:
        name = self.box.name

        async def also(conn: Any) -> None:
            await conn.execute(
                update(S)
                .where(S.c.mailbox == name, S.c.uidvalidity == uidvalidity, S.c.last_uid == previous)
                .values(last_uid=uid, updated_at=utcnow())
            )

        return also

    async def _set_state(self, uidvalidity: int, uid: int) -> None:
        async with self.rt.db.begin() as conn:
            await conn.execute(
                update(S)
                .where(S.c.mailbox == self.box.name, S.c.uidvalidity == uidvalidity, S.c.last_uid < uid)
                .values(last_uid=uid, updated_at=utcnow())
            )

    async def quarantine(self, items: Sequence[tuple[int | None, bytes, str]]) -> None:
        """Keep mails that cannot become messages, with the reason; idempotent per (mailbox, raw bytes)."""
        rows = []
        for uid, raw, error in items:
            sha = await asyncio.to_thread(self.store.put, raw)
            rows.append(
                {
                    "mailbox": self.box.name,
                    "uid": uid,
                    "raw_sha256": sha,
                    "size": len(raw),
                    "error": error[:2000],
                    "created_at": utcnow(),
                    "reprocessed_at": None,
                    "message_id": None,
                }
            )
            log.warning("mailbox %s: UID %s quarantined: %s", self.box.name, uid, error[:200])
        if rows:
            async with self.rt.db.begin() as conn:
                await conn.execute(self.rt.db.insert_ignore(QT), rows)

    def parse(self, raw: bytes) -> ParsedMail:
        s = self.rt.settings
        return parse_mail(
            raw,
            mailbox=MailboxInfo(self.box.name, self.box.address, self.box.queue),
            store=self.store,
            own_domain=s.mail_domain,
            own_addresses=self.own_addresses(),
            max_bytes=s.email_max_message_bytes,
            max_attachment_bytes=s.attachment_max_bytes,
        )

    def _parse_all(self, fetched: Sequence[Fetched]) -> list[ParsedMail | str]:
        out: list[ParsedMail | str] = []
        limit = self.rt.settings.email_max_message_bytes
        for item in fetched:
            if item.too_large is not None:
                out.append(f"the message is {item.too_large} bytes, over the limit of {limit}; only its header is kept")
                continue
            try:
                out.append(self.parse(item.raw))
            except MailParseError as exc:
                out.append(str(exc))
            except Exception as exc:  # a parser bug on strange input: quarantine, never stop the mailbox
                log.exception("mailbox %s: parsing UID %s failed", self.box.name, item.uid)
                out.append(f"parser error: {type(exc).__name__}: {exc}")
        return out

    async def _submit(
        self, uidvalidity: int, head: int, fetched: Sequence[Fetched], high_uid: int
    ) -> tuple[_Chunk, int]:
        """Steps 1 and 2 of the module docstring for one chunk: parse, quarantine what cannot be parsed,
        hand the rest to ingest in UID order. ``head`` is the last UID submitted before; the new head."""
        parsed = await asyncio.to_thread(self._parse_all, fetched)
        await self.quarantine([(f.uid, f.raw, p) for f, p in zip(fetched, parsed, strict=True) if isinstance(p, str)])
        good = [(f, p) for f, p in zip(fetched, parsed, strict=True) if not isinstance(p, str)]
        submissions = []
        for f, p in good:
            submissions.append(
                asyncio.ensure_future(self.ingest(p.message, also=self._advance(uidvalidity, head, f.uid)))
            )
            head = f.uid
        return _Chunk(high_uid, good, submissions), head

    async def _finish(self, uidvalidity: int, last_uid: int, chunk: _Chunk) -> int:
        """Step 3: wait for the chunk's commits, quarantine what ingest refused, cover the whole chunk."""
        results = await asyncio.gather(*chunk.submissions, return_exceptions=True)
        refused = []
        for (f, p), result in zip(chunk.good, results, strict=True):
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, BaseException):
                refused.append((f.uid, f.raw, f"ingest refused it: {type(result).__name__}: {result}"))
            elif self.on_ingested is not None and result.created:
                try:
                    self.on_ingested(self.box, p, result)
                except Exception:
                    log.exception("mailbox %s: after-ingest hook failed", self.box.name)
        await self.quarantine(refused)
        await self._set_state(uidvalidity, chunk.high_uid)
        return max(last_uid, chunk.high_uid)


@dataclass(slots=True)
class _Chunk:
    high_uid: int
    good: list[tuple[Fetched, ParsedMail]]
    submissions: Sequence[asyncio.Future[IngestResult]]


def by_budget(uids: list[int], sizes: dict[int, int], budget: int, limit: int) -> list[list[int]]:
    """Consecutive runs of ``uids`` whose mails (those within ``limit``) add up to at most ``budget`` bytes."""
    runs: list[list[int]] = []
    run: list[int] = []
    total = 0
    for uid in uids:
        size = sizes[uid] if sizes[uid] <= limit else 0
        if run and total + size > budget:
            runs.append(run)
            run, total = [], 0
        run.append(uid)
        total += size
    if run:
        runs.append(run)
    return runs


def _uid_set(uids: list[int]) -> str:
    """``1:5,7,9:10`` for a sorted list of UIDs."""
    parts: list[str] = []
    start = prev = uids[0]
    for uid in uids[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        parts.append(f"{start}:{prev}" if start != prev else str(start))
        start = prev = uid
    parts.append(f"{start}:{prev}" if start != prev else str(start))
    return ",".join(parts)


def _text(lines: Sequence[Any]) -> str:
    return " ".join(bytes(line).decode("utf-8", "replace") for line in lines)[:300]


def lock_key(name: str) -> int:
    """The PostgreSQL advisory lock key electing the one worker of mailbox ``name``."""
    return int.from_bytes(hashlib.sha256(f"switchboard:email:{name}".encode()).digest()[:8], "big", signed=True)
