"""The voice connection drops under the bot (the loopback server closes its voice websocket).

* 4006 (session no longer valid): discord.py 2.7.1 reconnects by itself with a new voice session: a new
  SSRC and secret key for the bot, a new DAVE group. The bot keeps its VoiceSession (the room and its
  history survive), hears members again (including a member who rejoined with a new SSRC) and answers.
  Intermittently discord.py's reconnect stalls (IP discovery on the new UDP socket gets no answer in time
  and it never retries); the voice cog then closes the session after its grace period and a new /join
  works: the test accepts that outcome, says so in its output, and checks the bot hears and answers again.
* 4015 (voice server crashed): discord.py 2.7.1 tries a resume that never completes; once its connect
  timeout passes it gives up. The bot then cleans up: no session left, no voice client.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.fixtures_scenarios import ALICE, BOB, ListenerTap, bot_in_channel, join_with_command, scenario_settings

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(400)]

QUESTION = "Hey Juniper, what should I cook tonight?"
AFTER = "Juniper, have you read any good books lately?"


async def test_4006_reconnect_keeps_the_session_and_it_still_hears_and_answers(tmp_path: Path) -> None:
    settings = scenario_settings(tmp_path)
    async with bot_in_channel(settings, [ALICE, BOB], synthesize=[("Alice", QUESTION), ("Bob", AFTER)],
                              connect_timeout_s=15.0) as sc:
        server, session = sc.server, sc.session
        said = await sc.say("Alice", QUESTION)
        await sc.wait_trace(lambda t: t.outcome == "spoken", since=said.onset)
        await sc.wait_idle()
        first = server.bot
        old_bob_ssrc = sc.members["Bob"].ssrc

        await server.disconnect_client(4006)
        vc = sc.guild.voice_client

        def settled() -> str | None:
            if sc.guild.id not in sc.bot.voice_sessions:
                return "cleaned up"
            if (server.bot is not first and server.bot.ws is not None and vc.is_connected()
                    and server.dave_settled()):
                return "reconnected"
            return None

        outcome = await sc.wait_for(settled, 120, "a reconnect or a clean-up")
        if outcome == "cleaned up":
            # discord.py 2.7.1's reconnect stalled (IP discovery on the new socket never answered, see the
            # report): the bot gave up cleanly after its grace period. It must be able to join again.
            print("4006: discord.py's reconnect stalled; the session was cleaned up; joining again")
            await sc.wait_for(lambda: sc.guild.voice_client is None, 30, "the stale voice client to go")
            assert session._closed
            session = await join_with_command(sc.bot, sc.guild, ALICE.user_id)
            sc.session, sc.heard = session, ListenerTap(session.listener)
            vc = sc.guild.voice_client
            await server.wait_dave_settled(40)
        else:
            await asyncio.wait_for(vc._connection.wait_async(), 40)
            # the same session still runs, with what it heard before the drop
            assert sc.bot.voice_sessions.get(sc.guild.id) is session, sc.bot.voice_sessions
            assert session.voice_client is vc
            assert any("tonight" in ln.text.lower() for ln in sc.human_lines())
        assert server.bot.ssrc != first.ssrc and server.bot.secret_key != first.secret_key
        assert server.bot.key_packages >= 1  # the bot joined a new DAVE group on the new connection
        # Bob drops out and comes back: a new SSRC on the new connection, a new DAVE group again
        await sc.members["Bob"].leave()
        await sc.members["Bob"].rejoin()
        await server.wait_dave_settled(40)
        assert sc.members["Bob"].ssrc != old_bob_ssrc
        await asyncio.sleep(0.5)
        assert vc.is_connected()
        assert set(session.room.members) == {ALICE.user_id, BOB.user_id}, session.room.describe(time.monotonic())

        asked = await sc.say("Bob", AFTER)
        trace = await sc.wait_trace(lambda t: t.kind == "respond_now" and t.outcome != "discarded", since=asked.onset)
        assert trace.outcome == "spoken", sc.describe()
        heard_at = await sc.wait_heard("Bob", asked.true_end)
        assert heard_at >= asked.true_end
        assert any("books" in ln.text.lower() and ln.user_id == BOB.user_id for ln in sc.human_lines(asked.start))
        stats = session.receiver.stats.as_dict()
        assert stats["dropped_internal"] == 0 and stats["dropped_decrypt"] <= 2, stats
        assert BOB.user_id in {uid for uid, t, *_ in sc.heard.frames if t >= asked.start}


async def test_4015_resume_that_never_completes_is_cleaned_up(tmp_path: Path) -> None:
    settings = scenario_settings(tmp_path)
    # discord.py waits for the resume as long as /join's connect timeout: short here
    async with bot_in_channel(settings, [ALICE], connect_timeout_s=5.0) as sc:
        session = sc.session
        await sc.server.disconnect_client(4015)
        await sc.wait_for(lambda: sc.guild.id not in sc.bot.voice_sessions, 60, "the session to be cleaned up")
        await sc.wait_for(lambda: sc.guild.voice_client is None, 30, "the voice client to go")
        assert session._closed
        assert session.listener is not None and session.receiver is not None and not session.receiver.running
