"""One human in the room: when they speak (VAD events), their latest transcripts, and their bursts of speech."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from audio.types import Utterance

MAX_SPEECH_SPANS = 16  # a member's latest finished speaking spans, kept to add up bursts over the bot


@dataclass(slots=True)
class Member:
    user_id: int
    name: str
    joined_at: float
    initial: bool = False  # already there when the session started
    speaking_since: float | None = None  # set while VAD says they speak
    quiet_since: float | None = None  # speaking per the VAD, but silent since then (its pause; None: voice)
    last_speech_end: float | None = None  # last speaking → silent transition
    last_line_t: float | None = None  # end time of their last final line
    last_speech_start: float | None = None  # last silent → speaking transition
    last_final_end: float | None = None  # end of the speech covered by their latest final transcript
    partial: Utterance | None = None  # latest partial transcript of the open segment
    greeted: bool = False
    echo_prone: bool = False  # their microphone picks up the bot's voice: their sound over it is no bid for the floor
    lines: int = 0
    finals: int = 0  # final transcripts received (non-empty), to tell a new final from an old one
    last_final: Utterance | None = None
    # (start, end) of their latest finished speaking spans (VAD events), oldest first
    speech_spans: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=MAX_SPEECH_SPANS))

    @property
    def speaking(self) -> bool:
        return self.speaking_since is not None

    def _voice_until(self, now: float) -> float:
        """Where the span going on ends as voice: at the silence within it (a VAD pause), else now."""
        return min(now, self.quiet_since) if self.quiet_since is not None else now

    def silent_for(self, now: float, tail_s: float = 0.0) -> float:
        """Seconds since their voice last stopped: 0 while it sounds, from the VAD's pause inside a span, or from
        a finished span's end (its stop event less the VAD's end-of-speech `tail_s`); inf if they never spoke."""
        if self.speaking:
            return max(0.0, now - self.quiet_since) if self.quiet_since is not None else 0.0
        if self.last_speech_end is None:
            return float("inf")
        return max(0.0, now - (self.last_speech_end - tail_s))

    def speech_since(self, since: float, now: float, max_gap_s: float, tail_s: float = 0.0) -> float:
        """Seconds of speech after `since` in their latest run of speaking spans, 0 if it is over.

        A run is spans separated by gaps (speaking → silent to silent → speaking) shorter than
        `max_gap_s`, so "Wait, <pause> wait, <pause> hold on" adds up like one long segment. The run
        is over once they have been silent `max_gap_s`. A finished span ends `tail_s` before its stop
        event (the VAD's end-of-speech silence), so a short "mm-hm" is not stretched into a takeover.
        """
        spans = [(start, max(start, end - tail_s)) for start, end in self.speech_spans]
        if self.speaking_since is not None:
            spans.append((self.speaking_since, self._voice_until(now)))
        elif not spans or now - spans[-1][1] >= max_gap_s:
            return 0.0
        total = 0.0
        next_start: float | None = None
        for start, end in reversed(spans):
            if end <= since or (next_start is not None and next_start - end >= max_gap_s):
                break
            total += end - max(start, since)
            next_start = start
        return total

    def voiced_since(self, since: float, now: float, tail_s: float = 0.0) -> float:
        """All their seconds of speech after `since` (finished spans less the VAD's `tail_s`, and the one
        going on): how long someone spoke over the bot's line, whatever the gaps."""
        spans = [(start, max(start, end - tail_s)) for start, end in self.speech_spans]
        if self.speaking_since is not None:
            spans.append((self.speaking_since, self._voice_until(now)))
        return sum(max(0.0, end - max(start, since)) for start, end in spans if end > since)

    @property
    def paused(self) -> bool:
        """Speaking per the VAD, but silent for a moment: the listener marked their latest partial
        "paused" (their last partial, repeated at the pause) or "speculative" (all their words so far,
        transcribed in the pause); if they go on, the next partial comes without a mark."""
        return self.speaking and self.pause_started is not None

    @property
    def pause_started(self) -> float | None:
        """When the pause their latest partial was marked with began (None: no pause)."""
        timings = self.partial.timings if self.partial is not None else {}
        return timings.get("paused", timings.get("speculative"))

    @property
    def segment_open(self) -> bool:
        """Speech started that no final transcript covers yet (the final may come before or after
        the speaking → silent event, so this compares times rather than following event order)."""
        if self.speaking:
            return True
        if self.last_speech_start is None:
            return False
        return self.last_final_end is None or self.last_final_end < self.last_speech_start - 0.05
