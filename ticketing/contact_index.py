"""Finding contacts: search by name, email, phone or handle (typo-tolerant), and duplicate suggestions.

Both read ``ContactIndex``, this process's in-memory picture of every live contact: its name, identities and the
contact details it gave but nobody verified (a chat's pre-chat email, a phone number typed into a form). The
index is built from the database on first use and kept up to date by reading, before each use, only what
changed since it last looked: contacts whose ``updated_at`` moved and identities created since (both indexed).
Every change to a contact (rename, merge, undo, erase) moves its ``updated_at``; ingest adds identities (their
``created_at``) and contacts (their ``updated_at``). Each process keeps its own index and reads the same rows,
so all processes agree without messages between them. A refresh reads rows stamped since the previous refresh
started, less a look-back window (``REREAD_SECONDS``) for a transaction that stamped its rows a little before it
committed, or a writer whose clock is a little behind.

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
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import chain
from typing import Any

import phonenumbers
from rapidfuzz import fuzz, process
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.channels import NORMALIZATION, Normalization
from hub.db import one_of, utcnow
from hub.runtime import Runtime
from ticketing.identities import PHONE_KINDS, identity_read
from ticketing.models import ContactHit, DuplicateRead
from ticketing.tables import contact_identities as I
from ticketing.tables import contacts as C

REREAD_SECONDS = 5.0
QUERY_MAX_CHARS = 200
NAME_CUTOFF = 70.0
WORD_MATCHES = 20  # name words like each query word, at most
NAME_CANDIDATES = 300  # contacts ranked by their whole name, at most
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
        self._lock = asyncio.Lock()
        self.version = 0  # moves whenever entries are read again
        self._clear()

    def _clear(self) -> None:
        self.entries: dict[int, Entry] = {}
        # Parallel lists for rapidfuzz: a slot of a contact gone or changed holds None (rapidfuzz skips it).
        # Name words: each distinct word once (rapidfuzz compares the query's words with these), and the
        # contacts whose name has it.
        self._word_slot: dict[str, int] = {}
        self._words: list[str | None] = []
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
        async with self._lock:
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

    async def _load(self, conn: AsyncConnection, ids: set[int] | None) -> None:
        cstmt = select(C.c.id, C.c.name, C.c.attributes, C.c.deleted_at, C.c.updated_at)
        istmt = select(I.c.id, I.c.contact_id, I.c.kind, I.c.value).order_by(I.c.id)
        if ids is not None:
            cstmt = cstmt.where(one_of(conn, C.c.id, ids))
            istmt = istmt.where(one_of(conn, I.c.contact_id, ids))
        rows = (await conn.execute(cstmt)).all()
        idents: dict[int, list[tuple[str, str]]] = defaultdict(list)
        ident_ids: dict[int, list[int]] = defaultdict(list)
        for iid, cid, kind, value in await conn.execute(istmt):
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
        if self._email_count > 4 * len(self.entries) + 10_000 or len(self._words) > 2 * len(self._postings) + 10_000:
            self._compact()

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
                    self._words[self._word_slot.pop(word)] = None
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
                self._word_slot[word] = len(self._words)
                self._words.append(word)
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
        if key:
            for cid, score in self._name_matches(key, limit):
                hit((cid,), score, f"name {self.entries[cid].name}")
        ranked = sorted(best.items(), key=lambda item: (-item[1][0], item[0]))[:limit]
        return [(cid, round(score, 1), matched) for cid, (score, matched) in ranked]

    def _name_matches(self, key: str, limit: int) -> list[tuple[int, float]]:
        """Contacts whose name is like ``key``: each query word finds the name words like it (rapidfuzz over the
        distinct words, not over every contact), the contacts with the most such words are the candidates, and
        those are ranked by the whole name's similarity (WRatio: typos, word order and missing words)."""
        words = key.split()[:6]
        matched: list[set[int]] = []
        for n, word in enumerate(words):
            cutoff = 100.0 if len(word) < 3 else 75.0 if len(word) < 6 else 70.0
            close = [
                found
                for found, _, _ in process.extract(
                    word, self._words, scorer=fuzz.ratio, processor=None, limit=WORD_MATCHES, score_cutoff=cutoff
                )
            ]
            if n == len(words) - 1 and len(word) >= 3:  # the last word may be half typed: the words it starts
                close += self._prefixed(word)
            if close:
                matched.append(set().union(*(self._postings.get(w, ()) for w in close)))
        if not matched:
            return []
        # Candidates: the contacts whose name has a word like most of the query's words (counted in C).
        votes = Counter(chain.from_iterable(matched))
        candidates = [cid for cid, _ in votes.most_common(NAME_CANDIDATES)]
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
        if an and bn:
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


def _tail(e164: str) -> str:
    if e164[1:].isdigit():  # E.164, as stored: "+" and digits
        return e164[-7:]
    return "".join(ch for ch in e164 if ch.isdigit())[-7:]


def _unverified_value(kind: str, value: str, region: str) -> str:
    if kind == "email":
        return value.lower()
    return phone_e164(value, region) or value


def contact_index(rt: Runtime) -> ContactIndex:
    """This runtime's index, created on first use (call ``refresh`` before reading it)."""
    index = rt.caches.get("contacts.index")
    if not isinstance(index, ContactIndex):
        index = rt.caches["contacts.index"] = ContactIndex(rt.settings.default_phone_region)
    return index


async def search_contacts(rt: Runtime, *, query: str, limit: int = 20) -> list[ContactHit]:
    """Contacts matching ``query`` (a name, an email address, a phone number in any format, a handle), best
    first; typos are forgiven."""
    index = contact_index(rt)
    async with rt.read() as conn:
        await index.refresh(conn)
    return index.hits(index.search(query, limit=limit))


async def suggested_duplicates(rt: Runtime, *, contact_id: int) -> list[DuplicateRead]:
    """Contacts that may be the same person as ``contact_id`` (suggestions: nothing is joined)."""
    index = contact_index(rt)
    async with rt.read() as conn:
        await index.refresh(conn)
    return index.duplicates_of(contact_id)


async def all_duplicates(rt: Runtime, *, limit: int = 500) -> list[DuplicateRead]:
    """Every suggested pair, most likely first (for supervisors to review). Cached until a contact changes."""
    index = contact_index(rt)
    async with rt.read() as conn:
        await index.refresh(conn)
    cached = rt.caches.get("contacts.duplicates")
    if cached is None or cached[0] != index.version:
        cached = rt.caches["contacts.duplicates"] = (index.version, index.scan())
    return list(cached[1][:limit])
