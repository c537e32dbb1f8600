"""Ingest's per-process cache of identities and their contacts (``identity_cache``), kept true across
processes: a merge, its undo or an erase moves identities between contacts, and its event (through Redis with
several processes) drops the entries concerned everywhere; the process that made the change drops them right
after its commit (``forget_identities``)."""

from __future__ import annotations

from collections.abc import Iterable

from hub.events import EventRecord, EventType
from hub.runtime import Runtime

# Events after which identities belong to other contacts than before: a merge, its undo, an erase.
IDENTITY_MOVES = frozenset({EventType.CONTACT_MERGED, EventType.CONTACT_UNMERGED, EventType.CONTACT_ERASED})
CACHE_MAX = 100_000


class IdentityCache(dict[tuple[str, str], tuple[int, bool]]):
    """(identity kind, value) -> (contact id, whether that contact is known to have a name), per runtime.

    ``generation`` counts the identity moves heard (``IDENTITY_MOVES``): an ingest remembers what it learned
    only if none was heard while it ran, since what it read may be what the move changed."""

    __slots__ = ("generation",)

    def __init__(self) -> None:
        super().__init__()
        self.generation = 0

    def on_event(self, event: EventRecord, _text: str) -> None:
        """Event hub listener: identities moved between contacts, in this process or another (through Redis
        with several processes): forget every entry of the contacts named."""
        if event.type in IDENTITY_MOVES:
            self.forget(event.payload.get("contact_ids") or ())

    def forget(self, contact_ids: Iterable[int]) -> None:
        moved = set(contact_ids)
        self.generation += 1
        for key in [k for k, (cid, _) in self.items() if cid in moved]:
            del self[key]


def forget_identities(rt: Runtime, contact_ids: Iterable[int]) -> None:
    """Drop this process's cached identities of ``contact_ids`` at once: call after committing a change that
    moves identities between contacts (a merge, its undo, an erase). Other processes follow the change's event,
    which may reach this process's listener only later (the event hub delivers in order, not always at once)."""
    cache = rt.caches.get("ingest.identities")
    if isinstance(cache, IdentityCache):
        cache.forget(contact_ids)


def identity_cache(rt: Runtime) -> IdentityCache:
    """The identities this process has seen committed, and their contacts. An identity's contact changes only
    by a merge, its undo or an erase, whose events drop the entries concerned in every process (``on_event``),
    so an entry is true without being checked again: a message from a known identity needs no lookup. Entries
    are added after their transaction commits, never before."""
    cache = rt.caches.get("ingest.identities")
    if not isinstance(cache, IdentityCache):
        cache = rt.caches["ingest.identities"] = IdentityCache()
        rt.events.listen(cache.on_event)
    return cache


def remember(cache: IdentityCache, learned: dict[tuple[str, str], tuple[int, bool]], generation: int) -> None:
    if cache.generation != generation:
        return
    if len(cache) + len(learned) > CACHE_MAX:
        cache.clear()
    cache.update(learned)
