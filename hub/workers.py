"""Background work that runs beside the web server: periodic jobs with error isolation."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Periodic:
    """Run ``job`` every ``interval`` seconds; a failure is logged and the next run happens anyway."""

    def __init__(self, name: str, interval: float, job: Callable[[], Awaitable[object]]) -> None:
        self.name = name
        self.interval = interval
        self.job = job
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task:
            await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.job()
            except Exception:
                log.exception("background job %s failed", self.name)


def freeze_heap() -> None:
    """Collect all garbage, then move every object that survived into the collector's permanent generation,
    which full collections do not walk (see ``FreezeSurvivors``)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class FreezeSurvivors:
    """While installed, every full collection freezes what survived it.

    CPython's full collection walks every tracked object. A server holds hundreds of thousands (modules,
    SQLAlchemy and pydantic metadata, and per connection its sockets, tasks and buffers), so each one took
    120-170 ms on a 2-core machine, every 5-10 s under chat load: a stall of the event loop that every
    message in flight waited out. The survivors of a full collection are live, so freezing them right after
    it costs nothing, and the next full collection walks only what was made since (in bench.chat the longest
    collection per 5 s went from 126-147 ms to 20-27 ms).
    Freed objects are still freed at once by reference counting; what freezing delays is the collection of
    reference cycles among frozen objects that become garbage later: ``freeze_heap``, run every
    ``gc_freeze_seconds``, unfreezes and collects them.
    """

    def install(self) -> None:
        if self._after_collection not in gc.callbacks:
            gc.callbacks.append(self._after_collection)

    def remove(self) -> None:
        if self._after_collection in gc.callbacks:
            gc.callbacks.remove(self._after_collection)

    @staticmethod
    def _after_collection(phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:
            gc.freeze()


async def cancel_and_wait(task: asyncio.Task[object], *, grace: float = 5.0, attempts: int = 4) -> bool:
    """Cancel ``task`` and wait until it has ended, cancelling it again every ``grace`` seconds, ``attempts``
    times at most; whether it ended.

    One cancellation is not always enough: on Python 3.11 ``asyncio.wait_for`` (which libraries such as
    aioimaplib use inside) drops a cancellation that arrives as the awaited result does, and the task runs on.
    The grace period lets a task finish the cleanup its first cancellation started (a logout, a socket close)
    before it is interrupted again. A task that outlives every attempt is left running, with an error in the
    log, so that a stop (of a server, of a test) never hangs on it. What the task raised, other than its
    cancellation, is logged."""
    for attempt in range(attempts):
        task.cancel()
        await asyncio.wait([task], timeout=grace)
        if task.done():
            break
        if attempt + 1 < attempts:
            log.warning("task %s still runs %g s after its cancellation; cancelling it again", task.get_name(), grace)
    else:
        log.error("task %s did not stop in %g s; left running", task.get_name(), grace * attempts)
        return False
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s failed while stopping", task.get_name(), exc_info=task.exception())
    return True


def raise_if_cancelled() -> None:
    """Honour a cancellation that a library swallowed (see ``cancel_and_wait``): the task still counts it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
