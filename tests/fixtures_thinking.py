"""Helpers for the thinking-and-speaking tests: a recording sink, personas, history."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from pathlib import Path

import numpy as np

from brain.prompt import HistoryLine
from conversation.persona import Persona
from conversation.persona_library import load_persona

PERSONAS = Path(__file__).resolve().parent.parent / "personas"


class RecordingSink:
    """A ReplySink that records what arrives, when, and on which thread."""

    def __init__(self) -> None:
        self.events: list[tuple[str, float, object]] = []
        self.first_audio = asyncio.Event()
        self.loop_thread = threading.get_ident()
        self.wrong_thread = False
        self.done_calls = 0
        self.first_pcm: tuple[np.ndarray, int] | None = None  # the reply's first audio chunk

    def _note(self, kind: str, payload: object) -> None:
        if threading.get_ident() != self.loop_thread:
            self.wrong_thread = True
        self.events.append((kind, time.monotonic(), payload))

    def audio(self, pcm: np.ndarray, rate: int) -> None:
        if not self.first_audio.is_set():
            self.first_pcm = (pcm, rate)
        self._note("audio", (len(pcm), rate))
        self.first_audio.set()

    def text(self, fragment: str) -> None:
        self._note("text", fragment)

    def done(self) -> None:
        self.done_calls += 1
        self._note("done", None)

    @property
    def audio_seconds(self) -> float:
        return sum(n / rate for kind, _, (n, rate) in ((k, t, p) for k, t, p in self.events if k == "audio"))

    @property
    def texts(self) -> list[str]:
        return [p for k, _, p in self.events if k == "text"]  # type: ignore[misc]

    def last_time(self) -> float | None:
        return self.events[-1][1] if self.events else None


def juniper(**changes) -> Persona:
    persona = load_persona(PERSONAS / "juniper.toml")
    return dataclasses.replace(persona, **changes) if changes else persona


def question(text: str, speaker: str = "Alice") -> list[HistoryLine]:
    now = time.monotonic()
    return [
        HistoryLine("Bob", "Hey everyone, good to be back.", now - 5, False),
        HistoryLine("Juniper", "Welcome back, Bob!", now - 4, True),
        HistoryLine(speaker, text, now - 0.5, False),
    ]
