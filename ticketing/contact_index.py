"""Finding contacts: search by name, email, phone or handle (typo-tolerant), and duplicate suggestions.

Both read ``ContactIndex``, this process's in-memory picture of every live contact: its name, identities and the
contact details it gave but nobody verified (a chat's pre-chat email, a phone number typed into a form). The
index is built from the database on first use and kept up to date by reading, before each use, only what
changed since it last looked: contacts whose ``updated_at`` moved and identities created since (both indexed).
Every change to a contact (rename, merge, undo, erase) moves its ``updated_at``; ingest adds identities (their
``created_at``) and contacts (their ``updated_at``). Each process keeps its own index and reads the same rows,
so all processes agree without messages between them, within ``REFRESH_EVERY_SECONDS`` (a search that soon
after the last refresh uses the index as it is; this process's own changes to contacts take effect at once).
A refresh reads rows stamped since the previous refresh started, less a look-back window (``REREAD_SECONDS``)
for a transaction that stamped its rows a little before it committed, or a writer whose clock is a little behind.

Search ranks, per contact, the best of: an identity equal to the query once normalized (an address
lower-cased, a phone number in any format through ``phonenumbers`` to E.164, a handle without its ``@``: 100),
a phone number ending in the query's digits (90), a pre-chat address or number nobody verified (85), and the
name's or an address's similarity to the query by rapidfuzz (WRatio, typos and word order forgiven).

Duplicates are suggestions, never joined automatically (an unverified address must never give anyone a
contact's history): contacts that share a blocking key (an address in canonical form, a phone number, a
normalized full name, a company email domain) are compared within their block only, names by rapidfuzz's
batch ``process.cdist``; no pair of contacts outside a block is ever compared.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import chain
from typing import Any

import phonenumbers
from rapidfuzz import fuzz, process
from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.channels import NORMALIZATION, Normalization
from hub.db import one_of, utcnow
from hub.errors import Conflict
from hub.folding import fold
from hub.principals import Principal
from hub.runtime import Runtime
from ticketing.identities import PHONE_KINDS, identity_read
from ticketing.models import ContactHit, ContactIndexState, DuplicateRead
from ticketing.tables import contact_identities as I
from ticketing.tables import contacts as C
from ticketing.tables import tickets as T
from ticketing.tickets import visible_tickets

log = logging.getLogger(__name__)

REREAD_SECONDS = 5.0
# The first build reads and indexes this many contacts at a time (``ContactIndex.build``).
BUILD_CHUNK = 5_000
# Searches within this long of a refresh use the index as it is: another process's change (a new contact, a
# rename) shows within this time; this process's own changes to contacts mark the index stale at once.
REFRESH_EVERY_SECONDS = 0.5
QUERY_MAX_CHARS = 200
NAME_CUTOFF = 70.0
WORD_MATCHES = 20  # name words like each query word, at most
NAME_CANDIDATES = 300  # contacts ranked by their whole name, at most, beyond those matching every word
MATCH_ALL_CANDIDATES = 600  # contacts with a name word like each query word, ranked by their whole name
WORD_POOL = 2000  # contacts counted per query word (its closest words' first)
SAME_NAME_SCORE = 70
MAX_BLOCK = 200  # a block larger than this (a company's domain) is compared in its first MAX_BLOCK only
# A full name shared by more contacts than this is a common name, not a sign of one person: not compared.
NAME_BLOCK_MAX = 8
_PHONE_KIND_VALUES = frozenset(k.value for k in PHONE_KINDS)
_OPAQUE_KINDS = frozenset(k.value for k, how in NORMALIZATION.items() if how is Normalization.OPAQUE)
# Free-mail domains say nothing about who someone is: sharing one is no sign of being the same person.
FREE_MAIL = frozenset(
    "gmail.com googlemail.com yahoo.com hotmail.com outlook.com live.com icloud.com me.com aol.com gmx.de "
    "gmx.net web.de proton.me protonmail.com mail.ru yandex.ru qq.com 163.com example.com".split()
)
_PHONE_CHARS = re.compile(r"^[+()\d\s./-]+$")


_NOT_WORD = re.compile(r"[^\w\s]")


def name_key(name: str | None) -> str:
    """A name compared without case, accents, punctuation or extra spaces."""
    if not name:
        return ""
    if not name.isascii():
        decomposed = unicodedata.normalize("NFKD", name)
        name = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(_NOT_WORD.sub(" ", name.casefold()).split())


def canonical_email(address: str) -> str:
    """An address as its mailbox receives it: lower-cased, and at Gmail without dots or a ``+tag``."""
    local, _, domain = address.strip().lower().rpartition("@")
    if domain in ("gmail.com", "googlemail.com"):
        local = local.split("+", 1)[0].replace(".", "")
        domain = "gmail.com"
    return f"{local}@{domain}"


def phone_e164(value: str, region: str) -> str | None:
    """``value`` in E.164 if it is a possible phone number in any common format, else None."""
    raw = value.strip()
    if raw.lower().startswith("whatsapp:"):
        raw = raw[len("whatsapp:") :]
    if not _PHONE_CHARS.match(raw) or sum(ch.isdigit() for ch in raw) < 6:
        return None
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@dataclass(slots=True)
class Entry:
    """One live contact as the index holds it."""

    id: int
    name: str | None
    identities: list[tuple[str, str]]
    unverified: list[tuple[str, str]]  # ("email" | "phone", value) given but not verified (attributes)
    keys: set[str] = field(default_factory=set)
    ident_ids: list[int] = field(default_factory=list)
    key: str = ""  # the name as compared (name_key)


def entry_keys(entry: Entry, region: str) -> set[str]:
    """The blocking keys of a contact: contacts sharing one are compared as possible duplicates."""
    keys: set[str] = set()
    n = entry.key or name_key(entry.name)
    if len(n.split()) >= 2:
        keys.add("name:" + " ".join(sorted(n.split())))
    for kind, value in [*entry.identities, *entry.unverified]:
        if kind == "email" and "@" in value:
            address = canonical_email(value)
            keys.add("email:" + address)
            domain = address.rpartition("@")[2]
            if domain not in FREE_MAIL:
                keys.add("domain:" + domain)
        elif kind in _PHONE_KIND_VALUES:
            e164 = value if value.startswith("+") else phone_e164(value, region)
            if e164:
                keys.add("phone:" + e164)
    return keys


def unverified_details(attributes: dict[str, Any] | None) -> list[tuple[str, str]]:
    """What a contact's attributes hold that looks like an address or a number nobody verified."""
    out: list[tuple[str, str]] = []
    attrs = attributes or {}
    email = attrs.get("email")
    if isinstance(email, str) and "@" in email and not attrs.get("email_verified"):
        out.append(("email", email.strip().lower()))
    phone = attrs.get("phone")
    if isinstance(phone, str) and phone.strip():
        out.append(("phone", phone.strip()))
    return out


class ContactIndex:
    """This process's picture of every live contact (see the module docstring). Not thread-safe: used from the
    event loop only; ``refresh`` is serialized by a lock."""

    def __init__(self, region: str = "US", *, scan_only: bool = False) -> None:
        self.region = region
        # Only what ``scan`` needs (entries and blocks), not the search's structures: the dedupe command.
        self.scan_only = scan_only
        self._seen: datetime | None = None  # when the last refresh started
        self._fresh_until = 0.0  # monotonic time until which a refresh is skipped
        self._lock = asyncio.Lock()
        self.version = 0  # moves whenever entries are read again
        self.build_chunk = BUILD_CHUNK
        self.progress = (0, 0)  # contacts put in the index by the first build, of how many
        self._clear()

    def _clear(self) -> None:
        self.entries: dict[int, Entry] = {}
        # Parallel lists for rapidfuzz: a slot of a contact gone or changed holds None (rapidfuzz skips it).
        # Name words: each distinct word once (rapidfuzz compares the query's words with these), and the
        # contacts whose name has it.
        # by first letter: a query word is compared with the words starting as it does, or with its second
        # letter (two first letters swapped), not with the whole vocabulary
        self._word_slot: dict[str, int] = {}
        self._words: dict[str, list[str | None]] = defaultdict(list)
        self._word_count = 0
        self._postings: dict[str, set[int]] = {}
        self._by_start: dict[str, set[str]] = defaultdict(set)  # name words by their first two letters
        # Addresses by domain (a typo is looked for among the addresses at the query's domain only).
        self._email_slots: dict[int, list[tuple[str, int]]] = {}
        self._emails: dict[str, list[str | None]] = defaultdict(list)
        self._email_owner: dict[str, list[int]] = defaultdict(list)
        self._email_count = 0
        self._by_value: dict[tuple[str, str], set[int]] = defaultdict(set)
        self._by_key: dict[str, set[int]] = defaultdict(set)
        self._by_phone_tail: dict[str, set[int]] = defaultdict(set)
        self._stamps: dict[int, datetime] = {}  # contact id -> updated_at as last read (deleted ones too)
        self._identity_owner: dict[int, int] = {}  # identity id -> contact id, as last read

    # --- keeping up to date ---------------------------------------------------------------------------

    async def refresh(self, conn: AsyncConnection) -> None:
        """Read what changed since the last refresh (everything, the first time). A row seen already with the
        same stamp (a contact's ``updated_at``, an identity's owner) is not read again."""
        if time.monotonic() < self._fresh_until:
            return
        if self._seen is not None and self._lock.locked():
            return  # a refresh or a scan holds the index: use it as it is rather than wait
        async with self._lock:
            if time.monotonic() < self._fresh_until:
                return  # refreshed while this one waited
            started = utcnow()
            if self._seen is None:
                await self._load(conn, None)
            else:
                since = self._seen - timedelta(seconds=REREAD_SECONDS)
                changed = {
                    cid
                    for cid, stamp in await conn.execute(select(C.c.id, C.c.updated_at).where(C.c.updated_at >= since))
                    if self._stamps.get(cid) != stamp
                }
                changed |= {
                    cid
                    for iid, cid in await conn.execute(select(I.c.id, I.c.contact_id).where(I.c.created_at >= since))
                    if self._identity_owner.get(iid) != cid
                }
                if changed:
                    await self._load(conn, changed)
            self._seen = started
            self._fresh_until = time.monotonic() + REFRESH_EVERY_SECONDS

    @property
    def lock(self) -> asyncio.Lock:
        """Held while the index changes (``refresh``); hold it to read the index from another thread."""
        return self._lock

    def mark_stale(self) -> None:
        """Read what changed at the next use (call after this process changed a contact)."""
        self._fresh_until = 0.0

    async def _load(self, conn: AsyncConnection, ids: set[int] | None) -> None:
        cstmt = select(C.c.id, C.c.name, C.c.attributes, C.c.deleted_at, C.c.updated_at)
        istmt = select(I.c.id, I.c.contact_id, I.c.kind, I.c.value).order_by(I.c.id)
        if ids is not None:
            cstmt = cstmt.where(one_of(conn, C.c.id, ids))
            istmt = istmt.where(one_of(conn, I.c.contact_id, ids))
        rows = (await conn.execute(cstmt)).all()
        self._apply(rows, (await conn.execute(istmt)).all(), ids)

    def _apply(self, rows: Sequence[Any], ident_rows: Sequence[Any], ids: set[int] | None) -> None:
        """Put the contacts read (``rows``, with their identities ``ident_rows``) in the index; of ``ids`` (those
        asked for), the ones not read are gone."""
        idents: dict[int, list[tuple[str, str]]] = defaultdict(list)
        ident_ids: dict[int, list[int]] = defaultdict(list)
        for iid, cid, kind, value in ident_rows:
            idents[cid].append((kind, value))
            ident_ids[cid].append(iid)
        for cid, name, attributes, deleted_at, stamp in rows:
            self._stamps[cid] = stamp
            if deleted_at is not None:
                self._drop(cid)
            else:
                self._put(
                    Entry(cid, name, idents.get(cid, []), unverified_details(attributes), ident_ids=ident_ids[cid])
                )
        if ids is not None:
            for gone in ids - {r[0] for r in rows}:
                self._drop(gone)
        self.version += 1
        if self._email_count > 4 * len(self.entries) + 10_000 or self._word_count > 2 * len(self._postings) + 10_000:
            self._compact()

    @property
    def ready(self) -> bool:
        """Whether the index holds every contact (the first build is over)."""
        return self._seen is not None

    async def build(self, read: Callable[[], AbstractAsyncContextManager[AsyncConnection]]) -> None:
        """The first load, without holding up the event loop: the contacts are read ``BUILD_CHUNK`` at a time (each
        chunk in its own short read, by id), and put in the index in a worker thread; ``progress`` says how far
        it got. Nothing reads the index meanwhile (searches fall back, see ``search_contacts``). What changed
        during the build is read by the next ``refresh``, as after any load: from when the build started."""
        async with self._lock:
            if self._seen is not None:
                return
            started = utcnow()
            async with read() as conn:
                total = (await conn.execute(select(func.count()).select_from(C))).scalar_one()
            self.progress = (0, total)
            after = 0
            while True:
                async with read() as conn:
                    rows = (
                        await conn.execute(
                            select(C.c.id, C.c.name, C.c.attributes, C.c.deleted_at, C.c.updated_at)
                            .where(C.c.id > after)
                            .order_by(C.c.id)
                            .limit(self.build_chunk)
                        )
                    ).all()
                    if not rows:
                        break
                    idents = (
                        await conn.execute(
                            select(I.c.id, I.c.contact_id, I.c.kind, I.c.value)
                            .where(I.c.contact_id > after, I.c.contact_id <= rows[-1][0])
                            .order_by(I.c.id)
                        )
                    ).all()
                await asyncio.to_thread(self._apply, rows, idents, None)
                after = rows[-1][0]
                self.progress = (self.progress[0] + len(rows), max(total, self.progress[0] + len(rows)))
            self._seen = started
            self._fresh_until = 0.0  # the next use reads what changed since the build started
            self.progress = (self.progress[0], self.progress[0])

    def _compact(self) -> None:
        """Rebuild the lists without the slots of contacts gone or changed."""
        entries, stamps = list(self.entries.values()), self._stamps
        self._clear()
        self._stamps = stamps
        for entry in entries:
            self._put(entry)

    def _drop(self, cid: int) -> None:
        old = self.entries.pop(cid, None)
        if old is None:
            return
        for iid in old.ident_ids:
            self._identity_owner.pop(iid, None)
        for word in set(old.key.split()):
            owners = self._postings.get(word)
            if owners is not None:
                owners.discard(cid)
                if not owners:  # the word's slot is free again
                    del self._postings[word]
                    self._words[word[0]][self._word_slot.pop(word)] = None
                    self._by_start[word[:2]].discard(word)
        for domain, slot in self._email_slots.pop(cid, []):
            self._emails[domain][slot] = None
        for kind, value in old.identities:
            self._by_value[(kind, value)].discard(cid)
            if kind in _PHONE_KIND_VALUES:
                self._by_phone_tail[_tail(value)].discard(cid)
        for kind, value in old.unverified:
            self._by_value[("unverified:" + kind, _unverified_value(kind, value, self.region))].discard(cid)
        for key in old.keys:
            self._by_key[key].discard(cid)

    def _put(self, entry: Entry) -> None:
        self._drop(entry.id)
        entry.key = name_key(entry.name)
        entry.keys = entry_keys(entry, self.region)
        self.entries[entry.id] = entry
        for k in entry.keys:
            self._by_key[k].add(entry.id)
        if self.scan_only:
            return
        for iid in entry.ident_ids:
            self._identity_owner[iid] = entry.id
        for word in set(entry.key.split()):
            owners = self._postings.get(word)
            if owners is None:
                owners = self._postings[word] = set()
                self._word_slot[word] = len(self._words[word[0]])
                self._words[word[0]].append(word)
                self._word_count += 1
                self._by_start[word[:2]].add(word)
            owners.add(entry.id)
        slots = []
        for kind, value in entry.identities:
            self._by_value[(kind, value)].add(entry.id)
            if kind == "email":
                domain = value.rpartition("@")[2]
                slots.append((domain, len(self._emails[domain])))
                self._emails[domain].append(value)
                self._email_owner[domain].append(entry.id)
                self._email_count += 1
            elif kind in _PHONE_KIND_VALUES:
                self._by_phone_tail[_tail(value)].add(entry.id)
        if slots:
            self._email_slots[entry.id] = slots
        for kind, value in entry.unverified:
            self._by_value[("unverified:" + kind, _unverified_value(kind, value, self.region))].add(entry.id)

    # --- search ---------------------------------------------------------------------------------------

    def search(self, query: str, *, limit: int = 20) -> list[tuple[int, float, str]]:
        """(contact id, score 0-100, what matched), best first. Any text is a valid query."""
        q = " ".join(query[:QUERY_MAX_CHARS].split())
        if not q:
            return []
        best: dict[int, tuple[float, str]] = {}

        def hit(cids: Iterable[int], score: float, matched: str) -> None:
            for cid in cids:
                if cid in self.entries and score > best.get(cid, (-1.0, ""))[0]:
                    best[cid] = (score, matched)

        lowered = q.lower()
        is_address = "@" in lowered.strip("@")
        if is_address:
            hit(self._by_value.get(("email", lowered), ()), 100, f"email {lowered}")
            hit(self._by_value.get(("unverified:email", lowered), ()), 85, f"email {lowered} (not verified)")
            domain = lowered.rpartition("@")[2]
            if not best and domain in self._emails:  # no exact match: a typo, looked for at that domain
                for value, score, slot in process.extract(
                    lowered, self._emails[domain], scorer=fuzz.ratio, processor=None, limit=limit, score_cutoff=80
                ):
                    hit((self._email_owner[domain][slot],), score * 0.95, f"email {value}")
        e164 = phone_e164(q, self.region)
        if e164:
            for kind in _PHONE_KIND_VALUES:
                hit(self._by_value.get((kind, e164), ()), 100, f"phone {e164}")
            hit(self._by_value.get(("unverified:phone", e164), ()), 85, f"phone {e164} (not verified)")
        digits = "".join(ch for ch in q if ch.isdigit())
        if len(digits) >= 7 and _PHONE_CHARS.match(q):
            for cid in self._by_phone_tail.get(digits[-7:], ()):
                entry = self.entries.get(cid)
                if entry and any(v.endswith(digits) for k, v in entry.identities if k in _PHONE_KIND_VALUES):
                    hit((cid,), 90, "phone ending " + digits)
        handle = q[1:] if q.startswith("@") else q
        for kind in _OPAQUE_KINDS:
            hit(self._by_value.get((kind, handle), ()), 100, f"{kind} {handle}")
        key = "" if is_address else name_key(q)  # an address is not compared with names
        if key and not any(ch.isalpha() for ch in key):
            key = ""  # nor a number (a phone number, a chat id): names have letters
        if key:
            for cid, score in self._name_matches(key, limit):
                hit((cid,), score, f"name {self.entries[cid].name}")
        ranked = sorted(best.items(), key=lambda item: (-item[1][0], item[0]))[:limit]
        return [(cid, round(score, 1), matched) for cid, (score, matched) in ranked]

    def _name_matches(self, key: str, limit: int) -> list[tuple[int, float]]:
        """Contacts whose name is like ``key``: each query word finds the name words like it (rapidfuzz over the
        distinct words, not over every contact); the candidates are the contacts whose name has a word like each
        of the query's words, then those with the most such words (the closest words' contacts first); they are
        ranked by the whole name's similarity (WRatio: typos, word order and missing words).

        The cost is bounded by ``NAME_CANDIDATES`` and ``WORD_POOL``, not by how common a name is: a common
        first name's words hold thousands of contacts at 100,000, and counting votes over all of them was most
        of a slow search's time."""
        words = key.split()[:6]
        pools: list[list[int]] = []  # per query word: the contacts of its close words, closest words first
        sets: list[set[int]] = []
        for n, word in enumerate(words):
            cutoff = 100.0 if len(word) < 3 else 75.0 if len(word) < 6 else 70.0
            close = sorted(
                (
                    (score, found)
                    for start in dict.fromkeys(word[:2])
                    for found, score, _ in process.extract(
                        word,
                        self._words.get(start, ()),
                        scorer=fuzz.ratio,
                        processor=None,
                        limit=WORD_MATCHES,
                        score_cutoff=cutoff,
                    )
                ),
                key=lambda f: -f[0],
            )
            found_words = [w for _, w in close]
            if n == len(words) - 1 and len(word) >= 3:  # the last word may be half typed: the words it starts
                found_words += self._prefixed(word)
            if not found_words:
                continue
            postings = [self._postings.get(w, ()) for w in found_words]
            sets.append(set().union(*postings))
            pool: list[int] = []
            for owners in postings:
                pool.extend(owners)
                if len(pool) >= WORD_POOL:
                    break
            pools.append(pool[:WORD_POOL])
        if not sets:
            return []
        # Those with a word like each query word (C-speed set intersection, smallest set first), then the most
        # votes among the closest words' contacts.
        order = sorted(range(len(sets)), key=lambda i: len(sets[i]))
        both = sets[order[0]].intersection(*(sets[i] for i in order[1:])) if len(sets) > 1 else set()
        # Ranked by WRatio (some microseconds each), so at most MATCH_ALL_CANDIDATES of them: those reached by
        # the closest words of the rarest query word first.
        candidates = [cid for cid in dict.fromkeys(pools[order[0]]) if cid in both][:MATCH_ALL_CANDIDATES]
        if len(candidates) < NAME_CANDIDATES:
            votes = Counter(chain.from_iterable(dict.fromkeys(p) for p in pools))
            candidates += [cid for cid, _ in votes.most_common(NAME_CANDIDATES) if cid not in both]
        names = [self.entries[c].key for c in candidates]
        ranked = process.extract(key, names, scorer=fuzz.WRatio, processor=None, limit=limit, score_cutoff=NAME_CUTOFF)
        return [(candidates[i], score) for _, score, i in ranked]

    def _prefixed(self, word: str) -> list[str]:
        """Name words that start with ``word`` (at most WORD_MATCHES)."""
        out = []
        for candidate in self._by_start.get(word[:2], ()):
            if candidate.startswith(word) and candidate != word:
                out.append(candidate)
                if len(out) >= WORD_MATCHES:
                    break
        return out

    def hits(self, found: list[tuple[int, float, str]]) -> list[ContactHit]:
        out = []
        for cid, score, matched in found:
            e = self.entries[cid]
            out.append(
                ContactHit(
                    id=cid,
                    name=e.name,
                    identities=[identity_read(k, v) for k, v in e.identities],
                    score=score,
                    matched=matched,
                )
            )
        return out

    # --- duplicates -----------------------------------------------------------------------------------

    def duplicates_of(self, contact_id: int) -> list[DuplicateRead]:
        """Contacts that may be the same person as ``contact_id``, most likely first."""
        entry = self.entries.get(contact_id)
        if entry is None:
            return []
        others: set[int] = set()
        for key in entry.keys:
            members = self._by_key.get(key, set())
            if len(members) <= (NAME_BLOCK_MAX if key.startswith("name:") else MAX_BLOCK):
                others |= members
        others.discard(contact_id)
        found = [self.pair(entry, self.entries[o]) for o in sorted(others) if o in self.entries]
        return sorted((d for d in found if d is not None), key=lambda d: (-d.score, d.other_id))

    def pair(self, a: Entry, b: Entry, name_score: float | None = None) -> DuplicateRead | None:
        """Why ``a`` and ``b`` may be one person (None: no reason found). Scores: the same address or number
        in another form 95, a visitor's pre-chat address or number matching a known contact 85, a similar
        name at a shared company domain up to 90, the same full name 70."""
        reasons: list[tuple[int, str]] = []
        a_ids = {(k, v) for k, v in a.identities}
        b_ids = {(k, v) for k, v in b.identities}
        same_address = next(
            (
                (v1, v2)
                for k1, v1 in a.identities
                for k2, v2 in b.identities
                if k1 == k2 == "email" and v1 != v2 and canonical_email(v1) == canonical_email(v2)
            ),
            None,
        )
        if same_address:
            reasons.append((95, f"same email address in another form ({same_address[0]} / {same_address[1]})"))
        for x, y, y_ids in ((a, b, b_ids), (b, a, a_ids)):
            for kind, value in x.unverified:
                if kind == "email":
                    canon = canonical_email(value)
                    if any(k2 == "email" and canonical_email(v2) == canon for k2, v2 in y_ids):
                        reasons.append((85, f"pre-chat email {value} (not verified) is {y.name or 'the other'}'s"))
                else:
                    e164 = phone_e164(value, self.region)
                    if e164 and any(k2 in _PHONE_KIND_VALUES and v2 == e164 for k2, v2 in y_ids):
                        reasons.append((90, f"phone {value} given (not verified) is {y.name or 'the other'}'s number"))
        a_keys, b_keys = a.keys, b.keys
        shared_domains = sorted(k[7:] for k in a_keys & b_keys if k.startswith("domain:"))
        shared_phone = any(k.startswith("phone:") for k in a_keys & b_keys)
        an, bn = a.key or name_key(a.name), b.key or name_key(b.name)
        if an and bn and _digits(an) == _digits(bn):  # "Customer 12" and "Customer 13" are two people
            score = name_score if name_score is not None else fuzz.token_sort_ratio(an, bn)
            if shared_domains and score >= 85:
                reasons.append((int(score * 0.9), f"similar names ({score:.0f}%) at {shared_domains[0]}"))
            if shared_phone and score >= 80:
                reasons.append((int(score * 0.9), f"similar names ({score:.0f}%) sharing a phone number"))
            if len(an.split()) >= 2 and sorted(an.split()) == sorted(bn.split()):
                reasons.append((SAME_NAME_SCORE, f"same name: {a.name}"))
        if not reasons:
            return None
        reasons.sort(key=lambda r: -r[0])
        return DuplicateRead(
            contact_id=a.id,
            other_id=b.id,
            other_name=b.name,
            score=min(100, reasons[0][0] + 2 * (len(reasons) - 1)),
            reasons=list(dict.fromkeys(r for _, r in reasons)),
        )

    def scan(self, progress: Callable[[int], None] | None = None) -> list[DuplicateRead]:
        """Every suggested pair (each once, lower id first), most likely first. Compares within blocks only:
        names by ``process.cdist`` over each block at once."""
        pairs: dict[tuple[int, int], DuplicateRead] = {}
        blocks = [
            (key, sorted(m))
            for key, m in self._by_key.items()
            if len(m) > 1 and not (key.startswith("name:") and len(m) > NAME_BLOCK_MAX)
        ]
        for done, (key, members) in enumerate(blocks, 1):
            members = [m for m in members if m in self.entries][:MAX_BLOCK]
            names = [name_key(self.entries[m].name) for m in members]
            if key.startswith("domain:"):
                # Similar names only count here: score every pair of the block at once.
                matrix = process.cdist(names, names, scorer=fuzz.token_sort_ratio, score_cutoff=80, workers=-1)
                todo = [(i, j, float(matrix[i][j])) for i in range(len(members)) for j in range(i + 1, len(members))]
                todo = [(i, j, s) for i, j, s in todo if s > 0]
            else:
                todo = [(i, j, -1.0) for i in range(len(members)) for j in range(i + 1, len(members))]
            for i, j, s in todo:
                pair_key = (members[i], members[j])
                if pair_key in pairs:
                    continue
                found = self.pair(self.entries[members[i]], self.entries[members[j]], None if s < 0 else s)
                if found is not None:
                    pairs[pair_key] = found
            if progress is not None:
                progress(done)
        return sorted(pairs.values(), key=lambda d: (-d.score, d.contact_id, d.other_id))

    @property
    def block_count(self) -> int:
        return sum(
            1
            for key, m in self._by_key.items()
            if len(m) > 1 and not (key.startswith("name:") and len(m) > NAME_BLOCK_MAX)
        )


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _tail(e164: str) -> str:
    if e164[1:].isdigit():  # E.164, as stored: "+" and digits
        return e164[-7:]
    return "".join(ch for ch in e164 if ch.isdigit())[-7:]


def _unverified_value(kind: str, value: str, region: str) -> str:
    if kind == "email":
        return value.lower()
    return phone_e164(value, region) or value


def contacts_changed(rt: Runtime) -> None:
    """This process changed contacts (a rename, a merge, an erase): its next search reads the change."""
    index = rt.caches.get("contacts.index")
    if isinstance(index, ContactIndex):
        index.mark_stale()


def contact_index(rt: Runtime) -> ContactIndex:
    """This runtime's index, created on first use (call ``refresh`` before reading it)."""
    index = rt.caches.get("contacts.index")
    if not isinstance(index, ContactIndex):
        index = rt.caches["contacts.index"] = ContactIndex(rt.settings.default_phone_region)
    return index


class IndexBuilding(Conflict):
    """The contact index is still being built (its first build, in the background); asked again shortly, it answers."""

    code = "contact_index_building"


_BUILD_TASK = "contacts.index.build"
# An agent's search ranks this many contacts before those they may not see are left out.
SCOPED_CANDIDATES = 200


# A search in the first moment of the index's first build waits this long for it: a small database (a laptop,
# the demo) is indexed by then, and its searches are never the database's fallback.
FIRST_BUILD_WAIT_SECONDS = 1.0


def ready_index(rt: Runtime) -> ContactIndex | None:
    """This runtime's index when its first build is over; else None, with the build started in the background
    (once: a build that failed is started again by the next call)."""
    index = contact_index(rt)
    if index.ready:
        return index
    task = rt.caches.get(_BUILD_TASK)
    if task is None or (task.done() and not index.ready):
        task = rt.caches[_BUILD_TASK] = rt.spawn(index.build(rt.read), name="contact-index-build")
        task.add_done_callback(_log_failure)
        rt.caches[_BUILD_TASK + ".started"] = time.monotonic()
    return None


async def _index_soon(rt: Runtime) -> ContactIndex | None:
    """``ready_index``, waiting for the first build while it is within its first ``FIRST_BUILD_WAIT_SECONDS``."""
    index = ready_index(rt)
    if index is None:
        left = rt.caches[_BUILD_TASK + ".started"] + FIRST_BUILD_WAIT_SECONDS - time.monotonic()
        if left > 0:
            await asyncio.wait({rt.caches[_BUILD_TASK]}, timeout=left)
            index = ready_index(rt)
    return index


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("building the contact index failed", exc_info=task.exception())


async def built_index(rt: Runtime, *, wait: float | None = None) -> ContactIndex:
    """This runtime's index, built (waiting for its first build, at most ``wait`` seconds: ``IndexBuilding``)."""
    index = ready_index(rt)
    if index is None:
        try:
            await asyncio.wait_for(asyncio.shield(rt.caches[_BUILD_TASK]), wait)
        except TimeoutError:
            done, total = contact_index(rt).progress
            raise IndexBuilding(
                f"the contact index is being built ({done} of {total} contacts); ask again shortly"
            ) from None
        index = contact_index(rt)
    async with rt.read() as conn:
        await index.refresh(conn)
    return index


def index_state(rt: Runtime) -> ContactIndexState:
    """Whether searches use the index yet, and how far its first build got (starting it if need be)."""
    ready = ready_index(rt) is not None
    done, total = contact_index(rt).progress
    return ContactIndexState(state="ready" if ready else "building", indexed=done, total=total)


async def visible_contacts(conn: AsyncConnection, principal: Principal, ids: Iterable[int]) -> set[int]:
    """Of ``ids``, the contacts ``principal`` may see, as ``ticketing.contacts.check_may_see`` says: supervisors
    and admins every one; an agent those with a ticket the agent may see (in their queues, assigned or offered
    to them), or with no ticket at all."""
    wanted = set(ids)
    cond = visible_tickets(principal)
    if cond is None or not wanted:
        return wanted
    seen = func.max(case((cond, 1), else_=0))
    rows = (
        await conn.execute(
            select(T.c.contact_id, seen).where(one_of(conn, T.c.contact_id, wanted)).group_by(T.c.contact_id)
        )
    ).all()
    return wanted - {cid for cid, may in rows if not may}


async def search_contacts(rt: Runtime, *, query: str, principal: Principal, limit: int = 20) -> list[ContactHit]:
    """Contacts matching ``query`` (a name, an email address, a phone number in any format, a handle) that
    ``principal`` may see (``visible_contacts``), best first; typos are forgiven. While the index is first
    built, the database answers instead: exact addresses, numbers and handles, and names holding every word
    (``index_state`` says how far the build got)."""
    index = await _index_soon(rt)
    scoped = not principal.sees_all
    async with rt.read() as conn:
        if index is None:
            return await _unindexed_search(conn, query, principal, limit, rt.settings.default_phone_region)
        await index.refresh(conn)
        found = index.search(query, limit=max(limit, SCOPED_CANDIDATES) if scoped else limit)
        if scoped and found:
            allowed = await visible_contacts(conn, principal, [cid for cid, _, _ in found])
            found = [f for f in found if f[0] in allowed]
    return index.hits(found[:limit])


async def _unindexed_search(
    conn: AsyncConnection, query: str, principal: Principal, limit: int, region: str
) -> list[ContactHit]:
    """What the database finds while the index is first built: an identity equal to the query once normalized
    (100), and contacts whose name holds every word of it (60; case and accents aside, as the index: the name and
    the words both folded by ``switchboard_fold`` and lower-cased, so "elodie" finds "ÉLODIE" and "José" finds
    "JOSE"; SQLite's ``lower`` knows ASCII letters only, which folding leaves the accented Latin ones)."""
    q = " ".join(query[:QUERY_MAX_CHARS].split())
    if not q:
        return []
    lowered = q.lower()
    handle = q[1:] if q.startswith("@") else q
    pairs = [(kind, handle) for kind in sorted(_OPAQUE_KINDS)]
    if "@" in lowered.strip("@"):
        pairs.append(("email", lowered))
    e164 = phone_e164(q, region)
    if e164:
        pairs += [(kind, e164) for kind in sorted(_PHONE_KIND_VALUES)]
    best: dict[int, tuple[float, str]] = {}
    for cid, kind, value in await conn.execute(
        select(I.c.contact_id, I.c.kind, I.c.value)
        .where(or_(*(and_(I.c.kind == k, I.c.value == v) for k, v in pairs)))
        .limit(limit * 5)
    ):
        best.setdefault(cid, (100.0, f"{kind} {value}"))
    words = [fold(w) for w in _NOT_WORD.sub(" ", lowered).split() if any(ch.isalpha() for ch in w)][:6]
    if words and "@" not in lowered:
        # The words hold letters, digits and "_" only (``_NOT_WORD``): "_" is the one LIKE wildcard to escape.
        # Folded before lower-cased, as the words were lower-cased before folded: "É" -> "E" -> "e", "é" -> "e".
        folded_name = func.lower(func.switchboard_fold(C.c.name))
        conds = [folded_name.like("%" + w.replace("_", "\\_") + "%", escape="\\") for w in words]
        for cid, name in await conn.execute(
            select(C.c.id, C.c.name).where(C.c.deleted_at.is_(None), *conds).order_by(C.c.id).limit(limit * 5)
        ):
            best.setdefault(cid, (60.0, f"name {name} (whole words only while the index is built)"))
    if not best:
        return []
    live = {
        cid: name
        for cid, name in await conn.execute(
            select(C.c.id, C.c.name).where(one_of(conn, C.c.id, best), C.c.deleted_at.is_(None))
        )
    }
    allowed = await visible_contacts(conn, principal, live)
    ranked = sorted((cid for cid in best if cid in allowed), key=lambda c: (-best[c][0], c))[:limit]
    idents: dict[int, list[tuple[str, str]]] = defaultdict(list)
    if ranked:
        for cid, kind, value in await conn.execute(
            select(I.c.contact_id, I.c.kind, I.c.value).where(one_of(conn, I.c.contact_id, ranked)).order_by(I.c.id)
        ):
            idents[cid].append((kind, value))
    return [
        ContactHit(
            id=cid,
            name=live[cid],
            identities=[identity_read(k, v) for k, v in idents[cid]],
            score=best[cid][0],
            matched=best[cid][1],
        )
        for cid in ranked
    ]


async def suggested_duplicates(rt: Runtime, *, contact_id: int, principal: Principal) -> list[DuplicateRead]:
    """Contacts that may be the same person as ``contact_id`` and that ``principal`` may see (suggestions:
    nothing is joined). None while the index is first built."""
    index = await _index_soon(rt)
    if index is None:
        return []
    async with rt.read() as conn:
        await index.refresh(conn)
        found = index.duplicates_of(contact_id)
        if found:
            # The refresh is skipped while a scan holds the index (``refresh``): a contact merged or erased a
            # moment ago may still be in it, and is never offered for a merge.
            others = [d.other_id for d in found]
            live = set(
                (await conn.execute(select(C.c.id).where(one_of(conn, C.c.id, others), C.c.deleted_at.is_(None))))
                .scalars()
                .all()
            )
            found = [d for d in found if d.other_id in live]
        if found and not principal.sees_all:
            allowed = await visible_contacts(conn, principal, [d.other_id for d in found])
            found = [d for d in found if d.other_id in allowed]
    return found


# How long the supervisors' list of duplicates waits for the index's first build before answering that it is
# being built.
DUPLICATES_WAIT_SECONDS = 10.0


async def all_duplicates(rt: Runtime, *, limit: int = 500) -> list[DuplicateRead]:
    """Every suggested pair, most likely first (for supervisors to review). Cached until a contact changes."""
    index = await built_index(rt, wait=DUPLICATES_WAIT_SECONDS)
    cached = rt.caches.get("contacts.duplicates")
    if cached is None or cached[0] != index.version:
        # Seconds for a large list: in a thread, so the event loop goes on serving. Holding the lock keeps
        # refreshes (the only writers) out meanwhile; searches read the index as it is.
        async with index.lock:
            version = index.version
            pairs = await asyncio.to_thread(index.scan)
        cached = rt.caches["contacts.duplicates"] = (version, pairs)
    return list(cached[1][:limit])
