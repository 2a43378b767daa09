"""Silence that Discord does not send: a speaking member whose frames stop is heard as silent in real time
(`SpeakerVad.idle`: counted, no audio added), so their speech still ends.

Late frames must not cut a word in two, so: a gap counts only up to the last moment the event loop proved
responsive (a ping sent through the loop came back), a gap may start a speculative final after GAP_S but ENDS
the speech only once it lasts VAD_END_SILENCE_MS (the sender may only be late: jitter, a stall), and frames
arriving after a gap continue the audio seamlessly. A gap after silent frames (Discord clients send five when a
member stops) is the end it looks like: with the silence heard it counts toward VAD_END_SILENCE_MS once it lasts
GAP_S.
"""

from __future__ import annotations

import asyncio
import queue
import time
from typing import Any, Callable

from audio.vad import SpeakerVad, VadConfig, VadEvent

GAP_S = 0.1  # no frame from a speaking member for this long: they stopped sending (Discord sends no silence)
TRAILING_SILENCE_S = 0.06  # silence heard before a gap: the client said it stopped (5 silent frames on Discord)
PING_INTERVAL_S = 0.02  # event-loop liveness pings while someone speaks (see _loop_alive_until)


class GapFiller:
    """The gaps of one listener's members, on its VAD thread; pings come back through `pings` as ("alive", t)."""

    def __init__(
        self, pings: queue.SimpleQueue, vad_config: VadConfig, stats: Any, on_event: Callable[[VadEvent], None]
    ) -> None:
        self._queue = pings
        self.vad_config = vad_config
        self.stats = stats
        self._on_event = on_event
        self._last_frame: dict[int, tuple[float, float, float]] = {}  # user id -> (arrival, frame.t, idle s counted)
        self._alive_t = 0.0  # send time of the last ping that came back through the event loop
        self._ping_sent = 0.0
        self._ping_pending = False

    def heard(self, user_id: int, arrival: float, t: float) -> None:
        """A frame of the member (sent at `t`) arrived."""
        self._last_frame[user_id] = (arrival, t, 0.0)

    def forget(self, user_id: int) -> None:
        self._last_frame.pop(user_id, None)

    def alive(self, sent: float) -> None:
        """A ping sent at `sent` came back through the event loop."""
        self._alive_t = max(self._alive_t, sent)
        self._ping_pending = False

    def _loop_alive_until(self, loop: asyncio.AbstractEventLoop | None) -> float:
        """The latest time up to which every frame the event loop was given has reached our queue.

        A ping (its send time) goes through the loop into the queue behind any frame the loop delivers
        before it; when it comes back, a member with no frame since that time really sent nothing.
        """
        now = time.monotonic()
        if loop is None or loop.is_closed():
            return now
        if not self._ping_pending and now - self._ping_sent >= PING_INTERVAL_S:
            self._ping_sent = now
            self._ping_pending = True
            try:
                loop.call_soon_threadsafe(self._queue.put, ("alive", now))
            except RuntimeError:  # loop closing: nothing more will come through it
                self._ping_pending = False
                return now
        return self._alive_t

    def fill(self, members: dict[int, SpeakerVad], loop: asyncio.AbstractEventLoop | None) -> None:
        """Discord stops sending when a member stops talking: hear that as silence, in real time."""
        if not any(vad.in_speech for vad in members.values()):
            return
        now = self._loop_alive_until(loop)
        end_gap = max(GAP_S, self.vad_config.end_silence_ms / 1000.0)
        for uid, (arrival, frame_t, counted) in list(self._last_frame.items()):
            vad = members.get(uid)
            gap = now - arrival
            if vad is None or not vad.in_speech or gap < GAP_S or gap - counted < 0.02:
                continue
            # silence without audio; only a gap as long as the end-of-speech silence may END the speech
            # (a shorter one may be late frames: jitter, a stalled sender), unless the member's client
            # sent silence before going quiet (what Discord clients do when a member stops talking)
            may_end = gap >= end_gap or (gap >= GAP_S and vad.silence_heard_s >= TRAILING_SILENCE_S)
            self.stats.gap_fills += int((gap - counted) / 0.02)
            for event in vad.idle(gap - counted, frame_t + gap, may_end=may_end):
                self._on_event(event)
            self._last_frame[uid] = (arrival, frame_t, gap)
