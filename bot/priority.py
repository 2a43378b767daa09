"""Replies before background work on the shared LLM: a prefill or a warm-up never delays a reply.

Every guild of the process shares one LLM. A reply (foreground) registers for as long as it is being made;
background work (a prefill of a likely reply, a persona warm-up) waits until no reply is in flight, and a
reply that starts while background work of ANOTHER guild runs cancels it (its cache entry would be evicted by
the reply's prompt anyway). Background work of the reply's own guild goes on: it is evaluating the prefix of
that very reply's prompt, which the reply then finds in the cache.

    with priorities.foreground(guild_id):            # around a reply
        ...
    with priorities.background(group=guild_id, cancel=event):  # SchedulerCancelled if cancelled first
        ...                                           # then take the model's slot as usual
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import Counter
from typing import Hashable, Iterator

WAIT_POLL_S = 0.05


class SchedulerCancelled(Exception):
    """Waiting for model work was abandoned because the caller's cancel event was set."""


class Priorities:
    """Foreground (replies) and background (prefills, warm-ups) work on one model; thread-safe."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._foreground: Counter[Hashable] = Counter()
        self._background: dict[int, tuple[Hashable, threading.Event]] = {}
        self._ids = itertools.count()
        self.preempted = 0  # background runs cancelled by a reply of another group
        self.background_waited_s = 0.0

    @property
    def replies_in_flight(self) -> int:
        with self._cond:
            return sum(self._foreground.values())

    @contextlib.contextmanager
    def foreground(self, group: Hashable = None) -> Iterator[None]:
        """A reply for `group` is being made: background work of other groups stops, none starts. Never blocks."""
        with self._cond:
            self._foreground[group] += 1
            for other, cancel in self._background.values():
                if other != group and not cancel.is_set():
                    cancel.set()
                    self.preempted += 1
        try:
            yield
        finally:
            with self._cond:
                self._foreground[group] -= 1
                if self._foreground[group] <= 0:
                    del self._foreground[group]
                self._cond.notify_all()

    @contextlib.contextmanager
    def background(self, *, group: Hashable = None, cancel: threading.Event) -> Iterator[bool]:
        """Blocking: wait until no reply is in flight, then run (a reply of another group sets `cancel`).
        Yields whether it had to wait. Raises SchedulerCancelled when `cancel` is set before it could start."""
        asked = time.monotonic()
        waited = False
        with self._cond:
            while self._foreground and not cancel.is_set():
                waited = True
                self._cond.wait(WAIT_POLL_S)
            self.background_waited_s += time.monotonic() - asked
            if cancel.is_set():
                raise SchedulerCancelled()
            key = next(self._ids)
            self._background[key] = (group, cancel)
        try:
            yield waited
        finally:
            with self._cond:
                self._background.pop(key, None)
                self._cond.notify_all()

    def stats(self) -> dict[str, float | int]:
        with self._cond:
            return {"replies_in_flight": sum(self._foreground.values()), "background_running": len(self._background),
                    "preempted": self.preempted, "background_waited_s": round(self.background_waited_s, 3)}
