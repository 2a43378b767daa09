"""The leak check of `tests/test_soak_short.py` (`benchmarks.leak_check`) on a workload that keeps nothing: it
reads the rate of an injected leak back, lets go of it afterwards, and reads no growth without one."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from benchmarks.leak_check import InjectedLeak, QuietPoint, repeated, theil_sen_per_hour

pytestmark = pytest.mark.asyncio

RATE_MB_PER_H = 1800.0  # 0.5 MB a second: a few seconds tell it from the allocator's noise


async def idle(_index: int) -> None:
    await asyncio.sleep(0.5)


async def test_an_injected_leak_is_read_back_and_let_go() -> None:
    leaky = await repeated(idle, warmup=1, reps=6, leak_mb_per_hour=RATE_MB_PER_H)
    assert leaky["growth_per_hour"]["allocated_mb"] == pytest.approx(RATE_MB_PER_H, rel=0.25), leaky
    assert leaky["injected_mb"] > 1.0
    clean = await repeated(idle, warmup=0, reps=6)
    assert abs(clean["growth_per_hour"]["allocated_mb"]) < 0.1 * RATE_MB_PER_H, clean
    assert clean["points"][0]["allocated_mb"] < leaky["points"][-1]["allocated_mb"] - 0.5 * leaky["injected_mb"]


async def test_the_slope_ignores_one_odd_point() -> None:
    points = [
        QuietPoint(
            t=i * 60.0, allocated_mb=100.0 + i * 0.5, heap_used_mb=0.0, pymalloc_mb=0.0, rss_anon_mb=0.0, py_blocks=0
        )
        for i in range(7)
    ]  # +0.5 MB a minute: 30 MB/h
    assert theil_sen_per_hour(points, "allocated_mb") == pytest.approx(30.0)
    points[3] = replace(points[3], allocated_mb=400.0)  # one reading taken mid-allocation
    assert theil_sen_per_hour(points, "allocated_mb") == pytest.approx(30.0)


async def test_the_leak_stops_growing_when_stopped() -> None:
    leak = InjectedLeak(RATE_MB_PER_H, every_s=0.1).start()
    await asyncio.sleep(0.5)
    await leak.stop()
    pieces = leak.pieces
    await asyncio.sleep(0.3)
    assert leak.pieces == pieces and leak.kept == [] and leak.kept_mb > 0
