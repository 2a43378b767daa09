"""A real `conversation.room.Room` driven line by line for the quality benchmark, and the stand-ins for what
it does not measure (a silent voice instead of TTS, a sink that drops audio)."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

from audio.tts import TtsEngine
from conversation.text_words import words
from conversation.persona import Persona
from conversation.room import Room

LINE_GAP_S = 4.0  # room time between two lines
FIRST_USER_ID = 1001


class SilentVoice(TtsEngine):
    """Stands in for TTS: one silent sample per fragment, so the reply path runs unchanged without synthesis."""

    name = "none (synthesis skipped)"

    def synthesize(self, text: str, cancel: Any) -> Iterator[tuple[np.ndarray, int]]:
        if text.strip() and not cancel.is_set():
            yield np.zeros(1, dtype=np.int16), 22_050


class _NullSink:
    def audio(self, pcm: np.ndarray, rate: int) -> None:
        pass

    def text(self, fragment: str) -> None:
        pass

    def done(self) -> None:
        pass


class RoomScript:
    """A real Room driven line by line, with the bot's lines entered as a voice session enters them."""

    def __init__(self, persona: Persona, members: Sequence[str]) -> None:
        self.persona = persona
        self.room = Room(bot_name=persona.name, bot_aliases=persona.aliases, now=0.0)
        self.t = 0.0
        self.ids: dict[str, int] = {}
        for i, name in enumerate(members):
            self.ids[name] = FIRST_USER_ID + i
            self.room.member_joined(self.ids[name], name, self.t, initial=True)

    def tick(self, seconds: float = LINE_GAP_S) -> float:
        self.t += seconds
        return self.t

    def human(self, speaker: str, text: str) -> Any:
        from audio.types import Utterance

        if speaker not in self.ids:
            self.ids[speaker] = FIRST_USER_ID + len(self.ids)
            self.room.member_joined(self.ids[speaker], speaker, self.t, initial=True)
        start = self.tick()
        end = start + max(0.8, 0.3 * len(text.split()))
        self.t = end
        return self.room.on_utterance(
            Utterance(
                user_id=self.ids[speaker], name=speaker, text=text, start=start, end=end, final=True, confidence=0.9
            )
        )

    def bot(self, text: str, *, kind: str = "respond_now", reply_to_seq: int | None = None) -> None:
        start = self.tick(0.5)
        self.room.bot_begin(kind, start, reply_to_seq=reply_to_seq)
        if reply_to_seq is not None:
            self.room.bot_confirm(reply_to_seq, start)
        if self.room.turn is not None:
            self.room.turn.add_text(text)
            self.room.turn.add_audio(max(0.5, 0.35 * len(text.split())))
        self.room.bot_audio_started(start)
        self.t = start + max(0.5, 0.35 * len(text.split()))
        self.room.bot_end(self.t)

    @property
    def members(self) -> list[str]:
        return [m.name for m in self.room.members.values()]


def addressed_to(persona: Persona, text: str, alone: bool) -> bool:
    """The bot is spoken to: it is named (or an alias), or it is alone with the speaker."""
    said = set(words(text))
    return alone or any(set(words(name)) <= said for name in (persona.name, *persona.aliases) if words(name))
