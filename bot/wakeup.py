"""The prompter's interruptible sleep: sleep until the rules may decide differently, or until poked by an event."""

from __future__ import annotations

import asyncio
from typing import Any


class Wakeup:
    def __init__(self) -> None:
        self._poked = False
        self._sleeper: asyncio.Future | None = None

    def poke(self) -> None:
        """Something happened: wake the sleeper now (or make its next sleep return at once)."""
        self._poked = True
        if self._sleeper is not None and not self._sleeper.done():
            self._sleeper.set_result(None)

    async def sleep(self, seconds: float) -> None:
        if self._poked:
            self._poked = False
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        sleeper = loop.create_future()
        handle = loop.call_later(max(0.001, seconds), _set_result_unless_cancelled, sleeper, None)
        self._sleeper = sleeper
        try:
            await sleeper
        finally:
            handle.cancel()
            self._sleeper = None
            self._poked = False


def _set_result_unless_cancelled(fut: asyncio.Future, result: Any) -> None:
    """Wakes like `asyncio.sleep` (same callback shape and name), so tools that recognise sleeping tasks,
    such as SimCord's settlement, see a sleep."""
    if not fut.done():
        fut.set_result(result)
