"""`/join` and `/leave`: connect the bot to the caller's voice channel and start (or stop) its session."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, cast

import discord
from discord import app_commands
from discord.ext import commands

from audio.receive import ListeningVoiceClient
from bot.notice import ListeningNotice, notice_text, post_to

if TYPE_CHECKING:
    from bot.client import ChorusBot

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 25.0
RECONNECT_MARGIN_S = 35.0  # beyond the connect timeout (audio.voice_connection reconnects within it), then close
RECONNECT_POLL_S = 0.1
DAVE_REQUIRED_CLOSE_CODE = 4017
# Close codes that no handshake retry can fix: give up at once instead of retrying until the timeout.
HOPELESS_CLOSE_CODES = frozenset({DAVE_REQUIRED_CLOSE_CODE})

DAVE_EXPLANATION = (
    "Discord closed the voice connection with code 4017: end-to-end voice encryption (DAVE) is required. "
    'The bot needs discord.py 2.7.1 or newer with the `davey` package (`pip install "discord.py[voice]"`).'
)


def _voice_problem(channel: discord.abc.GuildChannel, me: discord.Member) -> str | None:
    """Why the bot cannot join `channel`, or None."""
    perms = channel.permissions_for(me)
    missing = [
        label
        for label, ok in (("View Channel", perms.view_channel), ("Connect", perms.connect), ("Speak", perms.speak))
        if not ok
    ]
    if missing:
        return (
            f"I'm missing the {' and '.join(missing)} permission{'s' if len(missing) > 1 else ''} in {channel.mention}."
        )
    limit = getattr(channel, "user_limit", 0)
    if limit and len(getattr(channel, "members", [])) >= limit and not perms.move_members:
        return f"{channel.mention} is full ({limit} members)."
    return None


def explain_connect_error(exc: BaseException) -> str:
    """A user-facing line for a failed voice connection."""
    if isinstance(exc, discord.ConnectionClosed):
        if exc.code == DAVE_REQUIRED_CLOSE_CODE:
            return DAVE_EXPLANATION
        return f"Discord closed the voice connection (close code {exc.code}). Try /join again in a moment."
    if isinstance(exc, asyncio.TimeoutError):
        return (
            "Connecting to voice timed out. Discord's voice server may be slow or unreachable from the bot "
            "(a firewall blocking UDP, for example); the close codes are in the bot's log. Try /join again."
        )
    if isinstance(exc, discord.opus.OpusNotLoaded):
        return "The Opus library is not loaded on the bot's machine (install libopus0)."
    if isinstance(exc, discord.ClientException):
        return f"Couldn't join: {exc}"
    if isinstance(exc, RuntimeError) and "davey" in str(exc):
        return DAVE_EXPLANATION
    return f"Couldn't join voice ({type(exc).__name__}). The details are in the bot's log."


def listening_notice_text(bot: "ChorusBot", guild_id: int, channel: Any) -> str:
    """The notice for `channel`, saying what this guild's settings mean (memory, retention, captions)."""
    return notice_text(
        bot.persona_for(guild_id).name,
        getattr(channel, "mention", "this channel"),
        memory_on=bot.memory.remembers(guild_id),
        retention_days=bot.settings.memory_retention_days,
        captions_on=bot.guild_store.get(guild_id).captions_channel_id is not None,
        known=bot.memory.privacy_known(guild_id),
        recall=bot.guild_store.get(guild_id).recall,
    )


async def give_notice(bot: "ChorusBot", guild: Any, channel: Any, notice: ListeningNotice) -> bool:
    """Post the listening notice for voice `channel` now (covering the members there). While the guild's
    privacy choices are unknown it posts why the bot is not listening yet instead, and covers no one."""
    if not bot.memory.privacy_known(guild.id):
        await post_to(notice.text_channel, listening_notice_text(bot, guild.id, channel), guild_id=guild.id)
        return False
    own = bot.user.id if bot.user is not None else None
    members = [m.id for m in getattr(channel, "members", []) or [] if m.id != own]
    return await notice.post(listening_notice_text(bot, guild.id, channel), channel.id, members, guild_id=guild.id)


class _HandshakeCloseWatch(logging.Handler):
    """Sees the voice close codes discord.py logs while it retries a failed handshake.

    With `reconnect=True` discord.py retries a handshake that the voice server closed (and logs
    the ConnectionClosed) instead of raising it, so a 4017 would only surface as a timeout.
    The watch is attached to discord.py's voice logger for the duration of one connect.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(logging.ERROR)
        self._loop = loop
        self.codes: list[int] = []
        self.hopeless = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, discord.ConnectionClosed):
            self.codes.append(exc.code)
            if exc.code in HOPELESS_CLOSE_CODES:
                self._loop.call_soon_threadsafe(self.hopeless.set)


async def connect_voice(
    channel: discord.VoiceChannel | discord.StageChannel, *, timeout: float = CONNECT_TIMEOUT_S
) -> discord.VoiceClient:
    """`channel.connect` (reconnecting, not deafened), but a hopeless close code (4017) raises
    `discord.ConnectionClosed` at once instead of a timeout after pointless retries."""
    watch = _HandshakeCloseWatch(asyncio.get_running_loop())
    voice_log = logging.getLogger("discord.voice_state")
    voice_log.addHandler(watch)
    connecting = asyncio.ensure_future(
        channel.connect(cls=ListeningVoiceClient, self_deaf=False, timeout=timeout, reconnect=True)
    )
    hopeless = asyncio.ensure_future(watch.hopeless.wait())
    try:
        await asyncio.wait({connecting, hopeless}, return_when=asyncio.FIRST_COMPLETED)
        if connecting.done():
            return connecting.result()
        connecting.cancel()
        with contextlib.suppress(BaseException):
            await connecting
        raise discord.ConnectionClosed(None, shard_id=None, code=watch.codes[-1])  # type: ignore[arg-type]
    finally:
        hopeless.cancel()
        if not connecting.done():  # we were cancelled ourselves
            connecting.cancel()
        voice_log.removeHandler(watch)


class VoiceCog(commands.Cog):
    def __init__(self, bot: "ChorusBot") -> None:
        self.bot = bot
        self.connect_timeout_s = CONNECT_TIMEOUT_S
        self._reconnect_watches: dict[int, asyncio.Task] = {}

    async def cog_unload(self) -> None:
        for task in list(self._reconnect_watches.values()):
            task.cancel()

    @app_commands.command(name="join", description="Join your voice channel and start talking")
    @app_commands.guild_only()
    async def join(self, interaction: discord.Interaction) -> None:
        guild = interaction.guild
        member = interaction.user
        assert guild is not None  # guild_only
        voice_state = getattr(member, "voice", None)
        channel = voice_state.channel if voice_state is not None else None
        if channel is None:
            await interaction.response.send_message("Join a voice channel first, then use /join.", ephemeral=True)
            return
        current = cast("discord.VoiceClient | None", guild.voice_client)  # chorus connects VoiceClients only
        if current is not None and current.channel is not None:
            if current.channel.id == channel.id:
                await interaction.response.send_message(f"I'm already in {channel.mention}.", ephemeral=True)
            else:
                await interaction.response.send_message(
                    f"I'm already connected to {current.channel.mention}. Use /leave there first.", ephemeral=True
                )
            return
        problem = _voice_problem(channel, guild.me)
        if problem is not None:
            await interaction.response.send_message(problem, ephemeral=True)
            return
        if not discord.voice_client.has_dave:
            await interaction.response.send_message(DAVE_EXPLANATION, ephemeral=True)
            return

        await interaction.response.defer(ephemeral=True, thinking=True)  # joining takes seconds
        try:
            voice_client = await connect_voice(channel, timeout=self.connect_timeout_s)
        except (asyncio.TimeoutError, discord.ClientException, RuntimeError) as exc:
            log.warning("guild %d: joining voice channel %d failed: %r", guild.id, channel.id, exc)
            stale = guild.voice_client  # never leave a half-made connection registered
            if stale is not None:
                try:
                    await stale.disconnect(force=True)
                except Exception:
                    log.debug("ignoring error while dropping a failed voice connection", exc_info=True)
            await interaction.followup.send(explain_connect_error(exc), ephemeral=True)
            return

        # the notice before anyone is heard: the session's receiver drops every packet it does not cover
        notice = ListeningNotice(getattr(interaction, "channel", None))
        self.bot.notices[guild.id] = notice
        await give_notice(self.bot, guild, channel, notice)
        try:
            await self.bot.start_voice_session(guild, voice_client)
        except Exception as exc:
            log.exception("guild %d: voice session failed to start", guild.id)
            await voice_client.disconnect(force=True)
            await interaction.followup.send(
                f"I connected, but the voice session failed to start ({type(exc).__name__}). The details are in the bot's log.",
                ephemeral=True,
            )
            return
        persona = self.bot.persona_for(guild.id)
        reply = f"{persona.name} joined {channel.mention}."
        if not self.bot.memory.privacy_known(guild.id):
            reply += (
                " I'm not listening yet: my database is unavailable, so I don't know who opted out. "
                "I start listening once I do."
            )
        elif not notice.covers_anyone():
            reply += " I couldn't post or say the listening notice, so I'm not listening."
        await interaction.followup.send(
            reply if notice.posts else f"{reply}\n{listening_notice_text(self.bot, guild.id, channel)}", ephemeral=True
        )

    @app_commands.command(name="leave", description="Leave the voice channel")
    @app_commands.guild_only()
    async def leave(self, interaction: discord.Interaction) -> None:
        guild = interaction.guild
        assert guild is not None
        voice_client = guild.voice_client
        if voice_client is None and guild.id not in self.bot.voice_sessions:
            await interaction.response.send_message("I'm not in a voice channel.", ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self.bot.stop_voice_session(guild)
        if voice_client is not None:
            try:
                await voice_client.disconnect(force=True)
            except Exception:
                log.exception("guild %d: error while disconnecting from voice", guild.id)
        await interaction.followup.send("Left the voice channel. Bye for now!", ephemeral=True)

    @commands.Cog.listener()
    async def on_voice_state_update(
        self, member: discord.Member, before: discord.VoiceState, after: discord.VoiceState
    ) -> None:
        """The bot was disconnected (kicked, channel deleted): close its session too.

        discord.py also leaves and rejoins the channel when it reconnects after the voice server closed
        the connection (e.g. 4006): the "left" update then arrives while its voice client is registered
        but not connected. That session is kept if the reconnect completes, else closed.
        """
        if self.bot.user is None or member.id != self.bot.user.id:
            return
        guild = member.guild
        if after.channel is None and guild.id in self.bot.voice_sessions:
            voice_client = cast("discord.VoiceClient | None", guild.voice_client)
            if voice_client is not None and not voice_client.is_connected():
                if guild.id not in self._reconnect_watches:
                    task = asyncio.create_task(
                        self._keep_session_if_reconnected(guild, voice_client), name=f"voice-reconnect-watch-{guild.id}"
                    )
                    self._reconnect_watches[guild.id] = task
                    task.add_done_callback(lambda _t: self._reconnect_watches.pop(guild.id, None))
                return
            log.info("guild %d: bot left voice (disconnected); stopping the session", guild.id)
            await self.bot.stop_voice_session(guild)

    async def _keep_session_if_reconnected(self, guild: discord.Guild, voice_client: discord.VoiceProtocol) -> None:
        """Wait for discord.py's reconnect (its connect timeout, plus a margin). Keep the session when the
        voice client comes back connected; close it (and drop the voice client) when discord.py gives up
        or the reconnect stalls past the deadline. A /leave or a new /join in between ends the watch."""
        session = self.bot.voice_sessions.get(guild.id)
        connect_timeout = getattr(getattr(voice_client, "_connection", None), "timeout", self.connect_timeout_s)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(connect_timeout) + RECONNECT_MARGIN_S
        log.info(
            "guild %d: voice connection dropped; waiting up to %.0f s for discord.py to reconnect",
            guild.id,
            deadline - loop.time(),
        )
        while True:
            if self.bot.voice_sessions.get(guild.id) is not session:
                return  # /leave or /join took over
            current = cast("discord.VoiceClient | None", guild.voice_client)
            if current is not voice_client:
                reason = "the voice client is gone"
                break
            me = guild.me
            if current.is_connected() and me is not None and me.voice is not None and me.voice.channel is not None:
                log.info("guild %d: voice reconnected; the session goes on", guild.id)
                return
            if loop.time() > deadline:
                reason = "the voice reconnect did not complete"
                break
            await asyncio.sleep(RECONNECT_POLL_S)
        log.info("guild %d: %s; stopping the session", guild.id, reason)
        await self.bot.stop_voice_session(guild)
        stale = guild.voice_client
        if stale is not None:
            try:
                await stale.disconnect(force=True)
            except Exception:
                log.debug("ignoring error while dropping a stalled voice connection", exc_info=True)


async def setup(bot: "ChorusBot") -> None:
    await bot.add_cog(VoiceCog(bot))
