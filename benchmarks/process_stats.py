"""What one process uses, sampled: memory, threads (by role), CPU, file descriptors and asyncio tasks.

Used by the load and soak benchmarks on the bot's own process (its simulated members run in another one,
`simulator.world`). Linux: it reads /proc/self.

Thread roles come from the Python thread names chorus and its libraries give (``stt-worker``, ``vad``,
``voice-receive``, ``chorus-prefill``, ...); threads started by native code (ONNX Runtime, CTranslate2,
llama.cpp) have no Python name and count as ``native``.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from benchmarks.report import stats
from runtime.heap import heap_mb

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Python thread name prefix -> role (first match wins)
ROLES: tuple[tuple[str, str], ...] = (
    ("MainThread", "event loop"),
    ("stt-worker", "stt"),
    ("vad", "vad"),
    ("end-of-turn", "end of turn"),
    ("voice-receive", "receive"),
    ("voice-socket-reader", "udp reader"),
    ("chorus-prefill", "prefill"),
    ("chorus-models", "models"),
    ("chorus-io", "io"),
    ("chorus-housekeeping", "housekeeping"),
    ("heap-trim", "housekeeping"),
    ("reply-", "reply"),
    ("llm-http-cancel", "reply"),
    ("tts-", "tts"),
    ("audio-player", "playback"),
    ("voice-keep-alive", "voice keep-alive"),
    ("asyncio-waitpid", "benchmark"),
    ("sim-", "simulator"),
    ("asyncio_", "default executor"),
    ("ThreadPoolExecutor", "unnamed pool"),
)


def role_of(name: str) -> str:
    for prefix, role in ROLES:
        if name.startswith(prefix):
            return role
    if re.fullmatch(r"Thread-\d+(?: \(.*\))?", name):  # discord.py's AudioPlayer, keep-alive: unnamed threads
        return "discord.py"
    return "other"


def status_mb(field: str) -> float:
    """One kB field of /proc/self/status ("VmRSS", "RssAnon") in MB; 0 where the kernel does not show it."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def rss_mb() -> float:
    return status_mb("VmRSS")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _task_cpu_s(tid: int) -> float:
    try:
        with open(f"/proc/self/task/{tid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    except (OSError, IndexError, ValueError):
        return 0.0


def threads_by_role() -> tuple[dict[str, int], dict[str, float], int]:
    """(live threads per role, their CPU seconds per role, OS threads in all), native threads included."""
    named = {t.native_id: role_of(t.name) for t in threading.enumerate() if t.native_id is not None}
    counts: dict[str, int] = {}
    cpu: dict[str, float] = {}
    tids = [int(t) for t in os.listdir("/proc/self/task")]
    for tid in tids:
        role = named.get(tid, "native")
        counts[role] = counts.get(role, 0) + 1
        cpu[role] = cpu.get(role, 0.0) + _task_cpu_s(tid)
    return counts, cpu, len(tids)


def cpu_s() -> float:
    times = os.times()
    return times.user + times.system


@dataclass
class Sample:
    t: float
    rss_mb: float
    threads: int
    fds: int
    tasks: int
    cpu_s: float
    heap_used_mb: float = 0.0
    heap_free_mb: float = 0.0
    py_blocks: int = 0  # Python objects' memory blocks (sys.getallocatedblocks)


@dataclass
class Sampler:
    """Samples this process every `interval_s` (an asyncio task; `start()` / `await stop()`)."""

    interval_s: float = 1.0
    samples: list[Sample] = field(default_factory=list)
    peak_threads_by_role: dict[str, int] = field(default_factory=dict)
    other_names: set[str] = field(default_factory=set)  # Python threads no role names (to name them)
    _task: asyncio.Task | None = None

    def take(self) -> Sample:
        counts, _cpu, total = threads_by_role()
        self.other_names.update(t.name for t in threading.enumerate() if role_of(t.name) == "other")
        for role, n in counts.items():
            self.peak_threads_by_role[role] = max(self.peak_threads_by_role.get(role, 0), n)
        used, free = heap_mb()
        sample = Sample(
            time.monotonic(),
            round(rss_mb(), 1),
            total,
            open_fds(),
            len(asyncio.all_tasks()),
            round(cpu_s(), 2),
            round(used, 1),
            round(free, 1),
            sys.getallocatedblocks(),
        )
        self.samples.append(sample)
        return sample

    def start(self) -> "Sampler":
        self.take()
        self._task = asyncio.create_task(self._run(), name="process-sampler")
        return self

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self.take()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.take()

    def summary(self) -> dict[str, Any]:
        """Start, peak and end of each quantity, CPU use over the sampled time, live threads by role."""
        first, last = self.samples[0], self.samples[-1]
        wall = max(1e-9, last.t - first.t)
        counts, cpu_by_role, _ = threads_by_role()
        return {
            "wall_s": round(wall, 1),
            "cpu_s": round(last.cpu_s - first.cpu_s, 1),
            "cpu_cores": round((last.cpu_s - first.cpu_s) / wall, 2),  # average cores busy (2 on this machine)
            "rss_mb": {"start": first.rss_mb, "peak": max(s.rss_mb for s in self.samples), "end": last.rss_mb},
            "threads": {
                "start": first.threads,
                "peak": max(s.threads for s in self.samples),
                "end": last.threads,
                "peak_by_role": dict(sorted(self.peak_threads_by_role.items())),
                "end_by_role": dict(sorted(counts.items())),
                "other_names": sorted(self.other_names)[:20],
            },
            "thread_cpu_s_by_role": {k: round(v, 1) for k, v in sorted(cpu_by_role.items(), key=lambda kv: -kv[1])},
            "fds": {"start": first.fds, "peak": max(s.fds for s in self.samples), "end": last.fds},
            "asyncio_tasks": {"start": first.tasks, "peak": max(s.tasks for s in self.samples), "end": last.tasks},
        }


def slope_per_hour(samples: list[Sample], attr: str, *, after_s: float = 0.0) -> float | None:
    """Least-squares slope of `attr` per hour over the samples taken `after_s` after the first (warm-up
    excluded); None with fewer than 3 samples."""
    if not samples:
        return None
    t0 = samples[0].t
    kept = [s for s in samples if s.t - t0 >= after_s]
    if len(kept) < 3:
        return None
    t = np.array([s.t for s in kept]) / 3600.0
    y = np.array([getattr(s, attr) for s in kept], dtype=float)
    return float(np.polyfit(t - t[0], y, 1)[0])


def _merged(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def cores_while(samples: Sequence[Sample], spans: Iterable[tuple[float, float]]) -> dict[str, Any]:
    """The process's cores busy per sampling interval, and on average while any of `spans` (monotonic start,
    end: a member waiting for the bot's reply) was open and while none was.

    The average over a whole run says how much work was offered; the cores while a reply was awaited say whether
    the waiting was for the machine (close to every core busy) or for something else.
    """
    merged = _merged(spans)
    per_interval: list[float] = []
    awaited_s = awaited_cpu = idle_s = idle_cpu = 0.0
    for a, b in zip(samples, samples[1:]):
        dt = b.t - a.t
        if dt <= 0:
            continue
        cores = (b.cpu_s - a.cpu_s) / dt
        per_interval.append(cores)
        overlap = sum(max(0.0, min(b.t, end) - max(a.t, start)) for start, end in merged)
        awaited_s += overlap
        awaited_cpu += cores * overlap
        idle_s += dt - overlap
        idle_cpu += cores * (dt - overlap)
    wall = awaited_s + idle_s
    return {
        "per_interval_cores": stats(per_interval),
        "awaited_share_of_wall": round(awaited_s / wall, 3) if wall > 0 else None,
        "cores_while_awaited": round(awaited_cpu / awaited_s, 2) if awaited_s > 0 else None,
        "cores_while_none_awaited": round(idle_cpu / idle_s, 2) if idle_s > 0 else None,
    }
