"""Deleting what is kept about a server that removed the bot, or a member who left a server, after a grace period.

Both go the same way: the event marks the guild (or the member in it) in `storage_meta` with the time, the
hourly purge (`MemoryService.purge_now`) deletes what was marked more than `REMOVAL_GRACE_DAYS` ago, and coming
back within the grace period (the bot added back, the member rejoining) clears the mark. With 0 days the purge
runs at once. A member who left is erased as `/memory forget` erases them (their pending writes and lines of a
call under way dropped, their rows, others' summaries made from their lines, their names in others' rows), and
their privacy choice with it. Learning that a member left needs Discord's privileged server-members intent
(`FORGET_MEMBERS_WHO_LEAVE`); without it their memories go when `MEMORY_RETENTION_DAYS` ends.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from storage.guild_store import GuildStore
    from memory.recorder import CallRecorder
    from memory.store import MemoryStore
    from memory.writer import WriteQueue

log = logging.getLogger(__name__)

DAY_S = 86400.0


class Removals:
    """Mixed into `MemoryService` (which holds these attributes)."""

    settings: Any
    store: "MemoryStore"
    guild_store: "GuildStore"
    writes: "WriteQueue"
    recorders: dict[int, "CallRecorder"]
    _ended_recorders: list["CallRecorder"]  # calls that ended (or were replaced) with summaries still running
    _opted_out: dict[int, frozenset[int]]
    _names: dict[tuple[int, int], list[str]]
    _unsaved_opt_outs: set[tuple[int, int]]

    def keep_ended(self, recorder: "CallRecorder") -> None:
        """A call's recorder that ended or was replaced: `drop_pending` still reaches its summaries under way."""
        self._ended_recorders = [r for r in self._ended_recorders if r.summarizing] + [recorder]

    async def drop_pending(self, guild_id: int, user_id: int) -> None:
        """What is on its way to the database about the member: their lines of a call under way and the summaries
        running that read them (cancelled, the model stopped; also of calls that already ended), then their queued
        writes (a write of theirs running now is waited for)."""
        self._ended_recorders = [r for r in self._ended_recorders if r.summarizing]
        for recorder in dict.fromkeys([self.recorders.get(guild_id), *self._ended_recorders]):
            if recorder is not None and recorder.guild_id == guild_id:
                recorder.forget_member(user_id)
        await self.writes.discard_member(guild_id, user_id)

    def _grace_ended(self, now: float | None) -> float:
        """Marks older than this (epoch seconds) are due."""
        return (time.time() if now is None else now) - self.settings.removal_grace_days * DAY_S

    # -- the bot removed from a guild -----------------------------------------------------------------------------
    async def guild_removed(self, guild_id: int) -> None:
        """`on_guild_remove`: the guild's rows are deleted after REMOVAL_GRACE_DAYS (at once when 0)."""
        await self.store.mark_guild_removed(guild_id)
        if self.settings.removal_grace_days <= 0:
            await self.purge_removed_guilds()

    async def guild_returned(self, guild_id: int) -> None:
        """`on_guild_join`: added back within the grace period: nothing is deleted."""
        await self.store.unmark_guild_removed(guild_id)

    async def drop_guild_pending(self, guild_id: int) -> None:
        """What is on its way to the database about the guild, before its rows go: the summaries of its calls
        under way (cancelled, the model stopped; also of calls that already ended: the bot's removal ends its
        call first, and that call's last summary starts then), its queued writes (one running now is waited
        for). Otherwise the call's last facts and summaries would land after the purge."""
        self._ended_recorders = [r for r in self._ended_recorders if r.summarizing]
        for recorder in dict.fromkeys([self.recorders.pop(guild_id, None), *self._ended_recorders]):
            if recorder is not None and recorder.guild_id == guild_id:
                recorder.drop_everything()
        await self.writes.discard_guild(guild_id)

    async def purge_removed_guilds(self, now: float | None = None) -> list[int]:
        removed_before = self._grace_ended(now)
        for guild_id in await self.store.removed_guilds(removed_before):
            await self.drop_guild_pending(guild_id)
        gone = await self.store.purge_removed_guilds(removed_before)
        for guild_id in gone:
            self.guild_store.drop_local(guild_id)
            self._opted_out = {g: u for g, u in self._opted_out.items() if g != guild_id}
            log.info("guild %d: the bot was removed from it; everything kept about it was deleted", guild_id)
        return gone

    # -- a member who left a guild ------------------------------------------------------------------------------
    async def member_left(self, guild_id: int, user_id: int, names: Sequence[str]) -> None:
        """`on_raw_member_remove`: the member's rows in the guild are deleted after REMOVAL_GRACE_DAYS (at once
        when 0). `names`: every name they went by there (for others' rows that carry no member ids)."""
        await self.store.mark_member_left(guild_id, user_id, names)
        if self.settings.removal_grace_days <= 0:
            await self.purge_departed_members()

    async def member_returned(self, guild_id: int, user_id: int) -> None:
        """`on_member_join`: back within the grace period: nothing is deleted."""
        await self.store.unmark_member_left(guild_id, user_id)

    async def purge_departed_members(self, now: float | None = None) -> list[tuple[int, int]]:
        """Erase the members who left a guild more than the grace period before `now`. Returns (guild, user)."""
        gone = []
        for guild_id, user_id, names in await self.store.departed_members(self._grace_ended(now)):
            await self.drop_pending(guild_id, user_id)
            deleted = await self.store.erase_departed_member(guild_id, user_id, names)
            users = self._opted_out.get(guild_id, frozenset())
            if user_id in users:
                self._opted_out = {**self._opted_out, guild_id: users - {user_id}}
            self._names.pop((guild_id, user_id), None)
            self._unsaved_opt_outs.discard((guild_id, user_id))
            gone.append((guild_id, user_id))
            log.info(
                "guild %d: user %d left the server; everything kept about them was deleted (%d memories)",
                guild_id,
                user_id,
                deleted,
            )
        return gone
