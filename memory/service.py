"""Memory for the whole bot: one service per process, shared by every guild's voice session.

It owns the memory store (rows), the background write queue, the privacy choices (who opted out, per
guild, cached for the receive thread's drop check), one call recorder per live session, and the hourly
retention purge. The prompter cog builds sessions with `wrap_responder` (replies get memories) and
`attach` (the call is recorded); the bot calls `session_closed` when a session ends (the rest of the
call is summarized in the background). When the database is unavailable, recalls return nothing at
once, writes wait in the queue (retried or dropped, counted), and the voice session goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from discord.ext import tasks

from memory.extract import Fact
from memory.recall import Recall
from memory.recorder import CallRecorder, scrub_names
from memory.removal import Removals
from memory.responder import RememberingResponder, accepts_memory
from memory.store import Memory, MemoryStore
from memory.writer import WriteQueue
from storage.errors import StorageError

if TYPE_CHECKING:
    from storage.guild_store import GuildStore
    from storage.db import Database

log = logging.getLogger(__name__)

PURGE_EVERY_S = 3600.0
PRIVACY_RETRY_S = 5.0
CLOSE_DRAIN_S = 15.0


class MemoryService(Removals):
    def __init__(
        self,
        settings: Any,
        db: "Database",
        guild_store: "GuildStore",
        *,
        count_tokens: Callable[[str], int] | None = None,
    ) -> None:
        from brain.prompt import estimate_tokens

        self.settings = settings
        self.db = db
        self.guild_store = guild_store
        self.store = MemoryStore(db)
        self.writes = WriteQueue()
        self.recall_builder = Recall(
            self.store, budget_tokens=settings.memory_prompt_tokens, count_tokens=count_tokens or estimate_tokens
        )
        self.summary_method = settings.memory_summary
        self.summary_interval_s = settings.memory_summary_interval_s
        self.recorders: dict[int, CallRecorder] = {}
        self._ended_recorders: list[CallRecorder] = []
        self.privacy_loaded = False
        self.privacy_retry_s = PRIVACY_RETRY_S
        self._opted_out: dict[int, frozenset[int]] = {}
        self._privacy_changes: dict[int, int] = {}  # guild id -> choices made in this process (see refresh_privacy)
        self._privacy_saving: dict[int, int] = {}  # guild id -> opt-outs applied in memory, not yet saved
        self._unsaved_opt_outs: set[tuple[int, int]] = set()  # (guild, user) whose opt-out the database refused
        self._names: dict[tuple[int, int], list[str]] = {}  # names of members who opted out here (scrubbed from texts)
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._summary_llm: Any = None
        self._purger: tasks.Loop | None = None
        self._purge_idle = asyncio.Event()
        self._purge_idle.set()
        self._purges_started = False

    # -- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.db.healthy:  # read at once when the database answers: /join right after start knows them
            try:
                await self._load_privacy()
            except StorageError:
                pass
        if not self.privacy_loaded:
            self.track(asyncio.create_task(self._load_privacy_until_done(), name="memory-privacy-load"))
        if self.db.healthy:
            await self.purge_now()  # retention and removed servers: at start, then hourly
        self._purger = tasks.loop(seconds=PURGE_EVERY_S)(self._hourly_purge)
        self._purger.start()
        self._purges_started = self.db.healthy  # the loop's first run (at once) is the one just done

    async def close(self) -> None:
        if self._purger is not None:  # a purge under way finishes (cancelled mid-transaction, it leaks a connection)
            try:
                await asyncio.wait_for(self._purge_idle.wait(), CLOSE_DRAIN_S)
            except asyncio.TimeoutError:
                log.warning("memory: the purge did not finish within %.0f s; stopping it", CLOSE_DRAIN_S)
            self._purger.cancel()
            self._purger = None
        for guild_id in list(self.recorders):
            await self.end_call(guild_id)
        pending = [t for t in self._tasks if not t.done() and t.get_name().startswith("memory-summary")]
        if pending:
            await asyncio.wait(pending, timeout=CLOSE_DRAIN_S)
        await self.writes.close(CLOSE_DRAIN_S)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def track(self, task: asyncio.Task) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- privacy ------------------------------------------------------------------------------------
    async def _load_privacy_until_done(self) -> None:
        while not self.privacy_loaded:
            try:
                await self._load_privacy()
            except StorageError as exc:
                log.warning("privacy choices not loaded yet (%s): nobody is heard until the database answers", exc.kind)
                await asyncio.sleep(self.privacy_retry_s)

    async def _load_privacy(self) -> None:
        loaded = await self.store.opted_out()
        for guild_id, users in loaded.items():  # choices made meanwhile (in memory) are kept
            self._opted_out[guild_id] = frozenset(users | set(self._opted_out.get(guild_id, ())))
        self.privacy_loaded = True
        await self.save_unsaved_opt_outs()

    async def refresh_privacy(self, guild_id: int) -> None:
        """Read one guild's opt-outs again (its shard moved here; they may have changed in another process).
        A choice made here while the read was under way wins over what the read found."""
        version = self._privacy_changes.get(guild_id, 0)
        users = (await self.store.opted_out(guild_id)).get(guild_id, set())
        unsaved = {uid for gid, uid in self._unsaved_opt_outs if gid == guild_id}
        if self._privacy_changes.get(guild_id, 0) == version and not self._privacy_saving.get(guild_id):
            self._opted_out = {**self._opted_out, guild_id: frozenset(users | unsaved)}  # merged, never undone
        await self.save_unsaved_opt_outs(guild_id)

    async def save_unsaved_opt_outs(self, guild_id: int | None = None) -> None:
        """Save the opt-outs applied while the database refused them (at a refresh or a load)."""
        for gid, uid in sorted(self._unsaved_opt_outs):
            if guild_id is not None and gid != guild_id:
                continue
            try:
                await self.store.set_opted_out(gid, uid, True, names=self._names.get((gid, uid), ()))
            except StorageError:
                return
            self._unsaved_opt_outs.discard((gid, uid))

    def is_opted_out(self, guild_id: int, user_id: int) -> bool:
        """Thread-safe (the receive thread asks for every packet): a read of an immutable set."""
        return user_id in self._opted_out.get(guild_id, ())

    def privacy_known(self, guild_id: int) -> bool:
        """Whether the guild's privacy choices and memory setting were read from the database (this process
        has read them once: after that, the last known ones and the changes made here hold through outages)."""
        return self.privacy_loaded and self.guild_store.loaded

    def drop_check(self, guild_id: int) -> Callable[[int], bool]:
        """For the receive layer: whether a user's packets are dropped before decoding. Fails closed: until
        the guild's choices are known (the database was down at start) everyone's packets are dropped."""
        return lambda user_id: not self.privacy_known(guild_id) or user_id in self._opted_out.get(guild_id, ())

    def _set_opted_out(self, guild_id: int, user_id: int, opted_out: bool) -> None:
        self._privacy_changes[guild_id] = self._privacy_changes.get(guild_id, 0) + 1
        users = set(self._opted_out.get(guild_id, ()))
        (users.add if opted_out else users.discard)(user_id)
        self._opted_out = {**self._opted_out, guild_id: frozenset(users)}

    async def opt_out(self, guild_id: int, user_id: int, names: Sequence[str]) -> int:
        """Stop listening to the member now (in memory first: applies even if saving fails), forget their
        memories and save the choice. Returns the memories deleted; raises StorageError if not saved."""
        self._set_opted_out(guild_id, user_id, True)
        self._names[(guild_id, user_id)] = list(names)
        await self.drop_pending(guild_id, user_id)
        self._privacy_saving[guild_id] = self._privacy_saving.get(guild_id, 0) + 1
        try:
            deleted = await self.store.set_opted_out(guild_id, user_id, True, names=names)
        except StorageError:
            self._unsaved_opt_outs.add((guild_id, user_id))  # kept through refreshes; saved when it answers
            raise
        finally:  # a refresh that read the database before this write must not undo the choice
            self._privacy_saving[guild_id] -= 1
            self._privacy_changes[guild_id] = self._privacy_changes.get(guild_id, 0) + 1
        self._unsaved_opt_outs.discard((guild_id, user_id))
        return deleted

    async def opt_in(self, guild_id: int, user_id: int) -> None:
        await self.store.set_opted_out(guild_id, user_id, False)
        self._set_opted_out(guild_id, user_id, False)
        self._names.pop((guild_id, user_id), None)

    def scrub(self, guild_id: int, text: str, present: dict[int, str] | None = None) -> str:
        """`text` without the names of members of this guild who opted out (those given when they opted out,
        and the names of `present` members, {user id: name}, who did, e.g. in an earlier run of the bot)."""
        names = [
            n
            for (gid, uid), given in self._names.items()
            if gid == guild_id and self.is_opted_out(gid, uid)
            for n in given
        ]
        names += [name for uid, name in (present or {}).items() if self.is_opted_out(guild_id, uid)]
        return scrub_names(text, names) if names else text

    # -- memory on/off, show, forget (removal after a grace period: `memory.removal`) ------------------------------------------------------------------
    def remembers(self, guild_id: int) -> bool:
        """Memory on for the guild: on for the bot, the setting known (fails closed) and not turned off."""
        return (
            bool(self.settings.memory_enabled)
            and self.guild_store.loaded
            and self.guild_store.get(guild_id).memory_enabled
        )

    def recall_scope(self, guild_id: int) -> str:
        """Whose memories a reply may use here: "present" (every member in the call) or "speaker"."""
        return self.guild_store.get(guild_id).recall

    def may_keep(self, guild_id: int, user_id: int) -> bool:
        """Checked again when a queued write runs: the member did not opt out and memory is on meanwhile."""
        return self.remembers(guild_id) and not self.is_opted_out(guild_id, user_id)

    async def about(self, guild_id: int, user_id: int) -> list[Memory]:
        return await self.store.about(guild_id, user_id)

    async def forget(self, guild_id: int, user_id: int, names: Sequence[str]) -> int:
        """Delete everything about the member here: what is on its way (`drop_pending`), then their rows."""
        await self.drop_pending(guild_id, user_id)
        return await self.store.forget_member(guild_id, user_id, names=names)

    # -- writes ---------------------------------------------------------------------------------------
    def queue_facts(self, guild_id: int, user_id: int, facts: list[Fact]) -> None:
        async def write() -> object:
            if not self.may_keep(guild_id, user_id):
                return 0
            return await self.store.remember_facts(guild_id, user_id, facts)

        self.writes.submit("facts", write, involves=[(guild_id, user_id)])

    def queue_summary(self, guild_id: int, user_id: int, key: str, text: str, *, heard: Iterable[int] = ()) -> None:
        """Queue a member's call summary; `heard`: the other members whose lines it was made from."""
        heard_ids = sorted({user_id, *heard})

        async def write() -> object:
            if not self.may_keep(guild_id, user_id):
                return False
            return await self.store.add_summary(guild_id, user_id, key, text, heard=heard_ids)

        self.writes.submit("call summary", write, involves=[(guild_id, uid) for uid in heard_ids])

    async def _hourly_purge(self) -> None:
        if not self._purges_started:
            await self.purge_now()
        self._purges_started = False

    async def purge_now(self) -> int:
        """Retention, removed servers and members who left (hourly, and at start)."""
        self._purge_idle.clear()
        try:
            return await self._purge()
        finally:
            self._purge_idle.set()

    async def _purge(self) -> int:
        try:
            await self.purge_removed_guilds()
        except StorageError as exc:
            log.warning("removed servers' data not purged this time: %s", exc.kind)
        try:
            await self.purge_departed_members()
        except StorageError as exc:
            log.warning("data of members who left not purged this time: %s", exc.kind)
        days = self.settings.memory_retention_days
        if days <= 0:
            return 0
        try:
            deleted = await self.store.purge(time.time() - days * 86400.0)
        except StorageError as exc:
            log.warning("memory retention purge skipped this time: %s", exc)
            return 0
        if deleted:
            log.info(
                "memory retention: %d memor%s older than %d days deleted", deleted, "y" if deleted == 1 else "ies", days
            )
        return deleted

    # -- recall ---------------------------------------------------------------------------------------
    async def recall(
        self,
        guild_id: int,
        members: Sequence[tuple[int, str]],
        query: str,
        *,
        timeout: float,
        before: float | None = None,
    ) -> str:
        """The memory block for a reply, or "" (memory off, nothing known, database slow or unavailable).
        `before`: the call's start (memories from earlier calls only)."""
        if not members or not self.remembers(guild_id) or not self.db.healthy:
            return ""
        try:
            return await asyncio.wait_for(self.recall_builder.block(guild_id, members, query, before=before), timeout)
        except asyncio.TimeoutError:
            log.debug("guild %s: memory recall took over %.0f ms; replying without it", guild_id, timeout * 1000)
        except StorageError as exc:
            log.debug("guild %s: memory recall failed (%s); replying without it", guild_id, exc)
        return ""

    def recall_from_thread(
        self,
        guild_id: int,
        members: Sequence[tuple[int, str]],
        query: str,
        *,
        timeout: float,
        before: float | None = None,
    ) -> str:
        """`recall` from a worker thread (the prefill runs in one)."""
        if self._loop is None or not members:
            return ""
        future = asyncio.run_coroutine_threadsafe(
            self.recall(guild_id, members, query, timeout=timeout, before=before), self._loop
        )
        try:
            return future.result(timeout + 0.2)
        except Exception as exc:
            future.cancel()
            log.debug("guild %s: memory recall for a prefill gave up (%s)", guild_id, type(exc).__name__)
            return ""

    # -- sessions ---------------------------------------------------------------------------------------
    def wrap_responder(self, responder: Any, guild_id: int) -> Any:
        """The responder a session uses: with memories in its prompts (when it can take them)."""
        if not accepts_memory(responder):
            return responder
        return RememberingResponder(responder, self, guild_id)

    def attach(self, guild_id: int, session: Any, *, llm: Any = None, scheduler: Any = None) -> CallRecorder:
        """Record this session's call (replaces a recorder left from an earlier session of the guild)."""
        if isinstance(session.responder, RememberingResponder):
            room = session.room
            session.responder.members = lambda: [(m.user_id, m.name) for m in room.members.values()]
            session.responder.call_started = time.time()
        provider = (lambda: self._summary_backend(llm)) if self.summary_method == "llm" else None
        recorder = CallRecorder(self, guild_id, session, llm=provider, scheduler=scheduler)
        if guild_id in self.recorders:
            self.keep_ended(self.recorders[guild_id])
        self.recorders[guild_id] = recorder
        recorder.start()
        return recorder

    def _summary_backend(self, reply_llm: Any) -> Any:
        """Blocking (the summary's thread): the LLM for summaries, the reply model or MEMORY_LLM_MODEL's own."""
        model = self.settings.memory_llm_model.strip()
        if not model:
            return reply_llm
        if self._summary_llm is None:
            from brain.llm import make_backend

            self._summary_llm = make_backend(self.settings.replace(llm_model=model))
        return self._summary_llm

    async def end_call(self, guild_id: int) -> None:
        recorder = self.recorders.pop(guild_id, None)
        if recorder is not None:
            self.keep_ended(recorder)  # its last summary runs in the background
            await recorder.finish()

    async def session_closed(self, guild_id: int, session: Any) -> None:
        """`ChorusBot.session_closed_hooks`: the call ended; write what is left of it in the background."""
        recorder = self.recorders.get(guild_id)
        if recorder is not None and recorder.session is session:
            await self.end_call(guild_id)

    def stats(self) -> dict:
        return {
            "writes": self.writes.stats.as_dict(),
            "pending_writes": self.writes.pending,
            "opted_out": {g: len(u) for g, u in self._opted_out.items()},
            "privacy_loaded": self.privacy_loaded,
            "database_healthy": self.db.healthy,
        }


def names_of(member: Any) -> list[str]:
    """Every name a Discord member goes by here (display name, global name, user name)."""
    names: Iterable[str] = (getattr(member, attr, None) or "" for attr in ("display_name", "global_name", "name"))
    return list(dict.fromkeys(n for n in names if n))
