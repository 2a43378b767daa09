"""Three minutes of the soak (`benchmarks.soak`): five members talking with silences, members leaving and coming
back, the voice connection broken four ways. The bot process must stay bounded (threads, descriptors, tasks,
memory after the warm-up), log no error, and come back from every fault by itself in the same session. The hour
is the benchmark's (`python -m benchmarks.soak --minutes 60`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.soak import run_soak

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(600)]

WARMUP_S = 40.0


async def test_three_minutes_stay_bounded_and_error_free(tmp_path: Path) -> None:
    result = await run_soak(3.0, sample_s=10.0, warmup_min=WARMUP_S / 60.0, reconnect_every_s=40.0,
                            presence_every_s=50.0, silence_every=4, silence_s=(8.0, 15.0), work=tmp_path)
    assert result["unhandled_errors"] == 0, result["errors"]
    faults = result["reconnects"]
    assert len(faults) >= 3 and all(f["ok"] and f["same_session"] for f in faults), faults
    assert result["presence_changes"] >= 2
    assert result["questions"] >= 3 and result["answered_rate"] > 0  # the conversation went on through it all
    samples = result["samples"]
    settled = [s for s in samples if s["t_s"] >= WARMUP_S]
    first, last = settled[0], settled[-1]
    assert last["threads"] <= first["threads"] + 4, samples
    assert last["fds"] <= first["fds"] + 4, samples
    assert last["tasks"] <= first["tasks"] + 10, samples
    assert last["rss_mb"] <= first["rss_mb"] + 150, samples
    # memory in use (glibc's heap) as RSS: the models still fill their caches in these minutes (+83 MB seen);
    # what must not come back is a cache that never gives back (tests/test_piper_memory.py pins Piper's)
    assert last["heap_used_mb"] <= first["heap_used_mb"] + 150, samples
    print({k: result[k] for k in ("slope_per_hour_after_warmup", "reconnect_s", "latency_s", "answered_rate")})
