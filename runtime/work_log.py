"""The record of every model grant: what ran, when it asked, when it started and ended, for which guild.

Kept apart from the scheduler that grants the slots, so tests and benchmarks read overlap and waiting time
(asked -> start) against computing time (start -> end) from one place.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from runtime.metrics import record_model_time

KINDS = ("llm", "tts", "stt")
MAX_RECORDS = 20_000


@dataclass(frozen=True, slots=True)
class WorkInterval:
    kind: str
    start: float
    end: float
    owner: str = ""
    asked: float | None = None  # when the work asked for its slot (or for the model, when the caller says so)
    group: str = ""  # the guild it was for, when the caller said ("" otherwise)

    @property
    def seconds(self) -> float:
        return self.end - self.start


class WorkLog:
    """A bounded, thread-safe list of `WorkInterval`s with the total wait per kind (monotonic seconds)."""

    def __init__(self, max_records: int = MAX_RECORDS) -> None:
        self._lock = threading.Lock()
        self._records: deque[WorkInterval] = deque(maxlen=max_records)
        self._waited = {kind: 0.0 for kind in KINDS}

    def add(self, interval: WorkInterval) -> None:
        """Keep one grant and report it to the metrics (its compute time and its wait)."""
        waited = interval.start - interval.asked if interval.asked is not None else 0.0
        with self._lock:
            self._records.append(interval)
            self._waited[interval.kind] += waited
        record_model_time(interval.kind, interval.seconds, waited)

    def intervals(self, kind: str | None = None) -> list[WorkInterval]:
        with self._lock:
            return [r for r in self._records if kind is None or r.kind == kind]

    def overlap_seconds(self, a: str = "llm", b: str = "tts") -> float:
        """Total time during which `a` work and `b` work ran at the same time."""
        first = _merge([(r.start, r.end) for r in self.intervals(a)])
        second = _merge([(r.start, r.end) for r in self.intervals(b)])
        total = 0.0
        i = j = 0
        while i < len(first) and j < len(second):
            lo = max(first[i][0], second[j][0])
            hi = min(first[i][1], second[j][1])
            if hi > lo:
                total += hi - lo
            if first[i][1] < second[j][1]:
                i += 1
            else:
                j += 1
        return total

    def totals(self) -> dict[str, dict[str, float | int]]:
        """Per kind: grants, seconds computing, seconds waiting."""
        with self._lock:
            records = list(self._records)
            waited = dict(self._waited)
        return {
            "grants": {kind: sum(1 for r in records if r.kind == kind) for kind in KINDS},
            "busy_s": {kind: round(sum(r.seconds for r in records if r.kind == kind), 4) for kind in KINDS},
            "waited_s": {kind: round(v, 4) for kind, v in waited.items()},
        }

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
            self._waited = {kind: 0.0 for kind in KINDS}


def _merge(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
