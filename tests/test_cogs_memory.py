"""/privacy and /memory driven through SimCord (real discord.py dispatch, buttons included), on the real
database and memory service; the listening notice on /join."""

from __future__ import annotations

from pathlib import Path

import discord
import pytest
import pytest_asyncio

from bot.client import ChorusBot
from tests.fixtures_storage import simcord_env, stalled_sqlite  # noqa: F401  (simcord_env: a fixture)
from memory.extract import Fact
from memory.service import MemoryService
from tests.fixtures_bot_settings import bot_settings

pytestmark = pytest.mark.asyncio


@pytest.fixture
def settings(tmp_path: Path):
    return bot_settings(tmp_path, PROMPTER_GREET="false")


@pytest.fixture
def simcord_bot(settings):
    return ChorusBot(settings, optional_extensions=())


@pytest_asyncio.fixture
async def world(simcord_env):
    bot: ChorusBot = simcord_env.bot
    await bot.sync_commands()
    guild = simcord_env.create_guild()
    text = guild.create_text_channel("general")
    managers = guild.create_role("Managers", permissions=discord.Permissions(manage_guild=True))
    alice = guild.add_member(simcord_env.create_user("alice"), roles=[managers])
    bob = guild.add_member(simcord_env.create_user("bob"))
    yield simcord_env, bot, guild, text, alice, bob
    await bot.memory.close()
    await bot.storage.close()


async def test_memory_show_lists_what_is_remembered_only_to_the_member(world) -> None:
    env, bot, guild, text, alice, bob = world
    result = await bob.slash(text, "memory show")
    assert result.ephemeral and "don't remember anything" in result.response.content
    await bot.memory.store.remember_facts(
        guild.id, bob.id, [Fact("home", "lives in Lisbon"), Fact("likes:jazz", "loves jazz")]
    )
    await bot.memory.store.add_summary(guild.id, bob.id, "call:c1:0", 'said "the Baltic trip was freezing"')
    await bot.memory.store.remember_facts(guild.id, alice.id, [Fact("home", "lives in Oslo")])
    result = await bob.slash(text, "memory show")
    content = result.response.content
    assert result.ephemeral and "lives in Lisbon" in content and "loves jazz" in content and "Baltic" in content
    assert "Oslo" not in content  # only their own


async def test_memory_forget_asks_first_and_then_leaves_no_row(world) -> None:
    env, bot, guild, text, alice, bob = world
    await bot.memory.store.remember_facts(guild.id, bob.id, [Fact("home", "lives in Lisbon")])
    await bot.memory.store.add_summary(guild.id, alice.id, "call:c1:0", "talked with Bob about Lisbon")
    asked = await bob.slash(text, "memory forget")
    assert asked.ephemeral and "can't be undone" in asked.response.content
    cancelled = await bob.click(asked.response, label="Cancel")
    assert "kept everything" in cancelled.response.content
    assert await bot.memory.store.count_about(guild.id, bob.id) == 1

    asked = await bob.slash(text, "memory forget")
    done = await bob.click(asked.response, label="Forget everything")
    assert "forgot everything" in done.response.content
    assert await bot.memory.store.count_about(guild.id, bob.id) == 0
    assert [m.text for m in await bot.memory.about(guild.id, alice.id)] == ["talked with someone about Lisbon"]


async def test_privacy_optout_applies_at_once_deletes_and_persists(world, settings) -> None:
    env, bot, guild, text, alice, bob = world
    await bot.memory.store.remember_facts(guild.id, bob.id, [Fact("home", "lives in Lisbon")])
    drops = bot.memory.drop_check(guild.id)
    assert not drops(bob.id)
    result = await bob.slash(text, "privacy optout")
    assert (
        result.ephemeral
        and "no longer listen" in result.response.content
        and "deleted the 1 thing" in result.response.content
    )
    assert drops(bob.id) and not drops(alice.id)  # the receive layer's check sees it at once
    assert await bot.memory.store.count_about(guild.id, bob.id) == 0
    result = await bob.slash(text, "memory show")
    assert "You opted out" in result.response.content

    again = MemoryService(settings, bot.storage, bot.guild_store)  # a restarted bot
    await again._load_privacy_until_done()
    assert again.is_opted_out(guild.id, bob.id) and not again.is_opted_out(guild.id, alice.id)

    result = await bob.slash(text, "privacy optin")
    assert "listen to you again" in result.response.content and not drops(bob.id)
    result = await bob.slash(text, "privacy optin")
    assert "haven't opted out" in result.response.content
    assert await bot.memory.store.opted_out() == {}


async def test_memory_off_and_on_need_manage_server(world) -> None:
    env, bot, guild, text, alice, bob = world
    result = await bob.slash(text, "memory off")
    assert result.ephemeral and "Manage Server" in result.response.content.replace("manage server", "Manage Server")
    assert bot.memory.remembers(guild.id)
    result = await alice.slash(text, "memory off")
    assert "Memory is off" in result.response.content
    assert not bot.memory.remembers(guild.id) and not bot.guild_store.get(guild.id).memory_enabled
    result = await alice.slash(text, "memory show")
    assert "Memory is off in this server" in result.response.content
    result = await alice.slash(text, "memory on")
    assert bot.memory.remembers(guild.id)


async def test_commands_answer_at_once_and_plainly_while_the_database_is_stalled(
    world, simcord_env, monkeypatch
) -> None:
    """Another process holds the SQLite write lock: /privacy optout and /memory off are acknowledged (deferred)
    before they touch the database, apply at once, and answer in plain words (no driver text, no path)."""
    env, bot, guild, text, alice, bob = world
    path = bot.storage.sqlite_path
    async with stalled_sqlite(bot, monkeypatch):
        result = await bob.slash(text, "privacy optout")
        callbacks = [r.json for r in simcord_env.http_requests if r.path.endswith("/callback")]
        assert callbacks[-1] == {"type": 5, "data": {"flags": 64}}  # deferred, privately, first
        content = result.response.content
        assert "no longer listen" in content and "couldn't save" in content
        assert bot.memory.drop_check(guild.id)(bob.id)  # applies although not saved
        result = await alice.slash(text, "memory off")
        assert result.deferred or "Memory is off" in result.response.content
        assert "Memory is off" in result.response.content and not bot.memory.remembers(guild.id)
        for content in (c.response.content for c in [result]):
            assert "OperationalError" not in content and str(path) not in content and "locked" not in content
    await bot.memory.refresh_privacy(guild.id)  # the database answers again: the opt-out is saved, not undone
    assert bob.id in (await bot.memory.store.opted_out()).get(guild.id, set())
    assert bot.memory.is_opted_out(guild.id, bob.id)
