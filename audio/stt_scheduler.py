"""A voice session's lane on the process's shared transcription worker (`audio.stt_worker`).

Each `Listener` (one per guild) gets an `SttScheduler`: its LANE on the model's worker thread. The lane
queues its members' finals (confirmed, or speculative: taken at a pause) and keeps one partial cadence slot
per speaking member; the worker picks across lanes (finals first, lanes and members taking turns).

Bounds: a member has at most `MAX_QUEUED_PER_MEMBER` transcriptions queued; beyond that the oldest one is
shed (completed with an empty result, so its segment still gets its one final) and counted in the lane's
`ShedLog`. Partials are never queued: a member has one cadence slot, skipped when stale.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from audio.stt_result import SttResult
from audio.stt_worker import SttWorker
from audio.types import STT_RATE
from runtime.shedding import ShedLog

log = logging.getLogger(__name__)

MAX_QUEUED_PER_MEMBER = 4  # transcriptions queued for one member (each segment has at most two at once)


@dataclass(eq=False)
class SttJob:
    """One transcription request. `kind` is "final" or "speculative" (both ranked as finals)."""

    user_id: int
    kind: str
    audio: np.ndarray
    on_done: Callable[["SttJob", SttResult], None]
    submitted: float = field(default_factory=time.monotonic)
    started: float = 0.0
    finished: float = 0.0
    cancelled: bool = False
    result: SttResult | None = None
    done: threading.Event = field(default_factory=threading.Event)
    tag: object = None  # the caller's (e.g. the segment)

    def finish(self, result: SttResult) -> None:
        """Record `result`, wake whoever waits, and tell the caller (a failing callback is logged, not raised)."""
        self.result = result
        self.done.set()
        try:
            self.on_done(self, result)
        except Exception:
            log.exception("stt callback failed")


@dataclass(eq=False)
class PartialSource:
    """A member who is speaking: `snapshot()` gives the audio so far; `on_done` receives partials."""

    user_id: int
    snapshot: Callable[[], np.ndarray]
    on_done: Callable[[SttResult, float, bool], None]  # (result, started, stale)
    is_stale: Callable[[], bool]
    next_due: float
    last_samples: int = 0
    is_paused: Callable[[], bool] = lambda: False  # silent for now: the speculative final covers it


@dataclass
class SchedulerStats:
    finals: int = 0
    speculative: int = 0
    partials: int = 0
    partials_stale: int = 0
    batches: int = 0
    max_batch_seen: int = 0
    cancelled: int = 0
    errors: int = 0
    shed: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _empty_result(reason: str) -> SttResult:
    return SttResult("", 0.0, -math.inf, 1.0, 0.0, reason, "", 0.0, 0.0)


class SttScheduler:
    """One listener's lane on its model's shared worker. Thread-safe."""

    def __init__(
        self,
        transcriber: Any,
        *,
        partial_interval_s: float,
        max_batch: int = 4,
        partials: bool = True,
        min_partial_audio_s: float = 0.6,
        name: str = "stt",
    ) -> None:
        self.transcriber = transcriber
        self.partial_interval_s = partial_interval_s
        self.max_batch = max(1, max_batch)
        self.partials_enabled = partials
        self.min_partial_samples = int(min_partial_audio_s * STT_RATE)
        self.stats = SchedulerStats()
        self.shedding = ShedLog("stt", label=name)
        self._finals: dict[int, deque[SttJob]] = {}
        self._turns: deque[int] = deque()  # members in round-robin order
        self._partials: dict[int, PartialSource] = {}
        self._closed = False
        self._running = 0  # jobs of this lane on the worker now
        self._worker = SttWorker.attach(self)
        self._cond = self._worker.cond

    @property
    def label(self) -> str:
        """Whose lane this is in logs and metrics (e.g. "guild 42")."""
        return self.shedding.label

    @label.setter
    def label(self, value: str) -> None:
        self.shedding.label = value

    @property
    def final_compute_ema(self) -> float:
        """Seconds a batch of finals takes now on the shared worker (informs when speculation is worth starting)."""
        return self._worker.final_compute_ema

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._running > 0

    # -- API (any thread) -----------------------------------------------------------------------

    def submit(self, job: SttJob) -> SttJob:
        with self._cond:
            if self._closed:
                raise RuntimeError("scheduler closed")
            queue = self._finals.setdefault(job.user_id, deque())
            queue.append(job)
            shed = [queue.popleft() for _ in range(len(queue) - MAX_QUEUED_PER_MEMBER)]
            if job.user_id not in self._turns:
                self._turns.append(job.user_id)
            self._cond.notify_all()
        for old in shed:
            self._shed(old)
        return job

    def cancel(self, job: SttJob) -> bool:
        """Cancel a job that has not started; returns False when it already runs or ran."""
        with self._cond:
            if job.started:
                return False
            job.cancelled = True
            queue = self._finals.get(job.user_id)
            if queue and job in queue:
                queue.remove(job)
                self.stats.cancelled += 1
            return True

    def start_partials(self, source: PartialSource) -> None:
        if not self.partials_enabled:
            return
        with self._cond:
            self._partials[source.user_id] = source
            if source.user_id not in self._turns:
                self._turns.append(source.user_id)
            self._cond.notify_all()

    def stop_partials(self, user_id: int) -> None:
        with self._cond:
            self._partials.pop(user_id, None)

    def forget(self, user_id: int) -> None:
        with self._cond:
            for job in self._finals.pop(user_id, ()):  # queued, not started
                job.cancelled = True
            self._partials.pop(user_id, None)
            if user_id in self._turns:
                self._turns.remove(user_id)

    def drop(self, user_id: int) -> None:
        """The member opted out: their queued transcriptions end at once with an empty result (so each segment
        still gets its one final, which the listener withholds) and their partials stop."""
        with self._cond:
            jobs = [job for job in self._finals.pop(user_id, ()) if not job.started]
            self._partials.pop(user_id, None)
            if user_id in self._turns:
                self._turns.remove(user_id)
            for job in jobs:
                job.cancelled = True
            self.stats.cancelled += len(jobs)
        for job in jobs:
            job.finish(_empty_result("dropped: the member opted out"))

    def pending_finals(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._finals.values())

    def idle(self) -> bool:
        with self._cond:
            return not self._running and not any(self._finals.values())

    def close(self, timeout: float = 10.0) -> None:
        """No more work; the finals already queued are transcribed first (up to `timeout`)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closed = True
            self._partials.clear()
            self._cond.notify_all()
            while (self._running or any(self._finals.values())) and time.monotonic() < deadline:
                self._cond.wait(max(0.0, deadline - time.monotonic()))
        self.shedding.flush()
        self._worker.detach(self, max(0.0, deadline - time.monotonic()))

    # -- worker side (under the worker's lock) ----------------------------------------------------

    def _shed(self, job: SttJob) -> None:
        """Complete a job the bound pushed out with an empty result: its segment still gets its final."""
        with self._cond:
            if job.cancelled or job.started:
                return
            job.cancelled = True
            self.stats.shed += 1
        self.shedding.shed("backlog")
        job.finish(_empty_result("shed: transcription backlog"))

    def _prune(self) -> None:
        """Members with no queued work leave the rotation (bounded state over a long session)."""
        for uid in [u for u, q in self._finals.items() if not q]:
            del self._finals[uid]
        if any(u not in self._finals and u not in self._partials for u in self._turns):
            self._turns = deque(u for u in self._turns if u in self._finals or u in self._partials)

    def _next_final(self, kind: str) -> SttJob | None:
        """This lane's next job of `kind`, its members taking turns."""
        for _ in range(len(self._turns)):
            uid = self._turns[0]
            self._turns.rotate(-1)
            queue = self._finals.get(uid)
            job = next((j for j in queue if j.kind == kind), None) if queue else None
            if job is not None and queue is not None:
                queue.remove(job)
                job.started = time.monotonic()  # under the lock: cancel() now says no
                return job
        return None

    def _next_partial(self, now: float) -> tuple[PartialSource | None, float | None]:
        """This lane's next due partial (its members taking turns), else when the next one is due."""
        if self._closed:
            return None, None
        soonest = None
        for _ in range(len(self._turns)):
            uid = self._turns[0]
            src = self._partials.get(uid)
            self._turns.rotate(-1)
            if src is None:
                continue
            if src.next_due <= now:
                return src, None
            soonest = src.next_due if soonest is None else min(soonest, src.next_due)
        return None, soonest

    # -- running work (worker thread, outside the lock) -------------------------------------------

    def _finals_done(self, jobs: list[SttJob], results: list[SttResult], finished: float, batch: int) -> None:
        self.stats.batches += 1
        self.stats.max_batch_seen = max(self.stats.max_batch_seen, batch)
        for job, result in zip(jobs, results):
            job.finished = finished
            if job.kind == "final":
                self.stats.finals += 1
            else:
                self.stats.speculative += 1
            job.finish(result)

    def _finals_failed(self, jobs: list[SttJob], exc: BaseException) -> None:
        self.stats.errors += 1
        failed = _empty_result(f"error: {type(exc).__name__}: {exc}")
        for job in jobs:
            if job.result is None:  # tell the caller, so nothing waits for it forever
                job.finish(failed)

    def _run_partial(self, src: PartialSource) -> float | None:
        """Transcribe one partial; returns the compute time (None when skipped: too little new audio, stale)."""
        now = time.monotonic()
        audio = src.snapshot()
        if (
            len(audio) < self.min_partial_samples
            or len(audio) - src.last_samples < STT_RATE // 4
            or src.is_stale()
            or src.is_paused()
        ):
            src.next_due = now + self.partial_interval_s / 2
            return None
        started = time.monotonic()
        result = self.transcriber.transcribe([audio], beam_size=1)[0]  # partials: greedy, always
        took = time.monotonic() - started
        src.last_samples = len(audio)
        # behind schedule (slow machine or many speakers): space partials out
        src.next_due = started + max(self.partial_interval_s, 2.0 * took)
        stale = src.is_stale()  # the segment ended meanwhile: the caller may still use it as the final
        if stale:
            self.stats.partials_stale += 1
        else:
            self.stats.partials += 1
        try:
            src.on_done(result, started, stale)
        except Exception:
            log.exception("partial callback failed")
        return took
