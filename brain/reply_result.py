"""What a reply produced (`ReplyResult`) and where it goes (`ReplySink`): the types `brain.reply_run` fills."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class ReplySink(Protocol):
    """Where a reply goes. Called on the event loop thread, in order; never after a cancel.

    `text(fragment)` comes right before the first audio of that fragment; `done()` once at
    the end of a reply that was not cancelled (also after an error, with what was spoken).
    """

    def audio(self, pcm: np.ndarray, rate: int) -> None: ...

    def text(self, fragment: str) -> None: ...

    def done(self) -> None: ...


@dataclass
class ReplyResult:
    """What a reply produced. Filled as it goes (pass one in to read it after a cancel)."""

    text: str = ""  # cleaned text the LLM produced (within the persona's limits)
    spoken_text: str = ""  # fragments whose audio was handed to the sink in full
    fragments: list[str] = field(default_factory=list)
    raw_text: str = ""  # what the model wrote, before cleaning (up to a stop)
    audio_seconds: float = 0.0
    stop_reason: str = ""  # end | limit | other_speaker | stale (dropped: brain.admission) | cancelled | error
    attempts: int = 0  # samples taken: more than one when a sample had nothing speakable
    error: str | None = None
    cancelled: bool = False
    tts_engine: str = ""
    timings: dict[str, float] = field(
        default_factory=dict
    )  # request, first_token, first_fragment, first_audio, done, ...

    def latency(self, stage: str, since: str = "request") -> float | None:
        if stage in self.timings and since in self.timings:
            return self.timings[stage] - self.timings[since]
        return None
