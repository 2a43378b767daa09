"""Who is in the voice session, and who opted out: the room's members kept in step with the channel, and an
opt-out that drops, never flushes, what was heard of the member (`VoiceSession.opt_out`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from bot.captions import CaptionQueue
    from bot.line_runner import LineRunner
    from bot.prefill import ReplyPrefill
    from conversation.clock import Clock
    from conversation.room import Room

log = logging.getLogger(__name__)

OPTED_OUT_NAME = "a member who opted out"


class SessionMembers:
    """Mixed into `VoiceSession` (bot.voice_session), which holds these attributes."""

    guild_id: int
    bot_user_id: int | None
    voice_client: Any
    room: "Room"
    clock: "Clock"
    listener: Any
    receiver: Any
    prefill: "ReplyPrefill"
    caption_queue: "CaptionQueue"
    lines: "LineRunner"
    opted_out: set[int]

    def _poke(self) -> None:
        raise NotImplementedError

    def _spawn(self, coro: Any, name: str) -> None:
        raise NotImplementedError

    def member_joined(self, user_id: int, name: str) -> None:
        if user_id == self.bot_user_id:
            return
        self.room.member_joined(user_id, self._name(user_id, name), self.clock.now())
        self._poke()

    def member_left(self, user_id: int) -> None:
        self.prefill.stale("the member left", member=user_id)
        if self.room.member_left(user_id, self.clock.now()) is not None and self.listener is not None:
            self.listener.forget(user_id)
        self._poke()

    def sync_members(self, members: Iterable[tuple[int, str]]) -> None:
        """Make the room's members exactly `members` (after the bot moved to another channel)."""
        wanted = {uid: self._name(uid, name) for uid, name in members if uid != self.bot_user_id}
        for uid in [uid for uid in self.room.members if uid not in wanted]:
            self.member_left(uid)
        for uid, name in wanted.items():
            if uid in self.room.members:
                self.room.rename(uid, name)
            else:
                self.room.member_joined(uid, name, self.clock.now(), initial=True)
        self._poke()

    def _receiver_member_left(self, user_id: int) -> None:
        # The voice gateway says the member's stream is gone (op 13); the guild's voice state
        # update (from the cog) is the authority on presence, so only the listener forgets.
        if self.listener is not None:
            self.listener.forget(user_id)

    # --- privacy ---------------------------------------------------------------------------------
    def opt_out(self, user_id: int) -> None:
        """The member opted out: from the next packet on nothing of theirs is decoded, and what was heard of
        them is dropped, not flushed: buffered audio, pending transcripts, history lines (and the bot's
        answers to them), captions not posted yet, a reply being prepared for them. From now on the room
        calls them OPTED_OUT_NAME (prompts carry no name of theirs)."""
        self.opted_out.add(user_id)
        receiver_opt_out = getattr(self.receiver, "opt_out", None)
        if receiver_opt_out is not None:
            receiver_opt_out(user_id)
        drop = getattr(self.listener, "drop", None)
        if drop is not None:
            drop(user_id)
        turn = self.room.turn
        answering = (
            turn is not None
            and turn.reply_to_seq is not None
            and any(ln.seq == turn.reply_to_seq and ln.user_id == user_id for ln in self.room.history)
        )
        removed = self.room.forget_words(user_id, OPTED_OUT_NAME)
        captions = self.caption_queue.drop_member(user_id)
        self.prefill.stale("a member opted out", member=user_id)
        if answering:
            self._spawn(self.lines.cancel("the member it answered opted out", discard=True), "opt-out-cancel")
        log.info(
            "guild %s: a member opted out: %d line(s) and %d caption(s) of theirs dropped%s",
            self.guild_id,
            removed,
            captions,
            ", the reply to them cancelled" if answering else "",
        )
        self._poke()

    def opt_in(self, user_id: int) -> None:
        """The member opted in again: their new speech is heard (nothing dropped comes back)."""
        self.opted_out.discard(user_id)
        receiver_opt_in = getattr(self.receiver, "opt_in", None)
        if receiver_opt_in is not None:
            receiver_opt_in(user_id)
        undrop = getattr(self.listener, "undrop", None)
        if undrop is not None:
            undrop(user_id)
        self.room.rename(user_id, self._discord_name(user_id))

    def _name(self, user_id: int, name: str) -> str:
        return OPTED_OUT_NAME if user_id in self.opted_out else name

    def _discord_name(self, user_id: int) -> str:
        guild = getattr(getattr(self.voice_client, "channel", None), "guild", None)
        member = guild.get_member(user_id) if guild is not None else None
        return member.display_name if member is not None else f"member {user_id}"
