"""Words Whisper doubted, given a second chance: a name alone before a pause ("Captain Hollis, <1 s> how do you
tie a knot?") often scores below the confidence guard on its own; with what the member says next, it is plainly
speech. Such words wait for the member's next segment and join its transcript when it begins soon after."""

from __future__ import annotations

import dataclasses

from audio.hallucinations import is_hallucination
from audio.stt_result import SttResult
from audio.vad import Segment

TENTATIVE_GAP_S = 1.5  # a doubtful segment's words join the member's next segment if it begins this soon after


class DoubtedWords:
    """Per member, the words of their last segment that Whisper doubted, and when that segment ended."""

    def __init__(self) -> None:
        self._held: dict[int, tuple[str, float]] = {}  # user -> (words Whisper doubted, when they ended)

    def hold(self, seg: Segment, result: SttResult) -> None:
        """Words rejected only for Whisper's low confidence (not as silence, noise or a known hallucination)
        wait for the member's next segment."""
        raw = (result.raw_text or "").strip()
        if not result.text and raw and (result.rejected or "").startswith("avg_logprob") and not is_hallucination(raw):
            self._held[seg.user_id] = (raw, seg.last_voice_t)

    def joined(self, user_id: int, result: SttResult, start: float, *, final: bool) -> SttResult:
        """The transcript of a segment that began at `start`, after the member's held words when they fit; a
        final lets them go."""
        held = self._held.get(user_id)
        if held is not None:
            words, held_end = held
            if result.text and 0.0 <= start - held_end <= TENTATIVE_GAP_S:
                result = dataclasses.replace(result, text=f"{words} {result.text}")
            if final:
                self._held.pop(user_id, None)
        return result

    def forget(self, user_id: int) -> None:
        self._held.pop(user_id, None)
