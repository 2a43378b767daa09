"""Per-guild state (chosen persona, captions channel, memory on/off), kept in the database.

Reads come from an in-memory copy (`get` is instant, for the event loop); writes go to the database
first and change the copy only once the database has them. `load()` fills the copy at start (after
importing an old `guilds.json` once, see `storage.legacy`). When the database is unavailable, reads
give the defaults or the last known state and writes raise `StorageError` with one clear line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from storage.db import Database, upsert
from storage.errors import StorageError
from storage.schema import RECALL_SCOPES, guild_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GuildState:
    persona: str | None = None  # persona name chosen with /persona set; None = the default persona
    captions_channel_id: int | None = None  # text channel where the bot posts what it heard and said
    memory_enabled: bool = True  # /memory off turns remembering off for the whole server
    recall: str = "present"  # /memory recall: whose memories a reply may use (storage.schema.RECALL_SCOPES)


def validate_state(state: GuildState) -> None:
    """Raise ValueError naming the bad field."""
    persona = state.persona
    if persona is not None and (not isinstance(persona, str) or not persona.strip()):
        raise ValueError(f"persona: expected a name or null, got {persona!r}")
    channel = state.captions_channel_id
    if channel is not None and (isinstance(channel, bool) or not isinstance(channel, int) or channel <= 0):
        raise ValueError(f"captions_channel_id: expected a channel id or null, got {channel!r}")
    if not isinstance(state.memory_enabled, bool):
        raise ValueError(f"memory_enabled: expected true or false, got {state.memory_enabled!r}")
    if state.recall not in RECALL_SCOPES:
        raise ValueError(f"recall: expected one of {', '.join(RECALL_SCOPES)}, got {state.recall!r}")


def _state(row: Any) -> GuildState:
    return GuildState(persona=row["persona"], captions_channel_id=row["captions_channel_id"],
                      memory_enabled=bool(row["memory_enabled"]), recall=row["recall"] or "present")


class GuildStore:
    """The database's guild settings, with an in-memory copy for instant reads."""

    def __init__(self, db: Database, *, data_dir: Path | None = None) -> None:
        self.db = db
        self.data_dir = data_dir
        self._states: dict[int, GuildState] = {}
        self._changes: dict[int, int] = {}  # guild id -> writes made by this process (see refresh)
        self._unsaved: dict[int, dict[str, Any]] = {}  # guild id -> changes applied here that the database refused
        self._locks: dict[int, asyncio.Lock] = {}  # one update at a time per guild in this process
        self.loaded = False

    @classmethod
    def from_settings(cls, settings: Any, db: Database | None = None) -> "GuildStore":
        return cls(db if db is not None else Database.from_settings(settings), data_dir=Path(settings.data_dir))

    # -- reading ----------------------------------------------------------------------------------
    def get(self, guild_id: int) -> GuildState:
        state = self._states.get(guild_id, GuildState())
        unsaved = self._unsaved.get(guild_id)
        return replace(state, **unsaved) if unsaved else state

    def apply_unsaved(self, guild_id: int, **changes: Any) -> GuildState:
        """Apply a change that protects members (memory off) at once although the database refused it: reads
        see it, refreshes and loads keep it, and the next successful update of the guild saves it."""
        self._unsaved[guild_id] = {**self._unsaved.get(guild_id, {}), **changes}
        self._changes[guild_id] = self._changes.get(guild_id, 0) + 1
        log.warning("guild %d: %s applied here but not saved yet", guild_id, ", ".join(sorted(changes)))
        return self.get(guild_id)

    def all(self) -> dict[int, GuildState]:
        return dict(self._states)

    async def load(self) -> None:
        """Import an old guilds.json once (see storage.legacy), then read every guild's row."""
        if self.data_dir is not None:
            from storage.legacy import import_legacy_guilds

            await import_legacy_guilds(self.db, self.data_dir)
        async with self.db.transaction() as conn:
            rows = (await conn.execute(sa.select(guild_settings))).mappings().all()
        self._states = {int(row["guild_id"]): _state(row) for row in rows}
        self.loaded = True
        for guild_id in list(self._unsaved):  # changes applied while the database was away: saved now
            try:
                await self.update(guild_id)
            except StorageError as exc:
                log.warning("guild %d: unsaved settings still not saved (%s)", guild_id, exc.kind)

    async def refresh(self, guild_id: int) -> GuildState:
        """Read one guild's row again (its shard moved to this process; another process may have changed it).
        A change made here while the read was under way wins over what the read found."""
        version = self._changes.get(guild_id, 0)
        async with self.db.transaction() as conn:
            row = (await conn.execute(sa.select(guild_settings).where(guild_settings.c.guild_id == guild_id))).mappings().first()
        if self._changes.get(guild_id, 0) != version:
            return self.get(guild_id)
        states = {k: v for k, v in self._states.items() if k != guild_id}
        if row is not None:
            states[guild_id] = _state(row)
        self._states = states
        return self.get(guild_id)

    # -- writing ----------------------------------------------------------------------------------
    async def update(self, guild_id: int, **changes: Any) -> GuildState:
        """Change fields of one guild's state in the database, then in memory. Returns the new state.

        Only the changed fields (and any unsaved ones) are written: an update made meanwhile by another
        process to another field is not overwritten; in this process, updates of a guild run one at a time."""
        lock = self._locks.setdefault(guild_id, asyncio.Lock())
        async with lock:
            changes = {**self._unsaved.get(guild_id, {}), **changes}
            new = replace(self.get(guild_id), **changes)
            validate_state(new)  # never write what we could not read back
            async with self.db.transaction() as conn:
                row = {"guild_id": guild_id, **asdict(new), "updated_at": time.time()}
                await conn.execute(upsert(self.db.dialect, guild_settings, row, ["guild_id"],
                                          [*changes, "updated_at"]))
                found = (await conn.execute(sa.select(guild_settings).where(
                    guild_settings.c.guild_id == guild_id))).mappings().first()
                if found is not None and _state(found) == GuildState():
                    await conn.execute(sa.delete(guild_settings).where(guild_settings.c.guild_id == guild_id))
            stored = _state(found) if found is not None else new
            self._unsaved.pop(guild_id, None)
            states = dict(self._states)
            if stored == GuildState():
                states.pop(guild_id, None)
            else:
                states[guild_id] = stored
            self._states = states
            self._changes[guild_id] = self._changes.get(guild_id, 0) + 1  # after the write: a refresh that read before it is stale
            return stored

    def drop_local(self, guild_id: int) -> None:
        """The guild's row was deleted elsewhere (the bot was removed from it): forget the copy here too."""
        self._states = {k: v for k, v in self._states.items() if k != guild_id}
        self._unsaved.pop(guild_id, None)
        self._changes[guild_id] = self._changes.get(guild_id, 0) + 1

    async def set_persona(self, guild_id: int, name: str | None) -> GuildState:
        return await self.update(guild_id, persona=name)

    async def set_captions_channel(self, guild_id: int, channel_id: int | None) -> GuildState:
        return await self.update(guild_id, captions_channel_id=channel_id)

    async def set_recall(self, guild_id: int, scope: str) -> GuildState:
        return await self.update(guild_id, recall=scope)

    async def set_memory_enabled(self, guild_id: int, enabled: bool) -> GuildState:
        return await self.update(guild_id, memory_enabled=enabled)

    async def forget(self, guild_id: int) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(sa.delete(guild_settings).where(guild_settings.c.guild_id == guild_id))
        self._states = {k: v for k, v in self._states.items() if k != guild_id}
        self._unsaved.pop(guild_id, None)
        self._changes[guild_id] = self._changes.get(guild_id, 0) + 1
