"""The end of turn judged at a member's pause: has the member finished, or only paused?

Judged on one end-of-turn thread for every member and guild (the model is shared; a call is tens of ms), so the
VAD thread goes on with everyone's audio. The model reads the member's audio so far, after their previous
segment when it ended moments before: what they said before a pause is part of the sentence being judged.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from audio.end_of_turn import SmartTurn, TurnEstimate
from audio.types import STT_RATE
from audio.vad import Segment

log = logging.getLogger(__name__)

TURN_CONTEXT_GAP_S = 2.0  # the member's previous segment, if it ended this recently, is context for the end of turn
TURN_CONTEXT_PAUSE_S = 1.0  # the silence between the two, at most, in that context
TURN_CONTEXT_S = 8.0  # what the end-of-turn model reads
JUDGE_WAIT_S = 0.3  # a transcript waits this long at most for the end-of-turn judgement of its pause

_JUDGE = ThreadPoolExecutor(max_workers=1, thread_name_prefix="end-of-turn")


class PauseJudge:
    """One listener's end-of-turn judgements; `stats` counts the calls and their model time."""

    def __init__(self, model: SmartTurn, stats: Any) -> None:
        self.model = model
        self.stats = stats
        self._previous: dict[int, tuple[float, np.ndarray]] = {}  # user -> (end of their last segment, its audio)

    def judge(self, seg: Segment) -> Future:
        """Start judging the segment's audio so far (with the context of the member's previous segment)."""
        audio = seg.audio()
        previous = self._previous.get(seg.user_id)
        if previous is not None and 0.0 <= seg.start_t - previous[0] <= TURN_CONTEXT_GAP_S:
            gap = np.zeros(int(min(seg.start_t - previous[0], TURN_CONTEXT_PAUSE_S) * STT_RATE), dtype=np.float32)
            audio = np.concatenate((previous[1], gap, audio[seg.onset_sample :]))
        return _JUDGE.submit(_timed, self.model, audio[-int(TURN_CONTEXT_S * STT_RATE) :], time.monotonic())

    def judged(self, future: Future) -> None:
        """A judgement's done-callback: count it, or log the model's failure (the pause goes on without it)."""
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            log.error(
                "end-of-turn model failed (%s: %s); going on without it for this pause", type(error).__name__, error
            )
        else:
            self.stats.end_of_turn_calls += 1
            self.stats.end_of_turn_ms_total += future.result().compute_s * 1000.0

    def remember(self, seg: Segment) -> None:
        """The segment ended: its audio stays as context for the member's next one."""
        keep = int(TURN_CONTEXT_S * STT_RATE)
        self._previous[seg.user_id] = (seg.last_voice_t, seg.audio(seg.last_voice_sample)[-keep:])

    def forget(self, user_id: int) -> None:
        self._previous.pop(user_id, None)


@dataclass(frozen=True, slots=True)
class Judgement:
    """A judgement with its times (monotonic): asked (at the pause), started on the end-of-turn thread, done."""

    probability: float
    compute_s: float
    asked: float
    started: float
    done: float


def _timed(model: SmartTurn, audio: np.ndarray, asked: float) -> Judgement:
    started = time.monotonic()
    estimate: TurnEstimate = model.estimate(audio)
    return Judgement(estimate.probability, estimate.compute_s, asked, started, time.monotonic())


def judged_times(future: Future | None) -> dict[str, float]:
    """The trace marks of a finished judgement (`runtime.stage_times`: eot_asked, eot_start, eot_done), else {}."""
    if future is None or not future.done() or future.cancelled() or future.exception() is not None:
        return {}
    judged = future.result()
    if not isinstance(judged, Judgement):
        return {}
    return {"eot_asked": judged.asked, "eot_start": judged.started, "eot_done": judged.done}


def judged_probability(future: Future | None, *, wait: bool = True) -> float | None:
    """The end-of-turn probability of a judgement, waiting up to JUDGE_WAIT_S for one in progress (`wait`);
    None while it runs after that, or when it failed."""
    if future is None:
        return None
    try:
        return future.result(timeout=JUDGE_WAIT_S if wait else 0).probability
    except Exception:  # still running after the wait, or failed: not judged
        return None
