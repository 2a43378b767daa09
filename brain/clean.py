"""Make streamed LLM text fit to be spoken, and stop it when the model starts someone else's line.

`SpeechCleaner` takes raw tokens and returns cleaned text as soon as it can no longer change:
it holds back the last, possibly partial word, an unclosed `*action*`, `(aside)`, `[tag]`,
`<tag>` or code fence, and the start of a line that may still turn into "Name:". What it
removes: the persona's own name prefix ("Juniper: "), markdown (bold, italics, headings,
bullets, links, code), emoji and emoticons, stage directions (*laughs*, [sighs], (smiles)),
URLs (read as their host name). A "Name:" label opening the reply is dropped (small models
often label their own answer); the reply stops at a "Name:" that starts a later line, or at a
known member name followed by a colon anywhere after the start.

Given the `instructions` the model was prompted with (system prompt, situation), it also drops
a clause or sentence that reads them aloud ("...answer in one or two short spoken sentences, no
lists, no emoji."): each piece up to a clause or sentence break is held until it has
`LEAK_MIN_WORDS` words or its sentence ends, then dropped if `LEAK_SHARE` of its words copy the
instructions in order (in runs of `LEAK_MIN_RUN`+ words, so shared common words do not count). A shorter
piece at a clause break goes out at once unless its words occur in a row in the instructions.
The same screen, given the bot's earlier lines (`said_before`), drops a piece of `REPEAT_MIN_WORDS`+
words that repeats one of them (small models copy their own last answers into every new one).

`ReplyBudget` caps a reply by the persona's limits (words, sentences), fragment by fragment.
"""

from __future__ import annotations

import logging
import re
from typing import Iterable

from brain.chunker import Fragment
from conversation.addressing import words
from conversation.text_overlap import copied_words, copies

log = logging.getLogger(__name__)

_NAME = r"[A-Z][\w'’.-]{0,24}(?:[ \t]+[A-Z][\w'’.-]{0,24}){0,2}"
_NEWLINE_NAME = re.compile(r"\n[ \t]*[*_]*(" + _NAME + r")[*_]*[ \t]*:(?=\s|$)")
_START_NAME = re.compile(r"^\s*[*_]*(" + _NAME + r")[*_]*[ \t]*:(?=\s)[ \t]*")
# The start of a line that could still become "Name:" or a list marker: hold it back.
_PARTIAL_LINE_START = re.compile(
    r"^[ \t]*(?:[-*•+>#]+[ \t]*|\d+[.)][ \t]*)?[*_]*(?:" + _NAME + r")?[*_]*[ \t]*:?$"
)
GENERIC_SPEAKERS = ("User", "Human", "Assistant", "System", "AI", "Bot")
_MAX_HOLD_CHARS = 300  # an "opened" construct that never closes is released after this many chars

_FENCE = re.compile(r"```.*?(?:```|$)", re.S)
_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.S | re.I)
_TAG = re.compile(r"</?[A-Za-z][^<>]{0,60}>")
_MD_LINK = re.compile(r"\[([^\]\n]*)\]\([^)\n]*\)")
_BOLD = re.compile(r"(\*\*|__)(.+?)\1", re.S)
_ACTION_STAR = re.compile(r"\*[^*\n]+\*")
_BRACKETED = re.compile(r"\[[^\]\n]*\]")
_PAREN = re.compile(r"\(([^()\n]*)\)")
_UNDERSCORE_EM = re.compile(r"(?<!\w)_([^_\n]+)_(?!\w)")
_INLINE_CODE = re.compile(r"`([^`\n]*)`")
_LINE_MARKER = re.compile(r"(?m)^[ \t]*(?:#{1,6}|>+|[-*•+]+|\d{1,3}[.)])(?=\s|$)[ \t]*")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"')\]]+", re.I)
_EMOTICON = re.compile(r"(?<!\w)[:;=8][-'^]?[()DPpOo3/\\|\]\[*](?!\w)|<3|\^_\^|¯\\_\(ツ\)_/¯")
_LEFTOVER_MARKUP = re.compile(r"[*_~`#|]+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.!?;:…])")
_REPEATED_COMMA = re.compile(r"(?:,\s*){2,}")
# A clause or sentence break in cleaned text, once the space after it has come.
_PIECE_END = re.compile(r"[.!?…,;:][\"')\]”’»]*\s+")

LEAK_MIN_WORDS = 5  # a shorter piece is judged together with what follows (or kept, at a sentence end)
LEAK_SHARE = 0.6  # share of a piece's words copied, in order, from the instructions
LEAK_MIN_RUN = 3  # copied words count in runs of at least this many consecutive words
REPEAT_MIN_WORDS = 3  # a piece this long that repeats the bot's earlier line is dropped ("You're the best!")


def _is_emoji(ch: str) -> bool:
    cp = ord(ch)
    return (
        0x1F000 <= cp <= 0x1FAFF
        or 0x2600 <= cp <= 0x27BF
        or 0x2B00 <= cp <= 0x2BFF
        or 0x1F1E6 <= cp <= 0x1F1FF
        or cp in (0x200D, 0xFE0F, 0xFE0E, 0x20E3)
        or 0xE0020 <= cp <= 0xE007F
    )


def _url_as_speech(match: re.Match[str]) -> str:
    url = match.group(0).rstrip(".,;:!?")
    trailing = match.group(0)[len(url) :]
    host = re.sub(r"^(?:https?://)?(?:www\.)?", "", url, flags=re.I).split("/")[0].split("?")[0]
    return (host or "a link") + trailing


def _paren(match: re.Match[str]) -> str:
    inner = match.group(1).strip()
    if len(inner.split()) <= 4 and not any(ch.isdigit() for ch in inner):
        return " "  # (smiles), (laughs softly): a stage direction
    return f", {inner}, "


def clean_text(text: str, *, persona_name: str = "") -> str:
    """Clean a complete piece of reply text for TTS (no stop detection; see SpeechCleaner)."""
    text = _FENCE.sub(" ", text)
    text = _THINK.sub(" ", text)
    text = _TAG.sub(" ", text)
    if persona_name:
        own = re.compile(r"(?m)^[ \t]*[*_]*" + re.escape(persona_name) + r"[*_]*[ \t]*:[ \t]*", re.I)
        text = own.sub("", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _URL.sub(_url_as_speech, text)
    text = _LINE_MARKER.sub("", text)
    text = _BOLD.sub(r"\2", text)
    text = _ACTION_STAR.sub(" ", text)
    text = _BRACKETED.sub(" ", text)
    text = _PAREN.sub(_paren, text)
    text = _UNDERSCORE_EM.sub(r"\1", text)
    text = _INLINE_CODE.sub(r"\1", text)
    text = _EMOTICON.sub(" ", text)
    text = "".join(ch for ch in text if not _is_emoji(ch))
    text = _LEFTOVER_MARKUP.sub(" ", text)
    text = text.replace("(", " ").replace(")", " ")
    # A line that ends without punctuation and is followed by another line ends a sentence there.
    lines = text.split("\n")
    joined: list[str] = []
    for index, line in enumerate(lines):
        line = line.strip()
        if index < len(lines) - 1 and line and line[-1].isalnum():
            line += "."
        joined.append(line)
    text = " ".join(joined)
    text = " ".join(text.split())
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _REPEATED_COMMA.sub(", ", text)
    text = text.lstrip(" ,;:")
    return text.strip()


class SpeechCleaner:
    """Streaming cleaner: `feed(token)` → cleaned text that is final; `finish()` → the rest.

    `stopped` becomes True when the model begins another speaker's line; the raw text from
    there on is dropped and the caller should stop generating.
    """

    def __init__(self, *, persona_name: str, other_names: Iterable[str] = (), instructions: Iterable[str] = (),
                 said_before: Iterable[str] = ()) -> None:
        self.persona_name = persona_name.strip()
        self.instructions = [t for t in instructions if t and t.strip()]
        self.said_before = [t for t in said_before if t and t.strip()]
        self._instruction_words = [words(t) for t in self.instructions]
        self._said_before_words = [words(t) for t in self.said_before]
        self._held = ""  # cleaned text not released yet (instruction screening)
        self._piece = ""  # the clauses of the piece being judged
        self._dropping = False  # part of this sentence was a copy or a repeat: the rest is judged strictly
        self.dropped: list[str] = []  # pieces dropped as copied instructions or repeated earlier lines
        names = {n.strip() for n in other_names if n and n.strip()}
        names.update(GENERIC_SPEAKERS)
        names.discard(self.persona_name)
        self._known_lower = {n.lower() for n in names}
        self._name_words = {w for n in (*names, self.persona_name) for w in words(n)}
        self._released = False  # screened text went out: a bare name later in the reply is fine
        alternatives = "|".join(sorted((re.escape(n) for n in names), key=len, reverse=True))
        self._known_anywhere = re.compile(r"(?<![\w])(?:" + alternatives + r")[*_]*[ \t]*:(?=\s|$)", re.I)
        self._raw = ""
        self._core = ""  # cleaned text emitted so far, without the trailing space
        self._space_sent = False
        self._unstable = False
        self.stopped = False
        self.stop_reason: str | None = None
        self._start = 0  # raw offset after a name prefix stripped at the reply start
        self._start_checked = False

    @property
    def raw_text(self) -> str:
        """The raw model text kept (up to a stop)."""
        return self._raw

    @property
    def text(self) -> str:
        """All cleaned text so far (before instruction screening; see `dropped`)."""
        return self._core

    def feed(self, token: str) -> str:
        if self.stopped or not token:
            return ""
        self._raw += token
        self._detect_stop()
        return self._screen(self._drain(final=self.stopped), final=self.stopped)

    def finish(self) -> str:
        if self._unstable:
            return self._screen(self._drain(final=True), final=True)
        out = self._screen(self._drain(final=True), final=True)
        return out.rstrip(" ")

    # -- instruction screening -----------------------------------------------------------

    def _screen(self, delta: str, *, final: bool) -> str:
        """Release cleaned text piece by piece, without the pieces that read the instructions aloud
        or repeat one of the bot's earlier lines."""
        if not self.instructions and not self.said_before:
            return delta
        self._held += delta
        out: list[str] = []
        while (match := _PIECE_END.search(self._held)) is not None:
            piece, self._held = self._held[: match.end()], self._held[match.end() :]
            out.append(self._judge(piece, sentence_end=match.group(0)[0] in ".!?…"))
        if final and (self._held or self._piece):
            piece, self._held = self._held, ""
            out.append(self._judge(piece, sentence_end=True, final=True))
        return "".join(out)

    def _judge(self, piece: str, *, sentence_end: bool, final: bool = False) -> str:
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
        repeated = not copied and copies(text, self.said_before, min_share=LEAK_SHARE,
                                         min_words=min(min_words, REPEAT_MIN_WORDS), min_run=LEAK_MIN_RUN)
        if copied or repeated:
            why = "read its instructions aloud" if copied else "repeated an earlier line"
            log.info("reply %s: dropped a sentence of %d words", why, len(text.split()))
            log.debug("reply %s: dropped %r", why, text.strip())  # the text only at DEBUG (it may quote memories)
            self.dropped.append(text.strip())
            self._piece = ""
            self._dropping = not sentence_end
            return ""
        if not sentence_end and len(text.split()) < LEAK_MIN_WORDS and (self._dropping or self._may_start_a_copy(text)):
            return ""  # too short to judge: wait for more of the sentence
        self._piece = ""
        if sentence_end:
            self._dropping = False
        self._released = self._released or bool(text.strip())
        return text

    def _names_only(self, text: str) -> bool:
        said = words(text)
        return bool(said) and all(w in self._name_words for w in said)

    def _may_start_a_copy(self, text: str) -> bool:
        """Whether these few words occur in a row in the instructions (or, two words or more, in an earlier
        line of the bot): a copy may be starting. An opening clause that does not ("Oh no,") goes to the
        voice at once instead of waiting for its sentence."""
        said = words(text)
        refs = self._instruction_words + (self._said_before_words if len(said) >= 2 else [])
        return not said or any(copied_words(said, ref, min_run=len(said)) == len(said) for ref in refs)

    # -- internals -----------------------------------------------------------------------

    def _detect_stop(self) -> None:
        raw = self._raw
        if not self._start_checked:
            match = _START_NAME.match(raw)
            if match:
                # The persona's own name, a label ("Note:"), or a member's name that small models
                # put before their own answer ("Alice: sure!") is a mislabel there: drop it.
                if match.group(1).lower() != self.persona_name.lower():
                    log.debug("reply opened with a %r label: dropped", match.group(1))
                self._start = match.end()
                self._start_checked = True
            elif not _PARTIAL_LINE_START.match(raw) or "\n" in raw.lstrip():
                self._start_checked = True
        body_from = self._start if self._start_checked else 0
        cut = None
        reason = None
        for match in _NEWLINE_NAME.finditer(raw, body_from):
            name = match.group(1)
            if name.lower() == self.persona_name.lower():
                continue  # its own name again: clean_text strips it
            cut, reason = match.start(), f"model began a line for {name}"
            break
        match = self._known_anywhere.search(raw, body_from if self._start_checked else len(raw))
        if match and (cut is None or match.start() < cut):
            cut, reason = match.start(), f"model began a line for {match.group(0).rstrip(': ')}"
        if cut is not None:
            self._stop_at(cut, reason or "another speaker")

    def _stop_at(self, cut: int, reason: str) -> None:
        self._raw = self._raw[:cut]
        self.stopped = True
        self.stop_reason = reason
        log.debug("reply stopped: %s", reason)

    def _safe_end(self) -> int:
        raw = self._raw
        if not self._start_checked:
            return self._start
        # The last word may be partial: stop at the last whitespace.
        end = max(raw.rfind(" "), raw.rfind("\n"), raw.rfind("\t"))
        if end < self._start:
            return self._start
        # A line that may still become "Name:" or a list marker waits.
        line_start = raw.rfind("\n", self._start) + 1 if "\n" in raw[self._start :] else self._start
        if line_start > self._start and _PARTIAL_LINE_START.match(raw[line_start:]):
            end = min(end, line_start - 1)
        # A name may be spread over words ("Bob Smith:"): hold trailing words that begin a known name.
        end = self._before_partial_known_name(end)
        # Constructs still open at the cut wait for their end (unless they run on too long).
        opened = _first_unclosed(raw[:end], self._start)
        if opened is not None and len(raw) - opened <= _MAX_HOLD_CHARS:
            end = opened
            while end > self._start and not raw[end - 1].isspace():
                end -= 1  # "(smiles" glued to a word: keep the word with it
            end = max(end - 1, self._start) if end > self._start else end
        return max(end, self._start)

    def _before_partial_known_name(self, end: int) -> int:
        head = self._raw[self._start : end]
        tokens = list(re.finditer(r"\S+", head))
        for k in range(min(3, len(tokens)), 0, -1):
            tail = " ".join(t.group(0) for t in tokens[-k:]).lower().strip("*_")
            if tail and any(name.startswith(tail) and name != tail for name in self._known_lower):
                return self._start + tokens[-k].start() - 1 if tokens[-k].start() > 0 else self._start
        return end

    def _drain(self, *, final: bool) -> str:
        end = len(self._raw) if final else self._safe_end()
        at_space = not final and end < len(self._raw) and self._raw[end].isspace()
        # A cut at a newline ends that line: include it, so the line gets its closing period now.
        upto = end + 1 if at_space and self._raw[end] == "\n" else end
        new_core = clean_text(self._raw[self._start : upto], persona_name=self.persona_name)
        if not new_core.startswith(self._core):
            if not final:
                self._unstable = True  # wait: the text settles at the end
                return ""
            common = 0
            while common < min(len(new_core), len(self._core)) and new_core[common] == self._core[common]:
                common += 1
            log.debug("cleaned text changed after emission; emitting the new tail only")
            delta = new_core[common:]
            self._core = new_core
            return (" " if self._core and not self._space_sent and delta and common else "") + delta
        self._unstable = False
        delta = new_core[len(self._core) :]
        self._core = new_core
        if self._space_sent and delta.startswith(" "):
            delta = delta[1:]
        if delta:
            self._space_sent = False
        # The chunker needs the space after punctuation to cut there; other spaces can wait.
        if at_space and self._core and self._core[-1] in ".!?…,;:" and not self._space_sent:
            delta += " "
            self._space_sent = True
        return delta


def _first_unclosed(raw: str, start: int) -> int | None:
    """Position of the earliest opener in raw[start:] that is not closed yet."""
    # Emoticons ":(" and list markers "* " open nothing; mask them (same length) before scanning.
    raw = _EMOTICON.sub(lambda m: " " * len(m.group(0)), raw)
    raw = _LINE_MARKER.sub(lambda m: " " * len(m.group(0)), raw)
    candidates: list[int] = []
    fences = [m.start() for m in re.finditer(r"```", raw[start:])]
    if len(fences) % 2:
        candidates.append(start + fences[-1])
    for opener, closer in (("(", ")"), ("[", "]")):
        depth = 0
        first = None
        for index in range(start, len(raw)):
            ch = raw[index]
            if ch == opener:
                if depth == 0:
                    first = index
                depth += 1
            elif ch == closer and depth:
                depth -= 1
        if depth and first is not None:
            candidates.append(first)
    stars = [m.start() for m in re.finditer(r"(?<!\*)\*(?!\*)", raw[start:])]
    if len(stars) % 2:
        candidates.append(start + stars[-1])
    doubles = [m.start() for m in re.finditer(r"\*\*", raw[start:])]
    if len(doubles) % 2:
        candidates.append(start + doubles[-1])
    tag = None
    for match in re.finditer(r"<[A-Za-z/]", raw[start:]):
        tag = start + match.start()
    if tag is not None and ">" not in raw[tag:]:
        candidates.append(tag)
    think = raw.lower().rfind("<think>", start)
    if think != -1 and "</think>" not in raw[think:].lower():
        candidates.append(think)
    return min(candidates) if candidates else None


def clean_reply(text: str, *, persona_name: str, other_names: Iterable[str] = (), instructions: Iterable[str] = (),
                said_before: Iterable[str] = ()) -> str:
    """Clean a whole reply at once (same rules as streaming): what would be spoken."""
    cleaner = SpeechCleaner(persona_name=persona_name, other_names=other_names, instructions=instructions,
                            said_before=said_before)
    parts = [cleaner.feed(text), cleaner.finish()]
    return "".join(parts).strip()


class ReplyBudget:
    """Caps a reply at the persona's limits; `take()` returns the fragment (maybe cut) or None."""

    def __init__(self, *, max_words: int | None = None, max_sentences: int | None = None) -> None:
        self.max_words = max_words if max_words and max_words > 0 else None
        self.max_sentences = max_sentences if max_sentences and max_sentences > 0 else None
        self.words = 0
        self.sentences = 0
        self.exhausted = False

    def take(self, fragment: Fragment) -> Fragment | None:
        if self.exhausted:
            return None
        words = fragment.text.split()
        text = fragment.text
        sentence_end = fragment.sentence_end
        if self.max_words is not None and self.words + len(words) >= self.max_words:
            keep = self.max_words - self.words
            if keep < len(words):
                text = " ".join(words[:keep]).rstrip(",;:—–- ")
                if text and text[-1] not in ".!?…":
                    text += "."
                sentence_end = True
            self.exhausted = True
            words = words[:keep]
        self.words += len(words)
        if sentence_end:
            self.sentences += 1
            if self.max_sentences is not None and self.sentences >= self.max_sentences:
                self.exhausted = True
        if not any(ch.isalnum() for ch in text):
            return None
        return Fragment(text, sentence_end)
