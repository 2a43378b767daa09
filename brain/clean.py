"""Make streamed LLM text fit to be spoken, and stop it when the model starts someone else's line.

`SpeechCleaner` takes raw tokens and returns cleaned text as soon as it can no longer change:
it holds back the last, possibly partial word, an unclosed `*action*`, `(aside)`, `[tag]`,
`<tag>` or code fence, and the start of a line that may still turn into "Name:". Markup goes
(`brain.markup`: markdown, emoji, stage directions, URLs read as their host). The persona's own
name as a label ("Juniper: ") is dropped, and so is another label opening the reply ("Note:").
The model writing a member's line is not the bot speaking: a reply that opens with a member's
label ("Alice: ...", or "User:") stops there with nothing said (the responder samples again),
and the reply stops at a "Name:" that starts a later line, or at a known member name followed
by a colon anywhere after the start.

What is left goes through `brain.screen.ReplyScreen` piece by piece: names addressing someone
other than the member answered are dropped, and for small models (`small_model_repairs`) a piece
that reads the instructions aloud or repeats one of the bot's earlier lines.
"""

from __future__ import annotations

import logging
import re
from typing import Iterable

from brain.markup import MAX_HOLD_CHARS, clean_text, first_unclosed
from brain.screen import ReplyScreen

log = logging.getLogger(__name__)

_NAME = r"[A-Z][\w'’.-]{0,24}(?:[ \t]+[A-Z][\w'’.-]{0,24}){0,2}"
_NEWLINE_NAME = re.compile(r"\n[ \t]*[*_]*(" + _NAME + r")[*_]*[ \t]*:(?=\s|$)")
_START_NAME = re.compile(r"^\s*[*_]*(" + _NAME + r")[*_]*[ \t]*:(?=\s)[ \t]*")
# The start of a line that could still become "Name:" or a list marker: hold it back.
_PARTIAL_LINE_START = re.compile(r"^[ \t]*(?:[-*•+>#]+[ \t]*|\d+[.)][ \t]*)?[*_]*(?:" + _NAME + r")?[*_]*[ \t]*:?$")
GENERIC_SPEAKERS = ("User", "Human", "Assistant", "System", "AI", "Bot")


class SpeechCleaner:
    """Streaming cleaner: `feed(token)` → cleaned text that is final; `finish()` → the rest.

    `stopped` becomes True when the model begins another speaker's line; the raw text from
    there on is dropped and the caller should stop generating.
    """

    def __init__(
        self,
        *,
        persona_name: str,
        other_names: Iterable[str] = (),
        instructions: Iterable[str] = (),
        said_before: Iterable[str] = (),
        heard_before: Iterable[str] = (),
        addressee: str | None = None,
        small_model_repairs: bool = True,
    ) -> None:
        self.persona_name = persona_name.strip()
        members = [n.strip() for n in other_names if n and n.strip() and n.strip() != self.persona_name]
        names = set(members) | set(GENERIC_SPEAKERS)
        names.discard(self.persona_name)
        self._known_lower = {n.lower() for n in names}
        # Names as words: members and the persona (a bare "Juniper." says nothing either).
        self.screen = ReplyScreen(
            names=[*members, self.persona_name] if self.persona_name else members,
            own_name=self.persona_name,
            addressee=addressee,
            instructions=instructions,
            said_before=said_before,
            heard_before=heard_before,
            small_model=small_model_repairs,
        )
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
    def dropped(self) -> list[str]:
        """Pieces the screen dropped (copied instructions, repeated lines, wrong names, names only)."""
        return self.screen.dropped

    @property
    def raw_text(self) -> str:
        """The raw model text kept (up to a stop)."""
        return self._raw

    @property
    def text(self) -> str:
        """All cleaned text so far (before the screen; see `dropped`)."""
        return self._core

    def feed(self, token: str) -> str:
        if self.stopped or not token:
            return ""
        self._raw += token
        self._detect_stop()
        return self.screen.feed(self._drain(final=self.stopped), final=self.stopped)

    def finish(self) -> str:
        if self._unstable:
            return self.screen.feed(self._drain(final=True), final=True)
        out = self.screen.feed(self._drain(final=True), final=True)
        return out.rstrip(" ")

    # -- internals -----------------------------------------------------------------------

    def _detect_stop(self) -> None:
        raw = self._raw
        if not self._start_checked:
            match = _START_NAME.match(raw)
            if match and match.group(1).lower() in self._known_lower:
                # "Alice: ..." opening the reply: the model is writing Alice's line, not the bot's.
                self._start_checked = True
                self._stop_at(0, f"model wrote {match.group(1)}'s line")
                return
            if match:
                # The persona's own name, or a label ("Note:"): dropped.
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
        opened = first_unclosed(raw[:end], self._start)
        if opened is not None and len(raw) - opened <= MAX_HOLD_CHARS:
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


def clean_reply(
    text: str,
    *,
    persona_name: str,
    other_names: Iterable[str] = (),
    instructions: Iterable[str] = (),
    said_before: Iterable[str] = (),
    heard_before: Iterable[str] = (),
    addressee: str | None = None,
    small_model_repairs: bool = True,
) -> str:
    """Clean a whole reply at once (same rules as streaming): what would be spoken."""
    cleaner = SpeechCleaner(
        persona_name=persona_name,
        other_names=other_names,
        instructions=instructions,
        said_before=said_before,
        heard_before=heard_before,
        addressee=addressee,
        small_model_repairs=small_model_repairs,
    )
    parts = [cleaner.feed(text), cleaner.finish()]
    return "".join(parts).strip()
