"""Appending to the event log: seqs increase in commit order, none is handed out twice."""

from __future__ import annotations

import asyncio

from hub.events import EventPayload, NewEvent, append_events, event_payload, events_after
from hub.runtime import Runtime


@event_payload("test")
class TestEvent(EventPayload):
    """The payload of these tests' own events (every appended type has a model)."""

    __test__ = False  # not a test class, for pytest

    batch: int | None = None
    n: int | None = None
    doomed: bool = False


class _Rollback(Exception):
    pass


async def test_concurrent_appends_get_distinct_increasing_seqs_in_commit_order(rt: Runtime) -> None:
    """Many transactions appending batches at once: every event gets its own seq, each batch's seqs are
    consecutive and in the order given, and the log read back is in commit order with no seq twice; a batch
    that rolls back leaves no event behind and later batches still get higher seqs."""

    async def append(i: int, n: int) -> list[int]:
        async with rt.db.begin() as conn:
            records = await append_events(conn, [NewEvent(type="test", payload={"batch": i, "n": k}) for k in range(n)])
        return [r.seq for r in records]

    try:
        async with rt.db.begin() as conn:
            doomed = await append_events(conn, [NewEvent(type="test", payload={"doomed": True})] * 3)
            raise _Rollback
    except _Rollback:
        pass
    batches = await asyncio.gather(*(append(i, 1 + i % 4) for i in range(12)))
    for seqs in batches:
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    every = [s for seqs in batches for s in seqs]
    assert len(set(every)) == len(every)
    assert min(every) > max(r.seq for r in doomed) or rt.db.is_sqlite  # SQLite reuses rolled-back keys
    async with rt.read() as conn:
        log = await events_after(conn, 0)
    mine = [e for e in log if e.type == "test"]
    assert sorted(e.seq for e in mine) == sorted(every)
    assert not any(e.payload.get("doomed") for e in mine)
    assert [e.seq for e in log] == sorted(e.seq for e in log)
    # Each batch is contiguous in the log: no other transaction's event inside it.
    position = {e.seq: k for k, e in enumerate(log)}
    for seqs in batches:
        assert [position[s] for s in seqs] == list(range(position[seqs[0]], position[seqs[0]] + len(seqs)))
