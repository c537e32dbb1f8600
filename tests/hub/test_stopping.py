"""Stops that cannot hang: a worker task that ignores its cancellation is given a bounded grace, and a test whose
async teardown hangs is ended by pytest-timeout (issue 19: a CI run once hung tearing down an email fixture)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hub.workers import cancel_and_wait

ROOT = Path(__file__).resolve().parents[2]


async def _stubborn(released: asyncio.Event) -> None:
    """A task that swallows every cancellation, as a library's ``wait_for`` sometimes does, until released."""
    while not released.is_set():
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            continue


async def test_a_task_that_ignores_cancellation_is_left_after_a_bounded_grace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``cancel_and_wait`` cancels again after each grace period and gives up after the last, saying so, instead
    of waiting for ever; a task that does stop is waited for."""
    released = asyncio.Event()
    task = asyncio.create_task(_stubborn(released), name="stubborn")
    await asyncio.sleep(0.01)  # running, inside its try
    started = time.monotonic()
    assert await cancel_and_wait(task, grace=0.2, attempts=3) is False
    assert time.monotonic() - started < 2.0
    assert "task stubborn did not stop in 0.6 s; left running" in caplog.text
    assert not task.done()
    released.set()  # a test cannot leave it running
    await task
    polite = asyncio.create_task(asyncio.sleep(60))
    assert await cancel_and_wait(polite, grace=0.2) is True and polite.cancelled()


def test_pytest_timeout_ends_a_test_whose_async_teardown_hangs(tmp_path: Path) -> None:
    """With the project's pytest settings, a fixture whose teardown waits for a task that ignores cancellation
    is ended by the timeout, with the stacks of every thread, instead of hanging the run (pytest-timeout's signal
    method raised inside the event loop, where the loop's own teardown then waited for the task for ever)."""
    test = tmp_path / "test_hangs.py"
    test.write_text(
        textwrap.dedent(
            """
            import asyncio
            import pytest

            async def stubborn():
                while True:
                    try:
                        await asyncio.sleep(0.05)
                    except asyncio.CancelledError:
                        continue

            @pytest.fixture
            async def stuck():
                task = asyncio.create_task(stubborn())
                yield
                task.cancel()
                await task

            async def test_uses_it(stuck):
                pass
            """
        )
    )
    started = time.monotonic()
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-c",
                str(ROOT / "pyproject.toml"),
                "--rootdir",
                str(tmp_path),
                "-p",
                "no:cacheprovider",
                "--timeout",
                "3",
                str(test),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the hanging teardown was not ended by pytest-timeout")
    assert done.returncode != 0
    assert "Timeout" in done.stdout + done.stderr
    assert time.monotonic() - started < 60
