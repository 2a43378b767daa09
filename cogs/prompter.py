"""The prompter cog: builds each guild's `VoiceSession` and tells it who joins and leaves.

It installs itself as `ChorusBot.session_factory`, so `/join` → `start_voice_session` gets a
full session (receive → listen → decide → think → speak). The LLM backend and the model
scheduler are shared by every guild of the process; each session gets its own Responder,
StreamPlayer and Listener. `/captions on|off` mirrors what the bot hears and says into the
current text channel (Manage Server), remembered per guild in the guild store.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Callable, Literal

import discord
from discord import app_commands
from discord.ext import commands

from runtime import executors
from bot.captions import CaptionSink
from runtime.heap import HeapTrimmer, limit_malloc_arenas
from bot.notice import ListeningNotice, speak_notice, spoken_notice
from bot.session_members import OPTED_OUT_NAME
from bot.voice_session import VoiceSession
from cogs.voice import give_notice

if TYPE_CHECKING:
    from bot.client import ChorusBot
    from conversation.persona import Persona

log = logging.getLogger(__name__)

NOTICE_WAIT_POLL_S = 1.0


def humans_in(channel: Any, bot_user_id: int | None) -> list[tuple[int, str]]:
    """(id, display name) of the humans in a voice channel (the bot and other bots left out)."""
    out = []
    for member in getattr(channel, "members", []) or []:
        if member.id == bot_user_id or getattr(member, "bot", False):
            continue
        out.append((member.id, member.display_name))
    return out


def receiver_dropping(make_receiver: Callable[..., Any] | None, drops: Callable[[int], bool]) -> Callable[..., Any]:
    """A receiver factory whose receivers drop the packets of members who opted out, before decoding
    (set before the receiver starts, so no packet of theirs is ever decoded)."""

    def make(voice_client: Any, **kwargs: Any) -> Any:
        if make_receiver is not None:
            receiver = make_receiver(voice_client, **kwargs)
        else:
            from audio.receive import VoiceReceiver

            receiver = VoiceReceiver(voice_client, **kwargs)
        set_drop = getattr(receiver, "set_drop_predicate", None)
        if set_drop is not None:
            set_drop(drops)
        return receiver

    return make


def apply_opt_out(session: Any, user_id: int, opted_out: bool) -> None:
    """A live session: drop (or hear again) the member's audio from the next packet on; on opting out, what
    was heard of them is dropped, not flushed (`VoiceSession.opt_out`)."""
    change = getattr(session, "opt_out" if opted_out else "opt_in", None)
    if change is not None:
        change(user_id)


def caption_sender(channel: discord.abc.Messageable) -> CaptionSink:
    async def send(text: str) -> None:
        await channel.send(text, allowed_mentions=discord.AllowedMentions.none(), silent=True)

    return send


class PrompterCog(commands.Cog):
    def __init__(self, bot: "ChorusBot") -> None:
        self.bot = bot
        self._shared: dict[str, Any] = {}
        self._shared_lock = asyncio.Lock()
        self._warm_ups: set[asyncio.Task] = set()
        self._heap_trimmer: HeapTrimmer | None = None
        if bot.session_factory is None:
            bot.session_factory = self.make_session
        else:
            log.info("a session factory is already set; the prompter cog keeps it")

    async def cog_unload(self) -> None:
        if self.bot.session_factory == self.make_session:
            self.bot.session_factory = None
        if self._heap_trimmer is not None:
            await self._heap_trimmer.stop()

    # --- sessions ---------------------------------------------------------------------------
    async def _shared_parts(self) -> tuple[Any, Any]:
        """(llm backend, model scheduler), created once per process, off the event loop."""
        async with self._shared_lock:
            if "llm" not in self._shared:
                from runtime.scheduler import ModelScheduler
                from brain.llm import make_backend

                settings = self.bot.settings
                limit_malloc_arenas()  # before the models' threads allocate
                self._shared["scheduler"] = ModelScheduler.from_settings(settings)
                self._heap_trimmer = HeapTrimmer(self._shared["scheduler"], settings.heap_trim_interval_s).start()
                self._shared["llm"] = await executors.run("models", make_backend, settings)
            return self._shared["llm"], self._shared["scheduler"]

    async def session_parts(self, guild: discord.Guild) -> dict[str, Any]:
        """The per-session parts (responder, player): real models here; tests may substitute."""
        from audio.playback import StreamPlayer
        from brain.responder import Responder

        llm, scheduler = await self._shared_parts()
        return {
            "responder": Responder.from_settings(self.bot.settings, llm=llm, scheduler=scheduler),
            "player": StreamPlayer(),
        }

    async def make_session(
        self, bot: "ChorusBot", guild: discord.Guild, voice_client: discord.VoiceClient, persona: "Persona"
    ) -> VoiceSession:
        """`ChorusBot.session_factory`: a started VoiceSession for the channel just joined."""
        bot_user_id = bot.user.id if bot.user is not None else None
        parts = await self.session_parts(guild)
        memory = bot.memory
        notice = bot.notices.setdefault(guild.id, ListeningNotice())
        channel = voice_client.channel
        present = humans_in(channel, bot_user_id)
        first_line = spoken_notice(persona.name) if bot.settings.privacy_notice_spoken else None
        if not notice.recent(channel.id):
            # the text could not be posted: the spoken line is the notice (no one is heard without one), said in
            # full before listening starts
            played = await speak_notice(
                voice_client,
                parts["responder"],
                persona,
                spoken_notice(persona.name),
                scheduler=self._shared.get("scheduler"),
                group=guild.id,
            )
            if played > 0 and memory.privacy_known(guild.id):
                notice.given(channel.id, [uid for uid, _ in present], spoken=True)
            first_line = None
        parts["responder"] = memory.wrap_responder(parts["responder"], guild.id)
        drops = memory.drop_check(guild.id)
        parts["make_receiver"] = receiver_dropping(
            parts.get("make_receiver"), lambda user_id: drops(user_id) or not notice.covers(user_id)
        )
        session = VoiceSession(
            settings=bot.settings,
            persona=persona,
            guild_id=guild.id,
            voice_client=voice_client,
            bot_user_id=bot_user_id,
            members=[(uid, OPTED_OUT_NAME if memory.is_opted_out(guild.id, uid) else name) for uid, name in present],
            captions=self._captions_for(guild.id),
            metrics=bot.metrics.for_guild(guild.id) if bot.metrics is not None else None,
            # the session's first line, after the text notice; whoever speaks over it has the floor
            notice=first_line,
            **parts,
        )
        session.opted_out.update(uid for uid, _ in present if memory.is_opted_out(guild.id, uid))
        try:
            await session.start()
        except BaseException:  # a half-started session holds threads (the VAD's): close it, then report
            await session.close()
            raise
        if not notice.covers_anyone():
            session._spawn(self._notice_when_known(guild, session, notice), f"listening-notice-{guild.id}")
        memory.attach(guild.id, session, llm=self._shared.get("llm"), scheduler=self._shared.get("scheduler"))
        self._warm_up(session.responder, persona, guild.id)
        return session

    async def _notice_when_known(self, guild: discord.Guild, session: VoiceSession, notice: ListeningNotice) -> None:
        """The database was down at /join: once the guild's privacy choices are known, give the notice (text,
        else spoken); only then is anyone heard."""
        while not self.bot.memory.privacy_known(guild.id):
            await asyncio.sleep(NOTICE_WAIT_POLL_S)
        channel = getattr(session.voice_client, "channel", None)
        if channel is None:
            return
        if not await give_notice(self.bot, guild, channel, notice):
            persona = session.persona
            played = await speak_notice(
                session.voice_client,
                session.responder,
                persona,
                spoken_notice(persona.name),
                scheduler=self._shared.get("scheduler"),
                group=guild.id,
            )
            if played > 0:
                notice.given(channel.id, [uid for uid, _ in humans_in(channel, session.bot_user_id)], spoken=True)
        log.info("guild %d: privacy choices known; the listening notice was given, listening starts", guild.id)

    async def _notice_for_joiner(self, guild: discord.Guild, channel: Any, user_id: int) -> None:
        """A member joined the bot's channel: covered by a recent notice, else the notice is posted again."""
        notice = self.bot.notices.get(guild.id)
        if notice is None:
            return
        if notice.recent(channel.id):
            notice.cover(user_id)
        elif notice.channel_id == channel.id and not await give_notice(self.bot, guild, channel, notice):
            log.warning(
                "guild %d: the listening notice could not be posted again; a member who joined is not "
                "heard until it is",
                guild.id,
            )

    def _warm_up(self, responder: Any, persona: "Persona", guild_id: int) -> None:
        """Load the voice and put the persona prompt in the LLM cache in the background, so the first
        reply after /join does not pay for evaluating the whole system prompt (seconds on a CPU). It is the
        guild's own background work: its greeting and first reply let it finish (`ModelScheduler`)."""
        warm_up = getattr(responder, "warm_up", None)
        if warm_up is None:
            return

        async def run() -> None:
            try:
                await executors.run("prefill", warm_up, persona, guild_id)  # background LLM work, like a prefill
            except Exception:  # a warm-up failure only costs latency; the reply path reports real errors
                log.warning("warm-up of persona %s failed", getattr(persona, "name", "?"), exc_info=True)

        task = asyncio.create_task(run(), name="persona-warm-up")
        self._warm_ups.add(task)
        task.add_done_callback(self._warm_ups.discard)

    async def warmed_up(self, timeout: float) -> bool:
        """Until the background warm-ups started so far have finished (benchmarks measure a warm bot)."""
        pending = list(self._warm_ups)
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        return not any(not task.done() for task in pending)

    def _captions_for(self, guild_id: int) -> CaptionSink | None:
        channel_id = self.bot.guild_store.get(guild_id).captions_channel_id
        if channel_id is None:
            return None
        channel = self.bot.get_channel(channel_id)
        if channel is None or not hasattr(channel, "send"):
            log.warning("guild %d: captions channel %d is gone; captions off", guild_id, channel_id)
            return None
        return caption_sender(channel)  # type: ignore[arg-type]

    def session_of(self, guild_id: int) -> VoiceSession | None:
        session = self.bot.voice_sessions.get(guild_id)
        return session if isinstance(session, VoiceSession) else None

    # --- presence -------------------------------------------------------------------------------
    @commands.Cog.listener()
    async def on_voice_state_update(
        self, member: discord.Member, before: discord.VoiceState, after: discord.VoiceState
    ) -> None:
        session = self.session_of(member.guild.id)
        if session is None or before.channel == after.channel:
            return  # no session, or a mute/deafen/stream change
        if self.bot.user is not None and member.id == self.bot.user.id:
            if after.channel is not None:  # the bot was moved: new company, no one heard before the notice there
                notice = self.bot.notices.get(member.guild.id)
                if notice is not None:
                    notice.moved(after.channel.id)
                    if not await give_notice(self.bot, member.guild, after.channel, notice):
                        log.warning(
                            "guild %d: moved, and the listening notice could not be posted: no one in the "
                            "new channel is heard until it is (/leave, then /join there)",
                            member.guild.id,
                        )
                session.sync_members(humans_in(after.channel, member.id))
            return
        if member.bot:
            return
        voice_client = member.guild.voice_client or session.voice_client
        channel = getattr(voice_client, "channel", None)
        if channel is None:
            return
        if after.channel is not None and after.channel.id == channel.id:
            session.member_joined(member.id, member.display_name)
            await self._notice_for_joiner(member.guild, channel, member.id)
        elif before.channel is not None and before.channel.id == channel.id:
            session.member_left(member.id)

    # --- /captions ------------------------------------------------------------------------------
    @app_commands.command(name="captions", description="Mirror what I hear and say into this text channel")
    @app_commands.describe(mode="on: post captions in this channel; off: stop")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.checks.has_permissions(manage_guild=True)
    async def captions(self, interaction: discord.Interaction, mode: Literal["on", "off"]) -> None:
        guild = interaction.guild
        assert guild is not None
        channel = interaction.channel
        if mode == "on" and (channel is None or not hasattr(channel, "send")):
            await interaction.response.send_message("I can't post captions here.", ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)  # within Discord's 3 s, before the database
        if mode == "on":
            assert channel is not None
            await self.bot.guild_store.set_captions_channel(guild.id, channel.id)  # StorageError: the error reply
            sink: CaptionSink | None = caption_sender(channel)  # type: ignore[arg-type]
            message = f"Captions on: I'll post what I hear and say in {getattr(channel, 'mention', 'this channel')}."
        else:
            await self.bot.guild_store.set_captions_channel(guild.id, None)
            sink = None
            message = "Captions off."
        session = self.session_of(guild.id)
        if session is not None:
            session.captions = sink
        await interaction.followup.send(message, ephemeral=True)


async def setup(bot: "ChorusBot") -> None:
    await bot.add_cog(PrompterCog(bot))
