"""ChorusBot construction, deliberate command sync, persona fallback, and run_bot's token hygiene."""

from __future__ import annotations

import logging
from pathlib import Path

import discord
import pytest
import simcord

from bot.client import ChorusBot, chorus_intents
from bot.launch import _RedactToken, run_bot
from runtime.settings import PROJECT_ROOT, SettingsError, load_settings
from runtime.errors import StartupError
from conversation.persona_library import PersonaLibrary

TOKEN = "MTIzNDU2Nzg5MDEy.Gabcde.fake-token-for-tests-only_0123456789"


def make_settings(tmp_path: Path, **env: str):
    base = {"CHORUS_DATA_DIR": str(tmp_path / "data"), "CHORUS_PERSONAS_DIR": str(PROJECT_ROOT / "personas")}
    base.update(env)
    return load_settings(env=base, env_file=None)


def test_intents_are_minimal_and_unprivileged() -> None:
    intents = chorus_intents()
    assert intents.guilds and intents.voice_states
    assert not intents.message_content and not intents.members and not intents.presences


def test_members_intent_only_when_members_who_leave_are_forgotten(tmp_path: Path) -> None:
    assert not ChorusBot(make_settings(tmp_path)).intents.members  # the default: no privileged intent
    bot = ChorusBot(make_settings(tmp_path, FORGET_MEMBERS_WHO_LEAVE="true"))
    assert bot.intents.members and not bot.intents.message_content and not bot.intents.presences


def test_bot_holds_its_parts(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    bot = ChorusBot(settings)
    assert bot.settings is settings
    assert bot.voice_sessions == {} and bot.session_factory is None
    assert bot.storage.sqlite_path == tmp_path / "data" / "chorus.db"
    assert bot.guild_store.db is bot.storage


@pytest.mark.asyncio
async def test_persona_for_falls_back_sensibly(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    bot = ChorusBot(settings, personas=PersonaLibrary.load(settings.personas_dir))
    assert await bot.open_storage()
    assert bot.persona_for(1).name == "Juniper"
    await bot.guild_store.set_persona(1, "Trixie")
    assert bot.persona_for(1).name == "Trixie"
    await bot.guild_store.set_persona(1, "Deleted Since")
    assert bot.persona_for(1).name == "Juniper"
    await bot.storage.close()

    odd = ChorusBot(settings.replace(default_persona="Nobody"), personas=PersonaLibrary.load(settings.personas_dir))
    assert odd.persona_for(1).name == "Captain Hollis"  # first by name
    empty = ChorusBot(settings, personas=PersonaLibrary())
    fallback = empty.persona_for(1)
    assert fallback.name == "Juniper" and "fallback" in fallback.description


@pytest.mark.asyncio
async def test_sync_flag_publishes_commands_during_setup(tmp_path: Path) -> None:
    bot = ChorusBot(make_settings(tmp_path), sync_on_start=True, optional_extensions=())
    async with simcord.run(bot) as env:  # strict_sync: unsynced commands would fail
        guild = env.create_guild()
        member = guild.add_member(env.create_user("m"))
        channel = guild.create_text_channel("c")
        result = await member.slash(channel, "persona show")
        assert "Juniper" in result.response.content


@pytest.mark.asyncio
async def test_without_sync_flag_nothing_is_published(tmp_path: Path) -> None:
    bot = ChorusBot(make_settings(tmp_path), optional_extensions=())
    async with simcord.run(bot) as env:
        assert not [r for r in env.http_requests if "commands" in r.path]


@pytest.mark.asyncio
async def test_optional_cogs_load_only_when_present(tmp_path: Path) -> None:
    bot = ChorusBot(make_settings(tmp_path), optional_extensions=("cogs.not_written_yet", "cogs.persona_extra_missing"))
    async with simcord.run(bot):
        assert set(bot.cogs) == {"VoiceCog", "PersonaCog", "PrivacyCog", "MemoryCog"}
    bot = ChorusBot(make_settings(tmp_path), extensions=("cogs.voice",), optional_extensions=("cogs.persona",))
    async with simcord.run(bot):
        assert set(bot.cogs) == {"VoiceCog", "PersonaCog"}


def test_run_bot_refuses_an_empty_token(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="DISCORD_TOKEN is empty"):
        run_bot(make_settings(tmp_path), sync=False)


def test_run_bot_never_shows_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, DISCORD_TOKEN=TOKEN)
    assert TOKEN not in repr(settings)
    seen = {}

    async def fake_login(self: ChorusBot, token: str) -> None:
        seen["token"], seen["sync"] = token, self._sync_on_start
        logging.getLogger("discord.http").warning("oops, a library logged %s", token)
        raise discord.LoginFailure("Improper token has been passed.")

    monkeypatch.setattr(ChorusBot, "login", fake_login)
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        with caplog.at_level(logging.INFO):
            root.addHandler(caplog.handler)
            with pytest.raises(StartupError) as info:
                run_bot(settings, sync=True)
    finally:
        root.handlers = before
        for handler in before:
            for f in list(handler.filters):
                if isinstance(f, _RedactToken):
                    handler.removeFilter(f)
    assert seen == {"token": TOKEN, "sync": True}
    assert TOKEN not in str(info.value) and info.value.__cause__ is None
    assert TOKEN not in caplog.text and "<redacted token>" in caplog.text


def test_redact_filter_handles_args_and_plain_messages() -> None:
    f = _RedactToken("s3cret")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token=%s", ("s3cret",), None)
    assert f.filter(record) and record.getMessage() == "token=<redacted token>"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "nothing here %d", (3,), None)
    assert f.filter(record) and record.getMessage() == "nothing here 3"
