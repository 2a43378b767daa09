"""Memory through a call (real room, real database: SQLite and PostgreSQL): facts written as they are said,
a summary at the end, recalled into the next call's replies; opted-out members and memory-off servers leave
nothing; summaries yield to replies under the scheduler."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from runtime.scheduler import ModelScheduler, SchedulerCancelled
from memory.responder import RememberingResponder
from tests.fixtures_memory import GUILD, CallUnderTest, RecordingResponder, line, memory_service
from tests.fixtures_storage import db_url, postgres_server  # noqa: F401 (fixtures)

ALICE, BOB = 11, 22


@pytest.mark.asyncio
async def test_two_calls_facts_then_summary_then_recall(db_url: str, tmp_path: Path) -> None:
    service = await memory_service(db_url, tmp_path)
    call = CallUnderTest({ALICE: "Alice", BOB: "Bob"})
    call.responder = service.wrap_responder(RecordingResponder(), GUILD)
    recorder = service.attach(GUILD, call)
    call.says(ALICE, "My sister Maya is a nurse in Boston.")
    call.says(ALICE, "And I really love jazz.", gap_s=0.5)  # merged into her line: only the new words count
    call.bot_says("Oh nice, jazz is great!")
    call.says(BOB, "I live in Lisbon now, it is sunny.")
    recorder.poll()
    assert await service.writes.drain(10)
    facts = {m.text for m in await service.about(GUILD, ALICE)}
    assert facts == {"sister Maya is a nurse in Boston", "loves jazz"}
    await call.responder.respond(None, [line("Alice", "Juniper, what about my sister?")], situation="", sink=None)
    assert call.responder.inner.memories[-1] == ""  # said in this call: in the history, not recalled as memory
    await service.session_closed(GUILD, call)  # /leave
    for _ in range(200):
        if not [t for t in service._tasks if t.get_name().startswith("memory-summary")]:
            break
        await asyncio.sleep(0.02)
    assert await service.writes.drain(10)
    summaries = [m.text for m in await service.about(GUILD, ALICE) if m.kind == "summary"]
    assert len(summaries) == 1 and "Maya" in summaries[0] and "jazz" in summaries[0]
    assert [m.text for m in await service.about(GUILD, BOB) if m.kind == "fact"] == ["lives in Lisbon now"]

    # the second call: Alice asks, and the reply's prompt carries what she said
    second = CallUnderTest({ALICE: "Alice"})
    responder = service.wrap_responder(RecordingResponder(), GUILD)
    assert isinstance(responder, RememberingResponder)
    second.responder = responder
    service.attach(GUILD, second)
    await responder.respond(
        None,
        [line("Alice", "Juniper, what did I tell you about my sister?")],
        situation="Alice is talking to you.",
        sink=None,
    )
    block = responder.inner.memories[-1]
    assert "Alice's sister Maya is a nurse in Boston" in block and "Lisbon" not in block  # Bob is not here
    assert block.startswith("You remember from earlier calls:")
    await asyncio.to_thread(responder.prefill, None, [line("Alice", "what about my sister")], None, situation="x")
    assert "Maya" in responder.inner.prefills[-1]
    responder.warm_up(None, GUILD)  # the cog's warm-up at /join goes through, as the guild's own work
    assert responder.inner.warm_ups == [GUILD]
    assert service.writes.stats.dropped == {}
    await service.close()
    await service.db.close()


@pytest.mark.asyncio
async def test_opted_out_member_and_memory_off_leave_no_rows(db_url: str, tmp_path: Path) -> None:
    service = await memory_service(db_url, tmp_path)
    call = CallUnderTest({ALICE: "Alice", BOB: "Bob"})
    call.responder = service.wrap_responder(RecordingResponder(), GUILD)
    recorder = service.attach(GUILD, call)
    await service.opt_out(GUILD, BOB, ["Bob"])
    call.says(BOB, "My name is Robert and I love sailing.")  # (the receive layer drops his audio; belt and braces)
    call.says(ALICE, "I went sailing with Bob, I love sailing too.")
    recorder.poll()
    await service.end_call(GUILD)
    await asyncio.sleep(0.1)
    assert await service.writes.drain(10)
    assert await service.store.count_about(GUILD, BOB) == 0
    texts = " ".join(m.text for m in await service.about(GUILD, ALICE))
    assert "sailing" in texts and "Bob" not in texts  # his name is not stored either

    await call.responder.respond(None, [line("Alice", "what does Bob like?")], situation="", sink=None)
    assert "Bob" not in call.responder.inner.memories[-1]  # never recalled, never addressed from memory

    await service.guild_store.set_memory_enabled(GUILD, False)
    call2 = CallUnderTest({ALICE: "Alice"})
    call2.responder = service.wrap_responder(RecordingResponder(), GUILD)
    recorder2 = service.attach(GUILD, call2)
    call2.says(ALICE, "My favorite color is green.")
    recorder2.poll()
    await service.end_call(GUILD)
    assert await service.writes.drain(10)
    assert "green" not in " ".join(m.text for m in await service.about(GUILD, ALICE))
    await call2.responder.respond(None, [line("Alice", "what do I like?")], situation="", sink=None)
    assert call2.responder.inner.memories[-1] == ""  # memory off: nothing recalled either
    await service.close()
    await service.db.close()


def test_background_work_yields_to_replies_at_once() -> None:
    scheduler = ModelScheduler("exclusive")
    started, stopped = threading.Event(), threading.Event()
    waited: list[float] = []

    def summary() -> None:
        with scheduler.background("llm", owner="summary", quiet_s=0.05) as preempt:
            started.set()
            while not preempt.wait(0.005):
                pass  # "generating" until a reply needs the model
            stopped.set()

    worker = threading.Thread(target=summary)
    worker.start()
    assert started.wait(5)
    t0 = time.monotonic()
    with scheduler.hold("llm", owner="reply"):  # a reply: the summary stops and hands the slot over
        waited.append(time.monotonic() - t0)
    worker.join(5)
    assert stopped.is_set() and waited[0] < 0.5 and scheduler.preemptions == 1
    kinds = [(r.owner, r.kind) for r in scheduler.intervals()]
    assert kinds == [("summary", "llm"), ("reply", "llm")]

    # while replies keep coming, background work does not start
    cancel = threading.Event()
    with scheduler.hold("llm", owner="long reply"):
        runner = threading.Thread(
            target=lambda: pytest.raises(
                SchedulerCancelled,
                lambda: scheduler.background("llm", owner="late", cancel=cancel, quiet_s=0.05).__enter__(),
            )
        )
        runner.start()
        time.sleep(0.3)
        assert not [r for r in scheduler.intervals() if r.owner == "late"]
        cancel.set()
        runner.join(5)
