"""Audio and speech event types shared by receive, VAD, STT, the room and the prompter.

Timestamps are `time.monotonic()` seconds, so one trace can follow a turn through every stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

STT_RATE = 16_000  # Hz, mono float32 in [-1, 1]
FRAME_MS = 20
STT_FRAME_SAMPLES = STT_RATE * FRAME_MS // 1000  # 320
DISCORD_RATE = 48_000  # Hz, stereo int16
DISCORD_FRAME_SAMPLES = DISCORD_RATE * FRAME_MS // 1000  # 960 per channel
DISCORD_FRAME_BYTES = DISCORD_FRAME_SAMPLES * 2 * 2  # 3840


@dataclass(frozen=True, slots=True)
class MemberFrame:
    """20 ms of one member's voice at 16 kHz mono float32, as received."""

    user_id: int
    pcm: np.ndarray
    t: float  # monotonic arrival time
    concealed: bool = False  # produced by packet-loss concealment, not decoded audio


@dataclass(frozen=True, slots=True)
class SpeakingEvent:
    """A member started or stopped speaking (from VAD)."""

    user_id: int
    speaking: bool
    t: float


@dataclass(frozen=True, slots=True)
class Utterance:
    """A transcript of one speech segment of one member: partial while they speak, final at the end."""

    user_id: int
    name: str
    text: str
    start: float
    end: float
    final: bool
    confidence: float
    timings: dict[str, float] = field(default_factory=dict)  # stage name -> monotonic time
    # Probability that the member has finished their turn (semantic end of turn, judged on their audio
    # up to the silence after `end`); None when not judged (no end-of-turn model, or they spoke on since).
    end_of_turn: float | None = None
