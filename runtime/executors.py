"""Thread pools sized per role, instead of asyncio's default pool that every caller would share.

A blocking call on the event loop goes to the pool of its role, so one kind of work cannot take the threads
another needs (a burst of prefills waiting behind replies once held every thread of the default pool):

* ``models``: loading models and building what holds them (a session's listener): rare and slow;
* ``prefill``: background LLM work (prefills, persona warm-ups): one thread, as the LLM evaluates one prompt
  at a time for the whole process;
* ``io``: small blocking file and database work (guild settings, persona files);
* ``speech``: speech outside a reply (the spoken listening notice): one thread;
* ``memory``: a call's summaries for memory (background LLM work that waits for a quiet moment): one thread;
* ``housekeeping``: process upkeep that waits for a quiet moment (`runtime.heap.HeapTrimmer`): one thread.

    text = await executors.run("io", path.read_text)
"""

from __future__ import annotations

import asyncio
import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

T = TypeVar("T")

SIZES = {"models": 2, "prefill": 1, "io": 2, "speech": 1, "memory": 1, "housekeeping": 1}

_pools: dict[str, ThreadPoolExecutor] = {}
_lock = threading.Lock()


def executor(role: str) -> ThreadPoolExecutor:
    """The process's pool for `role` (created on first use; its threads are named after it)."""
    if role not in SIZES:
        raise ValueError(f"unknown executor role {role!r} (one of {', '.join(SIZES)})")
    with _lock:
        pool = _pools.get(role)
        if pool is None:
            pool = _pools[role] = ThreadPoolExecutor(max_workers=SIZES[role], thread_name_prefix=f"chorus-{role}")
        return pool


async def run(role: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run the blocking `fn(*args, **kwargs)` on the pool of `role` and await its result."""
    return await asyncio.get_running_loop().run_in_executor(executor(role), functools.partial(fn, *args, **kwargs))
