"""Admission, not collapse: what a reply does when the model is busy with other guilds' replies.

A reply waits for the LLM (one generation at a time per loaded model) before it computes anything. When that
wait grows past what a person waits for an answer:

- at `REPLY_HOLD_AFTER_S` after the reply was asked for, still waiting (for the model or its first scheduler
  slot), it speaks one of the persona's holding
  lines ("One moment.", `conversation.greeting.holding_line`), whose audio is synthesized once per voice and
  replayed after (`HoldingVoice`): the member hears that they were heard, at almost no cost to the busy models;
- a reply that got the model past that bound is kept to one sentence (it frees the model sooner for the next);
- a reply that got the model past `REPLY_DROP_AFTER_S`, or that said its holding line and would start speaking
  its answer past that bound, is dropped: an answer to a question long gone is worse than none (the holding
  line already told them; they can ask again). Slow compute alone never drops a reply (a machine that is slow
  for everyone is not a queue), and no reply is dropped silently after it got the model.

Each decision is stamped on the reply's timings (`runtime.stage_times.ADMISSION_MARKS`), so the turn's trace,
the metrics (`chorus_admission_total{reason}`) and the load benchmark count them. 0 turns a bound off.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Iterator

import numpy as np

from audio.tts import TtsEngine

log = logging.getLogger(__name__)

HOLDING_CACHE_MAX = 64  # (voice, line) pairs whose audio is kept
GO, SHORT, DROP = "go", "short", "drop"


@dataclass(frozen=True)
class Admission:
    """The bounds on a reply's wait for the model (seconds after the reply was asked for; 0 = off)."""

    hold_after_s: float = 1.5
    drop_after_s: float = 4.0

    @classmethod
    def from_settings(cls, settings: Any) -> "Admission":
        return cls(hold_after_s=settings.reply_hold_after_s, drop_after_s=settings.reply_drop_after_s)

    def verdict(self, waited_s: float) -> str:
        """What a reply that got the model after `waited_s` does: GO, SHORT (one sentence) or DROP."""
        if self.drop_after_s > 0 and waited_s > self.drop_after_s:
            return DROP
        if self.hold_after_s > 0 and waited_s > self.hold_after_s:
            return SHORT
        return GO


@dataclass(frozen=True)
class HoldingLine:
    """A holding line for a reply's speaker: not part of the reply's text; its audio comes from `HoldingVoice`."""

    text: str


def first_item(stream: Any) -> str | None:
    """Advance a backend stream to its ready marker (""); a non-empty first item is kept as a token."""
    first = next(stream, None)
    if first is None:
        return None
    return first or None


class ModelWait:
    """One reply's wait for the model: while `waiting()`, `on_hold` is called (on a timer thread) once the wait
    reaches the hold bound after the reply was asked for; `verdict()` says what the reply does once it has it."""

    def __init__(self, admission: Admission, asked_at: float, on_hold: Callable[[], None]) -> None:
        self.admission = admission
        self.asked_at = asked_at
        self._on_hold = on_hold
        self._lock = threading.Lock()
        self._waiting = False
        self.held = False  # the holding line was asked for

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        timer: threading.Timer | None = None
        if self.admission.hold_after_s > 0 and not self.held:
            delay = max(0.0, self.asked_at + self.admission.hold_after_s - time.monotonic())
            timer = threading.Timer(delay, self._hold)
            timer.daemon = True
        with self._lock:
            self._waiting = True
        if timer is not None:
            timer.start()
        try:
            yield
        finally:
            with self._lock:
                self._waiting = False  # a timer firing now finds the model taken: no holding line
            if timer is not None:
                timer.cancel()

    def _hold(self) -> None:
        with self._lock:
            if not self._waiting or self.held:
                return
            self.held = True
        self._on_hold()

    def verdict(self, now: float | None = None) -> str:
        return self.admission.verdict((time.monotonic() if now is None else now) - self.asked_at)


class HoldingVoice:
    """The audio of holding lines per voice: synthesized once (under the caller's TTS slot), replayed after."""

    def __init__(self) -> None:
        self._audio: dict[tuple[int, str], list[tuple[np.ndarray, int]]] = {}
        self._lock = threading.Lock()

    def cached(self, tts: TtsEngine, text: str) -> bool:
        with self._lock:
            return (id(tts), text) in self._audio

    def chunks(
        self, tts: TtsEngine, text: str, slot: Callable[[], ContextManager[Any]], cancel: threading.Event
    ) -> Iterator[tuple[np.ndarray, int]]:
        """The line's PCM chunks: from the cache, or synthesized now inside `slot()` (then kept)."""
        key = (id(tts), text)
        with self._lock:
            audio = self._audio.get(key)
        if audio is None:
            with slot():
                audio = [(pcm, rate) for pcm, rate in tts.synthesize(text, cancel)]
            if cancel.is_set():
                return
            with self._lock:
                if len(self._audio) >= HOLDING_CACHE_MAX:
                    self._audio.pop(next(iter(self._audio)))
                self._audio[key] = audio
        yield from audio
