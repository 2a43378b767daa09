"""The transcription state of one member's speech segment, shared by the VAD thread and the STT worker (under its
lock): the speculative or final job in flight, the partials delivered, the end-of-turn judgement of its pause."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

from audio.stt_result import SttResult
from audio.stt_scheduler import SttJob
from audio.vad import Segment


@dataclass(eq=False)
class SegmentTurn:
    """Transcription state of one segment (shared by the VAD thread and the STT worker)."""

    segment: Segment
    lock: threading.RLock = field(default_factory=threading.RLock)
    speculative: SttJob | None = None
    spec_voice_sample: int = -1
    spec_result: SttResult | None = None  # set (under lock) when the speculative job completed
    promoted: bool = False  # the speculative job IS the final: emit it when it completes
    superseded: bool = False  # speech resumed: the speculative result is only a partial
    last_partial: str = ""  # text of the last partial delivered (repeats are not sent again)
    last_partial_result: SttResult | None = None
    paused_partial: SttResult | None = None  # the partial delivered (marked) in the current pause
    in_pause: bool = False  # the VAD reported a pause and no voice since (no partials: the speculation covers it)
    partial_voice_sample: int = -1  # segment.last_voice_sample when the running partial took its snapshot
    end_of_turn: Future | None = None  # the end-of-turn judgement (a TurnEstimate) of the last pause
    end_of_turn_sample: int = -1  # segment.last_voice_sample it was judged at (stale once they speak on)
    ended_t: float = 0.0
    speech_end_t: float = 0.0
    finalized: bool = False  # its one final Utterance (text or empty) has been emitted
