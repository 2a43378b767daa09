"""/join, /leave, the voice-session hooks and the app-command error handler, driven through SimCord.

SimCord simulates the gateway and REST, not Discord's voice servers. The voice connection itself
is the true boundary here: `VoiceChannel.connect` still runs discord.py's real `Connectable.connect`
(registration, cleanup, timeout handling) but with a voice protocol that does no networking and can
fail the way Discord does (close code 4017, timeouts). The real voice path is tested with the
loopback simulator elsewhere.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import discord
import pytest
import pytest_asyncio
from discord import app_commands
from audio.receive import ListeningVoiceClient
from simcord.backend.models.channel import Overwrite
from simcord.enums import OverwriteType

from bot.client import ChorusBot
from cogs.voice import DAVE_EXPLANATION, explain_connect_error
from tests.fixtures_bot_settings import bot_settings
from tests.fixtures_offline_voice import OfflineVoiceClient
from tests.fixtures_storage import simcord_env  # noqa: F401  (a fixture)

pytestmark = pytest.mark.asyncio


class RecordingSession:
    def __init__(self, guild: discord.Guild, voice_client: Any, persona: Any) -> None:
        self.guild, self.voice_client, self.persona = guild, voice_client, persona
        self.closed = False

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def connect_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Route VoiceChannel.connect through discord.py's real Connectable.connect with OfflineVoiceClient."""
    calls: list[dict[str, Any]] = []
    real_connect = discord.abc.Connectable.connect
    OfflineVoiceClient.fail_with = None
    OfflineVoiceClient.instances = []

    async def connect(self: discord.VoiceChannel, **kwargs: Any) -> Any:
        calls.append(dict(kwargs))
        kwargs["cls"] = OfflineVoiceClient
        return await real_connect(self, **kwargs)

    monkeypatch.setattr(discord.VoiceChannel, "connect", connect)
    return calls


@pytest.fixture
def settings(tmp_path: Path):
    return bot_settings(tmp_path)


@pytest.fixture
def sessions() -> list[RecordingSession]:
    return []


@pytest.fixture
def simcord_bot(settings, sessions):
    async def factory(bot: ChorusBot, guild: discord.Guild, voice_client: Any, persona: Any) -> RecordingSession:
        session = RecordingSession(guild, voice_client, persona)
        sessions.append(session)
        return session

    return ChorusBot(settings, session_factory=factory, optional_extensions=())


@pytest_asyncio.fixture
async def world(simcord_env):
    bot: ChorusBot = simcord_env.bot
    await bot.sync_commands()
    guild = simcord_env.create_guild()
    text = guild.create_text_channel("general")
    voice = guild.create_voice_channel("Hangout")
    alice = guild.add_member(simcord_env.create_user("alice"))
    return simcord_env, bot, guild, text, voice, alice


async def test_join_when_caller_not_in_voice(world, connect_calls) -> None:
    env, bot, guild, text, voice, alice = world
    result = await alice.slash(text, "join")
    assert result.ephemeral and result.response.content == "Join a voice channel first, then use /join."
    assert connect_calls == [] and bot.voice_sessions == {}


async def test_join_connects_starts_session_and_leave_stops_it(world, connect_calls, sessions) -> None:
    env, bot, guild, text, voice, alice = world
    await alice.join_voice(voice)
    result = await alice.slash(text, "join")
    callbacks = [r.json for r in env.http_requests if r.path.endswith("/callback")]
    assert callbacks[-1] == {"type": 5, "data": {"flags": 64}}  # deferred before connecting
    assert result.ephemeral and result.response.content == f"Juniper joined {voice.mention}."
    assert connect_calls == [{"cls": ListeningVoiceClient, "self_deaf": False, "timeout": 25.0, "reconnect": True}]
    (vc,) = OfflineVoiceClient.instances
    assert vc.connect_kwargs["self_deaf"] is False
    assert len(sessions) == 1 and sessions[0].voice_client is vc and sessions[0].persona.name == "Juniper"
    assert bot.voice_sessions == {guild.id: sessions[0]}
    dpy_guild = bot.get_guild(guild.id)
    assert dpy_guild.voice_client is vc

    again = await alice.slash(text, "join")
    assert again.ephemeral and "already in" in again.response.content and len(connect_calls) == 1

    result = await alice.slash(text, "leave")
    assert result.ephemeral and result.response.content.startswith("Left the voice channel")
    assert sessions[0].closed and bot.voice_sessions == {}
    assert not vc.is_connected() and dpy_guild.voice_client is None

    result = await alice.slash(text, "leave")
    assert result.response.content == "I'm not in a voice channel."


async def test_join_refused_when_connected_elsewhere(world, connect_calls) -> None:
    env, bot, guild, text, voice, alice = world
    other = guild.create_voice_channel("Other")
    await alice.join_voice(other)
    await alice.slash(text, "join")
    await alice.join_voice(voice)
    result = await alice.slash(text, "join")
    assert result.ephemeral and f"already connected to {other.mention}" in result.response.content
    assert "/leave" in result.response.content and len(connect_calls) == 1


async def test_join_without_connect_or_speak_permission(world, connect_calls) -> None:
    env, bot, guild, text, voice, alice = world
    deny = discord.Permissions(connect=True, speak=True).value
    env.backend.set_overwrite(voice.id, Overwrite(target_id=bot.user.id, type=OverwriteType.MEMBER, deny=deny))
    await env.settle()
    await alice.join_voice(voice)
    result = await alice.slash(text, "join")
    assert result.ephemeral
    assert result.response.content == f"I'm missing the Connect and Speak permissions in {voice.mention}."
    assert connect_calls == []


@pytest.mark.parametrize(
    ("failure", "words"),
    [
        (
            discord.ConnectionClosed(None, shard_id=None, code=4017),
            "code 4017: end-to-end voice encryption (DAVE) is required",
        ),
        (discord.ConnectionClosed(None, shard_id=None, code=4006), "close code 4006"),
        (asyncio.TimeoutError(), "Connecting to voice timed out."),
    ],
)
async def test_join_failures_are_explained(world, connect_calls, failure: BaseException, words: str) -> None:
    env, bot, guild, text, voice, alice = world
    OfflineVoiceClient.fail_with = failure
    await alice.join_voice(voice)
    result = await alice.slash(text, "join")
    assert result.ephemeral and words in result.response.content
    assert bot.voice_sessions == {}
    assert bot.get_guild(guild.id).voice_client is None  # no half-made connection left behind
    OfflineVoiceClient.fail_with = None
    result = await alice.slash(text, "join")  # and a retry works
    assert result.response.content == f"Juniper joined {voice.mention}." and guild.id in bot.voice_sessions


async def test_join_without_davey_explains_dave(world, connect_calls, monkeypatch: pytest.MonkeyPatch) -> None:
    env, bot, guild, text, voice, alice = world
    monkeypatch.setattr(discord.voice_client, "has_dave", False)
    await alice.join_voice(voice)
    result = await alice.slash(text, "join")
    assert result.ephemeral and result.response.content == DAVE_EXPLANATION and connect_calls == []


async def test_session_start_failure_disconnects(world, connect_calls) -> None:
    env, bot, guild, text, voice, alice = world

    async def broken_factory(*args: Any) -> Any:
        raise RuntimeError("model missing")

    bot.session_factory = broken_factory
    await alice.join_voice(voice)
    result = await alice.slash(text, "join")
    assert "voice session failed to start (RuntimeError)" in result.response.content
    assert bot.voice_sessions == {} and not OfflineVoiceClient.instances[0].is_connected()
    assert bot.get_guild(guild.id).voice_client is None


async def test_bot_disconnected_by_discord_stops_session(world, connect_calls, sessions) -> None:
    env, bot, guild, text, voice, alice = world
    await alice.join_voice(voice)
    await alice.slash(text, "join")
    env.backend.set_voice_state(guild.id, bot.user.id, voice.id)  # the bot shows up in the channel
    await env.settle()
    assert not sessions[0].closed
    env.backend.set_voice_state(guild.id, bot.user.id, None)  # ... then is kicked out
    await env.settle()
    assert sessions[0].closed and bot.voice_sessions == {}


async def test_persona_hook_reaches_session_objects(world) -> None:
    env, bot, guild, text, voice, alice = world
    seen: list[str] = []

    class SyncSession:
        def set_persona(self, persona: Any) -> None:
            seen.append(persona.name)

    bot.voice_sessions[guild.id] = SyncSession()
    await bot.on_persona_changed(guild.id, bot.personas.get("Trixie"))
    await bot.on_persona_changed(12345, bot.personas.get("Trixie"))  # no session: nothing happens
    bot.voice_sessions[guild.id] = object()  # a session without set_persona is left alone
    await bot.on_persona_changed(guild.id, bot.personas.get("Juniper"))
    assert seen == ["Trixie"]


async def test_close_stops_all_sessions(settings) -> None:
    bot = ChorusBot(settings)
    sessions = []
    for gid in (1, 2):
        s = RecordingSession(None, None, None)  # type: ignore[arg-type]
        sessions.append(s)
        bot.voice_sessions[gid] = s
    await bot.close()
    assert all(s.closed for s in sessions) and bot.voice_sessions == {}


async def test_unexpected_command_error_is_logged_and_answered_ephemerally(
    simcord_env, caplog: pytest.LogCaptureFixture
) -> None:
    bot: ChorusBot = simcord_env.bot

    @app_commands.command(name="boom", description="fails")
    async def boom(interaction: discord.Interaction) -> None:
        raise RuntimeError("kaboom")

    @app_commands.command(name="slowboom", description="fails after deferring")
    async def slowboom(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True)
        raise ValueError("late")

    @app_commands.command(name="guarded", description="check fails")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def guarded(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("ok")

    for command in (boom, slowboom, guarded):
        bot.tree.add_command(command)
    await bot.sync_commands()
    guild = simcord_env.create_guild()
    channel = guild.create_text_channel("general")
    alice = guild.add_member(simcord_env.create_user("alice"))

    result = await alice.slash(channel, "boom")
    assert (
        result.ephemeral
        and result.response.content == "Sorry, /boom failed (RuntimeError). The details are in the bot's log."
    )
    assert "/boom failed" in caplog.text and "kaboom" in caplog.text  # traceback logged
    result = await alice.slash(channel, "slowboom")
    assert result.ephemeral and "Sorry, /slowboom failed (ValueError)" in result.response.content
    result = await alice.slash(channel, "guarded")
    assert result.ephemeral and result.response.content == "You need the manage server permission to use /guarded."
    errors = simcord_env.errors  # acknowledge what the bot raised (it was handled by our error handler)
    assert [type(getattr(e, "original", e)).__name__ for e in errors] == [
        "RuntimeError",
        "ValueError",
        "MissingPermissions",
    ]


async def test_explain_connect_error_messages() -> None:
    assert explain_connect_error(discord.ClientException("Already connected to a voice channel.")) == (
        "Couldn't join: Already connected to a voice channel."
    )
    assert "libopus0" in explain_connect_error(discord.opus.OpusNotLoaded())
    assert explain_connect_error(RuntimeError("davey library needed in order to use voice")) == DAVE_EXPLANATION
