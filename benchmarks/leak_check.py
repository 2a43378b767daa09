"""A leak check that a few minutes can settle: the same workload repeated, memory read at the same quiet point.

RSS sampled while a call goes on swings by ±10 MB within a minute (models' caches and buffers, file-backed model
pages, allocator slack), so its slope over minutes cannot tell a 100 MB/h leak (1.7 MB/min) from noise. Here the
workload (`Workload`: a question and its answer, a member leaving and coming back, a voice fault) runs `warmup`
times, then `reps` times more; after each run, once the bot is idle, the garbage is collected and the heap trimmed,
and the process's memory is read (`QuietPoint`). What is asserted on is `allocated_mb`: the bytes the process holds
allocated, glibc's heap in use (every native library's malloc, and Python objects over 512 bytes) plus Python's
small-object allocator's blocks in use, less the LLM's saved prompt states (`brain.kv_states`, a cache bounded by
`LLM_STATE_CACHE_MB`, reported apart as `kv_states_mb`): exact counts, not pages, so they move only when something is kept. Anonymous
RSS is reported beside it: even read at quiet points it jumped by ±15 MB between repetitions on a 2-core machine
(arenas and buffers mapped and unmapped by the native libraries), while the heap in use moved by 0.04-0.3 MB. The
growth per hour is the Theil-Sen slope (the median of the pairwise slopes: one odd point does not move it) over
the quiet points, per hour of the runs. `InjectedLeak` allocates and keeps memory at a given rate meanwhile, to
show the check fails on a real leak.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any, Awaitable, Callable

from benchmarks.process_stats import status_mb
from brain.kv_states import bytes_kept
from runtime.heap import heap_mb, trim_heap

Workload = Callable[[int], Awaitable[None]]  # one repetition (its index); returns when the bot is idle again
METRICS = ("allocated_mb", "heap_used_mb", "pymalloc_mb", "rss_anon_mb")


@dataclass(frozen=True, slots=True)
class QuietPoint:
    t: float  # monotonic seconds
    allocated_mb: float  # heap_used_mb + pymalloc_mb, less kv_states_mb
    heap_used_mb: float
    pymalloc_mb: float
    rss_anon_mb: float
    py_blocks: int
    kv_states_mb: float = 0.0  # the LLM's saved prompt states (brain.kv_states): bounded by LLM_STATE_CACHE_MB


def rss_anon_mb() -> float:
    """Anonymous resident memory (heap, arenas, stacks): RSS without the file-backed pages of mapped models."""
    return status_mb("RssAnon")


def pymalloc_mb() -> float:
    """The bytes in Python's small-object allocator's blocks in use (its own arenas: not in glibc's heap), as
    `sys._debugmallocstats` reports them (on the C stderr, read back through a temporary file)."""
    with tempfile.TemporaryFile() as out:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        for line in out.read().decode("ascii", "replace").splitlines():
            if line.startswith("# bytes in allocated blocks"):
                return int(line.split("=")[1].replace(",", "").strip()) / 2**20
    return 0.0


def quiet_point() -> QuietPoint:
    """The process's memory with the garbage collected and the free heap pages given back (blocking: ~20 ms)."""
    gc.collect()
    trim_heap()
    heap, small = heap_mb()[0], pymalloc_mb()
    kv = bytes_kept() / 2**20  # a cache with a byte budget fills over a session: counted apart, not as a leak
    return QuietPoint(
        time.monotonic(),
        round(heap + small - kv, 3),
        round(heap, 3),
        round(small, 3),
        round(rss_anon_mb(), 2),
        sys.getallocatedblocks(),
        round(kv, 3),
    )


def theil_sen_per_hour(points: list[QuietPoint], attr: str) -> float | None:
    """The median of the pairwise slopes of `attr` over time, per hour; None with fewer than 3 points."""
    if len(points) < 3:
        return None
    slopes = [
        (getattr(b, attr) - getattr(a, attr)) / (b.t - a.t) * 3600.0
        for a, b in itertools.combinations(points, 2)
        if b.t > a.t
    ]
    return float(statistics.median(slopes))


class InjectedLeak:
    """Allocates and keeps `mb_per_hour` (written, so resident), one piece a second, until stopped (then it lets
    go of all of it: what is measured next starts without it)."""

    def __init__(self, mb_per_hour: float, *, every_s: float = 1.0) -> None:
        self.bytes_per_piece = int(mb_per_hour * 2**20 / 3600.0 * every_s)
        self.every_s = every_s
        self.kept: list[bytes] = []
        self.pieces = 0
        self._task: asyncio.Task | None = None

    @property
    def kept_mb(self) -> float:
        """What was allocated and kept until `stop`."""
        return self.pieces * self.bytes_per_piece / 2**20

    def start(self) -> "InjectedLeak":
        self._task = asyncio.create_task(self._run(), name="injected-leak")
        return self

    async def _run(self) -> None:
        while True:
            self.kept.append(b"\x5a" * self.bytes_per_piece)  # filled: its pages are resident
            self.pieces += 1
            await asyncio.sleep(self.every_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.kept.clear()


async def repeated(
    workload: Workload, *, warmup: int, reps: int, leak_mb_per_hour: float = 0.0, start_index: int = 0
) -> dict[str, Any]:
    """Run the workload `warmup` times, then `reps` times with a quiet point before the first and after each
    (and, with `leak_mb_per_hour`, an `InjectedLeak` during those). Returns the points and the growth per hour."""
    index = start_index
    for _ in range(warmup):
        await workload(index)
        index += 1
    points = [quiet_point()]
    leak = InjectedLeak(leak_mb_per_hour).start() if leak_mb_per_hour > 0 else None
    try:
        for _ in range(reps):
            await workload(index)
            index += 1
            points.append(quiet_point())
    finally:
        if leak is not None:
            await leak.stop()
    growth = {attr: theil_sen_per_hour(points, attr) for attr in (*METRICS, "py_blocks")}
    return {
        "warmup": warmup,
        "reps": reps,
        "next_index": index,
        "rep_s": round((points[-1].t - points[0].t) / max(1, reps), 1),
        "injected_mb_per_hour": leak_mb_per_hour,
        "injected_mb": round(leak.kept_mb, 2) if leak else 0.0,
        "growth_per_hour": {k: None if v is None else round(v, 1) for k, v in growth.items()},
        "points": [{**asdict(p), "t": round(p.t - points[0].t, 1)} for p in points],
    }
