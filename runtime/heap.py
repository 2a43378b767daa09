"""The C heap of a process that runs for days: fewer malloc arenas, and freed memory handed back when quiet.

ONNX Runtime (Silero, Smart Turn, Piper), CTranslate2 (Whisper) and llama.cpp allocate and free large buffers
from a dozen threads. glibc gives each contending thread an arena of its own (up to 8 per core) and keeps
what is freed inside them, so RSS rises in steps that the memory in use does not explain (sampled with
glibc's own counters in `python -m benchmarks.soak`). Two measures keep it flat:

* `limit_malloc_arenas()`: at most `DEFAULT_ARENAS` arenas (as `MALLOC_ARENA_MAX=2` would; an explicit
  `MALLOC_ARENA_MAX` in the environment wins). Measured: Whisper and Piper no slower on 2 cores.
* `HeapTrimmer`: every `HEAP_TRIM_INTERVAL_S`, once the model scheduler reports a quiet room (no reply in
  flight, no LLM/TTS work for 2 s), `malloc_trim(0)` returns the free pages of every arena to the system
  (about 15 ms; never during a reply).

(The other half of the fix is Piper's ONNX Runtime arena, shrunk after each run: `audio.tts_engines.piper`.)
Elsewhere than glibc (musl, macOS) both are no-ops.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import threading
import time
from typing import Any

from runtime import executors

log = logging.getLogger(__name__)

DEFAULT_ARENAS = 2
_M_ARENA_MAX = -8  # mallopt parameter (malloc.h)
QUIET_S = 2.0  # the scheduler's foreground quiet before a trim


def _glibc() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 (both exist only in glibc)
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _glibc()
_limited = False


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def heap_mb() -> tuple[float, float]:
    """glibc's heap, all arenas: (bytes handed out and not freed, bytes freed but kept) in MB; (0, 0) elsewhere.

    Growth of the first is memory in use (a leak, or a native cache such as an ONNX Runtime arena); growth of
    the second with the first flat is fragmentation (freed memory the allocator cannot give back)."""
    mallinfo2 = getattr(_LIBC, "mallinfo2", None)  # glibc >= 2.33
    if mallinfo2 is None:
        return 0.0, 0.0
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return (info.uordblks + info.hblkhd) / 2**20, info.fordblks / 2**20


def limit_malloc_arenas(arenas: int = DEFAULT_ARENAS) -> bool:
    """Cap glibc's malloc arenas for this process (call it early: arenas made before stay). True if applied."""
    global _limited
    if _LIBC is None or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    if not _limited:
        _limited = bool(_LIBC.mallopt(_M_ARENA_MAX, arenas))
        log.debug("malloc arenas limited to %d: %s", arenas, _limited)
    return _limited


def trim_heap() -> bool:
    """Give the free pages of every malloc arena back to the system. True if any memory was released."""
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(0))


class HeapTrimmer:
    """Every `interval_s`, waits for a quiet room (`scheduler.background`), then trims the heap in its own
    thread. `start()` on the event loop; `await stop()`."""

    def __init__(self, scheduler: Any, interval_s: float, *, quiet_s: float = QUIET_S) -> None:
        self.scheduler = scheduler
        self.interval_s = interval_s
        self.quiet_s = quiet_s
        self.trims = 0
        self.trim_s_max = 0.0
        self._stop = threading.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> "HeapTrimmer":
        if self.interval_s > 0 and _LIBC is not None and self._task is None:
            self._task = asyncio.create_task(self._run(), name="heap-trim")
        return self

    async def stop(self) -> None:
        self._stop.set()  # ends a wait for quiet in the housekeeping thread
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(self.interval_s)
            try:
                await executors.run("housekeeping", self.trim_when_quiet)
            except Exception:  # a failed trim costs memory, never the bot
                log.warning("heap trim failed", exc_info=True)

    def trim_when_quiet(self) -> bool:
        """Blocking: wait for a quiet room, trim. False if stopped first."""
        from runtime.scheduler import SchedulerCancelled

        try:
            with self.scheduler.background(None, owner="heap-trim", cancel=self._stop, quiet_s=self.quiet_s):
                start = time.monotonic()
                trim_heap()
                took = time.monotonic() - start
        except SchedulerCancelled:
            return False
        self.trims += 1
        self.trim_s_max = max(self.trim_s_max, took)
        log.debug("heap trimmed in %.1f ms", took * 1000)
        return True
