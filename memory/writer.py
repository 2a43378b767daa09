"""Memory writes in the background: never on a reply's path, retried through outages, dropped with a count.

A worker task runs the queued writes in order; it starts with the first write and ends when the queue is
empty (no idle task is left waiting). A write that fails with a passing fault (SQLite
locked, disk full, PostgreSQL down or restarting) is tried again with back-off while it is younger
than `max_age_s`; past that it is dropped. A write that fails for any other reason is dropped at once.
The queue is bounded: when it is full the oldest write is dropped. Every drop is counted by reason
(`stats`); the database logs one line when an outage starts and one when it ends (`storage.db`), and
this queue logs one line per outage with what it dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterable

from storage.errors import StorageError

log = logging.getLogger(__name__)

Write = Callable[[], Awaitable[object]]
MAX_PENDING = 1000
MAX_AGE_S = 600.0
BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass
class _Job:
    what: str
    write: Write
    queued: float
    attempts: int = 0
    involves: frozenset[tuple[int, int]] = frozenset()  # (guild id, user id) of the members whose words it holds


@dataclass
class WriteStats:
    written: int = 0
    retried: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count: expired, error, overflow, shutdown

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n

    def as_dict(self) -> dict:
        return {"written": self.written, "retried": self.retried, "dropped": dict(self.dropped)}


class WriteQueue:
    def __init__(
        self, *, max_pending: int = MAX_PENDING, max_age_s: float = MAX_AGE_S, backoff_s: tuple[float, ...] = BACKOFF_S
    ) -> None:
        self.max_pending = max_pending
        self.max_age_s = max_age_s
        self.backoff_s = backoff_s
        self.stats = WriteStats()
        self._jobs: deque[_Job] = deque()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task | None = None
        self._closed = False
        self._running: _Job | None = None
        self._failing_since: float | None = None

    @property
    def pending(self) -> int:
        return len(self._jobs) + (self._running is not None)

    def submit(self, what: str, write: Write, *, involves: Iterable[tuple[int, int]] = ()) -> None:
        """Queue a write (an async callable doing one transaction) holding the words of the members `involves`
        ((guild id, user id) each). Returns at once."""
        if len(self._jobs) >= self.max_pending:
            self._jobs.popleft()
            self.stats.drop("overflow")
            if self.stats.dropped["overflow"] in (1, 10, 100) or self.stats.dropped["overflow"] % 1000 == 0:
                log.warning(
                    "memory writes: queue full (%d); %d oldest write(s) dropped so far",
                    self.max_pending,
                    self.stats.dropped["overflow"],
                )
        self._jobs.append(_Job(what, write, time.monotonic(), involves=frozenset(involves)))
        self._idle.clear()
        if not self._closed and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._run(), name="memory-writes")

    async def discard_member(self, guild_id: int, user_id: int, timeout: float = 10.0) -> int:
        """The member asked to be forgotten (or opted out): their queued writes are dropped (counted as
        "forgotten"), and a write of theirs running now is waited for (up to `timeout`), so that a delete
        made after this returns is not followed by one of their rows. Returns the writes dropped."""
        member = (guild_id, user_id)
        return await self._discard(lambda involves: member in involves, "forgotten", timeout)

    async def discard_guild(self, guild_id: int, timeout: float = 10.0) -> int:
        """The guild's rows are about to be deleted (the bot was removed from it): its queued writes are dropped
        (counted as "guild removed") and one of its running now is waited for, as `discard_member` does."""
        return await self._discard(lambda involves: any(g == guild_id for g, _ in involves), "guild removed", timeout)

    async def _discard(self, matches: Callable[[frozenset[tuple[int, int]]], bool], reason: str, timeout: float) -> int:
        kept = deque(job for job in self._jobs if not matches(job.involves))
        dropped = len(self._jobs) - len(kept)
        self._jobs = kept
        if dropped:
            self.stats.drop(reason, dropped)
        deadline = time.monotonic() + timeout
        while self._running is not None and matches(self._running.involves) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if not self._jobs and self._running is None:
            self._idle.set()
        return dropped

    async def drain(self, timeout: float) -> bool:
        """Wait until every queued write is done or dropped (True), or `timeout` passed (False)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def close(self, timeout: float = 10.0) -> None:
        """Finish what can be finished within `timeout`; drop (and count) the rest."""
        drained = await self.drain(timeout)
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if not drained and self._jobs:
            self.stats.drop("shutdown", len(self._jobs))
            log.warning(
                "memory writes: %d write(s) dropped at shutdown (the database was unavailable)", len(self._jobs)
            )
        self._jobs.clear()
        self._idle.set()

    async def _run(self) -> None:
        while self._jobs:
            job = self._jobs.popleft()  # out of the queue while it runs: overflow drops waiting writes only
            self._running = job
            try:
                job.attempts += 1
                await job.write()
            except asyncio.CancelledError:
                self._jobs.appendleft(job)
                raise
            except StorageError as exc:
                if exc.transient and time.monotonic() - job.queued < self.max_age_s:
                    self.stats.retried += 1
                    self._note_failure(exc)
                    self._running = None
                    self._jobs.appendleft(job)  # first again, after the back-off
                    await asyncio.sleep(self.backoff_s[min(job.attempts - 1, len(self.backoff_s) - 1)])
                    continue
                reason = "expired" if exc.transient else "error"
                self.stats.drop(reason)
                log.warning(
                    "memory write (%s) dropped after %d attempt(s): %s [dropped so far: %s]",
                    job.what,
                    job.attempts,
                    exc,
                    self.stats.dropped,
                )
                continue
            except Exception:
                self.stats.drop("error")
                log.exception("memory write (%s) failed and was dropped", job.what)
                continue
            finally:
                self._running = None
            self.stats.written += 1
            if self._failing_since is not None:
                log.info(
                    "memory writes flow again after %.0f s (%d retried, dropped: %s)",
                    time.monotonic() - self._failing_since,
                    self.stats.retried,
                    self.stats.dropped or "none",
                )
                self._failing_since = None
        self._idle.set()

    def _note_failure(self, exc: StorageError) -> None:
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.info(
                "memory writes held back (%s): retrying with back-off for up to %.0f s each", exc.kind, self.max_age_s
            )
