"""Captions to a text channel, one message at a time, with a bounded backlog.

A busy call makes lines faster than Discord takes messages (rate limits, a slow network): the captions wait
in a queue of at most `MAX_PENDING`; beyond that the oldest is shed (counted in the session's `ShedLog`).
One task sends them in order, and exists only while something waits.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, Awaitable, Callable

from runtime.shedding import ShedLog

log = logging.getLogger(__name__)

MAX_PENDING = 20
MAX_CHARS = 1900  # under Discord's 2000-character message limit

CaptionSink = Callable[[str], Awaitable[None]]


class CaptionQueue:
    def __init__(
        self,
        sink: Callable[[], CaptionSink | None],
        *,
        spawn: Callable[[Any, str], Any],
        label: str = "",
        max_pending: int = MAX_PENDING,
    ) -> None:
        self._sink = sink  # the current sink, read per message (captions may be turned off meanwhile)
        self._spawn = spawn
        self._label = label
        self._pending: deque[tuple[int | None, str]] = deque()  # (member whose words it carries, text)
        self._max = max_pending
        self._sending = False
        self.sent = 0
        self.shedding = ShedLog("captions", label=label)

    def __len__(self) -> int:
        return len(self._pending)

    def put(self, text: str, member: int | None = None) -> None:
        """Queue a caption (event loop thread); `member`: whose words it carries (see `drop_member`)."""
        self._pending.append((member, text[:MAX_CHARS]))
        if len(self._pending) > self._max:
            self._pending.popleft()
            self.shedding.shed("backlog")
        if not self._sending:
            self._sending = True
            self._spawn(self._drain(), f"captions-{self._label}")

    def drop_member(self, user_id: int) -> int:
        """The member opted out: their captions not posted yet are dropped. Returns how many."""
        kept = deque(item for item in self._pending if item[0] != user_id)
        dropped = len(self._pending) - len(kept)
        self._pending = kept
        return dropped

    async def _drain(self) -> None:
        try:
            while self._pending:
                _member, text = self._pending.popleft()
                sink = self._sink()
                if sink is None:
                    continue
                try:
                    await sink(text)
                    self.sent += 1
                except Exception as exc:
                    log.warning("%s: caption not sent (%s: %s)", self._label, type(exc).__name__, exc)
        finally:
            self._sending = False
