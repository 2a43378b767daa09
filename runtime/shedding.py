"""Work dropped under load: counted by reason, logged once per burst, reported to the metrics.

Every bounded queue in chorus sheds something when it is full (a stale partial transcript, a caption, a
prefill that lost its point). Each queue owns a `ShedLog`:

    shed = ShedLog("stt", label="guild 42")
    shed.shed("backlog")                # counted; the first drop of a burst logs one WARNING line
    shed.counts()                       # {"backlog": 1}

A burst is a run of drops with less than `burst_gap_s` between them. Its first drop is logged at once (what
is dropped and why); the rest are only counted, and when the next burst starts (or `flush()` is called, e.g.
when the session closes) one INFO line sums up the previous one. With metrics on (CHORUS_METRICS_PORT), every
drop also goes to ``chorus_shed_total{guild,queue,reason}``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Callable

from runtime.metrics import record_shed

log = logging.getLogger(__name__)

BURST_GAP_S = 5.0


class ShedLog:
    """Counts of what one queue dropped, by reason (thread-safe)."""

    def __init__(
        self,
        queue: str,
        *,
        label: str = "",
        burst_gap_s: float = BURST_GAP_S,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
        level: int = logging.WARNING,
    ) -> None:
        self.queue = queue
        self.label = label  # e.g. "guild 42": says whose work was dropped (the metrics' guild label)
        self.burst_gap_s = burst_gap_s
        self._clock = clock
        self._log = logger or log
        self._level = level  # of the line that starts a burst (INFO where shedding costs only latency)
        self._lock = threading.Lock()
        self._total: Counter[str] = Counter()
        self._burst: Counter[str] = Counter()
        self._burst_start = 0.0
        self._last = -float("inf")

    def shed(self, reason: str, n: int = 1) -> None:
        """`n` items dropped for `reason`."""
        if n <= 0:
            return
        now = self._clock()
        with self._lock:
            new_burst = now - self._last > self.burst_gap_s
            ended = self._end_burst() if new_burst else None
            if new_burst:
                self._burst_start = now
            self._last = now
            self._total[reason] += n
            self._burst[reason] += n
        if ended is not None:
            self._log.info("%s: %s", self._who(), ended)
        if new_burst:
            self._log.log(
                self._level,
                "%s: shedding %s (%s) under load; counting the rest of this burst",
                self._who(),
                self.queue,
                reason,
            )
        record_shed(self._guild_label(), self.queue, reason, n)

    def flush(self) -> None:
        """Log the summary of the burst in progress, if it dropped more than its first item."""
        with self._lock:
            ended = self._end_burst()
        if ended is not None:
            self._log.info("%s: %s", self._who(), ended)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._total)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._total.values())

    def _end_burst(self) -> str | None:
        """Under the lock: the summary line of the burst in progress (None when it was one drop), reset."""
        burst, self._burst = self._burst, Counter()
        if sum(burst.values()) <= 1:
            return None
        reasons = ", ".join(f"{n} {reason}" for reason, n in burst.most_common())
        return f"{self.queue} shed {sum(burst.values())} in {self._last - self._burst_start:.1f} s ({reasons})"

    def _who(self) -> str:
        return self.label or "chorus"

    def _guild_label(self) -> str:
        prefix = "guild "
        return self.label[len(prefix) :] if self.label.startswith(prefix) else (self.label or "process")
