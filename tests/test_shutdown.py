"""`bot.startup.run_to_end`: a task that ignores its cancellation cannot keep the process from exiting."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from bot.startup import run_to_end


def test_a_task_that_ignores_cancellation_is_named_and_left(caplog: pytest.LogCaptureFixture) -> None:
    ended: list[str] = []

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue  # the bug this guards against

    async def polite() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            ended.append("polite")

    async def main() -> None:
        asyncio.get_running_loop().create_task(stubborn(), name="stubborn")
        asyncio.get_running_loop().create_task(polite(), name="polite")
        await asyncio.sleep(0.01)

    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="chorus.shutdown"):
        run_to_end(main(), shutdown_s=0.3)
    assert time.monotonic() - started < 3.0
    assert ended == ["polite"]
    assert any("stubborn" in r.getMessage() for r in caplog.records)
    assert not any("polite" in r.getMessage() for r in caplog.records)


def test_the_result_of_main_comes_out() -> None:
    async def main() -> None:
        raise ValueError("the real error")

    with pytest.raises(ValueError, match="the real error"):
        run_to_end(main())
