"""Notice first: no member's packet is decoded before the listening notice was given in the bot's channel.

The real bot joins the loopback voice channel by /join while Alice is already talking. The text channel the
command came from is the boundary (it records each message with its time). The receive layer's decoded frames
are recorded per member (a tap on the receiver's frame callback) next to its counters.

1. The text channel refuses the post: the notice is spoken (Bob hears it) before anyone is decoded.
2. The notice is posted: Alice's first decoded frame comes after the message. Chen joins once the notice is
   old: it is posted again, and nothing of Chen's is decoded before that second message.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from audio.receive import VoiceReceiver
from bot.client import ChorusBot
from simulator.harness import connected_client
from simulator.join_command import TextChannel, join_with_command, leave_voice
from simulator.server import LoopbackVoiceServer
from tests.fixtures_scenarios import ALICE, BOB, CHEN, BotEars, scenario_settings, spoken_line

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(600)]

TALK = "I was telling you about the long drive to the coast and the little bakery we found on the way."


class RefusingChannel(TextChannel):
    async def send(self, content: str, **_kwargs: Any) -> None:
        raise PermissionError("Missing Permissions (50013)")


def tapping(decoded: list[tuple[int, float]]):
    """A receiver factory recording when each member's decoded frames reach the session."""

    def make(voice_client: Any, *, on_frame: Any, **kwargs: Any) -> VoiceReceiver:
        def tapped(frame: Any) -> None:
            decoded.append((frame.user_id, time.monotonic()))
            on_frame(frame)

        return VoiceReceiver(voice_client, on_frame=tapped, **kwargs)

    return make


async def keep_talking(member: Any, pcm: Any) -> None:
    """The member talks on and on (until cancelled): whenever the bot starts listening, they are talking."""
    while True:
        await member.speak(pcm)


async def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def joined(
    settings, server: LoopbackVoiceServer, bot: ChorusBot, channel: TextChannel, decoded: list[tuple[int, float]]
) -> Any:
    await bot.setup_hook()
    cog: Any = bot.get_cog("PrompterCog")
    original = cog.session_parts

    async def parts(guild: Any) -> dict:
        out = await original(guild)
        out["make_receiver"] = tapping(decoded)
        return out

    cog.session_parts = parts
    guild = bot.get_guild(server.guild_id)
    return guild, await asyncio.wait_for(join_with_command(bot, guild, ALICE.user_id, channel), 180)


async def test_a_refused_post_means_a_spoken_notice_before_anyone_is_decoded(tmp_path: Path) -> None:
    settings = scenario_settings(tmp_path)  # PRIVACY_NOTICE_SPOKEN=false: spoken only because the post failed
    talk = await asyncio.to_thread(spoken_line, settings, ALICE, TALK)
    decoded: list[tuple[int, float]] = []
    async with LoopbackVoiceServer() as server:
        alice = await server.add_member(ALICE.user_id, "Alice")
        ears = BotEars(await server.add_member(BOB.user_id, "Bob"))
        bot = ChorusBot(settings)
        async with connected_client(server, client=bot):
            speaking = asyncio.create_task(keep_talking(alice, talk.pcm))  # talking while it joins
            channel = RefusingChannel()
            guild, session = await joined(settings, server, bot, channel, decoded)
            try:
                await wait_until(lambda: any(uid == ALICE.user_id for uid, _ in decoded), 120, "Alice decoded")
                first = min(t for uid, t in decoded if uid == ALICE.user_id)
                heard = [t for t in ears.voiced if t < first]
                assert len(heard) * 0.02 >= 1.5, (len(heard), "the spoken notice before the first decoded frame")
                assert not channel.messages and bot.notices[guild.id].spoken == 1
            finally:
                speaking.cancel()
                await asyncio.gather(speaking, return_exceptions=True)
                await leave_voice(bot, guild)
        await bot.memory.close()
        await bot.storage.close()


async def test_the_notice_is_posted_before_the_first_decoded_packet_and_again_for_a_later_joiner(
    tmp_path: Path,
) -> None:
    settings = scenario_settings(tmp_path)
    talk = await asyncio.to_thread(spoken_line, settings, ALICE, TALK)
    chen_talk = await asyncio.to_thread(spoken_line, settings, CHEN, TALK)
    decoded: list[tuple[int, float]] = []
    async with LoopbackVoiceServer() as server:
        alice = await server.add_member(ALICE.user_id, "Alice")
        await server.add_member(BOB.user_id, "Bob")
        bot = ChorusBot(settings)
        async with connected_client(server, client=bot):
            speaking = asyncio.create_task(keep_talking(alice, talk.pcm))
            channel = TextChannel()
            guild, session = await joined(settings, server, bot, channel, decoded)
            try:
                assert len(channel.messages) == 1 and "is listening in" in channel.messages[0][1]
                posted = channel.messages[0][0]
                text = channel.messages[0][1]
                assert "/privacy optout" in text and "90 days" in text and "others in that call can hear" in text
                await wait_until(lambda: any(uid == ALICE.user_id for uid, _ in decoded), 120, "Alice decoded")
                assert min(t for uid, t in decoded if uid == ALICE.user_id) > posted
                assert session.receiver.stats.as_dict()["decoded"] > 0

                bot.notices[guild.id].repost_s = 0.0  # the notice is old now: a joiner gets it again
                chen = await server.add_member(CHEN.user_id, "Chen")
                chen_speaking = asyncio.create_task(keep_talking(chen, chen_talk.pcm))
                await wait_until(lambda: any(uid == CHEN.user_id for uid, _ in decoded), 120, "Chen decoded")
                assert len(channel.messages) == 2, channel.messages
                assert min(t for uid, t in decoded if uid == CHEN.user_id) > channel.messages[1][0]
                chen_speaking.cancel()
                await asyncio.gather(chen_speaking, return_exceptions=True)
            finally:
                speaking.cancel()
                await asyncio.gather(speaking, return_exceptions=True)
                await leave_voice(bot, guild)
        await bot.memory.close()
        await bot.storage.close()
