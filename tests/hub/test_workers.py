"""The server's garbage-collector handling (hub.workers.freeze_heap)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from hub.workers import FreezeSurvivors, freeze_heap


class _Node:
    """An object that can sit in a reference cycle and be watched through a weak reference."""

    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> weakref.ref[_Node]:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture
def restore_collector() -> Iterator[None]:
    yield
    gc.unfreeze()
    gc.collect()


@pytest.mark.usefixtures("restore_collector")
def test_freeze_heap_collects_garbage_then_keeps_survivors_out_of_collections() -> None:
    """Garbage cycles present at the freeze are collected by it; what is alive then is frozen, so a full
    collection no longer walks it; a frozen cycle that becomes garbage later is collected by the next
    freeze_heap (and not before)."""
    dead = _cycle()
    alive = _Node()
    alive.other = _Node()
    alive.other.other = alive
    watched = weakref.ref(alive)

    freeze_heap()
    assert dead() is None  # collected, not frozen
    assert gc.get_freeze_count() > 0
    assert watched() is not None

    del alive  # the frozen cycle is garbage now
    gc.collect()
    assert watched() is not None  # full collections do not walk frozen objects

    freeze_heap()
    assert watched() is None


@pytest.mark.usefixtures("restore_collector")
def test_while_installed_each_full_collection_freezes_its_survivors() -> None:
    """After a full collection, what survived it is frozen (the next one does not walk it); objects made
    later are not, until the next full collection; once removed, collections freeze nothing."""
    survivors = FreezeSurvivors()
    survivors.install()
    try:
        gc.unfreeze()
        gc.collect()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        assert gc.get_objects(generation=2) == []
        later = [_Node() for _ in range(100)]
        assert gc.get_freeze_count() == frozen  # not yet
        gc.collect()
        assert gc.get_freeze_count() >= frozen + len(later)
    finally:
        survivors.remove()
    gc.unfreeze()
    gc.collect()
    assert gc.get_freeze_count() == 0
