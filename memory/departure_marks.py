"""The marks of departures, kept in `storage_meta` until the grace period ends (`memory.removal` runs the purge):
a guild that removed the bot, a member who left a guild (with their names, which the erasure needs)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.db import upsert
from storage.schema import guild_settings, member_privacy, memories, storage_meta

if TYPE_CHECKING:
    from storage.db import Database

REMOVED_PREFIX = "guild_removed:"  # storage_meta key: when the bot was removed from that guild
LEFT_PREFIX = "member_left:"  # storage_meta key (+ "guild:user"): when a member left that guild, and their names


class DepartureMarks:
    """Mixed into `MemoryStore`, which holds the database and erases a member's rows."""

    db: "Database"

    async def _erase_member(self, conn: AsyncConnection, guild_id: int, user_id: int, names: Iterable[str]) -> int:
        raise NotImplementedError

    # -- a guild that removed the bot ----------------------------------------------------------------------
    async def mark_guild_removed(self, guild_id: int, *, now: float | None = None) -> None:
        """The bot was removed from the guild: its rows go after the grace period (`purge_removed_guilds`)."""
        row = {"key": f"{REMOVED_PREFIX}{guild_id}", "value": repr(time.time() if now is None else now)}
        async with self.db.transaction() as conn:
            await conn.execute(upsert(self.db.dialect, storage_meta, row, ["key"], []))

    async def unmark_guild_removed(self, guild_id: int) -> None:
        """The bot is back in the guild before the grace period ended: nothing is deleted."""
        async with self.db.transaction() as conn:
            await conn.execute(sa.delete(storage_meta).where(storage_meta.c.key == f"{REMOVED_PREFIX}{guild_id}"))

    async def removed_guilds(self, removed_before: float) -> list[int]:
        """The guilds the bot was removed from before `removed_before` (epoch seconds): due for the purge."""
        async with self.db.transaction() as conn:
            marks = (
                (await conn.execute(sa.select(storage_meta).where(storage_meta.c.key.like(f"{REMOVED_PREFIX}%"))))
                .mappings()
                .all()
            )
        return [int(m["key"][len(REMOVED_PREFIX) :]) for m in marks if float(m["value"]) < removed_before]

    async def purge_removed_guilds(self, removed_before: float) -> list[int]:
        """Delete every row of the guilds the bot was removed from before `removed_before` (epoch seconds):
        settings, opt-outs, memories (with their sources), members' departure marks. Returns those guilds."""
        async with self.db.transaction() as conn:
            marks = (
                (await conn.execute(sa.select(storage_meta).where(storage_meta.c.key.like(f"{REMOVED_PREFIX}%"))))
                .mappings()
                .all()
            )
            gone = [int(m["key"][len(REMOVED_PREFIX) :]) for m in marks if float(m["value"]) < removed_before]
            for guild_id in gone:
                for table in (memories, member_privacy, guild_settings):
                    await conn.execute(sa.delete(table).where(table.c.guild_id == guild_id))
                await conn.execute(sa.delete(storage_meta).where(storage_meta.c.key == f"{REMOVED_PREFIX}{guild_id}"))
                await conn.execute(sa.delete(storage_meta).where(storage_meta.c.key.like(f"{LEFT_PREFIX}{guild_id}:%")))
        if gone:
            await self.db.scrub_deleted()
        return gone

    # -- a member who left a guild ----------------------------------------------------------------------------
    async def mark_member_left(
        self, guild_id: int, user_id: int, names: Sequence[str], *, now: float | None = None
    ) -> None:
        """The member left the guild: everything about them there goes after the grace period
        (`departed_members`, `erase_departed_member`). Their names are kept with the mark until then."""
        value = json.dumps({"at": time.time() if now is None else now, "names": list(names)})
        row = {"key": f"{LEFT_PREFIX}{guild_id}:{user_id}", "value": value}
        async with self.db.transaction() as conn:
            await conn.execute(upsert(self.db.dialect, storage_meta, row, ["key"], ["value"]))

    async def unmark_member_left(self, guild_id: int, user_id: int) -> None:
        """The member is back in the guild before the grace period ended: nothing is deleted."""
        async with self.db.transaction() as conn:
            await conn.execute(
                sa.delete(storage_meta).where(storage_meta.c.key == f"{LEFT_PREFIX}{guild_id}:{user_id}")
            )

    async def departed_members(self, left_before: float) -> list[tuple[int, int, list[str]]]:
        """(guild id, user id, names) of the members who left a guild before `left_before` (epoch seconds)."""
        async with self.db.transaction() as conn:
            marks = (
                (await conn.execute(sa.select(storage_meta).where(storage_meta.c.key.like(f"{LEFT_PREFIX}%"))))
                .mappings()
                .all()
            )
        out = []
        for mark in marks:
            guild, user = mark["key"][len(LEFT_PREFIX) :].split(":")
            value = json.loads(mark["value"])
            if float(value["at"]) < left_before:
                out.append((int(guild), int(user), [str(n) for n in value.get("names", [])]))
        return out

    async def erase_departed_member(self, guild_id: int, user_id: int, names: Sequence[str]) -> int:
        """Everything about a member who left the guild (as `/memory forget`), their privacy choice and the mark."""
        async with self.db.transaction() as conn:
            deleted = await self._erase_member(conn, guild_id, user_id, names)
            await conn.execute(
                sa.delete(member_privacy).where(
                    member_privacy.c.guild_id == guild_id, member_privacy.c.user_id == user_id
                )
            )
            await conn.execute(
                sa.delete(storage_meta).where(storage_meta.c.key == f"{LEFT_PREFIX}{guild_id}:{user_id}")
            )
        await self.db.scrub_deleted()
        return deleted
