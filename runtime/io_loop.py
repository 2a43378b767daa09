"""One background asyncio loop for the model clients' network I/O (Wyoming speech servers, the LLM server).

Model calls run on worker threads (the STT worker, TTS and LLM threads) and are blocking by design; their
network I/O is asyncio (the `wyoming` and `openai` libraries). `submit` runs a coroutine on this loop from such a
thread, and cancelling the returned future cancels the coroutine (which closes its connection), so a cancel
takes effect at once even while a read is blocked. Never call `run_blocking` from this loop itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Awaitable, TypeVar

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def io_loop() -> asyncio.AbstractEventLoop:
    """The loop (started on first use, in a daemon thread named `model-io`)."""
    global _loop
    with _lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="model-io", daemon=True).start()
            _loop = loop
        return _loop


def submit(coro: Awaitable[T]) -> concurrent.futures.Future[T]:
    """Start `coro` on the I/O loop; cancel the returned future to cancel it."""
    return asyncio.run_coroutine_threadsafe(coro, io_loop())  # type: ignore[arg-type]


def run_blocking(coro: Awaitable[T]) -> T:
    """Run `coro` on the I/O loop and wait for its result (from a worker thread)."""
    return submit(coro).result()
