"""ModelScheduler: exclusive vs pipelined grants, fairness, cancellation, async use, `auto` resolution."""

from __future__ import annotations

import os

import asyncio
import threading
import time

import pytest

from runtime.scheduler import ModelScheduler, SchedulerCancelled
from runtime.scheduler_policy import PARALLEL_CPU_INSTANCES, gpu_free_bytes, llm_instances, resolve_policy
from runtime.settings import load_settings

GIB = 1024**3


def run_workers(scheduler: ModelScheduler, jobs: list[tuple[str, float]]) -> None:
    def work(kind: str, seconds: float, index: int) -> None:
        with scheduler.hold(kind, owner=f"w{index}"):
            time.sleep(seconds)

    threads = [threading.Thread(target=work, args=(kind, seconds, i)) for i, (kind, seconds) in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)


def test_exclusive_never_overlaps_llm_and_tts() -> None:
    scheduler = ModelScheduler("exclusive")
    run_workers(scheduler, [("llm", 0.03), ("tts", 0.03)] * 6)
    assert len(scheduler.intervals("llm")) == 6 and len(scheduler.intervals("tts")) == 6
    assert scheduler.overlap_seconds("llm", "tts") == 0.0
    assert scheduler.overlap_seconds("llm", "llm") == pytest.approx(sum(r.seconds for r in scheduler.intervals("llm")))
    spans = sorted((r.start, r.end) for r in scheduler.intervals() if r.kind in ("llm", "tts"))
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))  # no two heavy jobs at once


def test_pipelined_lets_them_overlap() -> None:
    scheduler = ModelScheduler("pipelined")
    run_workers(scheduler, [("llm", 0.05), ("tts", 0.05)] * 3)
    assert scheduler.overlap_seconds("llm", "tts") > 0.02


def test_stt_is_never_held_back() -> None:
    scheduler = ModelScheduler("exclusive")
    entered = threading.Event()
    with scheduler.hold("llm"):

        def stt() -> None:
            with scheduler.hold("stt"):
                entered.set()

        threading.Thread(target=stt).start()
        assert entered.wait(0.5)
    assert scheduler.overlap_seconds("llm", "stt") > 0.0  # STT ran inside the LLM slot
    assert len(scheduler.intervals("stt")) == 1


def test_exclusive_grants_in_request_order() -> None:
    scheduler = ModelScheduler("exclusive")
    order: list[int] = []
    release = threading.Event()

    def holder() -> None:
        with scheduler.hold("llm", owner="first"):
            release.wait(5)

    def waiter(i: int) -> None:
        with scheduler.hold("tts" if i % 2 else "llm", owner=f"w{i}"):
            order.append(i)

    first = threading.Thread(target=holder)
    first.start()
    time.sleep(0.05)
    waiters = []
    for i in range(6):
        t = threading.Thread(target=waiter, args=(i,))
        t.start()
        waiters.append(t)
        time.sleep(0.02)  # make the request order unambiguous
    assert scheduler.stats()["queued"] == 6
    release.set()
    for t in [first, *waiters]:
        t.join(5)
    assert order == list(range(6))


def test_waiting_can_be_cancelled_without_leaking_the_token() -> None:
    scheduler = ModelScheduler("exclusive")
    cancel = threading.Event()
    outcome: list[str] = []

    def waiter() -> None:
        try:
            with scheduler.hold("tts", cancel=cancel):
                outcome.append("ran")
        except SchedulerCancelled:
            outcome.append("cancelled")

    with scheduler.hold("llm"):
        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(0.05)
        started = time.monotonic()
        cancel.set()
        t.join(1)
        assert time.monotonic() - started < 0.1
    assert outcome == ["cancelled"]
    with scheduler.hold("tts"):  # the token is free again
        pass
    assert scheduler.stats()["queued"] == 0


def test_a_failing_job_releases_the_token() -> None:
    scheduler = ModelScheduler("exclusive")
    with pytest.raises(RuntimeError):
        with scheduler.hold("llm"):
            raise RuntimeError("model crashed")
    done = threading.Event()
    threading.Thread(target=lambda: (scheduler.hold("tts").__enter__(), done.set())).start()
    assert done.wait(1)


@pytest.mark.asyncio
async def test_async_use_waits_without_blocking_the_loop() -> None:
    scheduler = ModelScheduler("exclusive")
    ticks = 0
    stop = False

    async def ticker() -> None:
        nonlocal ticks
        while not stop:
            ticks += 1
            await asyncio.sleep(0.005)

    async def job(kind: str) -> None:
        async with scheduler.use(kind, owner=kind):
            await asyncio.sleep(0.05)

    tick_task = asyncio.create_task(ticker())
    await asyncio.gather(job("llm"), job("tts"), job("llm"))
    stop = True
    await tick_task
    assert scheduler.overlap_seconds("llm", "tts") == 0.0
    assert ticks >= 10  # the loop kept running while jobs waited

    # Cancelling a task that waits for the slot takes it out of the line.
    async with scheduler.use("llm"):
        waiting = asyncio.create_task(job("tts"))
        await asyncio.sleep(0.02)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    assert scheduler.stats()["queued"] == 0
    async with scheduler.use("tts"):
        pass


def test_auto_policy_resolution() -> None:
    auto = load_settings(env={"SCHEDULER_POLICY": "auto"}, env_file=None)
    small = lambda: 8 * GIB  # noqa: E731
    big = lambda: 40 * GIB  # noqa: E731
    assert resolve_policy(auto, llm_gpu=True, tts_on_gpu=True, gpu_probe=small)[0] == "exclusive"
    assert resolve_policy(auto, llm_gpu=True, tts_on_gpu=True, gpu_probe=big)[0] == "pipelined"
    assert resolve_policy(auto, llm_gpu=True, tts_on_gpu=True, gpu_probe=lambda: None)[0] == "exclusive"
    assert resolve_policy(auto, llm_gpu=False, tts_on_gpu=True, gpu_probe=small)[0] == "pipelined"
    assert resolve_policy(auto, llm_gpu=True, tts_on_gpu=False, gpu_probe=small)[0] == "pipelined"
    assert resolve_policy(auto, llm_gpu=False, tts_on_gpu=False, cpu_count=2)[0] == "parallel"
    assert resolve_policy(auto, llm_gpu=False, tts_on_gpu=False, cpu_count=1)[0] == "exclusive"
    one = load_settings(env={"SCHEDULER_POLICY": "auto", "LLM_INSTANCES": "1"}, env_file=None)
    assert resolve_policy(one, llm_gpu=False, tts_on_gpu=False, cpu_count=2)[0] == "exclusive"
    assert resolve_policy(auto, llm_gpu=False, tts_on_gpu=False, cpu_count=16)[0] == "pipelined"
    forced = load_settings(env={"SCHEDULER_POLICY": "exclusive"}, env_file=None)
    assert resolve_policy(forced, llm_gpu=False, tts_on_gpu=False) == ("exclusive", "SCHEDULER_POLICY=exclusive")
    # This machine: CPU build of llama.cpp (LLM_GPU_LAYERS=0) and Piper on the same few CPU cores.
    here = ModelScheduler.from_settings(auto)
    cores = os.cpu_count() or 1
    expected = "pipelined" if cores > 4 else "parallel" if cores >= 2 else "exclusive"
    assert here.policy == expected and "CPU" in here.reason
    assert here.slots == (PARALLEL_CPU_INSTANCES if expected == "parallel" else 1)
    parallel = load_settings(env={"SCHEDULER_POLICY": "parallel"}, env_file=None)
    assert ModelScheduler.from_settings(parallel).slots == (PARALLEL_CPU_INSTANCES if (os.cpu_count() or 1) >= 2 else 1)
    assert llm_instances(0, llm_gpu=False, policy="parallel", cpu_count=2) == PARALLEL_CPU_INSTANCES == 3
    assert llm_instances(0, llm_gpu=True, policy="parallel", cpu_count=2) == 1
    assert llm_instances(0, llm_gpu=False, policy="exclusive", cpu_count=8) == 1
    assert llm_instances(3, llm_gpu=False, policy="exclusive", cpu_count=2) == 3
    gpu_xtts = load_settings(
        env={"SCHEDULER_POLICY": "auto", "LLM_GPU_LAYERS": "-1", "TTS_ENGINE": "xtts"}, env_file=None
    )
    # The CPU build cannot offload layers, whatever LLM_GPU_LAYERS says.
    assert ModelScheduler.from_settings(gpu_xtts, gpu_probe=small).policy == "pipelined"


def test_gpu_probe_reports_nothing_without_a_gpu() -> None:
    free = gpu_free_bytes()
    assert free is None or free > 0


def test_unknown_policy_or_kind_is_rejected() -> None:
    with pytest.raises(ValueError):
        ModelScheduler("auto")
    with pytest.raises(ValueError):
        with ModelScheduler("exclusive").hold("vision"):
            pass


def test_parallel_runs_at_most_its_slots_of_heavy_work_at_once() -> None:
    scheduler = ModelScheduler("parallel", slots=2)
    run_workers(scheduler, [("llm", 0.05), ("tts", 0.05)] * 4)
    spans = [(r.start, r.end) for r in scheduler.intervals() if r.kind in ("llm", "tts")]
    assert len(spans) == 8
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most == 2  # two jobs ran at once, never three
    assert scheduler.overlap_seconds("llm", "llm") + scheduler.overlap_seconds("llm", "tts") > 0.02


def test_exclusive_has_one_slot_whatever_it_is_given() -> None:
    scheduler = ModelScheduler("exclusive", slots=3)
    assert scheduler.slots == 1
    run_workers(scheduler, [("llm", 0.02), ("tts", 0.02)] * 3)
    spans = sorted((r.start, r.end) for r in scheduler.intervals())
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))
    with pytest.raises(ValueError):
        ModelScheduler("parallel", slots=0)
