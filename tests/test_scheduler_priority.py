"""Replies before background work (prefills, warm-ups) on the shared LLM (`bot.priority`)."""

from __future__ import annotations

import threading
import time

import pytest

from bot.scheduler import ModelScheduler, SchedulerCancelled


def start_background(scheduler: ModelScheduler, group, cancel: threading.Event, log: list) -> threading.Thread:
    def work() -> None:
        try:
            with scheduler.background(group=group, cancel=cancel) as waited:
                log.append(("started", group, waited))
                while not cancel.is_set():
                    time.sleep(0.005)
                log.append(("cancelled", group))
        except SchedulerCancelled:
            log.append(("gave up", group))

    thread = threading.Thread(target=work)
    thread.start()
    return thread


def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_background_work_waits_for_every_reply_in_flight() -> None:
    scheduler = ModelScheduler("pipelined")
    log: list = []
    cancel = threading.Event()
    with scheduler.foreground("guild 1"):
        with scheduler.foreground("guild 2"):
            thread = start_background(scheduler, "guild 3", cancel, log)
            time.sleep(0.1)
            assert log == []
        time.sleep(0.1)
        assert log == []  # one reply still in flight
    wait_for(lambda: log)
    assert log == [("started", "guild 3", True)]
    cancel.set()
    thread.join(5)


def test_a_reply_preempts_other_guilds_background_work_but_not_its_own() -> None:
    scheduler = ModelScheduler("exclusive")
    log: list = []
    own, other = threading.Event(), threading.Event()
    threads = [start_background(scheduler, "guild 1", own, log), start_background(scheduler, "guild 2", other, log)]
    wait_for(lambda: len(log) == 2)
    with scheduler.foreground("guild 1"):
        wait_for(lambda: other.is_set())
        time.sleep(0.05)
        assert not own.is_set()  # guild 1's prefill is evaluating guild 1's reply prompt: it goes on
    assert scheduler.priorities.preempted == 1
    own.set()
    for thread in threads:
        thread.join(5)
    assert ("cancelled", "guild 2") in log


def test_background_work_cancelled_while_waiting_gives_up() -> None:
    scheduler = ModelScheduler("pipelined")
    log: list = []
    cancel = threading.Event()
    with scheduler.foreground("guild 1"):
        thread = start_background(scheduler, "guild 2", cancel, log)
        time.sleep(0.05)
        cancel.set()
        thread.join(5)
    assert log == [("gave up", "guild 2")]
    assert scheduler.stats()["priorities"]["replies_in_flight"] == 0


@pytest.mark.asyncio
async def test_foreground_is_usable_around_an_await() -> None:
    import asyncio

    scheduler = ModelScheduler("pipelined")
    with scheduler.foreground(7):
        await asyncio.sleep(0.01)
        assert scheduler.priorities.replies_in_flight == 1
    assert scheduler.priorities.replies_in_flight == 0
