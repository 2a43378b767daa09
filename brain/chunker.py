"""Cut streamed reply text into speakable fragments, as early as it is safe.

The first fragment may end at a clause break (comma, semicolon, colon, dash) once it has
`first_clause_words` words, so speech starts after the first clause; later fragments end at
sentence ends. Text without punctuation is flushed at `max_words`. Abbreviations (Dr., e.g.,
U.S.), decimals and thousands (3.14, 1,000) and ellipses do not end a sentence. Pure Python,
no NLTK data.

A boundary is only decided once the character after it has arrived (a "3." may become
"3.14"), so the chunker never splits too early and never needs to take text back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Lower-cased words that end with a period but do not end a sentence.
ABBREVIATIONS = frozenset(
    """
    mr mrs ms mx dr prof sr jr st mt ft vs etc approx dept est inc ltd co corp jan feb mar apr jun jul aug
    sep sept oct nov dec mon tue tues wed thu thur thurs fri sat sun no nos vol fig gen col lt sgt capt cmdr
    rev hon gov pres rep sen ave blvd rd min max cf al ca
    """.split()
)
NUMBER_ABBREVIATIONS = frozenset({"no", "nos"})  # abbreviations only before a number
_INITIALISM = re.compile(r"(?:[A-Za-z]\.){2,}$")  # U.S. e.g. i.e. a.m. p.m.
_CLOSERS = "\"')]}»”’"
_SENTENCE_END = ".!?…"
_CLAUSE_END = ",;:"
_DASHES = ("—", "–", " - ", " -- ")


@dataclass(frozen=True)
class Fragment:
    """A speakable piece of the reply. `sentence_end` tells whether it closes a sentence."""

    text: str
    sentence_end: bool

    @property
    def words(self) -> int:
        return len(self.text.split())


class SpeechChunker:
    """Streaming text → fragments. `feed()` returns what is ready; `flush()` the rest at the end."""

    def __init__(
        self,
        *,
        first_clause_words: int = 2,
        first_max_words: int = 12,
        clause_words_later: int = 14,
        max_words: int = 28,
    ) -> None:
        if not 1 <= first_clause_words <= first_max_words <= max_words:
            raise ValueError("need 1 <= first_clause_words <= first_max_words <= max_words")
        self.first_clause_words = first_clause_words
        self.first_max_words = first_max_words  # unpunctuated text: the first fragment goes out this early
        self.clause_words_later = clause_words_later  # later fragments split at a clause only when this long
        self.max_words = max_words
        self._buf = ""
        self._emitted = 0

    def feed(self, text: str) -> list[Fragment]:
        self._buf += text
        out: list[Fragment] = []
        while True:
            frag = self._next_fragment()
            if frag is None:
                return out
            out.append(frag)

    def flush(self) -> list[Fragment]:
        """End of the reply: whatever is left is one last fragment (if it has anything to say)."""
        text = _tidy(self._buf)
        self._buf = ""
        if not any(ch.isalnum() for ch in text):
            return []
        self._emitted += 1
        return [Fragment(text, True)]

    # -- internals ---------------------------------------------------------------------------

    def _next_fragment(self) -> Fragment | None:
        buf = self._buf
        first = self._emitted == 0
        clause_min = self.first_clause_words if first else self.clause_words_later
        word_limit = self.first_max_words if first else self.max_words
        last_clause_cut = None  # cut position of the latest usable clause break
        words = 0
        in_word = False
        i = 0
        n = len(buf)
        while i < n:
            ch = buf[i]
            if ch.isspace():
                in_word = False
            elif not in_word:
                in_word = True
                words += 1
                if words > word_limit:
                    # Too long without a sentence end: cut at the last clause break or before this word.
                    cut = last_clause_cut if last_clause_cut is not None else i
                    return self._emit(cut, sentence_end=False)
            if ch in _SENTENCE_END:
                end = self._sentence_boundary(i)
                if end == -1:
                    return None  # undecidable until more text arrives
                if end is not None:
                    if _is_ellipsis(buf, i):
                        # An ellipsis is a pause: a clause break, not a sentence end.
                        if words >= clause_min and _has_words(buf[:end]):
                            return self._emit(end, sentence_end=False)
                        last_clause_cut = end
                        i = end
                        continue
                    if _has_words(buf[:end]):
                        return self._emit(end, sentence_end=True)
                    i = end
                    continue
            elif ch in _CLAUSE_END or _dash_at(buf, i):
                end = self._clause_boundary(i)
                if end == -1:
                    return None
                if end is not None:
                    last_clause_cut = end
                    if words >= clause_min:
                        return self._emit(end, sentence_end=False)
            i += 1
        return None

    def _emit(self, cut: int, *, sentence_end: bool) -> Fragment | None:
        text = _tidy(self._buf[:cut])
        self._buf = self._buf[cut:].lstrip()
        if not any(ch.isalnum() for ch in text):
            return None if not self._buf else self._next_fragment()
        self._emitted += 1
        return Fragment(text, sentence_end)

    def _sentence_boundary(self, i: int) -> int | None:
        """Cut position after the terminator at `i`, None if it is no boundary, -1 if undecidable yet."""
        buf = self._buf
        j = i + 1
        while j < len(buf) and (buf[j] in _SENTENCE_END or buf[j] in _CLOSERS):
            j += 1
        if j >= len(buf):
            return -1
        if not buf[j].isspace():
            return None  # 3.14, example.com, U.S.A, "?!" followed by more text
        if buf[i] == "." and not _is_ellipsis(buf, i) and _is_abbreviation(buf, i):
            return None
        if buf[i] == "." and _word_before(buf, i).lower() in NUMBER_ABBREVIATIONS and not buf[j:].strip():
            return -1  # "No. " may be "No. 5": wait for the next word
        return j

    def _clause_boundary(self, i: int) -> int | None:
        buf = self._buf
        if buf[i] in "—–":
            return i + 1
        if buf[i] == " ":  # " - " / " -- "
            return i + (3 if buf.startswith(" -- ", i) else 2)
        j = i + 1
        while j < len(buf) and buf[j] in _CLOSERS:
            j += 1
        if j >= len(buf):
            return -1
        if not buf[j].isspace():
            return None  # 1,000 and 10:30
        return j


def _dash_at(buf: str, i: int) -> bool:
    if buf[i] in "—–":
        return True
    return buf[i] == " " and (buf.startswith(" - ", i) or buf.startswith(" -- ", i))


def _is_ellipsis(buf: str, i: int) -> bool:
    if buf[i] == "…":
        return True
    if buf[i] != ".":
        return False
    j = i
    while j > 0 and buf[j - 1] == ".":
        j -= 1
    k = i
    while k + 1 < len(buf) and buf[k + 1] == ".":
        k += 1
    return k - j >= 2


def _word_before(buf: str, i: int) -> str:
    start = i
    while start > 0 and not buf[start - 1].isspace() and buf[start - 1] not in "(\"'[":
        start -= 1
    return buf[start:i]


def _is_abbreviation(buf: str, i: int) -> bool:
    """Is the period at `i` part of an abbreviation or an initial rather than a sentence end?"""
    start = i
    while start > 0 and not buf[start - 1].isspace() and buf[start - 1] not in "(\"'[":
        start -= 1
    token = buf[start : i + 1]
    word = token[:-1]
    if not word:
        return False
    if word.lower() in NUMBER_ABBREVIATIONS:  # "No. 5" is a number; "No, no." ends a sentence
        rest = buf[i + 1 :].lstrip()
        return bool(rest) and rest[0].isdigit()
    if word.lower() in ABBREVIATIONS:
        return True
    if _INITIALISM.search(token):
        # "U.S." ends a sentence only when the text visibly goes on with a new one; we cannot
        # tell reliably, so keep it inside (a longer fragment is harmless, a wrong cut is not).
        return True
    if len(word) == 1 and word.isupper():
        return True  # a middle initial: "J. R. R. Tolkien"
    return False


def _has_words(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


_TRAILING_DASH = re.compile(r"\s*(?:—|–|(?<=\s)-{1,2})$")


def _tidy(text: str) -> str:
    """Collapse whitespace; a fragment cut at a dash ends with a comma (a pause, not "minus")."""
    text = " ".join(text.split())
    return _TRAILING_DASH.sub(",", text)
