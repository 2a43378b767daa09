"""The C heap's upkeep (`runtime.heap`): freed memory really goes back to the system, the arena cap honours an
explicit MALLOC_ARENA_MAX, and the trimmer waits for a quiet room (the real model scheduler)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

import pytest

from runtime import heap
from runtime.scheduler import ModelScheduler
from runtime.settings import PROJECT_ROOT

glibc_only = pytest.mark.skipif(heap._LIBC is None, reason="malloc_trim and mallopt are glibc's")


FRAGMENTED_THEN_TRIMMED = """
from benchmarks.process_stats import rss_mb
from runtime.heap import heap_mb
from runtime import heap
blocks, pins = [], []
block, pin = 65_000, 600  # (variables: a constant product would be one folded object)
for _ in range(3_000):  # 190 MB of heap in 64 KB blocks (under the mmap threshold), each page touched
    blocks.append(b"x" * block)
    pins.append(b"y" * pin)  # between them, so their room cannot go back by itself
del blocks
kept, before = heap_mb()[1], rss_mb()
released = heap.trim_heap()
print(kept, before, rss_mb(), released)
"""


@glibc_only
def test_trim_gives_freed_heap_back_to_the_system() -> None:
    # a fresh process: how much a trim gives back depends on everything the heap held before
    out = subprocess.run(
        [sys.executable, "-c", FRAGMENTED_THEN_TRIMMED],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    kept, before, after, released = float(out[0]), float(out[1]), float(out[2]), out[3]
    assert kept > 150  # freed, but still the process's
    assert released == "True" and after < before - 150, out


@glibc_only
def test_an_explicit_malloc_arena_max_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    assert heap.limit_malloc_arenas() is False
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert heap.limit_malloc_arenas() is True


@glibc_only
def test_the_trimmer_waits_while_a_reply_is_in_flight() -> None:
    scheduler = ModelScheduler("exclusive")
    trimmer = heap.HeapTrimmer(scheduler, interval_s=60.0, quiet_s=0.2)
    done = threading.Event()

    def trim() -> None:
        trimmer.trim_when_quiet()
        done.set()

    with scheduler.foreground(group=1):
        threading.Thread(target=trim, daemon=True).start()
        assert not done.wait(0.6)  # a reply is being made: no trim
        assert trimmer.trims == 0
    started_quiet = time.monotonic()
    assert done.wait(5.0)
    assert trimmer.trims == 1 and time.monotonic() - started_quiet >= 0.15  # after the quiet, not before
    assert trimmer.trim_s_max < 1.0


@glibc_only
@pytest.mark.asyncio
async def test_the_trimmer_runs_every_interval_and_stops_at_once() -> None:
    trimmer = heap.HeapTrimmer(ModelScheduler("pipelined"), interval_s=0.05, quiet_s=0.0).start()
    deadline = time.monotonic() + 5.0
    while trimmer.trims < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await trimmer.stop()
    assert trimmer.trims >= 3
    scheduler = ModelScheduler("pipelined")
    with scheduler.foreground(group=1):  # a reply that never ends
        busy = heap.HeapTrimmer(scheduler, interval_s=0.01).start()
        await asyncio.sleep(0.2)  # now waiting in its thread for a quiet room
        started = time.monotonic()
        await asyncio.wait_for(busy.stop(), 2.0)
        assert busy.trims == 0 and time.monotonic() - started < 1.0
        await asyncio.sleep(0.2)  # its thread has left the wait: the scheduler runs no background job
        assert scheduler.background_stats()["background_running"] == 0


def test_off_when_the_interval_is_zero() -> None:
    trimmer = heap.HeapTrimmer(ModelScheduler("pipelined"), interval_s=0.0)
    assert trimmer.start()._task is None
