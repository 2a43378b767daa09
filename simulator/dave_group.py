"""The bot's MLS group as the loopback voice server runs it, as the DAVE external sender.

After the bot's key package (op 26) the server sends 25, then 27 with Add proposals for the present members; the
bot commits (28); the server welcomes the new members, sends 29 to the bot, waits for its 23 and sends 22. Joins
and leaves run the same way (Add / Remove proposals, the bot commits, members already in the group process the
commit). With ``bot_joins_by_welcome`` a member builds the group and the bot joins through a Welcome (30). An
invalid commit (31) or a failed step rebuilds the group from the bot's fresh key package. `DaveGroup.transition`
downgrades with 21 -> 23 -> 22, or upgrades / re-keys with 24.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from typing import TYPE_CHECKING

from . import dave_external as mls
from .member_dave import LeafTable
from .voice_protocol import (
    DAVE_EXECUTE_TRANSITION,
    DAVE_PREPARE_EPOCH,
    DAVE_PREPARE_TRANSITION,
    MLS_ANNOUNCE_COMMIT_TRANSITION,
    MLS_EXTERNAL_SENDER,
    MLS_PROPOSALS,
    MLS_WELCOME,
    BotSession,
)

if TYPE_CHECKING:
    from .server import LoopbackVoiceServer

log = logging.getLogger(__name__)


class DaveHandshakeError(RuntimeError):
    """The bot did not complete an MLS step (commit, transition ready) in time."""


class DaveGroup:
    """The server's side of the bot's MLS group: who is in it, at which epoch, and the step in progress."""

    MAX_GROUP_RESTARTS = 3  # consecutive failed MLS steps answered with a fresh group (op 24)

    def __init__(self, server: LoopbackVoiceServer) -> None:
        self.server = server
        self.sender = mls.ExternalSender()
        self.group_epoch: int | None = None  # None = no established group
        self.leaves = LeafTable()  # who sits at which leaf of the bot's group (needed for Remove proposals)
        self.errors: list[str] = []  # failed MLS steps (also logged)
        self._members: set[int] = set()
        self._mls_lock = asyncio.Lock()
        self._commit_waiter: asyncio.Future[bytes] | None = None
        self._ready_waiters: dict[int, asyncio.Future[None]] = {}
        self._failures_in_a_row = 0
        self._next_transition = 0

    @property
    def user_ids(self) -> set[int]:
        """Simulated members in the bot's current MLS group."""
        return set(self._members)

    # --- what the bot sends -------------------------------------------------------------------------------------------

    async def on_key_package(self, session: BotSession, key_package: bytes) -> None:
        """op 26: the bot (re)starts its group; answer with our external sender (25) and build the group."""
        session.key_packages += 1
        session.key_package = key_package
        self.reset()
        await self.server.gateway.send_binary(MLS_EXTERNAL_SENDER, self.sender.package())
        await self.server.notify_changed()
        self.sync_soon()

    def on_commit(self, commit_welcome: bytes) -> None:
        """op 28: the bot's commit (and welcome) for the proposals we sent."""
        if self._commit_waiter is not None and not self._commit_waiter.done():
            self._commit_waiter.set_result(commit_welcome)
        else:
            log.warning("unexpected commit from the bot (%d bytes)", len(commit_welcome))

    def on_transition_ready(self, transition_id: int) -> None:
        """op 23: the bot is ready for the transition."""
        fut = self._ready_waiters.get(transition_id)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def bot_gone(self) -> None:
        """The bot's websocket closed: the step waiting on it fails."""
        if self._commit_waiter is not None and not self._commit_waiter.done():
            self._commit_waiter.set_exception(DaveHandshakeError("the bot disconnected"))
        for fut in self._ready_waiters.values():
            if not fut.done():
                fut.set_exception(DaveHandshakeError("the bot disconnected"))

    # --- group management ---------------------------------------------------------------------------------------------

    def settled(self) -> bool:
        """DAVE off, or the bot's group holds exactly the present members and no MLS step is running."""
        bot = self.server.bot
        if bot is None or bot.mode is None:
            return False
        if bot.dave_version == 0:
            return True
        present = {m.user_id for m in self.server.members.values() if m.present}
        if not present:
            return bot.key_packages > 0 and not self._mls_lock.locked()
        return self.group_epoch is not None and self._members == present and not self._mls_lock.locked()

    def reset(self) -> None:
        """Forget the group (a new key package, op 31, a failed step or a new session rebuild it)."""
        self.group_epoch = None
        self._members.clear()
        self.leaves.reset()
        for member in self.server.members.values():
            member.in_group = False

    def _next_transition_id(self) -> int:
        self._next_transition = self._next_transition % 0xFFFF + 1
        return self._next_transition

    def sync_soon(self) -> None:
        self.server.spawn(self.sync_now(), "dave-sync")

    async def sync_now(self) -> None:
        """Bring the bot's MLS group in line with the present members (one MLS step at a time)."""
        async with self._mls_lock:
            try:
                await self._sync()
                self._failures_in_a_row = 0
            except Exception as exc:  # a failed MLS step resets the group; the next key package rebuilds it
                log.warning(
                    "DAVE group sync failed: %s: %s",
                    type(exc).__name__,
                    exc,
                    exc_info=not isinstance(exc, DaveHandshakeError),
                )
                self.errors.append(f"{type(exc).__name__}: {exc}")
                self.reset()
                await self._restart()
        await self.server.notify_changed()

    async def _restart(self) -> None:
        """After a failed step the bot's group and ours may differ: ask for a brand-new group (op 24, epoch 1);
        the bot reinitialises, sends a fresh key package and the group is rebuilt from it."""
        self._failures_in_a_row += 1
        if self._failures_in_a_row > self.MAX_GROUP_RESTARTS:
            log.error("DAVE group failed %d times in a row; not restarting it again", self._failures_in_a_row)
            return
        bot = self.server.bot
        if bot is not None and bot.dave_version > 0 and bot.ws is not None and not bot.ws.closed:
            await self.server.gateway.send_json(DAVE_PREPARE_EPOCH, {"epoch": 1, "protocol_version": bot.dave_version})

    async def _sync(self) -> None:
        bot = self.server.bot
        if bot is None or bot.dave_version == 0 or bot.key_packages == 0 or bot.ws is None or bot.ws.closed:
            return
        group_id = mls.group_id_for_channel(self.server.channel_id)
        present = {uid for uid, m in self.server.members.items() if m.present}
        to_add = sorted(present - self._members)
        to_remove = sorted(self._members - present)
        if not to_add and not to_remove:
            return
        if self.group_epoch is None and self.server.bot_joins_by_welcome and to_add:
            await self._build_welcoming_bot(bot, to_add)
            return
        if self.group_epoch is None:
            epoch, stayers, to_remove = 0, [], []  # the bot's pending group (epoch 0, alone): build it
            self.leaves.reset(bot.user_id)
        else:
            epoch = self.group_epoch
            stayers = sorted(self._members & present)
        messages = []
        recognized = present | {bot.user_id}
        for uid in to_remove:
            messages.append(self.sender.remove_proposal(group_id, epoch, self.leaves.index(uid)))
            self.server.members[uid].in_group = False
        for uid in to_add:
            kp = self.server.members[uid]._new_dave_session(
                bot.dave_version, self.server.channel_id, self.sender.package()
            )
            messages.append(self.sender.add_proposal(group_id, epoch, kp))
        payload = mls.proposals_payload(messages)
        for uid in stayers:  # members already in the group store the proposals (the bot's commit references
            self.server.members[uid].group().process_proposals(payload, recognized)  # them; their own is not used)
        loop = asyncio.get_running_loop()
        self._commit_waiter = loop.create_future()
        await self.server.gateway.send_binary(MLS_PROPOSALS, payload)
        try:
            commit_welcome = await asyncio.wait_for(self._commit_waiter, self.server.step_timeout)
        except TimeoutError:
            raise DaveHandshakeError("the bot sent no commit for our proposals") from None
        finally:
            self._commit_waiter = None
        info, commit, welcome = mls.split_commit_welcome(commit_welcome)
        if info.epoch != epoch:
            raise DaveHandshakeError(f"commit for epoch {info.epoch}, expected {epoch}")
        if to_add and welcome is None:
            raise DaveHandshakeError("commit adds members but carries no welcome")
        tid = self._next_transition_id()
        ready = loop.create_future()
        self._ready_waiters[tid] = ready
        try:
            for uid in stayers:
                self.server.members[uid].group().process_commit(commit)
            for uid in to_add:
                assert welcome is not None  # checked above: a commit that adds members carries one
                self.server.members[uid].group().process_welcome(welcome, recognized)  # what op 30 carries
                self.server.members[uid].in_group = True
            await self.server.gateway.send_binary(MLS_ANNOUNCE_COMMIT_TRANSITION, struct.pack(">H", tid) + commit)
            await asyncio.wait_for(ready, self.server.step_timeout)
        except TimeoutError:
            raise DaveHandshakeError(f"the bot did not answer transition {tid} with op 23") from None
        finally:
            self._ready_waiters.pop(tid, None)
        self.group_epoch = epoch + 1
        self._members = (self._members - set(to_remove)) | set(to_add)
        self.leaves.apply(to_remove, to_add)
        await self._execute_transition(bot, tid)
        log.info(
            "DAVE group epoch %s: members %s (added %s, removed %s)",
            self.group_epoch,
            sorted(self._members),
            to_add,
            to_remove,
        )

    async def _build_welcoming_bot(self, bot: BotSession, present: list[int]) -> None:
        """A member creates the group, committing Adds of the other members and of the bot; the bot gets op 30."""
        group_id = mls.group_id_for_channel(self.server.channel_id)
        package = self.sender.package()
        creator, *others = (self.server.members[uid] for uid in present)
        creator._new_dave_session(bot.dave_version, self.server.channel_id, package)
        messages = [
            self.sender.add_proposal(
                group_id, 0, m._new_dave_session(bot.dave_version, self.server.channel_id, package)
            )
            for m in others
        ]
        messages.append(self.sender.add_proposal(group_id, 0, bot.key_package))
        recognized = set(present) | {bot.user_id}
        result = creator.group().process_proposals(mls.proposals_payload(messages), recognized)
        if result is None or result[1] is None:
            raise DaveHandshakeError("the creating member produced no commit/welcome")
        commit, welcome = result
        assert welcome is not None  # checked above
        creator.group().process_commit(commit)
        for member in others:
            member.group().process_welcome(welcome, recognized)
        for member in (creator, *others):
            member.in_group = True
        tid = self._next_transition_id()
        ready = asyncio.get_running_loop().create_future()
        self._ready_waiters[tid] = ready
        try:
            await self.server.gateway.send_binary(MLS_WELCOME, struct.pack(">H", tid) + welcome)
            bot.welcomes += 1
            await asyncio.wait_for(ready, self.server.step_timeout)
        except TimeoutError:
            raise DaveHandshakeError(f"the bot did not answer welcome transition {tid} with op 23") from None
        finally:
            self._ready_waiters.pop(tid, None)
        self.group_epoch = 1  # the creator's commit made epoch 1
        self._members = set(present)
        self.leaves.reset(creator.user_id, *(m.user_id for m in others), bot.user_id)  # the commit's add order
        await self._execute_transition(bot, tid)
        log.info(
            "DAVE group epoch %s created by member %s; the bot joined by welcome", self.group_epoch, creator.user_id
        )

    async def _execute_transition(self, bot: BotSession, tid: int) -> None:
        """op 22 to everyone in the call: clients that switch their sending key only now (libdave) do so."""
        await self.server.gateway.send_json(DAVE_EXECUTE_TRANSITION, {"transition_id": tid})
        bot.transitions_executed.append(tid)
        for uid in self._members:
            member = self.server.members[uid]
            if member.present and member.dave is not None:
                member.dave.execute_transition()

    # --- faults -------------------------------------------------------------------------------------------------------

    async def transition(self, version: int, *, timeout: float | None = None) -> int:
        """Change the call's DAVE protocol version mid-stream, or re-key (``version`` == the current one).

        0 from 1: op 21 (prepare, version 0) -> the bot's op 23 -> op 22 (execute); members send plain Opus.
        1 (from 0, or re-key at 1): op 24 (prepare epoch 1) -> the bot reinitialises and sends a key package ->
        a new group is built with every present member (25, 27, 28, 29, 23, 22). Returns the transition id used
        (0 for the epoch path). Returns when the change is complete.
        """
        bot = self.server.bot
        if bot is None or bot.ws is None or bot.mode is None:
            raise RuntimeError("no bot connected")
        timeout = timeout or self.server.step_timeout
        if version == 0:
            if bot.dave_version == 0:
                return 0
            async with self._mls_lock:
                tid = self._next_transition_id()
                ready = asyncio.get_running_loop().create_future()
                self._ready_waiters[tid] = ready
                try:
                    await self.server.gateway.send_json(
                        DAVE_PREPARE_TRANSITION, {"transition_id": tid, "protocol_version": 0}
                    )
                    await asyncio.wait_for(ready, timeout)
                finally:
                    self._ready_waiters.pop(tid, None)
                bot.dave_version = 0
                self.group_epoch = None  # members keep their sessions: frames still in flight decrypt
                self._members.clear()
                await self.server.gateway.send_json(DAVE_EXECUTE_TRANSITION, {"transition_id": tid})
                bot.transitions_executed.append(tid)
            await self.server.notify_changed()
            return tid
        if version > bot.max_dave_version:
            raise ValueError(f"the bot supports DAVE up to version {bot.max_dave_version}")
        if bot.key_packages == 0:
            # discord.py 2.7.1 handles ops 21/22/24 only once it has a DaveSession, i.e. when the session began
            # with DAVE: a call that started unencrypted cannot be upgraded (reconnect with DAVE on instead).
            raise RuntimeError("the bot's voice session started without DAVE; discord.py ignores op 24 then")
        before = bot.key_packages
        bot.dave_version = version
        self.reset()
        await self.server.gateway.send_json(DAVE_PREPARE_EPOCH, {"epoch": 1, "protocol_version": version})
        await self.server.wait_for(lambda: bot.key_packages > before, timeout, "the bot's new key package")
        await self.server.wait_dave_settled(timeout)
        return 0

    async def send_invalid_commit(self, timeout: float | None = None) -> int:
        """Announce a bogus commit (op 29); the bot must answer op 31 and a fresh key package, and the group is
        rebuilt. Returns the transition id of the bogus commit once the group has settled again."""
        bot = self.server.bot
        if bot is None or bot.ws is None:
            raise RuntimeError("no bot connected")
        timeout = timeout or self.server.step_timeout
        before_invalid, before_kp = len(bot.invalid_commits), bot.key_packages
        async with self._mls_lock:
            tid = self._next_transition_id()
            await self.server.gateway.send_binary(
                MLS_ANNOUNCE_COMMIT_TRANSITION, struct.pack(">H", tid) + os.urandom(64)
            )
        await self.server.wait_for(
            lambda: len(bot.invalid_commits) > before_invalid and bot.key_packages > before_kp,
            timeout,
            "op 31 and a new key package",
        )
        await self.server.wait_dave_settled(timeout)
        return tid
