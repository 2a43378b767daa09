"""The process's one transcription worker per Whisper model, shared fairly by every voice session.

Every lane (`audio.stt_scheduler.SttScheduler`, one per guild's listener) using the same model shares one
`SttWorker` (one thread), which picks work in this order:

1. finals before everything: confirmed finals, then speculative ones (taken at a pause), across ALL lanes;
2. lanes take turns (round-robin), and within a lane its members take turns: one guild's many speakers
   never delay another guild's final by more than one batch;
3. several pending finals are batched into one Whisper call, across lanes when their transcribers are
   configured alike (the same model and decoding settings);
4. partials only when no final waits, round-robin across lanes and members, at each member's cadence,
   using at most about half of the worker, and dropped when their segment ended meanwhile.

The worker thread starts with the first lane and ends when the last lane closes (a closing lane's queued
finals are still transcribed first).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from audio.stt_result import SttResult
    from audio.stt_scheduler import PartialSource, SttJob, SttScheduler

log = logging.getLogger(__name__)


def _batch_key(transcriber: Any) -> Any:
    """Transcribers with equal keys may share a Whisper call (the same model and decoding settings)."""
    key = getattr(transcriber, "batch_key", None)
    return key if key is not None else transcriber


class SttWorker:
    """The thread that runs every lane's transcriptions for one model."""

    _registry: dict[Any, "SttWorker"] = {}
    _registry_lock = threading.Lock()

    def __init__(self, key: Any) -> None:
        self.key = key
        self.cond = threading.Condition()
        self.lanes: deque[SttScheduler] = deque()
        self.final_compute_ema = 0.4  # seconds per batch of finals
        self._partials_resume = 0.0  # partials wait until then: they use at most ~half of the worker
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="stt-worker", daemon=True)
        self._thread.start()

    # -- lanes ----------------------------------------------------------------------------------

    @classmethod
    def attach(cls, lane: SttScheduler) -> "SttWorker":
        transcriber = lane.transcriber
        key = getattr(transcriber, "model", None)
        key = transcriber if key is None else key
        with cls._registry_lock:
            worker = cls._registry.get(key)
            if worker is None:
                worker = cls._registry[key] = cls(key)
            with worker.cond:
                worker.lanes.append(lane)
                worker.cond.notify_all()
        return worker

    def detach(self, lane: SttScheduler, timeout: float) -> None:
        with self._registry_lock:
            with self.cond:
                if lane in self.lanes:
                    self.lanes.remove(lane)
                last = not self.lanes
                if last:
                    self._stopping = True
                    self.cond.notify_all()
                    if self._registry.get(self.key) is self:
                        del self._registry[self.key]
        if last and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @classmethod
    def count(cls) -> int:
        """Workers alive in this process (tests)."""
        with cls._registry_lock:
            return len(cls._registry)

    # -- picking work (under the lock) -------------------------------------------------------------

    def _take_finals(self) -> list[tuple[SttScheduler, SttJob]]:
        """Up to one batch: confirmed finals first, then speculative ones; lanes (and their members) take turns;
        only lanes whose transcriber is configured like the first job's join its batch."""
        batch: list[tuple[SttScheduler, SttJob]] = []
        key: Any = None
        limit = 1
        for kind in ("final", "speculative"):
            progress = True
            while progress and len(batch) < limit:
                progress = False
                for _ in range(len(self.lanes)):
                    lane = self.lanes[0]
                    self.lanes.rotate(-1)
                    lane._prune()
                    if batch and _batch_key(lane.transcriber) != key:
                        continue
                    job = lane._next_final(kind)
                    if job is None:
                        continue
                    if not batch:
                        key, limit = _batch_key(lane.transcriber), lane.max_batch
                    batch.append((lane, job))
                    progress = True
                    if len(batch) >= limit:
                        break
        return batch

    def _take_partial(self, now: float) -> tuple[SttScheduler | None, PartialSource | None, float | None]:
        """The next due partial (lanes taking turns), else when the next one is due."""
        if now < self._partials_resume:
            return None, None, self._partials_resume
        soonest = None
        for _ in range(len(self.lanes)):
            lane = self.lanes[0]
            self.lanes.rotate(-1)
            src, due = lane._next_partial(now)
            if src is not None:
                return lane, src, None
            if due is not None:
                soonest = due if soonest is None else min(soonest, due)
        return None, None, soonest

    # -- the thread -------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self.cond:
                while True:
                    batch = self._take_finals()
                    if batch:
                        lanes = {id(lane): lane for lane, _ in batch}
                        break
                    if self._stopping:
                        return
                    lane, src, due = self._take_partial(time.monotonic())
                    if lane is not None and src is not None:
                        lanes = {id(lane): lane}
                        break
                    self.cond.wait(None if due is None else max(0.0, due - time.monotonic()))
                for busy in lanes.values():
                    busy._running += 1
            try:
                if batch:
                    self._run_finals(batch)
                elif lane is not None and src is not None:
                    took = lane._run_partial(src)
                    if took is not None:
                        with self.cond:
                            # across members and lanes partials take at most ~half of the worker: after each
                            # one the worker rests or runs finals as long
                            self._partials_resume = time.monotonic() + took
            except Exception as exc:  # a lane's own failure handling: nothing may wait forever
                log.exception("transcription failed")
                if batch:
                    for owner in lanes.values():
                        owner._finals_failed([job for lane_, job in batch if lane_ is owner], exc)
                else:
                    lane.stats.errors += 1  # type: ignore[union-attr]
            finally:
                with self.cond:
                    for busy in lanes.values():
                        busy._running -= 1
                    self.cond.notify_all()

    def _run_finals(self, batch: list[tuple[SttScheduler, SttJob]]) -> None:
        started = min(job.started for _, job in batch)
        first_lane = batch[0][0]
        results = first_lane.transcriber.transcribe([job.audio for _, job in batch])
        finished = time.monotonic()
        self.final_compute_ema = 0.8 * self.final_compute_ema + 0.2 * (finished - started)
        by_lane: dict[int, tuple[SttScheduler, list[SttJob], list[SttResult]]] = {}
        for (lane, job), result in zip(batch, results):
            entry = by_lane.setdefault(id(lane), (lane, [], []))
            entry[1].append(job)
            entry[2].append(result)
        for lane, jobs, lane_results in by_lane.values():
            lane._finals_done(jobs, lane_results, finished, len(batch))
