"""hub.group_commit: concurrent submits share one commit; a failed batch is retried item by item, an item alone
gets its error once; the second stage runs pipelined with the next commit and its callers are answered after it."""

from __future__ import annotations

import asyncio

import pytest

from hub.group_commit import GroupCommit


async def test_items_queued_meanwhile_commit_together_and_each_caller_gets_its_outcome() -> None:
    """Items submitted while a commit runs go together into the next one (up to max_batch); an item the commit
    refuses gets its own error, its neighbours their results."""
    batches: list[list[int]] = []
    release = asyncio.Event()

    async def commit(items: list[int]) -> list[int | Exception]:
        batches.append(items)
        await release.wait()
        return [ValueError(f"no {i}") if i == 3 else i * 10 for i in items]

    group: GroupCommit[int, int] = GroupCommit(commit, max_batch=3, name="test")
    calls = [asyncio.create_task(group.submit(i)) for i in range(6)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert batches == [[0, 1, 2], [3, 4, 5]]
    assert results[:3] == [0, 10, 20] and results[4:] == [40, 50]
    assert isinstance(results[3], ValueError) and str(results[3]) == "no 3"


async def test_items_submitted_together_stay_in_one_commit_unless_they_alone_fill_more_than_a_batch() -> None:
    """Three callers hand over 100 items each (a webhook's batch, ``submit_all``) while a commit runs: the next
    commit takes the first two whole (200 of at most 256) and the third goes next, whole, instead of 256 then 44
    with one caller waiting for both. Items submitted one by one are cut at ``max_batch`` as before, and 300
    submitted together are cut there too. Each caller gets its items' outcomes, in order, errors included."""
    batches: list[list[int]] = []
    release = asyncio.Event()

    async def commit(items: list[int]) -> list[int | Exception]:
        batches.append(items)
        await release.wait()
        return [ValueError(f"no {i}") if i == 1005 else i for i in items]

    group: GroupCommit[int, int] = GroupCommit(commit, max_batch=256, name="test")
    first = asyncio.create_task(group.submit(-1))
    await asyncio.sleep(0)  # the drain takes it and waits in its commit
    webhooks = [asyncio.create_task(group.submit_all([w * 1000 + i for i in range(100)])) for w in range(3)]
    await asyncio.sleep(0)
    release.set()
    await first
    results = await asyncio.gather(*webhooks)
    assert [len(b) for b in batches] == [1, 200, 100]
    assert [r[:2] for r in results] == [[0, 1], [1000, 1001], [2000, 2001]]
    assert isinstance(results[1][5], ValueError) and results[1][6] == 1006

    for together in (False, True):
        batches.clear()
        release.clear()
        items = list(range(300))
        calls = group.submit_all(items) if together else asyncio.gather(*(group.submit(i) for i in items))
        waiting = asyncio.ensure_future(calls)
        await asyncio.sleep(0)
        release.set()
        assert await waiting == items
        assert [len(b) for b in batches] == [256, 44]
    assert await group.submit_all([]) == []


async def test_a_failed_batch_is_retried_item_by_item_and_an_item_alone_is_not_retried() -> None:
    """When the commit itself raises, each item of the batch is committed on its own: only the bad one fails.
    An item that fails alone gets that error, without a second attempt."""
    batches: list[list[int]] = []

    async def commit(items: list[int]) -> list[int | Exception]:
        batches.append(items)
        if 2 in items:
            raise RuntimeError("boom")
        return items

    group: GroupCommit[int, int] = GroupCommit(commit, max_batch=10, name="test")
    results = await asyncio.gather(*(group.submit(i) for i in (1, 2, 3)), return_exceptions=True)
    assert results[0] == 1 and results[2] == 3 and isinstance(results[1], RuntimeError)
    assert batches == [[1, 2, 3], [1], [2], [3]]
    batches.clear()
    with pytest.raises(RuntimeError, match="boom"):
        await group.submit(2)
    assert batches == [[2]]


async def test_the_second_stage_runs_beside_the_next_commit_and_answers_after_it() -> None:
    """While ``then`` works on a committed batch, the next batch commits; ``then`` then takes the results of
    every batch committed meanwhile at once (not their errors), and no caller is answered before the stage
    that follows its commit has run."""
    steps: list[str] = []
    then_started = asyncio.Event()
    release_then = asyncio.Event()

    async def commit(items: list[int]) -> list[int | Exception]:
        steps.append(f"commit {items}")
        return [ValueError("odd") if i == 5 else i for i in items]

    async def then(results: list[int]) -> None:
        steps.append(f"then {results}")
        then_started.set()
        await release_then.wait()

    group: GroupCommit[int, int] = GroupCommit(commit, max_batch=10, name="test", then=then)
    first = asyncio.create_task(group.submit(1))
    await then_started.wait()
    later = [asyncio.create_task(group.submit(i)) for i in (4, 5)]
    await asyncio.sleep(0.01)
    assert steps == ["commit [1]", "then [1]", "commit [4, 5]"]  # committed while the stage still runs
    assert not first.done() and not any(t.done() for t in later)
    release_then.set()
    await group.join()
    assert steps[-1] == "then [4]"
    assert first.result() == 1 and later[0].result() == 4
    with pytest.raises(ValueError, match="odd"):
        later[1].result()


async def test_a_second_stage_that_fails_still_answers_the_committed_items(caplog: pytest.LogCaptureFixture) -> None:
    """What committed is answered even if the stage after it raises (its error is logged)."""

    async def commit(items: list[int]) -> list[int | Exception]:
        return list(items)

    async def then(results: list[int]) -> None:
        raise RuntimeError("routing broke")

    group: GroupCommit[int, int] = GroupCommit(commit, max_batch=10, name="test", then=then)
    assert await asyncio.gather(group.submit(1), group.submit(2)) == [1, 2]
    assert "routing broke" in caplog.text


async def test_an_early_caller_is_answered_at_its_commit_and_the_second_stage_still_takes_its_result() -> None:
    """``submit(early=True)`` answers once the item commits, while ``then`` (holding) has not run for it yet;
    a neighbour in the same commit without ``early`` still waits for ``then``, which takes both results."""
    steps: list[str] = []
    then_started = asyncio.Event()
    release_then = asyncio.Event()

    async def commit(items: list[int]) -> list[int | Exception]:
        steps.append(f"commit {items}")
        return [ValueError("bad") if i == 3 else i for i in items]

    async def then(results: list[int]) -> None:
        steps.append(f"then {results}")
        then_started.set()
        await release_then.wait()

    group: GroupCommit[int, int] = GroupCommit(commit, max_batch=10, name="test", then=then)
    early = asyncio.create_task(group.submit(1, early=True))
    late = asyncio.create_task(group.submit(2))
    refused = asyncio.create_task(group.submit(3, early=True))
    assert await asyncio.wait_for(early, 5) == 1
    with pytest.raises(ValueError, match="bad"):
        await asyncio.wait_for(refused, 5)
    await asyncio.wait_for(then_started.wait(), 5)
    assert steps == ["commit [1, 2, 3]", "then [1, 2]"]
    assert not late.done()  # its ``then`` still holds
    release_then.set()
    assert await asyncio.wait_for(late, 5) == 2
    await group.join()
    assert not group._early  # nothing kept for answered callers
