"""/join and /leave for real: discord.py's VoiceClient against the loopback voice server (DAVE included).

SimCord has no voice servers, so here the command callbacks are driven directly with a minimal
interaction (what the handlers use: guild, user, response, followup) on a ChorusBot wired to the
simulator's fake main gateway. Everything from `channel.connect` on is the real protocol.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import discord
import pytest

from bot.client import ChorusBot
from runtime.settings import PROJECT_ROOT, load_settings
from cogs.voice import DAVE_EXPLANATION
from conversation.persona_library import PersonaLibrary
from simulator.harness import connected_client, voice_internals
from simulator.server import LoopbackVoiceServer

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(90)]

ALICE = 201


class Response:
    def __init__(self, log: list[tuple[str, str, bool]]) -> None:
        self._log = log
        self._done = False

    def is_done(self) -> bool:
        return self._done

    async def send_message(self, content: str, *, ephemeral: bool = False) -> None:
        assert not self._done, "interaction answered twice"
        self._done = True
        self._log.append(("message", content, ephemeral))

    async def defer(self, *, ephemeral: bool = False, thinking: bool = False) -> None:
        assert not self._done, "interaction answered twice"
        self._done = True
        self._log.append(("defer", "", ephemeral))


class Followup:
    def __init__(self, log: list[tuple[str, str, bool]]) -> None:
        self._log = log

    async def send(self, content: str, *, ephemeral: bool = False) -> None:
        self._log.append(("followup", content, ephemeral))


class SlashInteraction:
    """The parts of discord.Interaction that /join and /leave use, recording every reply."""

    def __init__(self, guild: discord.Guild, user: discord.Member) -> None:
        self.guild = guild
        self.guild_id = guild.id
        self.user = user
        self.replies: list[tuple[str, str, bool]] = []
        self.response = Response(self.replies)
        self.followup = Followup(self.replies)


class Session:
    def __init__(self, voice_client: discord.VoiceClient, persona_name: str) -> None:
        self.voice_client = voice_client
        self.persona_name = persona_name
        self.closed = False

    async def close(self) -> None:
        self.closed = True


def make_bot(tmp_path: Path, sessions: list[Session]) -> ChorusBot:
    settings = load_settings(env={"CHORUS_DATA_DIR": str(tmp_path / "data")}, env_file=None)

    async def factory(bot: ChorusBot, guild: discord.Guild, vc: discord.VoiceClient, persona: Any) -> Session:
        sessions.append(Session(vc, persona.name))
        return sessions[-1]

    personas = PersonaLibrary.load(PROJECT_ROOT / "personas")
    return ChorusBot(settings, personas=personas, session_factory=factory, optional_extensions=())


async def test_join_and_leave_over_a_real_voice_connection(tmp_path: Path) -> None:
    sessions: list[Session] = []
    bot = make_bot(tmp_path, sessions)
    async with LoopbackVoiceServer() as server:
        await server.add_member(ALICE, "Alice")
        async with connected_client(server, client=bot):
            await bot.load_extension("cogs.voice")
            cog = bot.get_cog("VoiceCog")
            assert type(cog).__name__ == "VoiceCog"  # load_extension imports its own module copy
            guild = bot.get_guild(server.guild_id)
            alice = guild.get_member(ALICE)
            assert alice.voice is not None and alice.voice.channel.id == server.channel_id

            join = SlashInteraction(guild, alice)
            await cog.join.callback(cog, join)
            assert join.replies[0] == ("defer", "", True)
            kind, text, ephemeral = join.replies[1]
            assert (
                kind == "followup" and ephemeral and text.startswith(f"Juniper joined {alice.voice.channel.mention}.")
            )
            assert "/privacy optout" in text  # no text channel to post the listening notice in: the reply carries it

            vc = guild.voice_client
            assert isinstance(vc, discord.VoiceClient) and vc.is_connected()
            assert vc.channel.id == server.channel_id
            assert len(sessions) == 1 and sessions[0].voice_client is vc and sessions[0].persona_name == "Juniper"
            assert bot.voice_sessions[guild.id] is sessions[0]
            await server.wait_connected(10)
            await server.wait_dave_settled(10)
            assert voice_internals(vc).dave_protocol_version == 1  # DAVE negotiated, not bypassed

            leave = SlashInteraction(guild, alice)
            await cog.leave.callback(cog, leave)
            assert leave.replies[0] == ("defer", "", True) and leave.replies[1][0] == "followup"
            assert sessions[0].closed and bot.voice_sessions == {}
            assert not vc.is_connected() and guild.voice_client is None
            await server.wait_for(
                lambda: server.bot is None or server.bot.ws is None or server.bot.ws.closed, 10, "the bot to leave"
            )


async def test_dave_required_4017_is_explained_quickly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A client that does not offer DAVE is closed with 4017 by the server (as Discord does since March 2026).
    # discord.py would retry that handshake until the timeout; /join must stop and say why.
    monkeypatch.setattr(discord.voice_state, "has_dave", False)  # identify offers max_dave_protocol_version 0
    sessions: list[Session] = []
    bot = make_bot(tmp_path, sessions)
    async with LoopbackVoiceServer(require_dave=True) as server:
        await server.add_member(ALICE, "Alice")
        async with connected_client(server, client=bot):
            await bot.load_extension("cogs.voice")
            cog = bot.get_cog("VoiceCog")
            guild = bot.get_guild(server.guild_id)
            join = SlashInteraction(guild, guild.get_member(ALICE))
            started = time.monotonic()
            await cog.join.callback(cog, join)
            elapsed = time.monotonic() - started
            assert join.replies == [("defer", "", True), ("followup", DAVE_EXPLANATION, True)]
            assert 4017 in server.close_codes_sent
            assert elapsed < 10, elapsed  # not the 25 s connect timeout
            assert sessions == [] and bot.voice_sessions == {}
            await asyncio.sleep(0)
            assert guild.voice_client is None  # nothing half-connected left behind
