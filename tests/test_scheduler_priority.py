"""Replies before background work (prefills, warm-ups, call summaries) on the shared LLM: a reply's own guild
keeps its prefill, other guilds' background work gives way at once, and none starts while a reply is in flight."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from runtime.scheduler import ModelScheduler, SchedulerCancelled


def start_background(scheduler: ModelScheduler, group, cancel: threading.Event, log: list) -> threading.Thread:
    """A prefill-like job: waits its turn, then runs until its event is set."""

    def work() -> None:
        try:
            with scheduler.background(None, owner=f"job-{group}", quiet_s=0.0, group=group, preempt=cancel):
                log.append(("started", group))
                while not cancel.is_set():
                    time.sleep(0.005)
                log.append(("stopped", group))
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
    assert log == [("started", "guild 3")]
    cancel.set()
    thread.join(5)


def test_a_reply_preempts_other_guilds_background_work_but_not_its_own() -> None:
    scheduler = ModelScheduler("exclusive")
    log: list = []
    own, other = threading.Event(), threading.Event()
    first = start_background(scheduler, "guild 1", own, log)
    wait_for(lambda: log == [("started", "guild 1")])
    second = start_background(scheduler, "guild 2", other, log)
    time.sleep(0.1)
    assert log == [("started", "guild 1")]  # one background job at a time: the LLM computes one thing
    with scheduler.foreground("guild 1"):
        time.sleep(0.1)
        assert not own.is_set()  # guild 1's prefill is evaluating guild 1's reply prompt: it goes on
        own.set()
        first.join(5)
        time.sleep(0.1)
        assert ("started", "guild 2") not in log  # a reply is in flight: nothing new starts
    wait_for(lambda: ("started", "guild 2") in log)
    other.set()
    second.join(5)
    assert scheduler.background_stats()["replies_in_flight"] == 0 and scheduler.preemptions == 0


def test_a_running_job_of_another_guild_stops_when_a_reply_starts() -> None:
    scheduler = ModelScheduler("pipelined")
    log: list = []
    cancel = threading.Event()
    thread = start_background(scheduler, "guild 2", cancel, log)
    wait_for(lambda: log)
    with scheduler.foreground("guild 1"):
        thread.join(5)
    assert log == [("started", "guild 2"), ("stopped", "guild 2")] and scheduler.preemptions == 1


@pytest.mark.asyncio
async def test_foreground_is_usable_around_an_await() -> None:
    scheduler = ModelScheduler("pipelined")
    with scheduler.foreground(7):
        await asyncio.sleep(0.01)
        assert scheduler.background_stats()["replies_in_flight"] == 1
    assert scheduler.background_stats()["replies_in_flight"] == 0


def test_slots_taken_elsewhere_counts_other_guilds_replies_against_the_slots() -> None:
    two = ModelScheduler("parallel", slots=2)
    assert not two.slots_taken_elsewhere(1)
    with two.foreground(2):
        assert not two.slots_taken_elsewhere(1)  # one slot left
        with two.foreground(1):
            assert not two.slots_taken_elsewhere(1)  # its own reply does not count
        with two.foreground(3):
            assert two.slots_taken_elsewhere(1) and two.slots_taken_elsewhere(3) is False
    one = ModelScheduler("exclusive", slots=4)  # one model job at a time whatever the slots asked
    with one.foreground(2):
        assert one.slots_taken_elsewhere(1) and not one.slots_taken_elsewhere(2)


@pytest.mark.parametrize("kind", ["llm", "tts"])
def test_heavy_work_of_a_guild_spares_its_own_background_job_unless_exclusive(kind) -> None:
    """A guild's greeting or reply (a TTS or LLM hold for that guild) lets the guild's own warm-up or prefill
    finish: it evaluates the prompt of that guild's next reply. Other guilds' jobs give way, and under
    `exclusive` (one heavy model at a time) every job does."""
    parallel = ModelScheduler("parallel", slots=2)
    log: list = []
    own, other = threading.Event(), threading.Event()
    first = start_background(parallel, "guild 1", own, log)
    wait_for(lambda: log == [("started", "guild 1")])
    with parallel.hold(kind, owner="greeting", group="guild 1"):
        time.sleep(0.05)
    assert not own.is_set() and parallel.preemptions == 0
    with parallel.hold(kind, owner="reply", group="guild 2"):
        first.join(5)
    assert own.is_set() and log[-1] == ("stopped", "guild 1") and parallel.preemptions == 1

    exclusive = ModelScheduler("exclusive")
    second = start_background(exclusive, "guild 1", other, log)
    wait_for(lambda: log[-1] == ("started", "guild 1"))
    with exclusive.hold(kind, owner="greeting", group="guild 1"):
        second.join(5)
    assert other.is_set() and exclusive.preemptions == 1
