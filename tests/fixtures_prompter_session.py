"""Parts for driving a VoiceSession in tests: a paced player and a scripted responder.

`PacedPlayer` behaves like `audio.playback.StreamPlayer` as the session sees it: a reader thread
takes 20 ms of audio every 20 ms (what discord.py's AudioPlayer does), `seconds_played` counts
what went out in the current line, `flush()` drops the rest, `on_first_packet` fires from the
player thread. `ScriptedResponder` streams given fragments with tone audio from a worker thread
through the sink (like the real Responder's TTS thread) and stops when its task is cancelled.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import numpy as np

FRAME_S = 0.02


class PacedPlayer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queued_s = 0.0
        self._new_line = True
        self.seconds_played = 0.0
        self.fed_s = 0.0
        self.flushes: list[float] = []
        self.ends = 0
        self.on_first_packet = None
        self.gains: list[float] = []  # each `set_gain` (the voice turned down for someone, then back up)
        self.holds: list[bool] = []  # each `hold_new_runs` (the next run of voice held while someone voices)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, daemon=True, name="paced-player")
        self._thread.start()

    def feed(self, pcm: np.ndarray, rate: int) -> None:
        with self._lock:
            if self._new_line:
                self.seconds_played = 0.0
            self._queued_s += len(pcm) / rate
            self.fed_s += len(pcm) / rate

    def end_of_utterance(self) -> None:
        with self._lock:
            self.ends += 1

    def set_gain(self, gain: float) -> None:
        self.gains.append(gain)

    def hold_new_runs(self, hold: bool) -> None:
        self.holds.append(hold)

    def flush(self) -> float:
        with self._lock:
            dropped, self._queued_s = self._queued_s, 0.0
            self._new_line = True
        self.flushes.append(dropped)
        return dropped

    @property
    def is_playing_audio(self) -> bool:
        with self._lock:
            return self._queued_s > 1e-9

    @property
    def queued_seconds(self) -> float:
        with self._lock:
            return self._queued_s

    def _pump(self) -> None:
        while not self._stop.wait(FRAME_S):
            first = None
            with self._lock:
                if self._queued_s > 1e-9:
                    step = min(FRAME_S, self._queued_s)
                    self._queued_s -= step
                    if self._new_line:
                        self._new_line = False
                        first = time.monotonic()
                    self.seconds_played += step
                    if self._queued_s <= 1e-9:
                        self._new_line = True
            if first is not None and self.on_first_packet is not None:
                self.on_first_packet(first)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)


@dataclass
class Result:
    text: str
    timings: dict[str, float] = field(default_factory=dict)


class ScriptedResponder:
    def __init__(
        self,
        fragments: list[str],
        *,
        seconds_each: float = 0.3,
        delay_s: float = 0.03,
        rate: int = 22050,
        fail: bool = False,
    ) -> None:
        self.fragments = fragments
        self.seconds_each = seconds_each
        self.delay_s = delay_s
        self.rate = rate
        self.fail = fail
        self.calls: list[dict] = []
        self.cancelled = threading.Event()
        self.finished = 0

    async def respond(self, persona, history, *, situation: str, sink, **kw) -> Result:
        self.calls.append({"persona": persona, "history": list(history), "situation": situation, **kw})
        if self.fail:
            raise RuntimeError("model exploded")
        cancel = threading.Event()
        timings: dict[str, float] = {"request": time.monotonic()}

        def work() -> None:
            t = np.arange(int(self.rate * 0.1)) / self.rate
            chunk = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
            for fragment in self.fragments:
                time.sleep(self.delay_s)
                if cancel.is_set():
                    return
                timings.setdefault("first_token", time.monotonic())
                sink.text(fragment)
                timings.setdefault("first_fragment", time.monotonic())
                for _ in range(round(self.seconds_each / 0.1)):
                    if cancel.is_set():
                        return
                    sink.audio(chunk, self.rate)
                    timings.setdefault("first_audio", time.monotonic())
            sink.done()

        try:
            await asyncio.to_thread(work)
        except asyncio.CancelledError:
            cancel.set()
            self.cancelled.set()
            raise
        self.finished += 1
        return Result(" ".join(self.fragments), timings)


class RecordingListener:
    """Stands where audio.listener.Listener stands; the test plays the listener's callbacks itself."""

    def __init__(self, settings, *, name_of, on_speaking, on_utterance) -> None:
        self.name_of = name_of
        self.on_speaking = on_speaking
        self.on_utterance = on_utterance
        self.frames = []
        self.forgotten: list[int] = []
        self.closed = False

    def feed(self, frame) -> None:
        self.frames.append(frame)

    def forget(self, user_id: int) -> None:
        self.forgotten.append(user_id)

    async def close(self) -> None:
        self.closed = True
