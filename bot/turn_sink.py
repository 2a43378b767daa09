"""One bot line on its way out: its trace (when each stage happened) and its sink (responder → room + player).

`TurnSink` is the `ReplySink` the responder streams one line into: text fragments and audio go to the
`LineRunner`'s room (on the event loop) and player (directly: the player is thread-safe). An early start's
audio is held back until the final transcript confirms it (`release()`); after `close()` everything is
dropped (a cancelled generation may still be emitting).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from conversation.bot_turn import BotTurn
from conversation.room_lines import RoomLine

if TYPE_CHECKING:
    from bot.line_runner import LineRunner


@dataclass
class TurnTrace:
    """Monotonic timestamps of one bot line, from the human's speech end to the first packet out."""

    kind: str
    reason: str
    decided: float
    times: dict[str, float] = field(default_factory=dict)
    outcome: str = "pending"  # spoken | interrupted | discarded | failed | gated
    text: str = ""
    audio_s: float = 0.0  # seconds of audio synthesized for the line (what it would have lasted, uncut)
    pauses: int = 0  # times its voice stopped for someone speaking over it
    ducks: list[float] = field(default_factory=list)  # when its voice was turned down for someone over it
    rule: str = ""  # the rule whose decision started the line (`Decision.rule`)

    def relative_ms(self) -> dict[str, float]:
        origin = self.times.get("speech_end", self.decided)
        return {k: round((v - origin) * 1000.0, 1) for k, v in sorted(self.times.items(), key=lambda kv: kv[1])}


def history_lines(lines: Iterable[RoomLine]) -> list[Any]:
    """Room lines as `brain.prompt.HistoryLine`s, oldest first."""
    from brain.prompt import HistoryLine

    return [
        HistoryLine(
            speaker=line.name, text=line.text, t=line.end, is_bot=line.is_bot, cut=line.is_bot and line.interrupted
        )
        for line in lines
    ]


class TurnSink:
    """The ReplySink for one bot line: text and audio from the responder → room + player.

    While `holding` (an early start not yet confirmed) audio is kept back; `release()` sends it.
    After `close()` everything is dropped (a cancelled generation may still be emitting).
    """

    def __init__(self, lines: "LineRunner", turn: BotTurn, trace: TurnTrace, *, hold: bool) -> None:
        self._lines = lines
        self._turn = turn
        self._trace = trace
        self._lock = threading.Lock()
        self._held: list[tuple[np.ndarray, int]] = []
        self._holding = hold
        self._closed = False
        self._done = False
        self._ended_utterance = False

    # -- ReplySink -------------------------------------------------------------------------
    def text(self, fragment: str) -> None:
        self._lines.on_loop(self._record_text, fragment)

    def audio(self, pcm: np.ndarray, rate: int) -> None:
        if rate <= 0 or pcm is None or len(pcm) == 0:
            return
        seconds = len(pcm) / float(rate)
        with self._lock:
            if self._closed:
                return
            played = not self._holding
            if played:
                self._lines.player.feed(pcm, rate)
            else:
                self._held.append((pcm, rate))
        self._lines.on_loop(self._record_audio, seconds, played)

    def done(self) -> None:
        with self._lock:
            self._done = True
            if self._closed or self._holding or self._ended_utterance:
                return
            self._ended_utterance = True
        self._lines.player.end_of_utterance()

    # -- runner side ----------------------------------------------------------------------------
    @property
    def holding(self) -> bool:
        return self._holding

    def release(self) -> None:
        """Confirmed: play what was held and everything after it."""
        with self._lock:
            if self._closed or not self._holding:
                return
            held, self._held, self._holding = self._held, [], False
            for pcm, rate in held:
                self._lines.player.feed(pcm, rate)
            end = self._done and not self._ended_utterance
            self._ended_utterance = self._ended_utterance or end
        if held:
            self._lines.audio_out(self._turn)
        if end:
            self._lines.player.end_of_utterance()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._held.clear()

    def _record_text(self, fragment: str) -> None:
        if self._closed or self._lines.room.turn is not self._turn:
            return
        self._trace.times.setdefault("first_fragment_sink", self._lines.clock.now())
        self._turn.add_text(fragment)

    def _record_audio(self, seconds: float, played: bool) -> None:
        if self._closed or self._lines.room.turn is not self._turn:
            return
        self._trace.times.setdefault("first_audio_sink", self._lines.clock.now())
        self._turn.add_audio(seconds)
        if played:
            self._lines.audio_out(self._turn)
