"""Screens cleaned reply text piece by piece (a clause or a sentence) before it is spoken.

For any model:
- a name used to address someone other than the member the bot answers ("Sofia, ..." to Priya) is
  dropped, the rest of the piece kept (`addressee`; when nobody in particular is answered, every
  member present may be addressed);
- a reply that is only a name ("Bob.") says nothing and is dropped; a bare name at the start waits
  for what follows it;
- a piece in which the bot claims a member's name ("I'm Bob.") is dropped: the bot is never a member;
- a piece in which the bot speaks of itself in the third person ("Juniper has some amazing books.", "Juniper
  loves the weather.", as SmolLM2 does) is dropped: a person does not name themselves as someone else.

Small-model repairs (a `ModelProfile` with `small_model_repairs`; measured in the quality benchmark):
- a piece that reads the prompt's instructions aloud ("...answer in one or two short spoken sentences,
  no lists, no emoji.") is dropped: each piece up to a clause or sentence break is held until it has
  `LEAK_MIN_WORDS` words or its sentence ends, then dropped if `LEAK_SHARE` of its words copy the
  instructions in order (in runs of `LEAK_MIN_RUN`+ words, so shared common words do not count). A
  shorter piece at a clause break goes out at once unless its words occur in a row in the instructions;
- the same screen, given the bot's earlier lines (`said_before`), drops a piece of `REPEAT_MIN_WORDS`+
  words that repeats one of them (small models copy their own last answers into every new one);
- given the members' last lines (`heard_before`), it drops a piece of `PARROT_MIN_WORDS`+ words that is one of
  them said back (`PARROT_SHARE` of its words in order: "Bob, are you still coming to the game on Saturday?" as
  the reply to Bob's next question, in a README demo run); a few of their words taken up ("Eggs and rice?") stay.
"""

from __future__ import annotations

import logging
import re
from typing import Iterable

from conversation.text_words import words
from conversation.text_overlap import copied_words, copies

log = logging.getLogger(__name__)

# A clause or sentence break in cleaned text, once the space after it has come.
PIECE_END = re.compile(r"[.!?…,;:][\"')\]”’»]*\s+")
LEAK_MIN_WORDS = 5  # a shorter piece is judged together with what follows (or kept, at a sentence end)
LEAK_SHARE = 0.6  # share of a piece's words copied, in order, from the instructions
LEAK_MIN_RUN = 3  # copied words count in runs of at least this many consecutive words
REPEAT_MIN_WORDS = 3  # a piece this long that repeats the bot's earlier line is dropped ("You're the best!")
PARROT_MIN_WORDS = 5  # a piece this long that says a member's line back is dropped ...
PARROT_SHARE = 0.8  # ... when this share of its words copy that line in order


class ReplyScreen:
    """Releases cleaned text piece by piece: `feed(delta, final=)` → the text that may be spoken."""

    def __init__(
        self,
        *,
        names: Iterable[str] = (),
        own_name: str = "",
        addressee: str | None = None,
        instructions: Iterable[str] = (),
        said_before: Iterable[str] = (),
        heard_before: Iterable[str] = (),
        small_model: bool = True,
    ) -> None:
        self.names = [n.strip() for n in dict.fromkeys(names) if n and n.strip()]
        members = [n for n in self.names if n.casefold() != own_name.strip().casefold()]
        self._claims = _claims(members) if members else None
        self._third_person = _third_person(own_name) if own_name.strip() else None
        self._own_name_words = set(words(own_name.split()[-1])) if own_name.strip() else set()
        self.addressee = addressee.strip() if addressee else None
        self.instructions = [t for t in instructions if t and t.strip()] if small_model else []
        self.said_before = [t for t in said_before if t and t.strip()] if small_model else []
        self.heard_before = [t for t in heard_before if t and t.strip()] if small_model else []
        self._instruction_words = [words(t) for t in self.instructions]
        self._said_before_words = [words(t) for t in self.said_before]
        self._name_words = {w for n in self.names for w in words(n)}
        wrong = [n for n in self.names if self.addressee is not None and n.casefold() != self.addressee.casefold()]
        self._wrong = _vocatives(wrong) if wrong else None
        self._held = ""  # cleaned text not released yet
        self._piece = ""  # the clauses of the piece being judged
        self._dropping = False  # part of this sentence was a copy or a repeat: the rest is judged strictly
        self._released = False  # text went out: a bare name later in the reply is fine
        self.dropped: list[str] = []  # pieces dropped (copied instructions, repeated lines, names only)
        self.repaired = False  # a piece read the instructions aloud or repeated an earlier line: the model slipped

    @property
    def active(self) -> bool:
        return bool(
            self.instructions or self.said_before or self.heard_before or self._wrong is not None or self._name_words
        )

    def feed(self, delta: str, *, final: bool = False) -> str:
        if not self.active:
            return delta
        self._held += delta
        out: list[str] = []
        while (match := PIECE_END.search(self._held)) is not None:
            piece, self._held = self._held[: match.end()], self._held[match.end() :]
            out.append(self._judge(piece, sentence_end=match.group(0)[0] in ".!?…"))
        if final and (self._held or self._piece):
            piece, self._held = self._held, ""
            out.append(self._judge(piece, sentence_end=True, final=True))
        elif (
            self._held
            and not self._piece
            and not self.instructions
            and not self.said_before
            and not self.heard_before
            and words(self._held)
            and not self._names_only(self._held)
            and not self._own_name_words & set(words(self._held))
        ):
            # Only names are screened: words that are no name go to the voice at once, mid-clause (words with
            # the bot's own name wait for their clause: it may speak of itself in the third person).
            out.append(self._held)
            self._held = ""
            self._released = True
        return "".join(out)

    def _judge(self, piece: str, *, sentence_end: bool, final: bool = False) -> str:
        if self._wrong is not None:
            piece = self._drop_wrong_vocatives(piece)
            if not piece.strip():
                return ""
        if self._claims is not None and self._claims.search(piece):
            log.info("reply claimed a member's name: dropped a piece")
            log.debug("reply claimed a member's name: dropped %r", piece.strip())  # the text only at DEBUG
            self.dropped.append(piece.strip())
            return ""
        if self._third_person is not None and self._third_person.search(piece):
            log.info("reply spoke of the bot in the third person: dropped a piece")
            log.debug("reply spoke of the bot in the third person: dropped %r", piece.strip())  # text only at DEBUG
            self.dropped.append(piece.strip())
            return ""
        self._piece += piece
        text = self._piece
        if not self._released and self._names_only(text):
            if final:  # a reply that is only a name ("Bob.") says nothing
                log.info("reply was only a name: dropped it")
                log.debug("reply was only a name: dropped %r", text.strip())  # the text only at DEBUG
                self.dropped.append(text.strip())
                self._piece = ""
            return ""  # a bare name waits for what follows it
        min_words = 1 if self._dropping else LEAK_MIN_WORDS
        copied = copies(text, self.instructions, min_share=LEAK_SHARE, min_words=min_words, min_run=LEAK_MIN_RUN)
        repeated = not copied and copies(
            text,
            self.said_before,
            min_share=LEAK_SHARE,
            min_words=min(min_words, REPEAT_MIN_WORDS),
            min_run=LEAK_MIN_RUN,
        )
        parroted = (
            not copied
            and not repeated
            and copies(
                text,
                self.heard_before,
                min_share=PARROT_SHARE,
                min_words=max(min_words, PARROT_MIN_WORDS),
                min_run=LEAK_MIN_RUN,
            )
        )
        if copied or repeated or parroted:
            why = (
                "read its instructions aloud"
                if copied
                else "repeated an earlier line"
                if repeated
                else "said a member's line back"
            )
            log.info("reply %s: dropped a piece of %d words", why, len(text.split()))
            log.debug("reply %s: dropped %r", why, text.strip())  # the text only at DEBUG (it may quote memories)
            self.dropped.append(text.strip())
            self.repaired = True
            self._piece = ""
            self._dropping = not sentence_end
            return ""
        if not sentence_end and len(text.split()) < LEAK_MIN_WORDS and (self._dropping or self._may_start_a_copy(text)):
            return ""  # too short to judge: wait for more of the sentence
        self._piece = ""
        if self._dropping or (not self._released and self.dropped):
            text = _as_sentence_start(text)  # what followed the dropped part now opens the sentence
        if sentence_end:
            self._dropping = False
        self._released = self._released or bool(text.strip())
        return text

    def _drop_wrong_vocatives(self, piece: str) -> str:
        """Without the names that address someone other than the addressee ("Sofia, " / ", Sofia.")."""
        assert self._wrong is not None
        kept = self._wrong.sub(_keep_greeting, piece)
        if kept != piece:
            log.info("reply addressed someone else: the name dropped")
            log.debug("reply addressed someone else: %r -> %r", piece.strip(), kept.strip())  # text only at DEBUG
            self.dropped.append(piece.strip())
            if not self._released and not self._piece:
                kept = _as_sentence_start(kept)
        return kept

    def _names_only(self, text: str) -> bool:
        said = words(text)
        return bool(said) and bool(self._name_words) and all(w in self._name_words for w in said)

    def _may_start_a_copy(self, text: str) -> bool:
        """Whether these few words occur in a row in the instructions (or, two words or more, in an earlier
        line of the bot): a copy may be starting. An opening clause that does not ("Oh no,") goes to the
        voice at once instead of waiting for its sentence."""
        if not self.instructions and not self.said_before:
            return False
        said = words(text)
        refs = self._instruction_words + (self._said_before_words if len(said) >= 2 else [])
        return not said or any(copied_words(said, ref, min_run=len(said)) == len(said) for ref in refs)


_LINKING_WORD = re.compile(r"^(?i:but|and|so|or|because|though|although|yet)\b[ \t]*,?[ \t]*(?=\S)")


def _as_sentence_start(text: str) -> str:
    """Text that now opens a sentence because what came before it was dropped ("I'm not sure, | but I've
    been reading" said before): without a leading "but" / "and" that would link it to nothing, capitalized."""
    text = text.lstrip(" ,;:")
    text = _LINKING_WORD.sub("", text, count=1)
    return text[:1].upper() + text[1:]


def _claims(names: list[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"\b(?i:i'?m|i’m|i am|my name is|my name's|call me|it's me,?)\s+(?:{alternatives})\b")


# Verbs after which the bot's own name is the subject of a sentence about it ("Juniper has…", "Juniper loves…").
_THIRD_PERSON_VERBS = (
    "has|is|was|does|did|loves|likes|thinks|knows|wants|says|said|hopes|feels|enjoys|prefers|adores|believes|"
    "remembers|agrees|needs|gets|got|can|will|would|could|should|might|must"
)


def _third_person(own_name: str) -> re.Pattern[str] | None:
    """The bot's name (in full, or its last word: "Hollis" of "Captain Hollis") as the subject of a verb, as
    the model writes it (capitalized; "juniper berries" is a plant). None for a name too short to tell."""
    forms = [n for n in {own_name.strip(), own_name.split()[-1]} if len(n) >= 3]
    if not forms:
        return None
    alternatives = "|".join(re.escape(n) for n in sorted(forms, key=len, reverse=True))
    return re.compile(rf"\b(?:{alternatives})\s+(?i:{_THIRD_PERSON_VERBS})\b")


_GREETING = r"hi|hey|hello|thanks|thank you|bye|goodbye|night|good night|welcome|welcome back|congrats|congratulations"


def _vocatives(names: list[str]) -> re.Pattern[str]:
    """A name as a vocative: a whole piece ("Sofia, "), closing a clause (", Sofia!"), or after a greeting
    ("Hi Sofia" keeps "Hi")."""
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(
        rf"^\s*(?:{alternatives})\s*[,;:!.?…]+\s*$|,\s*(?:{alternatives})\s*(?=[.!?…])|"
        rf"\b(?P<greeting>(?i:{_GREETING}))[ \t]*,?[ \t]+(?:{alternatives})\b"
    )


def _keep_greeting(match: re.Match[str]) -> str:
    return match.group("greeting") or ""
