"""A second, acoustic look for a name Whisper left out of a transcript.

tiny.en often drops a name it does not know from the start of a line ("Juniper, what did Alice want to
cook?" → "What did Alice want to cook?"), or writes English words in its place where it calls someone at the
end ("…, Juniper?" → "…, do you need her?"). The audio still holds the name. `NameLook` asks the same
Whisper model how likely the transcript is with the name put back, against the transcript as it was, by
teacher-forced decoding (CTranslate2's `align` gives each forced token's probability), on the encoder output
the transcription already computed (`SttResult.encoded`). The candidates, few on purpose (each is a decoder
pass, ~10 ms on tiny.en): the name before the words; the name after them; the name in place of a short
tail that Whisper set off with a comma (where a name calls someone).

A candidate is kept when the transcript loses little log-probability with it (`max_loss`), and the same
edit with each other member's name present loses more by `margin` ("Jennifer, …" said to Jennifer is hers).
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from audio.stt import HOP, WhisperTranscriber
from audio.types import STT_RATE

log = logging.getLogger(__name__)

MAX_LOSS = 4.0  # nats the transcript may lose with the name put back
MARGIN = 1.0  # nats by which the bot's name must beat each other name present, in the same place
TAIL_WORDS = 4  # a comma-set tail this long at most may be a bent name ("…, do you need her?")
MAX_AUDIO_S = 9.0  # longer lines: the look is skipped (a call is rarely lost in a long turn)
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class NameHeard:
    """The transcript with the name put back, and how sure the look was."""

    name: str
    text: str
    position: str  # "start", "end" or "tail" (in place of a comma-set tail)
    loss: float  # nats lost against the transcript as Whisper wrote it
    lead: float  # nats ahead of the best other name present in the same place (inf: nobody else)
    compute_s: float


def edits(text: str, name: str) -> list[tuple[str, str]]:
    """(position, text) for each way of putting `name` back into `text`."""
    words = _WORD.findall(text.strip())
    if not words:
        return []
    first = words[0]
    if not (len(first) > 1 and first.isupper()) and first != "I" and not first.startswith("I'"):
        first = first[:1].lower() + first[1:]  # "What did…" → "Juniper, what did…" (but "I", "NASA" stay)
    out = [("start", " ".join([f"{name},", first, *words[1:]]))]
    stripped = text.rstrip()
    mark = stripped[-1] if stripped[-1] in ".?!" else "?"
    out.append(("end", f"{stripped.rstrip('.?!,')}, {name}{mark}"))
    head, comma, tail = stripped.rpartition(",")
    if comma and head.strip() and 1 <= len(_WORD.findall(tail)) <= TAIL_WORDS:
        out.append(("tail", f"{head.rstrip()}, {name}{mark}"))
    return out


class NameLook:
    """Re-scores a transcript with a name put back (blocking, thread-safe: call it off the event loop)."""

    def __init__(self, transcriber: WhisperTranscriber, *, max_loss: float = MAX_LOSS, margin: float = MARGIN) -> None:
        self.transcriber = transcriber
        self.max_loss = max_loss
        self.margin = margin
        self.calls = 0
        self.decoder_passes = 0
        self.compute_s = 0.0

    def _tokens(self, text: str) -> list[int]:
        return list(self.transcriber.tokenizer.encode(" " + text.strip()))

    def encode(self, audio: np.ndarray) -> np.ndarray:
        """The encoder output for `audio`, as the transcriber computes it (when the result did not carry it)."""
        t = self.transcriber
        features = t._features(np.asarray(audio, dtype=np.float32), t.window_frames(len(audio)))[np.newaxis]
        return np.asarray(t.model.encode(features)).copy()

    def _log_prob(self, encoded: Any, n_frames: int, text: str) -> float:
        """log P(text | audio), every token forced (one decoder pass)."""
        t = self.transcriber
        result = t.model.model.align(encoded, t.prompt, [self._tokens(text)], [n_frames], median_filter_width=1)[0]
        self.decoder_passes += 1
        return float(sum(math.log(max(p, 1e-12)) for p in result.text_token_probs))

    def look(self, audio: np.ndarray, text: str, names: Sequence[str], others: Sequence[str] = (),
             encoded: np.ndarray | None = None) -> NameHeard | None:
        """The transcript with one of `names` (the bot's) put back if the audio holds it, else None.
        `others`: the names of the members present, weighed against the bot's; `encoded`: the encoder
        output of this audio when the transcription kept it (`SttResult.encoded`)."""
        import ctranslate2

        if not text.strip() or not names or len(audio) > MAX_AUDIO_S * STT_RATE:
            return None
        started = time.perf_counter()
        t = self.transcriber
        frames = t.window_frames(len(audio))
        n_frames = min(len(audio) // HOP, frames)
        view = ctranslate2.StorageView.from_array(np.ascontiguousarray(encoded if encoded is not None else self.encode(audio)))
        base = self._log_prob(view, n_frames, text)
        rivals = [n for n in dict.fromkeys(others) if n.strip() and n.lower() not in {m.lower() for m in names}]
        best: NameHeard | None = None
        for name in names:
            for position, edited in edits(text, name):
                loss = base - self._log_prob(view, n_frames, edited)
                if loss > self.max_loss or (best is not None and loss >= best.loss):
                    continue
                lead = math.inf
                for rival in rivals:  # only for a candidate that passed: most lines need no rival at all
                    rival_text = dict(edits(text, rival)).get(position)
                    if rival_text is not None:
                        lead = min(lead, (base - self._log_prob(view, n_frames, rival_text)) - loss)
                    if lead < self.margin:
                        break
                if lead >= self.margin:
                    best = NameHeard(name, edited, position, loss, lead, 0.0)
        elapsed = time.perf_counter() - started
        self.calls += 1
        self.compute_s += elapsed
        if best is not None:
            best = NameHeard(best.name, best.text, best.position, best.loss, best.lead, elapsed)
            log.info("name look: %r heard in %r (%s, lost %.1f nats, %.1f ahead, %.0f ms)", best.name, text,
                     best.position, best.loss, best.lead, elapsed * 1000)
        return best
