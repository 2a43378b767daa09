"""One transcription worker for every guild of the process: finals before partials across guilds, guilds
taking turns, finals of different guilds sharing a Whisper call, a bounded queue per member (on tiny.en)."""

from __future__ import annotations

import threading
import time

import pytest

from audio.stt import WhisperTranscriber
from audio.stt_scheduler import MAX_QUEUED_PER_MEMBER, PartialSource, SttJob, SttScheduler
from tests.fixtures_listening import settings, speech


class Gate:
    """A real transcriber whose first call waits for `open`: lets a test queue work behind it. Shares the
    inner transcriber's model (so lanes using either share a worker) and its batch key."""

    def __init__(self, inner: WhisperTranscriber) -> None:
        self.inner = inner
        self.model = inner.model
        self.batch_key = inner.batch_key
        self.open = threading.Event()
        self.entered = threading.Event()
        self.calls: list[int] = []

    def transcribe(self, audios, **kw):
        self.entered.set()
        self.open.wait(10)
        self.calls.append(len(audios))
        return self.inner.transcribe(audios, **kw)


@pytest.fixture(scope="module")
def transcriber():
    return WhisperTranscriber(settings())


def wait_until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def stt_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "stt-worker")


def test_guilds_share_one_worker_that_ends_with_the_last_of_them(transcriber):
    before = stt_threads()
    lanes = [SttScheduler(transcriber, partial_interval_s=0.5, name=f"guild {g}") for g in range(4)]
    worker = lanes[0]._worker
    try:
        assert stt_threads() <= before + 1
        assert all(lane._worker is worker for lane in lanes)
    finally:
        for lane in lanes:
            lane.close()
    if not worker.lanes:  # no other test's listener on this model: the thread is gone
        worker._thread.join(5)
        assert not worker._thread.is_alive()


def test_one_guilds_partials_and_many_finals_never_hold_back_anothers_final(transcriber):
    gate = Gate(transcriber)
    busy = SttScheduler(gate, partial_interval_s=0.1, max_batch=1, name="guild busy")
    quiet = SttScheduler(gate, partial_interval_s=0.1, max_batch=1, name="guild quiet")
    order: list[tuple[str, str, int]] = []
    clip = speech("Hello there.")

    def record(lane: str, kind: str):
        return lambda job, result: order.append((lane, kind, job.user_id))

    try:
        busy.submit(SttJob(9, "final", clip, record("busy", "blocker")))
        assert gate.entered.wait(10)
        # the busy guild: three members speaking (partials due now) and four finals of two members queued
        for uid in (1, 2, 3):
            busy.start_partials(
                PartialSource(
                    uid,
                    snapshot=lambda: clip,
                    is_stale=lambda: False,
                    next_due=0.0,
                    on_done=lambda r, s, stale, uid=uid: order.append(("busy", "partial", uid)),
                )
            )
        for uid in (1, 1, 2, 2):
            busy.submit(SttJob(uid, "final", clip, record("busy", "final")))
        busy.submit(SttJob(3, "speculative", clip, record("busy", "speculative")))
        # the quiet guild: one member's final, then one speculative
        quiet.submit(SttJob(7, "final", clip, record("quiet", "final")))
        quiet.submit(SttJob(8, "speculative", clip, record("quiet", "speculative")))
        gate.open.set()
        wait_until(lambda: sum(1 for o in order if o[1] == "partial") >= 1)
    finally:
        busy.close()
        quiet.close()
    kinds = [kind for _, kind, _ in order]
    assert kinds[0] == "blocker"
    finals = [o for o in order[1:] if o[1] == "final"]
    assert len(finals) == 5
    # guilds take turns: the quiet guild's one final runs first or second, never after the busy guild's backlog
    assert ("quiet", "final", 7) in finals[:2], order
    # the busy guild's members take turns too
    busy_finals = [uid for lane, _, uid in finals if lane == "busy"]
    assert busy_finals in ([1, 2, 1, 2], [2, 1, 2, 1]), order
    # every confirmed final before any speculative one, every speculative one before any partial
    last_final = max(i for i, k in enumerate(kinds) if k == "final")
    specs = [i for i, k in enumerate(kinds) if k == "speculative"]
    first_partial = kinds.index("partial")
    assert len(specs) == 2 and last_final < min(specs) and max(specs) < first_partial, order


def test_finals_of_different_guilds_share_one_whisper_call(transcriber):
    gate = Gate(transcriber)
    other = WhisperTranscriber(settings())  # another guild's transcriber, configured alike
    assert other.batch_key == transcriber.batch_key
    first = SttScheduler(gate, partial_interval_s=1.0, max_batch=4, name="guild 1")
    second = SttScheduler(other, partial_interval_s=1.0, max_batch=4, name="guild 2")
    done: list[str] = []
    clip = speech("Can you hear me now?")
    try:
        first.submit(SttJob(1, "final", clip, lambda j, r: done.append("blocker")))
        assert gate.entered.wait(10)
        first.submit(SttJob(2, "final", clip, lambda j, r: done.append(r.text)))
        second.submit(SttJob(3, "final", clip, lambda j, r: done.append(r.text)))
        gate.open.set()
        wait_until(lambda: len(done) == 3)
    finally:
        first.close()
        second.close()
    assert gate.calls == [1, 2]  # the two guilds' finals in one call
    assert done[1] == done[2] and "hear me" in done[1].lower()
    assert first.stats.batches == 2 and second.stats.batches == 1 and second.stats.max_batch_seen == 2


def test_a_members_backlog_is_bounded_and_what_is_shed_still_closes_its_segment(transcriber):
    gate = Gate(transcriber)
    lane = SttScheduler(gate, partial_interval_s=1.0, max_batch=1, name="guild 5")
    results: dict[int, str | None] = {}
    clip = speech("Hello there.")
    try:
        lane.submit(SttJob(9, "final", clip, lambda j, r: None))
        assert gate.entered.wait(10)
        jobs = [
            lane.submit(SttJob(1, "final", clip, lambda j, r, i=i: results.__setitem__(i, r.rejected)))
            for i in range(MAX_QUEUED_PER_MEMBER + 2)
        ]
        assert lane.pending_finals() == MAX_QUEUED_PER_MEMBER
        # the two oldest were shed at once, with an empty result: their segments get their (empty) final
        assert results == {0: "shed: transcription backlog", 1: "shed: transcription backlog"}
        assert jobs[0].done.is_set() and jobs[0].result.text == ""
        gate.open.set()
        wait_until(lambda: len(results) == len(jobs))
    finally:
        lane.close()
    assert all(results[i] is None for i in range(2, len(jobs)))
    assert lane.stats.shed == 2 and lane.shedding.counts() == {"backlog": 2}
    assert lane.stats.finals == MAX_QUEUED_PER_MEMBER + 1


def test_a_closing_guild_keeps_its_queued_finals_and_others_go_on(transcriber):
    gate = Gate(transcriber)
    leaving = SttScheduler(gate, partial_interval_s=1.0, max_batch=1, name="guild leaving")
    staying = SttScheduler(gate, partial_interval_s=1.0, max_batch=1, name="guild staying")
    got: list[str] = []
    clip = speech("Hello there.")
    try:
        leaving.submit(SttJob(1, "final", clip, lambda j, r: got.append("leaving")))
        assert gate.entered.wait(10)
        leaving.submit(SttJob(2, "final", clip, lambda j, r: got.append("leaving queued")))
        gate.open.set()
        leaving.close()
        assert got == ["leaving", "leaving queued"]
        with pytest.raises(RuntimeError):
            leaving.submit(SttJob(2, "final", clip, lambda j, r: None))
        job = staying.submit(SttJob(3, "final", clip, lambda j, r: got.append("staying")))
        assert job.done.wait(30) and got[-1] == "staying"
    finally:
        staying.close()
