"""/persona set|show|list|reload driven through SimCord: real discord.py dispatch, no network."""

from __future__ import annotations

import shutil
from pathlib import Path

import discord
import pytest
import pytest_asyncio

from bot.client import ChorusBot
from tests.fixtures_storage import simcord_env, stalled_sqlite  # noqa: F401  (simcord_env: a fixture)
from storage.guild_store import GuildStore
from runtime.settings import PROJECT_ROOT, load_settings
from conversation.persona import Persona

SHIPPED = PROJECT_ROOT / "personas"
pytestmark = pytest.mark.asyncio


class RecordingSession:
    """Stands in for bot/voice_session.py's session: records what the bot asks of it."""

    def __init__(self) -> None:
        self.personas: list[str] = []
        self.closed = False

    async def set_persona(self, persona: Persona) -> None:
        self.personas.append(persona.name)

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def personas_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "personas"
    shutil.copytree(SHIPPED, folder)
    return folder


@pytest.fixture
def settings(tmp_path: Path, personas_dir: Path):
    return load_settings(
        env={
            "CHORUS_DATA_DIR": str(tmp_path / "data"),
            "CHORUS_PERSONAS_DIR": str(personas_dir),
            "CHORUS_PERSONA_ROLE": "DJ",
        },
        env_file=None,
    )


@pytest.fixture
def simcord_bot(settings):
    return ChorusBot(settings, optional_extensions=())  # only the cogs under test


@pytest_asyncio.fixture
async def world(simcord_env):
    """A synced bot in one guild with a text channel, a plain member, a manager and a DJ."""
    bot: ChorusBot = simcord_env.bot
    await bot.sync_commands()
    guild = simcord_env.create_guild()
    channel = guild.create_text_channel("general")
    plain = guild.add_member(simcord_env.create_user("alice"))
    managers = guild.create_role("Managers", permissions=discord.Permissions(manage_guild=True))
    manager = guild.add_member(simcord_env.create_user("boss"), roles=[managers])
    djs = guild.create_role("dj")
    dj = guild.add_member(simcord_env.create_user("deejay"), roles=[djs])
    bot.settings = bot.settings.replace(persona_role=str(djs.id))  # the role by id
    return bot, guild, channel, plain, manager, dj


async def test_setup_hook_loads_personas_and_cogs(simcord_env) -> None:
    bot: ChorusBot = simcord_env.bot
    assert {"VoiceCog", "PersonaCog", "PrivacyCog", "MemoryCog"} <= set(bot.cogs)
    assert bot.personas.names() == ["Captain Hollis", "Juniper", "Trixie"]
    synced = await bot.sync_commands()
    assert synced == {"global": 5}  # join, leave, and the groups persona, privacy, memory
    guild = simcord_env.create_guild()
    member = guild.add_member(simcord_env.create_user("x"))
    available = set(member.available_commands(guild.create_text_channel("c")))
    assert {"join", "leave", "persona set", "persona show", "persona list", "persona reload"} <= available


async def test_autocomplete_offers_matching_personas(world) -> None:
    bot, guild, channel, plain, manager, dj = world
    choices = await plain.autocomplete(channel, "persona set", "name", "")
    assert [c["value"] for c in choices] == ["Captain Hollis", "Juniper", "Trixie"]
    assert all(len(c["name"]) <= 100 for c in choices)
    choices = await plain.autocomplete(channel, "persona set", "name", "tri")
    assert [c["value"] for c in choices] == ["Trixie"]
    assert choices[0]["name"].startswith("Trixie: ")
    choices = await plain.autocomplete(channel, "persona set", "name", "cap")
    assert [c["value"] for c in choices] == ["Captain Hollis"]
    choices = await plain.autocomplete(channel, "persona set", "name", "ollis")  # substring
    assert [c["value"] for c in choices] == ["Captain Hollis"]
    assert await plain.autocomplete(channel, "persona set", "name", "zzz") == []


async def test_autocomplete_is_capped_at_25(simcord_env, personas_dir: Path) -> None:
    for i in range(40):
        (personas_dir / f"extra{i:02}.toml").write_text(
            f'name = "Extra {i:02}"\ndescription = "{"long words " * 20}"\n[bot]\nidentity = "x"\npersonality = "y"\n'
        )
    bot: ChorusBot = simcord_env.bot
    await bot.reload_personas()
    await bot.sync_commands()
    guild = simcord_env.create_guild()
    channel = guild.create_text_channel("general")
    member = guild.add_member(simcord_env.create_user("m"))
    choices = await member.autocomplete(channel, "persona set", "name", "")
    assert len(choices) == 25
    assert all(len(c["name"]) <= 100 for c in choices)
    choices = await member.autocomplete(channel, "persona set", "name", "extra 3")
    assert [c["value"] for c in choices] == [f"Extra 3{i}" for i in range(10)]


async def test_set_is_denied_without_manage_server_or_role(world) -> None:
    bot, guild, channel, plain, manager, dj = world
    result = await plain.slash(channel, "persona set", name="Trixie")
    assert result.ephemeral
    assert "Manage Server" in result.response.content and "**dj** role" in result.response.content
    assert bot.guild_store.get(guild.id).persona is None
    assert bot.persona_for(guild.id).name == "Juniper"


async def test_set_allowed_with_manage_server_persists(world, settings) -> None:
    bot, guild, channel, plain, manager, dj = world
    result = await manager.slash(channel, "persona set", name="trixie")  # case-insensitive
    assert not result.ephemeral
    assert result.response.content.startswith("I'm Trixie now.")
    assert bot.guild_store.get(guild.id).persona == "Trixie"
    reopened = GuildStore.from_settings(settings)  # a new process reads it from the database
    await reopened.db.open()
    await reopened.load()
    assert reopened.get(guild.id).persona == "Trixie"
    await reopened.db.close()
    assert bot.persona_for(guild.id).name == "Trixie"


async def test_a_role_named_like_the_persona_role_is_not_it(world, simcord_env) -> None:
    bot, guild, channel, plain, manager, dj = world
    impostors = guild.create_role("dj")  # same name, another role
    impostor = guild.add_member(simcord_env.create_user("impostor"), roles=[impostors])
    result = await impostor.slash(channel, "persona set", name="Captain Hollis")
    assert "needs Manage Server or the **dj** role" in result.response.content
    assert bot.guild_store.get(guild.id).persona is None


async def test_set_allowed_with_the_persona_role(world) -> None:
    bot, guild, channel, plain, manager, dj = world
    result = await dj.slash(channel, "persona set", name="Captain Hollis")
    assert result.response.content.startswith("I'm Captain Hollis now.")
    assert bot.guild_store.get(guild.id).persona == "Captain Hollis"


async def test_set_unknown_name_is_refused_with_suggestions(world) -> None:
    bot, guild, channel, plain, manager, dj = world
    result = await manager.slash(channel, "persona set", name="Jun")
    assert result.ephemeral
    assert "no persona named “Jun”" in result.response.content and "Juniper" in result.response.content
    result = await manager.slash(channel, "persona set", name="Nobody At All")
    assert result.ephemeral and "/persona list" in result.response.content
    assert bot.guild_store.get(guild.id).persona is None


async def test_set_applies_to_running_voice_session(world) -> None:
    bot, guild, channel, plain, manager, dj = world
    session = RecordingSession()
    bot.voice_sessions[guild.id] = session
    result = await manager.slash(channel, "persona set", name="Trixie")
    assert "switching voices now" in result.response.content
    assert session.personas == ["Trixie"]


async def test_show_and_list(world) -> None:
    bot, guild, channel, plain, manager, dj = world
    result = await plain.slash(channel, "persona show")
    assert result.ephemeral
    text = result.response.content
    assert "**Juniper**" in text and "piper" in text and "speed 1.05" in text and "default persona" in text

    await manager.slash(channel, "persona set", name="Captain Hollis")
    text = (await plain.slash(channel, "persona show")).response.content
    assert "**Captain Hollis**" in text and "speed 0.9" in text and "juniper.toml" not in text

    result = await plain.slash(channel, "persona list")
    assert result.ephemeral
    lines = result.response.content.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("▶ **Captain Hollis**") and lines[1].startswith("• **Juniper**")


async def test_show_when_chosen_persona_vanished(world, personas_dir: Path) -> None:
    bot, guild, channel, plain, manager, dj = world
    await manager.slash(channel, "persona set", name="Trixie")
    (personas_dir / "trixie.toml").unlink()
    await manager.slash(channel, "persona reload")
    text = (await plain.slash(channel, "persona show")).response.content
    assert "**Juniper**" in text and "“Trixie” is not loaded" in text


async def test_reload_needs_manage_server(world) -> None:
    bot, guild, channel, plain, manager, dj = world
    result = await dj.slash(channel, "persona reload")
    assert result.ephemeral and "Manage Server" in result.response.content


async def test_reload_reports_broken_files_with_path_and_field(simcord_env, world, personas_dir: Path) -> None:
    bot, guild, channel, plain, manager, dj = world
    session = RecordingSession()
    bot.voice_sessions[guild.id] = session
    (personas_dir / "zz_broken.toml").write_text(
        'name = "Z"\n[bot]\nidentity = "a"\npersonality = "b"\n[voice]\nspeed = "fast"\n'
    )
    (personas_dir / "new.toml").write_text('name = "Newbie"\n[bot]\nidentity = "a"\npersonality = "b"\n')
    result = await manager.slash(channel, "persona reload")
    callbacks = [r.json for r in simcord_env.http_requests if r.path.endswith("/callback")]
    assert callbacks[-1] == {"type": 5, "data": {"flags": 64}}  # deferred (ephemeral) before the file I/O
    assert result.ephemeral
    text = result.response.content
    assert "Loaded 4 persona(s): Captain Hollis, Juniper, Newbie, Trixie." in text
    assert "zz_broken.toml: field 'voice.speed':" in text
    assert str(personas_dir) not in text and "/" not in text.replace("persona(s)", "")  # no host paths
    assert "Newbie" in bot.personas
    assert session.personas == ["Juniper"]  # the running session got its (re-read) persona
    other = RecordingSession()
    bot.voice_sessions[guild.id + 1] = other  # another server's session: not switched by this server's reload
    await manager.slash(channel, "persona reload")
    assert other.personas == [] and session.personas == ["Juniper", "Juniper"]


async def test_reload_keeps_old_personas_when_folder_is_empty(world, personas_dir: Path) -> None:
    bot, guild, channel, plain, manager, dj = world
    for path in personas_dir.glob("*.toml"):
        path.write_text("broken = [")
    text = (await manager.slash(channel, "persona reload")).response.content
    assert "kept the 3" in text and "TOML syntax error" in text
    assert len(bot.personas) == 3


@pytest.mark.simcord(strict_sync=True)
async def test_guild_scoped_sync_for_dev_guilds(tmp_path: Path, settings) -> None:
    import simcord

    dev_id = 1456074443980800123
    bot = ChorusBot(settings.replace(dev_guild_ids=(dev_id,)), optional_extensions=())
    async with simcord.run(bot) as env:
        guild = env.create_guild(id=dev_id)
        assert await bot.sync_commands() == {str(dev_id): 5}
        puts = [r for r in env.http_requests if r.method == "PUT" and "commands" in r.path]
        assert puts and all(f"/guilds/{dev_id}/commands" in r.path for r in puts)
        channel = guild.create_text_channel("dev")
        member = guild.add_member(env.create_user("dev"))
        result = await member.slash(channel, "persona list")
        assert "Juniper" in result.response.content


async def test_set_answers_at_once_while_the_database_is_stalled(world, simcord_env, monkeypatch) -> None:
    """Another process holds the SQLite write lock: /persona set is acknowledged (deferred) before it touches the
    database, and then answers in plain words (no driver text, no path), the persona unchanged."""
    bot, guild, channel, plain, manager, dj = world
    path = bot.storage.sqlite_path
    async with stalled_sqlite(bot, monkeypatch):
        result = await manager.slash(channel, "persona set", name="Trixie")
    callbacks = [r.json for r in simcord_env.http_requests if r.path.endswith("/callback")]
    assert callbacks[-1]["type"] == 5  # deferred first
    text = result.response.content
    assert "database is unavailable" in text and "OperationalError" not in text and str(path) not in text
    assert bot.guild_store.get(guild.id).persona is None
    errors = simcord_env.errors  # acknowledged: our error handler answered it
    assert [type(getattr(e, "original", e)).__name__ for e in errors] == ["StorageError"]
