"""The room's speaker-attributed transcript ("Alice: ..."), bounded in lines and characters.

Finals become lines; the latest partial of each member who is still speaking is kept aside as a
"live" line (shown after the finished lines, replaced by the member's final). Consecutive finals of
the same member within `merge_gap_s` are joined into one line, so a pause mid-thought does not split
a speaker's turn into many lines.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import Iterator

from audio.types import Utterance


@dataclass(frozen=True, slots=True)
class TranscriptLine:
    user_id: int
    name: str
    text: str
    start: float
    end: float

    def render(self) -> str:
        return f"{self.name}: {self.text}"


class RoomTranscript:
    """Bounded transcript of one voice session: at most `max_lines` lines and `max_chars` characters."""

    def __init__(self, *, max_lines: int = 200, max_chars: int = 20_000, merge_gap_s: float = 1.5) -> None:
        if max_lines < 1 or max_chars < 1:
            raise ValueError("max_lines and max_chars must be positive")
        self.max_lines = max_lines
        self.max_chars = max_chars
        self.merge_gap_s = merge_gap_s
        self._lines: deque[TranscriptLine] = deque()
        self._chars = 0
        self._live: dict[int, TranscriptLine] = {}

    def add(self, utterance: Utterance) -> TranscriptLine | None:
        """Record an utterance; returns the line it created or extended (None for partials and empty text)."""
        text = utterance.text.strip()
        if not utterance.final:
            if text:
                self._live[utterance.user_id] = TranscriptLine(
                    utterance.user_id, utterance.name, text, utterance.start, utterance.end
                )
            return None
        self._live.pop(utterance.user_id, None)
        if not text:
            return None
        last = self._lines[-1] if self._lines else None
        if last is not None and last.user_id == utterance.user_id and utterance.start - last.end <= self.merge_gap_s:
            self._lines.pop()
            self._chars -= len(last.text)
            line = replace(last, text=f"{last.text} {text}", end=max(last.end, utterance.end), name=utterance.name)
        else:
            line = TranscriptLine(utterance.user_id, utterance.name, text, utterance.start, utterance.end)
        self._lines.append(line)
        self._chars += len(line.text)
        self._trim()
        return line

    def forget_live(self, user_id: int) -> None:
        """Drop a member's live (partial) line, e.g. when they leave."""
        self._live.pop(user_id, None)

    def _trim(self) -> None:
        while len(self._lines) > self.max_lines or (self._chars > self.max_chars and len(self._lines) > 1):
            old = self._lines.popleft()
            self._chars -= len(old.text)
        if self._lines and self._chars > self.max_chars:  # one huge line: keep its tail
            only = self._lines.pop()
            only = replace(only, text="…" + only.text[-(self.max_chars - 1) :])
            self._lines.append(only)
            self._chars = len(only.text)

    def lines(self, *, include_live: bool = False) -> list[TranscriptLine]:
        out = list(self._lines)
        if include_live:
            out.extend(sorted(self._live.values(), key=lambda line: line.start))
        return out

    def __iter__(self) -> Iterator[TranscriptLine]:
        return iter(self._lines)

    def __len__(self) -> int:
        return len(self._lines)

    def render(self, *, last: int | None = None, include_live: bool = False) -> str:
        """'Alice: ...' one line per turn, oldest first; `last` keeps only the most recent lines."""
        lines = self.lines(include_live=include_live)
        if last is not None:
            lines = lines[-last:] if last > 0 else []
        return "\n".join(line.render() for line in lines)
