"""The /join command run as Discord would call it: the bot joins the loopback channel through its own callback.

Shared by `simulator.scripted`, `simulator.scenario` and `simulator.guilds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any


class ScriptError(RuntimeError):
    """A scripted session could not be set up (the bot did not join, a speaker is not in the cast)."""


class _Response:
    def __init__(self, replies: list[str]) -> None:
        self._replies = replies
        self._done = False

    def is_done(self) -> bool:
        return self._done

    async def send_message(self, content: str, *, ephemeral: bool = False) -> None:
        self._done = True
        self._replies.append(content)

    async def defer(self, *, ephemeral: bool = False, thinking: bool = False) -> None:
        self._done = True


class _Followup:
    def __init__(self, replies: list[str]) -> None:
        self._replies = replies

    async def send(self, content: str, *, ephemeral: bool = False) -> None:
        self._replies.append(content)


class TextChannel:
    """The text channel a command was used in, as far as the bot posts there (the listening notice): every
    message with its send time (monotonic)."""

    def __init__(self, channel_id: int = 1) -> None:
        self.id = channel_id
        self.mention = f"<#{channel_id}>"
        self.messages: list[tuple[float, str]] = []

    async def send(self, content: str, **_kwargs: Any) -> None:
        self.messages.append((time.monotonic(), content))


class JoinInteraction:
    """The parts of `discord.Interaction` the /join handler uses (guild, user, channel, response, followup)."""

    def __init__(self, guild: Any, user: Any, channel: Any = None) -> None:
        self.channel = channel if channel is not None else TextChannel()
        self.guild = guild
        self.guild_id = guild.id
        self.user = user
        self.command = None
        self.replies: list[str] = []
        self.response = _Response(self.replies)
        self.followup = _Followup(self.replies)


async def join_with_command(bot: Any, guild: Any, user_id: int, channel: Any = None) -> Any:
    """Run `/join` for ``user_id`` (who must be in the voice channel) through the voice cog's callback,
    as Discord would; returns the started voice session or raises ScriptError with the bot's reply."""
    cog = bot.get_cog("VoiceCog")
    user = guild.get_member(user_id)
    if cog is None or user is None or user.voice is None:
        raise ScriptError(f"user {user_id} is not in the loopback voice channel (or the voice cog is missing)")
    interaction = JoinInteraction(guild, user, channel)
    await cog.join.callback(cog, interaction)
    session = bot.voice_sessions.get(guild.id)
    if session is None:
        raise ScriptError(f"/join failed: {' | '.join(interaction.replies) or 'no reply'}")
    return session


async def leave_voice(bot: Any, guild: Any) -> None:
    """Stop the guild's voice session and disconnect from the loopback channel (never raises)."""
    await bot.stop_voice_session(guild)
    vc = guild.voice_client
    if vc is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(vc.disconnect(force=True), 15)
