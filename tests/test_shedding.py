"""What bounded queues drop under load: counted by reason, logged once per burst (`runtime.shedding`), and the
captions queue that uses it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.captions import MAX_PENDING, CaptionQueue
from runtime.metrics import Metrics
from runtime.shedding import ShedLog


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_burst_is_logged_once_when_it_starts_and_summed_up_when_the_next_begins(caplog) -> None:
    clock = Clock()
    shed = ShedLog("stt", label="guild 42", burst_gap_s=5.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="runtime.shedding"):
        for _ in range(50):
            shed.shed("backlog")
            clock.t += 0.1
        shed.shed("stale", 3)
        assert [r.levelname for r in caplog.records] == ["WARNING"]  # one line for the whole burst so far
        clock.t += 10.0  # quiet, then a new burst
        shed.shed("backlog")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert lines[0].startswith("guild 42: shedding stt (backlog)")
    assert "stt shed 53 in 5.0 s (50 backlog, 3 stale)" in lines[1]
    assert lines[2].startswith("guild 42: shedding stt (backlog)")
    assert shed.counts() == {"backlog": 51, "stale": 3} and shed.total == 54


def test_drops_reach_the_metrics_when_they_are_on() -> None:
    metrics = Metrics().activate()
    try:
        ShedLog("captions", label="guild 7").shed("backlog", 2)
        ShedLog("stt", label="").shed("backlog")
        text = metrics.exposition().decode()
    finally:
        metrics.deactivate()
    assert 'chorus_shed_total{guild="7",queue="captions",reason="backlog"} 2.0' in text
    assert 'chorus_shed_total{guild="process",queue="stt",reason="backlog"} 1.0' in text


@pytest.mark.asyncio
async def test_captions_wait_in_a_bounded_queue_and_go_out_in_order() -> None:
    sent: list[str] = []
    gate = asyncio.Event()

    async def slow_sink(text: str) -> None:
        await gate.wait()
        sent.append(text)

    tasks: set[asyncio.Task] = set()
    queue = CaptionQueue(
        lambda: slow_sink, spawn=lambda coro, name: tasks.add(asyncio.create_task(coro, name=name)), label="guild 3"
    )
    for i in range(MAX_PENDING + 11):
        queue.put(f"line {i}")
    await asyncio.sleep(0.01)
    assert len(tasks) == 1  # one sender
    assert len(queue) <= MAX_PENDING
    gate.set()
    await asyncio.gather(*tasks)
    # the newest MAX_PENDING went out, in order; the oldest were shed
    assert sent == [f"line {i}" for i in range(11, MAX_PENDING + 11)]
    assert queue.shedding.counts() == {"backlog": 11} and queue.sent == MAX_PENDING
    queue.put("later")  # a new sender once the queue had emptied
    await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)
    assert sent[-1] == "later"
