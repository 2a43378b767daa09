"""Who may compute now: the LLM and TTS share one GPU slot on small GPUs, and run side by side elsewhere.

Policies:
- `exclusive`: LLM and TTS work never overlap. One token, granted first come first served,
  per chunk of work (the responder holds it while the LLM makes one fragment, then while TTS
  speaks it, so the two alternate). STT never waits: it is small and must keep up with people.
- `parallel`: like `exclusive`, but with `slots` tokens (LLM_INSTANCES: one per llama.cpp instance of the
  pool, `brain.llm`): that many replies compute at once, each in lockstep, so the TTS of one guild runs while
  another guild's LLM decodes and the cores are never oversubscribed (CPU machines).
- `pipelined`: no token; the LLM streams into TTS concurrently.
- `auto`: resolved from where the models run (`runtime.scheduler_policy.resolve_policy`).

Replies come first; background work (prefills of likely replies, persona warm-ups, memory's call
summaries) uses what is left. A reply registers with `foreground(guild)` for its whole length: background
work of OTHER guilds stops at once (a prefill of the reply's own guild goes on: it evaluates that reply's
prompt), and none starts while any reply is in flight. `background()` waits for that, then for a quiet moment
(`quiet_s`), runs one job at a time, and the event it yields is set as soon as foreground work needs the
model (`foreground`, a `hold` or `use` of the LLM or TTS, `preempt_background()`): the job stops within a
token and a reply never waits for it. A `hold` or `use` for a guild (`group`) spares that guild's own job
unless the policy is `exclusive`.

Every grant is recorded as a `WorkInterval` (kind, start, end, owner, and when it was asked for and for which
group (guild); monotonic seconds), so tests and benchmarks can check overlap and see where the time went: waiting
for the model (asked -> start) or computing (start -> end).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections import Counter, deque
from typing import AsyncIterator, Callable, Hashable, Iterator

from runtime.scheduler_policy import resolve_policy, scheduler_slots
from runtime.settings import Settings
from runtime.work_log import KINDS, MAX_RECORDS, WorkInterval, WorkLog

log = logging.getLogger(__name__)

HEAVY = ("llm", "tts")
POLICIES = ("exclusive", "parallel", "pipelined")
BACKGROUND_QUIET_S = 2.0  # background work starts after this long without foreground LLM/TTS work
BACKGROUND_POLL_S = 0.05


class SchedulerCancelled(Exception):
    """Waiting for a slot was abandoned because the caller's cancel event was set."""


class ModelScheduler:
    """Grants model work under a policy. `hold()` blocks (worker threads); `use()` is async."""

    def __init__(
        self, policy: str = "pipelined", *, reason: str = "", max_records: int = MAX_RECORDS, slots: int = 1
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(
                f"scheduler policy must be one of {', '.join(POLICIES)} (resolve 'auto' with from_settings)"
            )
        if slots < 1:
            raise ValueError(f"slots must be at least 1, not {slots}")
        self.policy = policy
        self.slots = 1 if policy == "exclusive" else slots  # tokens for heavy work (`parallel`)
        self.reason = reason or f"{policy} requested"
        self._cond = threading.Condition()
        self._holders: Counter[str] = Counter()  # owners holding a token (at most `slots` in all)
        self._queue: deque[int] = deque()  # FIFO tickets waiting for the token
        self._tickets = itertools.count()
        self.work = WorkLog(max_records)
        self._active = {kind: 0 for kind in KINDS}
        self._background: dict[threading.Event, Hashable] = {}  # preempt event -> group of the running job
        self._replies: Counter[Hashable] = Counter()  # replies in flight per group (`foreground`)
        self._last_foreground = float("-inf")
        self.preemptions = 0
        self.background_waited_s = 0.0

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        tts_on_gpu: bool | None = None,
        gpu_probe: Callable[[], int | None] | None = None,
    ) -> "ModelScheduler":
        policy, reason = resolve_policy(settings, tts_on_gpu=tts_on_gpu, gpu_probe=gpu_probe)
        slots = scheduler_slots(settings, policy)
        log.info("model scheduler: %s, %d slot(s) (%s)", policy, slots, reason)
        return cls(policy, reason=reason, slots=slots)

    @property
    def exclusive(self) -> bool:
        return self.policy == "exclusive"

    @property
    def lockstep(self) -> bool:
        """Whether a reply's LLM and TTS take turns on one token (`exclusive`, `parallel`)."""
        return self.policy in ("exclusive", "parallel")

    # -- granting ------------------------------------------------------------------------

    def _needs_token(self, kind: str) -> bool:
        if kind not in KINDS:
            raise ValueError(f"unknown work kind {kind!r} (expected one of {', '.join(KINDS)})")
        return self.lockstep and kind in HEAVY

    def _take_if_first(self, ticket: int, owner: str) -> bool:
        """Under the lock: give a token to `ticket` if one is free and the ticket is first in line."""
        if sum(self._holders.values()) < self.slots and self._queue and self._queue[0] == ticket:
            self._queue.popleft()
            self._holders[owner] += 1
            return True
        return False

    def _join_queue(self) -> int:
        with self._cond:
            ticket = next(self._tickets)
            self._queue.append(ticket)
            return ticket

    def _leave_queue(self, ticket: int) -> None:
        with self._cond:
            try:
                self._queue.remove(ticket)
            except ValueError:
                pass
            self._cond.notify_all()

    def _acquire_blocking(self, kind: str, owner: str, cancel: threading.Event | None, asked: float | None) -> float:
        asked = time.monotonic() if asked is None else asked
        if not self._needs_token(kind):
            return asked
        ticket = self._join_queue()
        with self._cond:  # (a Condition's lock is re-entrant: _leave_queue may take it again)
            while not self._take_if_first(ticket, owner):
                if cancel is not None and cancel.is_set():
                    self._leave_queue(ticket)
                    raise SchedulerCancelled(kind)
                self._cond.wait(0.01 if cancel is not None else None)
        return asked

    async def _acquire_async(self, kind: str, owner: str) -> float:
        asked = time.monotonic()
        if not self._needs_token(kind):
            return asked
        ticket = self._join_queue()
        try:
            while True:
                with self._cond:
                    if self._take_if_first(ticket, owner):
                        return asked
                await asyncio.sleep(0.003)
        except BaseException:
            self._leave_queue(ticket)
            raise

    def _release(self, kind: str, owner: str) -> None:
        if self._needs_token(kind):
            with self._cond:
                self._holders[owner] -= 1
                if self._holders[owner] <= 0:
                    del self._holders[owner]
                self._cond.notify_all()

    def _record(self, kind: str, asked: float, start: float, end: float, owner: str, group: Hashable) -> None:
        self.work.add(WorkInterval(kind, start, end, owner, asked, "" if group is None else str(group)))

    @contextlib.contextmanager
    def hold(
        self,
        kind: str,
        *,
        owner: str = "",
        cancel: threading.Event | None = None,
        group: Hashable = None,
        asked: float | None = None,
    ) -> Iterator[None]:
        """Blocking: wait for a `kind` slot (raises SchedulerCancelled if `cancel` is set meanwhile). `asked`: when
        the caller began waiting, if before this call (for the model itself), so the record shows the whole wait.
        `group`: the guild the work is for (its own background work goes on, `_foreground`)."""
        self._foreground(kind, group)
        asked = self._acquire_blocking(kind, owner, cancel, asked)
        try:
            with self._running(kind, asked, owner, group):
                yield
        finally:
            self._foreground(kind, group)  # the quiet time before background work counts from here

    @contextlib.asynccontextmanager
    async def use(self, kind: str, *, owner: str = "", group: Hashable = None) -> AsyncIterator[None]:
        """Async: wait for a `kind` slot without blocking the event loop (cancel the task to give up)."""
        self._foreground(kind, group)
        asked = await self._acquire_async(kind, owner)
        try:
            with self._running(kind, asked, owner, group):
                yield
        finally:
            self._foreground(kind, group)

    # -- background work -------------------------------------------------------------------

    @contextlib.contextmanager
    def foreground(self, group: Hashable = None) -> Iterator[None]:
        """A reply for `group` (a guild) is being made, waits included: background work of other groups stops
        now, and none starts until no reply is in flight. Never blocks (usable around awaits)."""
        with self._cond:
            self._replies[group] += 1
        self.preempt_background(group)
        try:
            yield
        finally:
            with self._cond:
                self._replies[group] -= 1
                if self._replies[group] <= 0:
                    del self._replies[group]
                self._last_foreground = time.monotonic()
                self._cond.notify_all()

    def slots_taken_elsewhere(self, group: Hashable = None) -> bool:
        """Replies of groups other than `group` are in flight in every slot: work for `group` that is not
        needed yet (a reply prepared ahead) would only queue among them."""
        with self._cond:
            return sum(n for g, n in self._replies.items() if g != group) >= self.slots

    def preempt_background(self, group: Hashable = None) -> int:
        """Foreground model work is about to start: stop background jobs now (of groups other than `group`;
        every one when it is None). Returns how many."""
        with self._cond:
            self._last_foreground = time.monotonic()
            events = [event for event, owner_group in self._background.items() if group is None or owner_group != group]
        for event in events:
            if not event.is_set():
                event.set()
                self.preemptions += 1
        return len(events)

    def _foreground(self, kind: str, group: Hashable = None) -> None:
        """Heavy foreground work starts or ends: background work gives way. Where heavy models run one at a
        time (`exclusive`) all of it does; elsewhere the work's own guild keeps its background job (its warm-up
        or prefill evaluates the prompt of that guild's next reply, on a core of its own)."""
        if kind in HEAVY:
            self.preempt_background(None if self.exclusive else group)

    def _idle_for(self) -> float | None:
        """Under the lock: seconds since foreground LLM/TTS work, None while some runs, waits or is in flight,
        or another background job runs (one at a time: the LLM computes one thing)."""
        busy = (
            self._active["llm"] + self._active["tts"] > 0
            or bool(self._queue)
            or bool(self._replies)
            or bool(self._background)
        )
        return None if busy else time.monotonic() - self._last_foreground

    @contextlib.contextmanager
    def background(
        self,
        kind: str | None,
        *,
        owner: str = "",
        cancel: threading.Event | None = None,
        quiet_s: float = BACKGROUND_QUIET_S,
        group: Hashable = None,
        preempt: threading.Event | None = None,
    ) -> Iterator[threading.Event]:
        """Blocking: run low-priority work once no reply is in flight and foreground LLM/TTS work has been
        quiet for `quiet_s`; then hold a `kind` slot (None: take none here; the job takes it with
        `background_slot` once it has the model, as a prefill does: holding the slot while waiting for a
        model a reply holds would deadlock).

        Yields the preempt event (`preempt`, or a new one): set when foreground work needs the model (or
        `cancel` is set); the job must stop promptly when it is (pass it as the LLM's cancel event). A reply
        of the job's own `group` does not preempt it. Raises SchedulerCancelled if `cancel` (or `preempt`)
        is set while waiting.
        """
        own_event = preempt is None
        preempt = threading.Event() if preempt is None else preempt
        asked = time.monotonic()
        with self._cond:
            while True:
                if (cancel is not None and cancel.is_set()) or preempt.is_set():
                    raise SchedulerCancelled(kind or "background")
                idle = self._idle_for()
                if idle is not None and idle >= quiet_s:
                    break
                self._cond.wait(BACKGROUND_POLL_S)
            self._background[preempt] = group
            self.background_waited_s += time.monotonic() - asked
        if cancel is not None and own_event:
            threading.Thread(target=_link_events, args=(cancel, preempt), daemon=True, name=f"{owner}-cancel").start()
        try:
            if kind is None:
                yield preempt
            else:
                with self.background_slot(kind, owner=owner, preempt=preempt, group=group, asked=asked):
                    yield preempt
        finally:
            with self._cond:
                self._background.pop(preempt, None)
                self._cond.notify_all()
            if own_event:
                preempt.set()  # ends the watcher

    @contextlib.contextmanager
    def background_slot(
        self,
        kind: str,
        *,
        owner: str = "",
        preempt: threading.Event,
        group: Hashable = None,
        asked: float | None = None,
    ) -> Iterator[None]:
        """Inside `background`: a `kind` slot for the job, without preempting background work (its own). `asked`:
        when the job asked for the model (its wait for `background` and the model counts)."""
        asked = self._acquire_blocking(kind, owner, preempt, asked)
        with self._running(kind, asked, owner, group):
            yield

    def background_stats(self) -> dict[str, float | int]:
        with self._cond:
            return {
                "replies_in_flight": sum(self._replies.values()),
                "background_running": len(self._background),
                "preempted": self.preemptions,
                "background_waited_s": round(self.background_waited_s, 3),
            }

    @contextlib.contextmanager
    def _running(self, kind: str, asked: float, owner: str, group: Hashable = None) -> Iterator[None]:
        """A granted slot: counted as active while the work runs, released and recorded after."""
        start = time.monotonic()
        with self._cond:
            self._active[kind] += 1
        try:
            yield
        finally:
            end = time.monotonic()
            with self._cond:
                self._active[kind] -= 1
            self._release(kind, owner)
            self._record(kind, asked, start, end, owner, group)

    # -- instrumentation ---------------------------------------------------------------

    def intervals(self, kind: str | None = None) -> list[WorkInterval]:
        return self.work.intervals(kind)

    def overlap_seconds(self, a: str = "llm", b: str = "tts") -> float:
        """Total time during which `a` work and `b` work ran at the same time."""
        return self.work.overlap_seconds(a, b)

    def stats(self) -> dict:
        totals = self.work.totals()
        with self._cond:
            active = dict(self._active)
            queued = len(self._queue)
        return {
            "policy": self.policy,
            "slots": self.slots,
            "reason": self.reason,
            "active": active,
            "grants": totals["grants"],
            "busy_s": totals["busy_s"],
            "waited_s": totals["waited_s"],
            "queued": queued,
            "background": self.background_stats(),
        }

    def clear_records(self) -> None:
        self.work.clear()


def _link_events(source: threading.Event, target: threading.Event) -> None:
    """Set `target` when `source` is set (until `target` is set by someone else)."""
    while not target.is_set():
        if source.wait(0.05):
            target.set()
            return
