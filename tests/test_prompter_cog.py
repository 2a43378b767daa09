"""The prompter cog through SimCord: the session factory, presence in the room, /captions.

SimCord simulates Discord's gateway and REST, not its voice servers: the voice connection is a
protocol that connects to nothing (the real voice path runs against the loopback simulator in
other tests). The session's models are the scripted doubles of fixtures_prompter_session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import discord
import pytest
import pytest_asyncio

from bot.client import ChorusBot
from tests.fixtures_storage import simcord_env, stalled_sqlite  # noqa: F401  (simcord_env: a fixture)
from bot.voice_session import VoiceSession
from simcord.backend.errors import SetupError
from tests.fixtures_bot_settings import bot_settings
from tests.fixtures_prompter_session import PacedPlayer, RecordingListener, ScriptedResponder

from tests.fixtures_offline_voice import OfflineVoiceClient

pytestmark = pytest.mark.asyncio


class NullReceiver:
    def __init__(self, voice_client, **kwargs) -> None:
        self.started = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False


@pytest.fixture
def settings(tmp_path: Path):
    return bot_settings(tmp_path, PROMPTER_GREET="false")


@pytest.fixture
def simcord_bot(settings, monkeypatch):
    real_connect = discord.abc.Connectable.connect

    async def connect(self, **kwargs: Any) -> Any:
        kwargs["cls"] = OfflineVoiceClient
        return await real_connect(self, **kwargs)

    monkeypatch.setattr(discord.VoiceChannel, "connect", connect)
    return ChorusBot(settings, extensions=("cogs.voice", "cogs.prompter"), optional_extensions=())


@pytest_asyncio.fixture
async def world(simcord_env):
    bot: ChorusBot = simcord_env.bot
    players: list[PacedPlayer] = []

    async def parts(guild) -> dict[str, Any]:
        players.append(PacedPlayer())
        return {
            "responder": ScriptedResponder(["Hello!"], seconds_each=0.1),
            "player": players[-1],
            "make_listener": RecordingListener,
            "make_receiver": NullReceiver,
        }

    cog = bot.get_cog("PrompterCog")
    cog.session_parts = parts  # the cog module is loaded as an extension: patch the instance
    await bot.sync_commands()
    guild = simcord_env.create_guild()
    text = guild.create_text_channel("general")
    voice = guild.create_voice_channel("Hangout")
    managers = guild.create_role("Managers", permissions=discord.Permissions(manage_guild=True))
    alice = guild.add_member(simcord_env.create_user("alice"), roles=[managers])
    bob = guild.add_member(simcord_env.create_user("bob"))
    yield simcord_env, bot, guild, text, voice, alice, bob
    for player in players:
        player.close()


async def test_join_builds_a_voice_session_with_the_people_present(world):
    env, bot, guild, text, voice, alice, bob = world
    assert bot.session_factory == bot.get_cog("PrompterCog").make_session
    await alice.join_voice(voice)
    result = await alice.slash(text, "join")
    assert "joined" in result.response.content
    session = bot.voice_sessions[guild.id]
    assert isinstance(session, VoiceSession) and session.receiver.started
    assert [m.name for m in session.room.members.values()] == ["alice"]
    assert session.room.bot_name == "Juniper"

    await bob.join_voice(voice)
    assert set(session.room.members) == {alice.id, bob.id}
    await bob.leave_voice()
    assert set(session.room.members) == {alice.id}
    assert session.room.departures[-1].name == "bob" and session.listener.forgotten == [bob.id]

    await alice.slash(text, "leave")
    assert guild.id not in bot.voice_sessions and session.listener.closed


async def test_members_in_other_channels_are_not_in_the_room(world):
    env, bot, guild, text, voice, alice, bob = world
    other = guild.create_voice_channel("Elsewhere")
    await alice.join_voice(voice)
    await alice.slash(text, "join")
    session = bot.voice_sessions[guild.id]
    await bob.join_voice(other)
    assert set(session.room.members) == {alice.id}


async def test_captions_on_and_off_are_remembered_and_applied(world):
    env, bot, guild, text, voice, alice, bob = world
    await alice.join_voice(voice)
    await alice.slash(text, "join")
    session = bot.voice_sessions[guild.id]
    assert session.captions is None

    result = await alice.slash(text, "captions", mode="on")
    assert result.ephemeral and "Captions on" in result.response.content
    assert bot.guild_store.get(guild.id).captions_channel_id == text.id
    assert session.captions is not None
    await session.captions("**alice**: hello")
    await env.settle()
    assert any(m.content == "**alice**: hello" for m in text.history())

    result = await alice.slash(text, "captions", mode="off")
    assert "Captions off" in result.response.content
    assert bot.guild_store.get(guild.id).captions_channel_id is None and session.captions is None


async def test_captions_answer_at_once_while_the_database_is_stalled(world, simcord_env, monkeypatch):
    """Another process holds the SQLite write lock: /captions on is acknowledged (deferred, privately) before it
    touches the database, and then answers in plain words (no driver text, no path), nothing changed."""
    env, bot, guild, text, voice, alice, bob = world
    path = bot.storage.sqlite_path
    async with stalled_sqlite(bot, monkeypatch):
        result = await alice.slash(text, "captions", mode="on")
    callbacks = [r.json for r in simcord_env.http_requests if r.path.endswith("/callback")]
    assert callbacks[-1] == {"type": 5, "data": {"flags": 64}}  # deferred, privately, first
    content = result.response.content
    assert "database is unavailable" in content and "OperationalError" not in content and str(path) not in content
    assert bot.guild_store.get(guild.id).captions_channel_id is None
    errors = simcord_env.errors  # acknowledged: our error handler answered it
    assert [type(getattr(e, "original", e)).__name__ for e in errors] == ["StorageError"]


async def test_captions_need_manage_server(world):
    env, bot, guild, text, voice, alice, bob = world
    with pytest.raises(SetupError, match="default-member-permissions"):  # Discord hides it from bob
        await bob.slash(text, "captions", mode="on")
    assert bot.guild_store.get(guild.id).captions_channel_id is None


async def test_a_new_session_picks_up_the_stored_captions_channel(world):
    env, bot, guild, text, voice, alice, bob = world
    await bot.guild_store.set_captions_channel(guild.id, text.id)
    await alice.join_voice(voice)
    await alice.slash(text, "join")
    assert bot.voice_sessions[guild.id].captions is not None


async def test_join_posts_the_listening_notice_for_everyone(world):
    env, bot, guild, text, voice, alice, bob = world
    await alice.join_voice(voice)
    result = await alice.slash(text, "join")
    assert "joined" in result.response.content
    await env.settle()
    notices = [m for m in text.history() if "is listening in" in m.content]
    assert len(notices) == 1, [m.content for m in text.history()]
    assert "/privacy optout" in notices[0].content and "/memory forget" in notices[0].content
    assert "transcribed" in notices[0].content
