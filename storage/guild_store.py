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
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from storage.db import Database, upsert
from storage.errors import StorageError
from storage.guild_state import GuildState, validate_state
from storage.schema import guild_settings

log = logging.getLogger(__name__)


def _state(row: Any) -> GuildState:
    return GuildState(
        persona=row["persona"],
        captions_channel_id=row["captions_channel_id"],
        memory_enabled=bool(row["memory_enabled"]),
        recall=row["recall"] or "present",
    )


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
            row = (
                (await conn.execute(sa.select(guild_settings).where(guild_settings.c.guild_id == guild_id)))
                .mappings()
                .first()
            )
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
                await conn.execute(upsert(self.db.dialect, guild_settings, row, ["guild_id"], [*changes, "updated_at"]))
                found = (
                    (await conn.execute(sa.select(guild_settings).where(guild_settings.c.guild_id == guild_id)))
                    .mappings()
                    .first()
                )
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
            self._changes[guild_id] = (
                self._changes.get(guild_id, 0) + 1
            )  # after the write: a refresh that read before it is stale
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
