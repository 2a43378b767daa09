"""A memory service on a real database and a real `conversation.room.Room`, without the voice pipeline.

`CallUnderTest` holds what the recorder reads of a voice session (its room and persona) and feeds the room
final transcripts the way the listener does. `RecordingResponder` stands for `brain.responder.Responder` at
the model boundary: it records the memory block each reply and prefill was given.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from audio.types import Utterance
from storage.guild_store import GuildStore
from runtime.settings import load_settings
from conversation.room import Room
from memory.service import MemoryService
from storage.db import Database
from runtime.database_url import database_url

GUILD = 4242


async def memory_service(url: str, tmp_path: Path, **env: str) -> MemoryService:
    settings = load_settings(
        env={"CHORUS_DATA_DIR": str(tmp_path / "data"), "MEMORY_SUMMARY": "extractive", **env}, env_file=None
    )
    db = Database(database_url(url, settings.data_dir))
    await db.open()
    store = GuildStore(db, data_dir=settings.data_dir)
    await store.load()
    service = MemoryService(settings, db, store)
    await service.start()
    await asyncio.sleep(0)
    for _ in range(100):
        if service.privacy_loaded:
            break
        await asyncio.sleep(0.01)
    return service


@dataclass
class CallUnderTest:
    members: dict[int, str]
    room: Room = field(init=False)
    persona: Any = field(default_factory=lambda: SimpleNamespace(name="Juniper"))
    responder: Any = None
    clock: float = 100.0

    def __post_init__(self) -> None:
        self.room = Room(bot_name="Juniper", now=self.clock)
        for uid, name in self.members.items():
            self.room.member_joined(uid, name, self.clock, initial=True)

    def says(self, user_id: int, text: str, *, gap_s: float = 5.0) -> None:
        """A final transcript of the member, `gap_s` after the previous line (under 1.2 s: merged into it)."""
        start = self.clock + gap_s
        self.clock = start + 1.5
        self.room.on_utterance(Utterance(user_id, self.members[user_id], text, start, self.clock, True, 0.9))

    def bot_says(self, text: str) -> None:
        self.clock += 1.0
        self.room.bot_begin("respond_now", self.clock)
        self.room.turn.add_text(text)  # type: ignore[union-attr]
        self.room.bot_end(self.clock + 1.0)
        self.clock += 1.0


class RecordingResponder:
    """Stands for Responder at the model boundary: records the memory blocks it was given."""

    def __init__(self) -> None:
        self.memories: list[str] = []
        self.prefills: list[str] = []
        self.warm_ups: list[Any] = []  # the guild of each warm-up
        self.scheduler = None

    async def respond(
        self, persona: Any, history: Any, *, situation: str, sink: Any, member_names: Any = None, memory: str = ""
    ) -> Any:
        self.memories.append(memory)
        return SimpleNamespace(text="ok", timings={})

    def prefill(self, persona: Any, history: Any, cancel: Any = None, *, situation: str = "", memory: str = "") -> None:
        self.prefills.append(memory)

    def warm_up(self, persona: Any, group: Any = None) -> None:
        self.warm_ups.append(group)


def line(speaker: str, text: str, is_bot: bool = False) -> Any:
    from brain.prompt import HistoryLine

    return HistoryLine(speaker, text, time.monotonic(), is_bot)
