"""Per-speaker voice activity detection: one shared silero ONNX session, one small state per member.

The model is `audio.vad_model.SileroVad`: 512-sample windows at 16 kHz, prefixed by the last 64 samples of the
previous window (the "context").

`SpeakerVad` is one member's detector. It buffers 20 ms frames into 32 ms windows, skips the model
for windows quieter than an energy gate, and runs a hysteresis state machine:

* speech STARTS once `min(min_speech_ms, START_CONFIRM_MS)` of voiced windows accumulated (quick, so
  the prompter can react to barge-in within ~100-200 ms of voice onset);
* a PAUSE is reported after `pause_ms` of silence (the listener starts a speculative final then);
* speech ENDS after `end_silence_ms` of silence; a segment with less than `min_speech_ms` of voice
  is DISCARDED (coughs, clicks).

The segment audio (pre-roll + speech + silence tail) grows in a preallocated buffer that is only
appended to, so another thread may read `segment.audio()` while this one writes.

`idle()` counts time in which the member sent NOTHING (Discord sends no packets in silence) as silence
without adding audio: frames that were only late (network jitter, a busy event loop) then continue the
segment seamlessly instead of after a fake silence in the middle of a word.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from dataclasses import dataclass
from itertools import count

import numpy as np

from audio.types import STT_RATE
from audio.vad_model import VadModel

log = logging.getLogger(__name__)

WINDOW = 512  # samples per silero window at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous window prepended (silero v5/v6)
WINDOW_S = WINDOW / STT_RATE
START_CONFIRM_MS = 96  # voiced time that confirms a start even when min_speech_ms is longer
NEG_HYSTERESIS = 0.15  # speech continues while prob >= threshold - this
MAX_SEGMENT_S = 28.0  # Whisper sees 30 s at most: longer speech is split into several segments


def dbfs(x: np.ndarray) -> float:
    """RMS level of float32 audio in dBFS (-inf for digital silence)."""
    if x.size == 0:
        return -math.inf
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf


_segment_ids = count(1)


class Segment:
    """One speech segment of one member: audio from pre-roll to now, appended in place."""

    def __init__(self, user_id: int, capacity: int) -> None:
        self.id = next(_segment_ids)
        self.user_id = user_id
        self._buf = np.zeros(capacity, dtype=np.float32)
        self._n = 0
        self.start_t = 0.0  # monotonic time of the first voiced window
        self.started_at = 0.0  # monotonic time the start was confirmed (SpeakingEvent)
        self.onset_sample = 0  # offset in the segment where voice began (after the pre-roll)
        self.last_voice_t = 0.0  # arrival time of the last voiced window
        self.last_voice_sample = 0  # segment offset just after the last voiced window
        self.voiced_s = 0.0
        self.stream_offset = 0  # offset of the segment's first sample in the member's stream
        self.ended = threading.Event()

    def append(self, pcm: np.ndarray) -> int:
        """Append samples; returns how many fitted (the caller splits the segment when full)."""
        room = self._buf.size - self._n
        take = min(room, pcm.size)
        self._buf[self._n : self._n + take] = pcm[:take]
        self._n += take  # published after the write: readers see complete samples only
        return take

    @property
    def n_samples(self) -> int:
        return self._n

    @property
    def full(self) -> bool:
        return self._n >= self._buf.size

    def audio(self, end: int | None = None) -> np.ndarray:
        """A copy of the audio so far (up to `end` samples)."""
        n = self._n if end is None else min(end, self._n)
        return self._buf[:n].copy()


@dataclass(frozen=True, slots=True)
class VadEvent:
    kind: str  # "start" | "pause" | "resume" | "end" | "discard"
    segment: Segment
    t: float  # monotonic time of the frame that produced the event
    speech_end_t: float = 0.0  # for pause/end/discard: arrival time of the last voiced window
    split: bool = False  # "end" forced by MAX_SEGMENT_S (speech goes on in a new segment)


@dataclass
class VadConfig:
    threshold: float = 0.5
    energy_gate_dbfs: float = -50.0
    end_silence_ms: int = 300
    min_speech_ms: int = 120
    preroll_ms: int = 300
    pause_ms: int = 64
    max_segment_s: float = MAX_SEGMENT_S

    @classmethod
    def from_settings(cls, settings, *, pause_ms: int | None = None) -> "VadConfig":
        return cls(
            threshold=settings.vad_threshold,
            energy_gate_dbfs=settings.vad_energy_gate_dbfs,
            end_silence_ms=settings.vad_end_silence_ms,
            min_speech_ms=settings.vad_min_speech_ms,
            preroll_ms=settings.vad_preroll_ms,
            pause_ms=min(pause_ms if pause_ms is not None else 64, settings.vad_end_silence_ms),
        )


@dataclass
class VadStats:
    windows: int = 0
    gated: int = 0  # windows that skipped the model (below the energy gate)
    segments: int = 0
    discarded: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"windows": self.windows, "gated": self.gated, "segments": self.segments, "discarded": self.discarded}


class SpeakerVad:
    """One member's VAD state machine. Not thread-safe: feed it from one thread."""

    def __init__(self, user_id: int, model: VadModel, config: VadConfig) -> None:
        self.user_id = user_id
        self.model = model
        self.config = config
        self.stats = VadStats()
        self._state = model.new_state()
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)  # < WINDOW samples waiting for a full window
        self._preroll: deque[np.ndarray] = deque()
        self._preroll_n = 0
        self._preroll_max = int(config.preroll_ms * STT_RATE / 1000)
        self._stream_pos = 0  # samples consumed (windowed) since creation
        self._candidate: Segment | None = None  # voice heard, start not confirmed yet
        self._segment: Segment | None = None  # confirmed speech
        self._silence_s = 0.0
        self._paused = False
        self._silent_windows = 0  # consecutive gated/silent windows (to reset the model state)
        self._idle_s = 0.0  # idle time not yet counted as silent windows
        self._silence_before_idle: float | None = None  # real silence when the current idle stretch began
        self._confirm_s = min(config.min_speech_ms, START_CONFIRM_MS) / 1000.0
        self._capacity = int(config.max_segment_s * STT_RATE) + self._preroll_max + WINDOW

    @property
    def speaking(self) -> bool:
        return self._segment is not None

    @property
    def in_speech(self) -> bool:
        """Speech confirmed or a start being confirmed (the VAD needs to hear the silence that follows)."""
        return self._segment is not None or self._candidate is not None

    @property
    def segment(self) -> Segment | None:
        return self._segment

    @property
    def silence_heard_s(self) -> float:
        """Silence heard in the member's AUDIO since their last voice (an idle stretch not counted):
        Discord clients send a few silent frames when a member stops talking, then nothing."""
        return self._silence_before_idle if self._silence_before_idle is not None else self._silence_s

    def push(self, pcm: np.ndarray, t: float) -> list[VadEvent]:
        """Feed audio (any length, 16 kHz mono float32) that arrived at monotonic time `t`."""
        pcm = np.asarray(pcm, dtype=np.float32).reshape(-1)
        self._idle_s = 0.0
        if self._silence_before_idle is not None:
            # frames after a gap that did not end the speech: they were late, not absent; the gap was no silence
            if self._segment is not None or self._candidate is not None:
                self._silence_s = self._silence_before_idle
            self._silence_before_idle = None
        if self._pending.size:
            pcm = np.concatenate((self._pending, pcm))
        events: list[VadEvent] = []
        n_windows = pcm.size // WINDOW
        for i in range(n_windows):
            window = pcm[i * WINDOW : (i + 1) * WINDOW]
            # windows before the last one arrived slightly earlier than t
            wt = t - (pcm.size - (i + 1) * WINDOW) / STT_RATE
            self._window(window, wt, events)
        self._pending = pcm[n_windows * WINDOW :].copy()
        return events

    def idle(self, seconds: float, t: float, *, may_end: bool = True) -> list[VadEvent]:
        """The member sent nothing for `seconds` more: count it as silence (no audio added, model untouched).

        With ``may_end=False`` the silence may report a pause (speculation starts) but stops short of
        ending the speech or dropping a start being confirmed: the caller is not sure yet that the member
        stopped (the frames may only be late); the held time counts once a later call allows the end.
        Frames pushed after an idle stretch that did not end the speech were late, not absent: the
        silence counted while idle is taken back.
        """
        events: list[VadEvent] = []
        if self._segment is None and self._candidate is None:
            self._idle_s = 0.0
            return events
        cfg = self.config
        if self._silence_before_idle is None:
            self._silence_before_idle = self._silence_s
        self._idle_s += max(0.0, seconds)
        while self._idle_s >= WINDOW_S - 1e-9 and (self._segment is not None or self._candidate is not None):
            if not may_end and (self._silence_s + WINDOW_S) * 1000 >= cfg.end_silence_ms - 1e-6:
                break
            self._idle_s -= WINDOW_S
            self._silent_window(t, events)
        if self._segment is None and self._candidate is None:
            self._idle_s = 0.0
            self._silence_before_idle = None
        return events

    def flush(self, t: float) -> list[VadEvent]:
        """End any speech now (stream closed or member left)."""
        events: list[VadEvent] = []
        if self._segment is not None:
            self._finish(t, events)
        self._candidate = None
        return events

    # -- internals ---------------------------------------------------------------------------

    def _prob(self, window: np.ndarray) -> float:
        self.stats.windows += 1
        if dbfs(window) < self.config.energy_gate_dbfs:
            self.stats.gated += 1
            self._silent_windows += 1
            if self._silent_windows == 16:  # ~0.5 s of silence: start the next speech from a fresh state
                self._state = self.model.new_state()
            self._context = window[-CONTEXT:].copy()
            return 0.0
        self._silent_windows = 0
        x = np.concatenate((self._context, window))
        prob, self._state = self.model.probability(x, self._state)
        self._context = window[-CONTEXT:].copy()
        return prob

    def _window(self, window: np.ndarray, t: float, events: list[VadEvent]) -> None:
        cfg = self.config
        prob = self._prob(window)
        self._stream_pos += WINDOW
        active = self._segment or self._candidate
        if active is None:
            if prob >= cfg.threshold:
                seg = Segment(self.user_id, self._capacity)
                for chunk in self._preroll:
                    seg.append(chunk)
                seg.onset_sample = seg.n_samples
                seg.stream_offset = self._stream_pos - WINDOW - seg.n_samples
                self._preroll.clear()
                self._preroll_n = 0
                seg.append(window)
                seg.start_t = t - WINDOW_S
                seg.voiced_s = WINDOW_S
                seg.last_voice_t = t
                seg.last_voice_sample = seg.n_samples
                self._candidate = seg
                self._silence_s = 0.0
                self._maybe_confirm(t, events)
            else:
                self._remember_preroll(window)
            return

        active.append(window)
        voiced = prob >= (cfg.threshold - NEG_HYSTERESIS if self._segment else cfg.threshold)
        if voiced:
            active.voiced_s += WINDOW_S
            active.last_voice_t = t
            active.last_voice_sample = active.n_samples
            self._silence_s = 0.0
            if self._segment is not None and self._paused:
                self._paused = False
                events.append(VadEvent("resume", self._segment, t))
            if self._candidate is not None:
                self._maybe_confirm(t, events)
        elif not self._silent_window(t, events):
            return
        if self._segment is not None and self._segment.n_samples + WINDOW > self._capacity - WINDOW:
            self._split(t, events)

    def _silent_window(self, t: float, events: list[VadEvent]) -> bool:
        """Count one window of silence (heard, or idle time) against the speech in progress.

        An unconfirmed start is forgotten after `end_silence_ms` (its audio becomes pre-roll); confirmed
        speech reports "pause" once after `pause_ms` and ends after `end_silence_ms`. Returns whether
        confirmed speech is still going on.
        """
        cfg = self.config
        self._silence_s += WINDOW_S
        if self._candidate is not None:
            if self._silence_s * 1000 >= cfg.end_silence_ms:
                self.stats.discarded += 1
                self._reset_preroll_from(self._candidate)
                self._candidate = None
            return False
        seg = self._segment
        assert seg is not None
        if not self._paused and self._silence_s * 1000 >= cfg.pause_ms - 1e-6:
            self._paused = True
            events.append(VadEvent("pause", seg, t, speech_end_t=seg.last_voice_t))
        if self._silence_s * 1000 >= cfg.end_silence_ms - 1e-6:
            self._finish(t, events)
            return False
        return True

    def _maybe_confirm(self, t: float, events: list[VadEvent]) -> None:
        seg = self._candidate
        if seg is not None and seg.voiced_s + 1e-9 >= self._confirm_s:
            self._candidate = None
            self._segment = seg
            self._paused = False
            seg.started_at = t
            self.stats.segments += 1
            events.append(VadEvent("start", seg, t))

    def _finish(self, t: float, events: list[VadEvent], *, split: bool = False) -> None:
        seg = self._segment
        assert seg is not None
        self._segment = None
        self._paused = False
        self._silence_s = 0.0
        if seg.voiced_s * 1000 + 1e-6 < self.config.min_speech_ms:
            self.stats.discarded += 1
            events.append(VadEvent("discard", seg, t, speech_end_t=seg.last_voice_t))
        else:
            events.append(VadEvent("end", seg, t, speech_end_t=seg.last_voice_t, split=split))
        seg.ended.set()

    def _split(self, t: float, events: list[VadEvent]) -> None:
        """Speech longer than a Whisper window: end this segment, go on in a new one at once."""
        old = self._segment
        assert old is not None
        self._finish(t, events, split=True)
        seg = Segment(self.user_id, self._capacity)
        seg.start_t = t
        seg.started_at = t
        seg.last_voice_t = t
        seg.stream_offset = self._stream_pos
        self._segment = seg
        self.stats.segments += 1

    def _remember_preroll(self, window: np.ndarray) -> None:
        if self._preroll_max <= 0:
            return
        self._preroll.append(window.copy())
        self._preroll_n += window.size
        while self._preroll_n - self._preroll[0].size >= self._preroll_max:
            self._preroll_n -= self._preroll.popleft().size

    def _reset_preroll_from(self, seg: Segment) -> None:
        self._preroll.clear()
        self._preroll_n = 0
        audio = seg.audio()
        tail = audio[-self._preroll_max :] if self._preroll_max else audio[:0]
        for i in range(0, tail.size, WINDOW):
            self._remember_preroll(tail[i : i + WINDOW])
