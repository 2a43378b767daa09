"""The Discord client: `ChorusBot` holds settings, personas, per-guild state and voice sessions.

Slash commands live in cogs (`cogs/voice.py`, `cogs/persona.py`, and `cogs/prompter.py` when
present). Commands are synced only as a deliberate step (`python -m bot --sync`): guild sync
to `CHORUS_DEV_GUILD_IDS` is instant, global sync can take up to an hour.

Voice sessions are built by others: `/join` connects, then calls `start_voice_session`, which
calls `session_factory(bot, guild, voice_client, persona)` when one is set. A session object
may offer `async close()` (called on leave) and `set_persona(persona)` (sync or async, called
when `/persona set` or `/persona reload` changes the guild's persona).
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import logging
from typing import Any, Awaitable, Callable, Iterable

import discord
from discord import app_commands
from discord.ext import commands

from runtime import executors
from storage.guild_store import GuildStore
from runtime.metrics import Metrics
from bot.notice import ListeningNotice
from runtime.settings import Settings
from conversation.persona import Persona, fallback_persona
from conversation.persona_library import PersonaLibrary
from memory.service import MemoryService
from storage.db import Database
from storage.errors import StorageError

log = logging.getLogger(__name__)

COG_EXTENSIONS: tuple[str, ...] = ("cogs.voice", "cogs.persona", "cogs.memory")
# Loaded when the module exists (built by other parts of the team).
OPTIONAL_COG_EXTENSIONS: tuple[str, ...] = ("cogs.prompter",)

SessionFactory = Callable[["ChorusBot", discord.Guild, discord.VoiceClient, Persona], Awaitable[object]]
SessionHook = Callable[[int, object], Awaitable[None]]
STORAGE_RETRY_S = (5.0, 15.0, 30.0, 60.0)  # waits between attempts to open an unavailable database (then 60 s)


def chorus_intents(members: bool = False) -> discord.Intents:
    """Guilds, voice states; `members` (FORGET_MEMBERS_WHO_LEAVE): the privileged intent telling who leaves."""
    return discord.Intents(guilds=True, voice_states=True, members=members)  # every other intent off


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class ChorusBot(commands.Bot):
    def __init__(
        self,
        settings: Settings,
        *,
        personas: PersonaLibrary | None = None,
        guild_store: GuildStore | None = None,
        database: Database | None = None,
        session_factory: SessionFactory | None = None,
        sync_on_start: bool = False,
        extensions: tuple[str, ...] = COG_EXTENSIONS,
        optional_extensions: tuple[str, ...] = OPTIONAL_COG_EXTENSIONS,
        metrics: Metrics | None = None,
        **client_options: Any,
    ) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            help_command=None,
            intents=chorus_intents(settings.forget_members_who_leave),
            **client_options,
        )
        self.settings = settings
        self._personas_given = personas is not None
        self.personas: PersonaLibrary = (
            personas if personas is not None else PersonaLibrary(folder=settings.personas_dir)
        )
        if guild_store is not None:
            self.storage = guild_store.db
        else:
            self.storage = database if database is not None else Database.from_settings(settings)
        self.guild_store = guild_store if guild_store is not None else GuildStore.from_settings(settings, self.storage)
        self._storage_retry: asyncio.Task | None = None
        # Called with (guild id, session) after a voice session closed (memory writes its end-of-call notes).
        self.memory = MemoryService(settings, self.storage, self.guild_store)
        self.session_closed_hooks: list[SessionHook] = [self.memory.session_closed]
        self.voice_sessions: dict[int, object] = {}
        self.notices: dict[int, ListeningNotice] = {}  # guild id -> the listening notice of its voice channel
        self.session_factory: SessionFactory | None = session_factory
        self.metrics = metrics  # None: metrics off (CHORUS_METRICS_PORT=0)
        self._sync_on_start = sync_on_start
        self._extensions = extensions
        self._optional_extensions = optional_extensions
        self.tree.on_error = self.on_app_command_error  # type: ignore[method-assign]

    # -- startup ---------------------------------------------------------------------
    async def setup_hook(self) -> None:
        await self.open_storage()
        await self.memory.start()
        if not self._personas_given:
            self.personas = await executors.run("io", PersonaLibrary.load, self.settings.personas_dir)
        if self.settings.default_persona not in self.personas:
            log.warning(
                "default persona %r is not in %s (have: %s)",
                self.settings.default_persona,
                self.settings.personas_dir,
                ", ".join(self.personas.names()) or "none",
            )
        for name in self._extensions:
            await self.load_extension(name)
        for name in self._optional_extensions:
            if importlib.util.find_spec(name) is not None:
                await self.load_extension(name)
        if self._sync_on_start:
            await self.sync_commands()

    async def open_storage(self) -> bool:
        """Open the database and load the guild settings. When it is unavailable the bot runs with default
        guild settings and without memory, and tries again in the background (one log line per outage)."""
        try:
            await self.storage.open()
            await self.guild_store.load()
        except StorageError as exc:
            if self._storage_retry is None:
                log.error(
                    "database unavailable at start (%s): running with default server settings and without "
                    "memory until it is back; retrying in the background",
                    exc,
                )
                self._storage_retry = asyncio.create_task(self._retry_storage(), name="storage-retry")
            return False
        return True

    async def _retry_storage(self) -> None:
        attempt = 0
        while True:
            await asyncio.sleep(STORAGE_RETRY_S[min(attempt, len(STORAGE_RETRY_S) - 1)])
            attempt += 1
            try:
                await self.storage.open()
                await self.guild_store.load()
            except StorageError:
                continue
            log.info(
                "database available after %d retr%s: server settings loaded", attempt, "y" if attempt == 1 else "ies"
            )
            self._storage_retry = None
            return

    async def sync_commands(self) -> dict[str, int]:
        """Publish the slash commands: to each dev guild when configured (instant), else globally.

        Returns {scope: number of commands synced}, scope being a guild id or "global".
        """
        synced: dict[str, int] = {}
        if self.settings.dev_guild_ids:
            for guild_id in self.settings.dev_guild_ids:
                guild = discord.Object(id=guild_id)
                self.tree.copy_global_to(guild=guild)
                commands_ = await self.tree.sync(guild=guild)
                synced[str(guild_id)] = len(commands_)
                log.info("synced %d slash command(s) to guild %d", len(commands_), guild_id)
        else:
            commands_ = await self.tree.sync()
            synced["global"] = len(commands_)
            log.info("synced %d global slash command(s); Discord may take up to an hour to show them", len(commands_))
        return synced

    async def on_ready(self) -> None:
        log.info("logged in as %s (id %s) in %d guild(s)", self.user, getattr(self.user, "id", "?"), len(self.guilds))

    async def on_guild_available(self, guild: discord.Guild) -> None:
        """A guild came to this process (start, reconnect, or its shard moved here from another process): its
        state is read again from the shared database, which another process may have changed meanwhile."""
        await self.refresh_guild(guild.id)

    async def on_guild_join(self, guild: discord.Guild) -> None:
        try:
            await self.memory.guild_returned(guild.id)  # back within the grace period: nothing is deleted
        except StorageError as exc:
            log.warning("guild %d: rejoined, but its removal mark could not be cleared (%s)", guild.id, exc.kind)
        await self.refresh_guild(guild.id)

    async def on_guild_remove(self, guild: discord.Guild) -> None:
        """The bot was removed from the server: what it keeps about it is deleted after REMOVAL_GRACE_DAYS."""
        await self.stop_voice_session(guild)
        self.notices.pop(guild.id, None)
        if self.metrics is not None:  # its metric series go now (histograms and counters too)
            self.metrics.remove_guild(guild.id)
        try:
            await self.memory.guild_removed(guild.id)
        except StorageError as exc:
            log.warning("guild %d: removed; its data could not be marked for deletion now (%s)", guild.id, exc.kind)

    async def refresh_guild(self, guild_id: int) -> None:
        try:
            await self.guild_store.refresh(guild_id)
            await self.memory.refresh_privacy(guild_id)
        except StorageError as exc:
            log.warning("guild %d: state not refreshed from the database (%s); using the last known", guild_id, exc)

    # -- personas ----------------------------------------------------------------------
    def persona_for(self, guild_id: int) -> Persona:
        """The guild's chosen persona, else the default one, else the first one, else a built-in fallback."""
        chosen = self.guild_store.get(guild_id).persona
        for name in (chosen, self.settings.default_persona):
            if name:
                persona = self.personas.get(name)
                if persona is not None:
                    return persona
        first = next(iter(self.personas), None)
        if first is not None:
            return first
        log.warning("no personas loaded from %s: using the built-in fallback", self.settings.personas_dir)
        return fallback_persona(self.settings.default_persona or "Juniper")

    async def reload_personas(self, apply_to: Iterable[int] | None = None) -> PersonaLibrary:
        """Re-read the persona folder in a thread. Returns the freshly loaded library (with its errors).

        The new library replaces the current one unless it holds no persona at all while the
        current one does (a broken folder must not silence the bot). Running sessions get
        their guild's (possibly edited) persona: every session, or only those of the guilds in `apply_to`.
        """
        fresh = await executors.run("io", PersonaLibrary.load, self.settings.personas_dir)
        if len(fresh) == 0 and len(self.personas) > 0:
            log.error(
                "persona reload found no usable persona in %s; keeping the previous ones", self.settings.personas_dir
            )
            return fresh
        self.personas = fresh
        guilds = list(self.voice_sessions) if apply_to is None else [g for g in apply_to if g in self.voice_sessions]
        for guild_id in guilds:  # others get the re-read files at their next /join or /persona set
            await self.on_persona_changed(guild_id, self.persona_for(guild_id))
        return fresh

    async def on_persona_changed(self, guild_id: int, persona: Persona) -> None:
        """Hook: apply a new persona to the guild's running voice session, if it has one."""
        session = self.voice_sessions.get(guild_id)
        set_persona = getattr(session, "set_persona", None)
        if session is None or set_persona is None:
            return
        try:
            await _maybe_await(set_persona(persona))
        except Exception:
            log.exception("guild %d: voice session could not switch to persona %r", guild_id, persona.name)

    # -- voice sessions ----------------------------------------------------------------
    async def start_voice_session(self, guild: discord.Guild, voice_client: discord.VoiceClient) -> object:
        """Hook: called by /join once connected. Builds the session with `session_factory` if set,
        else records the bare voice client (connected, nothing listening yet)."""
        if guild.id in self.voice_sessions:
            await self.stop_voice_session(guild)
        persona = self.persona_for(guild.id)
        if self.session_factory is None:
            session: object = voice_client
        else:
            session = await self.session_factory(self, guild, voice_client, persona)
        self.voice_sessions[guild.id] = session
        if self.metrics is not None:
            self.metrics.for_guild(guild.id).watch_receiver(lambda: getattr(session, "receiver", None))
        log.info(
            "guild %d: voice session started in channel %s as %s",
            guild.id,
            getattr(voice_client.channel, "id", "?"),
            persona.name,
        )
        return session

    async def stop_voice_session(self, guild: discord.abc.Snowflake) -> None:
        """Hook: called by /leave (and when the bot is disconnected). Closes the session; never raises."""
        session = self.voice_sessions.pop(guild.id, None)
        if self.metrics is not None:
            self.metrics.forget_guild(guild.id)
        if session is None:
            return
        close = None if isinstance(session, discord.VoiceProtocol) else getattr(session, "close", None)
        if close is not None:
            try:
                await _maybe_await(close())
            except Exception:
                log.exception("guild %d: error while closing the voice session", guild.id)
        log.info("guild %d: voice session stopped", guild.id)
        for hook in list(self.session_closed_hooks):
            try:
                await hook(guild.id, session)
            except Exception:
                log.exception("guild %d: a session-closed hook failed", guild.id)

    def health(self) -> dict[str, Any]:
        """What /healthz reports: ok while connected to Discord's gateway."""
        ready = self.is_ready() and not self.is_closed()
        latency = self.latency
        return {
            "ok": ready,
            "discord": {
                "ready": ready,
                "latency_ms": round(latency * 1000) if latency == latency and latency != float("inf") else None,
            },
            "guilds": len(self.guilds),
            "voice_sessions": sorted(str(g) for g in self.voice_sessions),
            "shards": {
                "count": self.shard_count or 1,
                "ids": sorted(getattr(self, "shards", {}) or [self.shard_id or 0]),
            },
        }

    async def close(self) -> None:
        for guild_id in list(self.voice_sessions):
            await self.stop_voice_session(discord.Object(id=guild_id))
        await self.memory.close()  # the last summaries and queued writes, within a bounded wait
        await super().close()
        if self._storage_retry is not None:
            self._storage_retry.cancel()
            self._storage_retry = None
        await self.storage.close()

    # -- errors --------------------------------------------------------------------------
    async def on_app_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        """Every slash-command failure: log it and tell the caller privately."""
        command = f"/{interaction.command.qualified_name}" if interaction.command else "this command"
        expected = True  # a refusal the user can act on, not a bug
        if isinstance(error, app_commands.NoPrivateMessage):
            message = f"{command} only works in a server."
        elif isinstance(error, app_commands.MissingPermissions):
            missing = ", ".join(p.replace("_", " ").replace("guild", "server") for p in error.missing_permissions)
            message = f"You need the {missing} permission to use {command}."
        elif isinstance(error, app_commands.CommandOnCooldown):
            message = f"{command} is cooling down; try again in {error.retry_after:.0f} s."
        elif isinstance(error, app_commands.CheckFailure):
            message = str(error) or f"You can't use {command} here."
        elif isinstance(error, app_commands.TransformerError):
            message = f"That value doesn't work for {command}: {error}"
        elif isinstance(error, app_commands.CommandInvokeError) and isinstance(error.original, StorageError):
            original = error.original
            log.warning("%s in guild %s could not reach the database: %s", command, interaction.guild_id, original)
            message = (
                "Sorry, I couldn't do that: the database is unavailable right now. Nothing was changed; "
                "try again in a moment."
            )  # no driver text (hosts, ports, paths) for members
            expected = False
        else:
            failure: BaseException = getattr(error, "original", error)
            log.error("%s failed in guild %s", command, interaction.guild_id, exc_info=failure)
            message = f"Sorry, {command} failed ({type(failure).__name__}). The details are in the bot's log."
            expected = False
        if expected:
            log.info("%s refused for user %s: %s", command, interaction.user.id, message)
        try:
            if interaction.response.is_done():
                await interaction.followup.send(message, ephemeral=True)
            else:
                await interaction.response.send_message(message, ephemeral=True)
        except discord.HTTPException:
            log.warning("could not tell the user that %s failed", command, exc_info=True)
