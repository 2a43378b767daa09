"""A second, acoustic look for a name Whisper left out of a transcript.

tiny.en often drops a name it does not know from the start of a line ("Juniper, what did Alice want to
cook?" → "What did Alice want to cook?"), or writes English words in its place where it calls someone at the
end ("…, Juniper?" → "…, do you need her?"). The audio still holds the name. `NameLook` asks the same
Whisper model how likely the transcript is with the name put back, against the transcript as it was, by
teacher-forced decoding (CTranslate2's `align` gives each forced token's probability), on the encoder output
the transcription already computed (`SttResult.encoded`). The candidates, few on purpose (each is a decoder
pass, tens of ms on tiny.en on 2 cores): the name before the words or after them, or in place of a short head or tail
that Whisper set off with a comma or a full stop (where a name calls someone, bent into other words).

A candidate is kept when the transcript loses little log-probability with it (`max_loss`), and the same
edit with each other member's name present loses more by `margin` ("Jennifer, …" said to Jennifer is hers).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import time
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

from audio.stt import HOP, WhisperTranscriber
from audio.types import STT_RATE

log = logging.getLogger(__name__)

# nats the transcript may lose with the name put back (dev lines: calls 4-9 when bent, no call under 9.2)
MAX_LOSS = 6.5
MARGIN = 1.0  # nats by which the bot's name must beat each other name present, in the same place
TAIL_WORDS = 4  # a tail set off this long at most may be a bent name ("…, do you need her?")
HEAD_WORDS = 3  # …and a head ("2-meter, how far away is the moon?")
MIDDLE_WORDS = 2  # …and a part set off on both sides ("So tell me, always, what is…", "…to read. Tunable. Any…")
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
    member: bool = False  # the name put back is a member's, not the bot's (`NameLook.look`'s `members_too`)


class NameQueryLike(Protocol):
    """What `names_for` answers (`conversation.listen_for.NameQuery`): the bot's names to listen for, the
    others' names present, whether the text already calls the bot, whether a member's name may be put back,
    and whether the line is short enough to be a call said alone."""

    @property
    def names(self) -> Sequence[str]: ...
    @property
    def others(self) -> Sequence[str]: ...
    @property
    def named(self) -> bool: ...
    @property
    def question(self) -> bool: ...
    @property
    def call_alone(self) -> bool: ...
    @property
    def asked(self) -> str | None: ...


_BREAK = re.compile(r"[,.?!]")


def _lower_first(word: str) -> str:
    if (len(word) > 1 and word.isupper()) or word == "I" or word.startswith("I'"):
        return word  # "I", "NASA" stay
    return word[:1].lower() + word[1:]


def edits(text: str, name: str, *, whole: bool = False, asked: str | None = None) -> list[tuple[str, str]]:
    """(position, text) for each way of putting `name` back into `text`: before it ("start"), in place of the
    whole transcript when `whole` says it may be a call alone before a pause, its own segment ("whole"), in place of a
    short head set off by a comma or a full stop ("head": "2-meter, how far…"), after it ("end"), in place
    of a short tail set off the same way ("tail": "…a riddle? Do you know her?"), in place of a short part set
    off on both sides ("middle": "So tell me, always, what is…"). `asked`: the line from a question opener after a
    short head with no comma (`conversation.vocative.question_after_head`): the name in place of that head too
    ("head": "You never should I learn…" → "Juniper, should I learn…")."""
    stripped = text.strip()
    words = _WORD.findall(stripped)
    if not words:
        return []
    mark = stripped[-1] if stripped[-1] in ".?!" else "?"
    out = [("start", " ".join([f"{name},", _lower_first(words[0]), *words[1:]]))]
    if whole:  # a segment of its own before a pause: the call alone, bent ("Gereple.", "Please.")
        out.append(("whole", f"{name}{mark}"))
    body = stripped.rstrip(".?!,")
    cut = _BREAK.search(body)
    if cut is not None and 1 <= len(_WORD.findall(body[: cut.start()])) <= HEAD_WORDS:
        rest = _WORD.findall(body[cut.end() :])
    else:
        rest = _WORD.findall((asked or "").strip().rstrip(".?!,"))
    if rest:
        out.append(("head", " ".join([f"{name},", _lower_first(rest[0]), *rest[1:]]) + mark))
    out.append(("end", f"{body}, {name}{mark}"))
    cuts = list(_BREAK.finditer(body))
    if cuts and 1 <= len(_WORD.findall(body[cuts[-1].end() :])) <= TAIL_WORDS:
        head = body[: cuts[-1].start()].rstrip()
        if _WORD.findall(head):
            out.append(("tail", f"{head}, {name}{mark}"))
    for before, after in zip(cuts, cuts[1:]):  # a short part set off on both sides ("…to read. Tunable. Any…")
        part = body[before.end() : after.start()]
        rest = _WORD.findall(body[after.end() :])
        if 1 <= len(_WORD.findall(part)) <= MIDDLE_WORDS and _WORD.findall(body[: before.start()]) and rest:
            lead = body[: before.start()].rstrip()
            out.append(("middle", f"{lead}, {name}, " + " ".join([_lower_first(rest[0]), *rest[1:]]) + mark))
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
        self.last_closest: tuple[str, str, float] | None = None  # (name, position, loss) of the last look's best try

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

    def look(
        self,
        audio: np.ndarray,
        text: str,
        names: Sequence[str],
        others: Sequence[str] = (),
        encoded: np.ndarray | None = None,
        avg_logprob: float | None = None,
        members_too: bool = False,
        whole: bool = False,
        asked: str | None = None,
    ) -> NameHeard | None:
        """The transcript with one of `names` (the bot's) put back if the audio holds it, else None.
        `others`: the names of the members present, weighed against the bot's; `encoded`: the encoder
        output of this audio when the transcription kept it (`SttResult.encoded`); `avg_logprob`: Whisper's
        own score of `text` (saves a decoder pass; within a few tenths of a nat of the forced one).
        `members_too`: when the bot's name is not there, put back a member's name that the audio holds by the
        same measure (a question called to Grace that Whisper wrote "Please. Did you…" is hers, not the
        room's); a few more decoder passes, so only for lines that ask something. `whole`: the line is short enough
        to be a call said alone (`conversation.listen_for.NameQuery.call_alone`): a name in place of all of it.
        `asked`: the line from a question opener after a short head (`NameQuery.asked`): a name in place of the head."""
        import ctranslate2

        if not text.strip() or not names or len(audio) > MAX_AUDIO_S * STT_RATE:
            return None
        started = time.perf_counter()
        t = self.transcriber
        frames = t.window_frames(len(audio))
        n_frames = min(len(audio) // HOP, frames)
        view = ctranslate2.StorageView.from_array(
            np.ascontiguousarray(encoded if encoded is not None else self.encode(audio))
        )
        if avg_logprob is not None and math.isfinite(avg_logprob):
            base = avg_logprob * len(self._tokens(text))
        else:
            base = self._log_prob(view, n_frames, text)
        rivals = [n for n in dict.fromkeys(others) if n.strip() and n.lower() not in {m.lower() for m in names}]
        self.last_closest = None
        score = (view, n_frames, text, base, whole, asked)
        best = self._best_of(score, names, rivals, member=False)
        if best is None and members_too and rivals:  # whose question it is, when it is not the bot's
            best = self._best_of(score, rivals, names, member=True)
        elapsed = time.perf_counter() - started
        self.calls += 1
        self.compute_s += elapsed
        if best is not None:
            best = dataclasses.replace(best, compute_s=elapsed)
            log.info(
                "name look: %s %r heard in %r (%s, lost %.1f nats, %.1f ahead, %.0f ms)",
                "the member's name" if best.member else "the bot's name",
                best.name,
                text,
                best.position,
                best.loss,
                best.lead,
                elapsed * 1000,
            )
        return best

    def look_for(
        self,
        query: NameQueryLike,
        audio: np.ndarray,
        text: str,
        encoded: np.ndarray | None = None,
        avg_logprob: float | None = None,
    ) -> NameHeard | None:
        """`look` for what `query` (`conversation.listen_for.NameQuery`) says to listen for in this line: the bot's
        names, a member's too where the line asks something or is a call alone, in place of it all where short."""
        return self.look(
            audio,
            text,
            tuple(query.names),
            tuple(query.others),
            encoded=encoded,
            avg_logprob=avg_logprob,
            members_too=query.question,
            whole=query.call_alone,
            asked=query.asked,
        )

    def _best_of(
        self,
        score: tuple[Any, int, str, float, bool, str | None],
        names: Sequence[str],
        rivals: Sequence[str],
        *,
        member: bool,
    ) -> NameHeard | None:
        """The name of `names` the audio holds best: the transcript loses at most `max_loss` with it, and the same
        edit with each of `rivals` loses more by `margin`; None when none is heard that surely."""
        view, n_frames, text, base, whole, asked = score
        best: NameHeard | None = None
        for name in names:
            for position, edited in edits(text, name, whole=whole, asked=asked):
                loss = base - self._log_prob(view, n_frames, edited)
                if not member and (self.last_closest is None or loss < self.last_closest[2]):
                    self.last_closest = (name, position, round(loss, 2))
                if loss > self.max_loss or (best is not None and loss >= best.loss):
                    continue
                lead = math.inf
                for rival in rivals:  # only for a candidate that passed: most lines need no rival at all
                    rival_text = dict(edits(text, rival, whole=whole, asked=asked)).get(position)
                    if rival_text is not None:
                        lead = min(lead, (base - self._log_prob(view, n_frames, rival_text)) - loss)
                    if lead < self.margin:
                        break
                if lead >= self.margin:
                    best = NameHeard(name, edited, position, loss, lead, 0.0, member=member)
        return best
