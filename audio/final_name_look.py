"""A second, acoustic look for the bot's name in a final that names nobody (`audio.name_look`, asked through the
listener's `names_for`), taken off the STT worker so it goes on with everyone's partials and finals meanwhile.

A failed look loses nothing: the final goes as Whisper wrote it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from audio.doubted_words import DoubtedWords
from audio.hallucinations import is_hallucination
from audio.stt_result import SttResult
from audio.vad import Segment

log = logging.getLogger(__name__)

# (user_id, final text, doubted) -> None when the text needs no second look, else a look: (audio, result) -> the
# text with the name put back, or None (audio.name_look, through the listener). `doubted`: the text is Whisper's
# words that its confidence guard dropped (a lone name often is: "Juniper?" scores low), kept if they call the bot.
LookForName = Callable[[np.ndarray, SttResult], "str | None"]
NameLookFor = Callable[[int, str, bool], "LookForName | None"]
# (user_id, result, start, end, final, timings, end_of_turn): the transcriber's delivery of a transcript
SendFinal = Callable[[int, SttResult, float, float, bool, dict[str, float], "float | None"], None]
DOUBTED_WORDS_MAX = 4  # doubted words longer than this are not a lone call
# One thread takes the second look for a name for every member and guild (a look is tens of ms of model time).
_LOOK = ThreadPoolExecutor(max_workers=1, thread_name_prefix="name-look")


def doubted_words(result: SttResult) -> str:
    """Whisper's words that its confidence guard alone dropped, short enough to be a lone call; else ""."""
    raw = (result.raw_text or "").strip()
    doubted = (
        not result.text
        and bool(raw)
        and (result.rejected or "").startswith("avg_logprob")
        and len(raw.split()) <= DOUBTED_WORDS_MAX
        and not is_hallucination(raw)
    )
    return raw if doubted else ""


class FinalNameLook:
    """Decides whether a final needs a second look for the name and, when it does, takes it and sends the final."""

    def __init__(
        self,
        look_for: NameLookFor | None,
        *,
        send: SendFinal,
        doubted: DoubtedWords,
        audio: Callable[[Segment], np.ndarray],
    ) -> None:
        self._look_for = look_for
        self._send = send
        self._doubted = doubted
        self._audio = audio

    def started(self, seg: Segment, result: SttResult, timings: dict[str, float], end_of_turn: float | None) -> bool:
        """True when a look was started: it sends the final itself, later, on the look's thread."""
        look = self._look_for_name(seg, result)
        if look is None:
            return False
        _LOOK.submit(self._look_then_send, seg, result, timings, end_of_turn, look)
        return True

    def _look_for_name(self, seg: Segment, result: SttResult) -> LookForName | None:
        if self._look_for is None:
            return None
        doubted = doubted_words(result)
        if not result.text and not doubted:
            return None
        try:
            return self._look_for(seg.user_id, result.text or doubted, bool(doubted))
        except Exception:
            log.exception("segment %s: deciding on a second look for a name failed; the final goes as it is", seg.id)
            return None

    def _look_then_send(
        self, seg: Segment, result: SttResult, timings: dict[str, float], end_of_turn: float | None, look: LookForName
    ) -> None:
        """The final after a second, acoustic look for the bot's name (the text with the name put back when
        the audio holds it). A failed look loses nothing: the final goes as Whisper wrote it."""
        try:
            text = look(self._audio(seg), result)
        except Exception:
            log.exception("segment %s: the second look for a name failed; the final goes as it is", seg.id)
            text = None
        timings["name_look"] = time.monotonic()
        if text:
            result = dataclasses.replace(result, text=text, rejected=None)
        self._send(seg.user_id, result, seg.start_t, timings["speech_end"], True, timings, end_of_turn)
        if not text:
            self._doubted.hold(seg, result)  # doubted words the look found no call in wait for what follows
