"""Following the bot's lines after a scripted member line: wait for the reply, record it, judge the turn.

Shared by `simulator.scripted` (members in this process) and the load and soak benchmarks (members in the
world process): what differs is how a member speaks and where the bot's voice is heard, so the watch takes
``first_voiced_after(t)``: the arrival of the first voiced bot packet at a member at or after ``t``.

The latency of a turn is the true end of the member's speech (the send time of the packet that carries its
last voiced 20 ms frame) to that first voiced packet of the bot's answer at a member.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)

# The stages of one reply, in pipeline order (TurnTrace.times keys, plus "heard" at the member).
STAGES = (
    "speech_end",
    "vad_end",
    "final",
    "request",
    "first_token",
    "first_fragment",
    "first_audio",
    "first_packet",
    "heard",
)
TERMINAL = ("spoken", "interrupted", "failed", "silent", "gated", "discarded")
POLL_S = 0.05
MAX_SEEN_TRACES = 400

FirstVoicedAfter = Callable[[float], "float | None"]


@dataclass
class ReplyRecord:
    """One bot line started during a turn (a session TurnTrace, made relative)."""

    kind: str
    reason: str
    outcome: str
    text: str
    stages_s: dict[str, float]  # STAGES present, seconds after the true end of the member's speech
    times_s: dict[str, float]  # every trace timestamp, seconds after the true end of speech
    latency_s: float | None  # true end of speech -> first voiced bot packet at the member
    first_packet_s: float | None  # true end of speech -> first bot packet sent (player)


@dataclass
class TurnRecord:
    index: int
    speaker: str
    said: str
    expect_reply: bool
    warmup: bool
    start_s: float  # first packet of the line, seconds after the session started
    true_end_s: float  # true end of speech, seconds after the session started
    speech_s: float
    heard: str = ""  # chorus' final transcript(s) of the line
    replies: list[ReplyRecord] = field(default_factory=list)
    status: str = "pending"  # answered | unanswered | quiet (no reply expected, none given) | unprompted | failed

    @property
    def answer(self) -> ReplyRecord | None:
        """The first bot line heard after the member finished (one that started over them does not count)."""
        spoken = [
            r
            for r in self.replies
            if r.outcome in ("spoken", "interrupted") and (r.first_packet_s is None or r.first_packet_s > 0)
        ]
        return spoken[0] if spoken else None

    @property
    def latency_s(self) -> float | None:
        answer = self.answer
        return answer.latency_s if answer is not None else None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["latency_s"] = self.latency_s
        answer = self.answer
        d["reply"] = answer.text if answer is not None else ""
        return d


class ReplyWatch:
    """The bot lines of one voice session, followed line by line of a script (see the module docstring)."""

    def __init__(
        self,
        session: Any,
        first_voiced_after: FirstVoicedAfter,
        *,
        reply_timeout_s: float,
        unprompted_watch_s: float,
        on_poll: Callable[[], None] | None = None,
    ) -> None:
        self.session = session
        self.first_voiced_after = first_voiced_after
        self.reply_timeout_s = reply_timeout_s
        self.unprompted_watch_s = unprompted_watch_s  # no reply expected: how long to watch for one anyway
        self.on_poll = on_poll or (lambda: None)
        # the traces already seen (kept alive so their ids stay unique); the session keeps its last 100 only
        self._seen: dict[int, Any] = {}

    async def follow(self, turn: TurnRecord, *, user_id: int, start: float, true_end: float) -> TurnRecord:
        """After the member's line (sent from ``start``, speech ended at ``true_end``): wait for the bot, then
        fill in the turn's replies, what chorus heard, and its status. Never raises."""
        try:
            turn.replies = await self.await_reply(turn.expect_reply, user_id, true_end)
        except Exception:  # record, never crash the conversation
            log.exception("turn %d: waiting for the reply failed", turn.index)
            turn.status = "failed"
            turn.heard = self.heard_since(user_id, start)
            turn.replies = []
            return turn
        turn.heard = self.heard_since(user_id, start)
        answered = turn.answer is not None
        if turn.expect_reply:
            turn.status = "answered" if answered else "unanswered"
        else:
            turn.status = "unprompted" if answered else "quiet"
        return turn

    async def await_reply(self, expect_reply: bool, user_id: int, true_end: float) -> list[ReplyRecord]:
        """Wait for the bot's reply to this line to be played out; returns every bot line started meanwhile."""
        if expect_reply:
            deadline = true_end + self.reply_timeout_s
        else:  # give the transcript time to arrive, then watch for the bot joining in
            heard_by = true_end + self.reply_timeout_s / 2
            while time.monotonic() < heard_by and not self.heard_since(user_id, true_end - 60):
                self.on_poll()
                await asyncio.sleep(POLL_S)
            deadline = time.monotonic() + self.unprompted_watch_s
        return await self.settle(origin=true_end, timeout=None, deadline=deadline, need_answer=expect_reply)

    async def settle(
        self,
        *,
        origin: float | None,
        timeout: float | None,
        deadline: float | None = None,
        need_answer: bool = False,
        quiet_s: float = 1.0,
    ) -> list[ReplyRecord]:
        """Watch bot lines until the bot is idle: either an answer was played out (need_answer), or no new
        line started before ``deadline`` (absolute) / for ``quiet_s`` (greeting watch, bounded by ``timeout``).
        A started line is always waited for (up to reply_timeout_s more), so the next line never talks over it."""
        session = self.session
        start = time.monotonic()
        if deadline is None:
            deadline = start + (timeout or self.reply_timeout_s)
        hard_stop = deadline + self.reply_timeout_s
        new: list[Any] = []
        quiet_since = time.monotonic()
        while True:
            self.on_poll()
            fresh = self.take_new_traces()
            if fresh:
                new.extend(fresh)
                quiet_since = time.monotonic()
            busy = session.room.turn is not None or any(t.outcome == "pending" for t in new)
            now = time.monotonic()
            if busy:
                quiet_since = now
                if now > hard_stop:
                    log.warning("the bot's line did not finish in time; moving on")
                    break
            else:
                answered = any(
                    t.outcome in ("spoken", "interrupted") and t.times.get("first_packet", now) > (origin or 0.0)
                    for t in new
                )
                if need_answer and answered and now - quiet_since > 0.2:
                    break
                # the reply came out empty or failed: nothing more is coming for this line
                if (
                    need_answer
                    and any(t.outcome in ("silent", "failed", "gated") for t in new)
                    and now - quiet_since > 2.0
                ):
                    break
                if (
                    not need_answer
                    and origin is None
                    and now - quiet_since > quiet_s
                    and (new or now - start > quiet_s + 2.0)
                ):
                    break
                if now > deadline and (not new or now - quiet_since > 0.2):
                    break
            await asyncio.sleep(POLL_S)
        return [self.record(trace, origin if origin is not None else trace.times.get("decided", 0.0)) for trace in new]

    def take_new_traces(self) -> list[Any]:
        out = []
        for trace in list(self.session.traces):
            if id(trace) not in self._seen:
                self._seen[id(trace)] = trace
                out.append(trace)
        while len(self._seen) > MAX_SEEN_TRACES:
            del self._seen[next(iter(self._seen))]
        return out

    def record(self, trace: Any, origin: float) -> ReplyRecord:
        times = dict(trace.times)
        first_packet = times.get("first_packet")
        heard = self.first_voiced_after(first_packet) if first_packet is not None else None
        if heard is not None:
            times["heard"] = heard
        rel = {k: round(v - origin, 4) for k, v in sorted(times.items(), key=lambda kv: kv[1])}
        return ReplyRecord(
            kind=trace.kind,
            reason=trace.reason,
            outcome=trace.outcome,
            text=trace.text,
            stages_s={k: rel[k] for k in STAGES if k in rel},
            times_s=rel,
            latency_s=round(heard - origin, 4) if heard is not None else None,
            first_packet_s=round(first_packet - origin, 4) if first_packet is not None else None,
        )

    def heard_since(self, user_id: int, since: float) -> str:
        """What chorus transcribed of the member (its final lines) since ``since``."""
        lines = [
            line.text
            for line in self.session.room.history
            if not line.is_bot and line.user_id == user_id and line.end >= since
        ]
        return " ".join(t.strip() for t in lines if t.strip())
