"""What a transcription returns (`SttResult`) and the guards on its text that every STT backend applies (a looping
decode collapsed, its compression ratio, the known hallucinations): shared by the in-process Whisper
(`audio.stt`) and the Wyoming server's transcriber (`audio.wyoming_stt`)."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from typing import Any

from audio.hallucinations import is_hallucination

COMPRESSION_RATIO_MAX = 2.4


@dataclass(frozen=True, slots=True)
class SttResult:
    text: str  # "" when rejected
    confidence: float  # exp(avg_logprob), 0..1
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    rejected: str | None  # why the guards dropped it, None when kept
    raw_text: str  # what Whisper said before the guards
    duration_s: float  # audio length
    compute_s: float  # wall time of the batch this clip was in
    batch: int = 1
    # the encoder's output for this clip (a numpy array; None from other backends): a second look at the
    # same audio (audio.name_look) skips the encoder
    encoded: Any = field(default=None, repr=False, compare=False)


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def text_rejection(text: str, ratio: float) -> str | None:
    """Why a transcript's text alone says it is not speech (a looping decode, a known hallucination), or None."""
    if ratio > COMPRESSION_RATIO_MAX:
        return f"compression_ratio {ratio:.2f} > {COMPRESSION_RATIO_MAX}"
    if is_hallucination(text):
        return "known hallucination"
    return None


_SENTENCE = re.compile(r"[^.!?]+[.!?]*")


def collapse_repeats(text: str) -> str:
    """'Can you hear me? Can you hear me? Can you' -> 'Can you hear me?' (a looping decode)."""
    sentences = [s.strip() for s in _SENTENCE.findall(text) if s.strip()]
    if len(sentences) < 2:
        return text.strip()
    for size in range(1, len(sentences) // 2 + 1):
        unit = sentences[:size]
        norm_unit = [s.lower() for s in unit]
        ok = True
        for i in range(size, len(sentences)):
            expected = norm_unit[i % size]
            got = sentences[i].lower()
            last = i == len(sentences) - 1
            if got != expected and not (last and expected.startswith(got.rstrip(".!?"))):
                ok = False
                break
        if ok:
            return " ".join(unit)
    return text.strip()
