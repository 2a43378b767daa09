"""The voice connection drops under the bot, and chorus hears and speaks again by itself, without /join.

The loopback server closes the bot's voice websocket with a code (1006: the connection just drops, 4006:
session no longer valid, 4009: session timed out, 4015: the voice server crashed) or silences its UDP path
while the websocket lives. Each test asserts that the SAME voice session goes on, that the voice layer
recorded a successful reconnect (resumed or a new session) and how long it took, and that hearing and
speaking came back (`simulator.continuity`: a member's quiet room noise reaching the listener, the bot's tone
reaching the member), with a generous bound here (the 5 s p95 is `benchmarks.reconnect_bench`'s). One test
also checks a whole exchange after a reconnect: a member who rejoined with a new SSRC asks, the bot answers.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from simulator.continuity import ContinuityProbe
from tests.fixtures_scenarios import ALICE, BOB, bot_in_channel, scenario_settings

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(300)]

BOUND_S = 15.0  # generous: a loaded 2-core CI machine; the benchmark measures the real p95
QUESTION = "Hey Juniper, what should I cook tonight?"
AFTER = "Hey Juniper, have you read any good books lately?"


async def fault_and_recover(sc, fault) -> tuple:
    """Run `fault` (a coroutine function of the scenario) while the probe streams; the reconnect record and the
    outage, once hearing and speaking are back."""
    session, vc = sc.session, sc.guild.voice_client
    connections, resumes = sc.server.connections, sc.server.resumes
    probe = ContinuityProbe(sc, "Alice")
    await probe.start()
    try:
        t0 = time.monotonic()
        await fault(sc)
        outage = await probe.wait_back(t0, timeout=BOUND_S * 3)
    finally:
        await probe.stop()
    assert sc.bot.voice_sessions.get(sc.guild.id) is session and not session._closed  # no clean-up, no /join
    assert sc.guild.voice_client is vc and vc.is_connected()
    record = vc._connection.reconnects[-1]
    assert record.ok and record.seconds is not None
    assert sc.server.connections + sc.server.resumes > connections + resumes  # a new session, or a resumed one
    print(
        f"reconnect after {record.code}: {record.how} in {record.seconds:.3f} s ({record.attempts} attempt(s)); "
        f"heard again after {outage.heard_s:.3f} s, heard by a member after {outage.spoken_s:.3f} s"
    )
    assert record.seconds < BOUND_S and outage.seconds < BOUND_S, (record, outage)
    return record, outage


@pytest.mark.parametrize("code,how", [(1006, "resume"), (4015, "resume"), (4006, "fresh"), (4009, "fresh")])
async def test_a_closed_voice_websocket_comes_back_by_itself(tmp_path: Path, code: int, how: str) -> None:
    settings = scenario_settings(tmp_path)
    async with bot_in_channel(settings, [ALICE, BOB], connect_timeout_s=15.0) as sc:
        first = sc.server.bot
        record, _ = await fault_and_recover(sc, lambda sc: sc.server.disconnect_client(code))
        assert record.code == code and record.how == how
        if how == "resume":  # the same session: SSRC, key and DAVE group kept
            assert sc.server.bot is first and sc.server.resumes == 1
        else:  # a new session: new SSRC and key, and the bot joined a new DAVE group
            assert sc.server.bot is not first and sc.server.bot.ssrc != first.ssrc
            assert sc.server.bot.key_packages >= 1 and sc.server.dave.settled()


async def test_a_silent_udp_path_is_noticed_and_replaced(tmp_path: Path) -> None:
    settings = scenario_settings(tmp_path)
    async with bot_in_channel(settings, [ALICE, BOB], connect_timeout_s=15.0) as sc:
        first = sc.server.bot
        blocked: list = []
        # the loopback server echoes keepalives (Discord's may not): the watchdog arms on the first echo
        await sc.wait_for(lambda: sc.guild.voice_client._connection.udp_watchdog_armed, 10, "the UDP watchdog armed")

        async def silence_udp(sc) -> None:
            blocked.append(sc.server.block_udp())

        record, outage = await fault_and_recover(sc, silence_udp)
        assert record.how == "fresh" and sc.server.bot is not first
        assert sc.server.bot.udp_addr not in blocked  # a new socket got through
        assert outage.seconds >= 1.0  # it took the watchdog's silence to notice (nothing else did)


async def test_after_a_reconnect_a_member_who_rejoined_is_heard_and_answered(tmp_path: Path) -> None:
    settings = scenario_settings(tmp_path)
    async with bot_in_channel(
        settings, [ALICE, BOB], synthesize=[("Alice", QUESTION), ("Bob", AFTER)], connect_timeout_s=15.0
    ) as sc:
        session = sc.session
        said = await sc.say("Alice", QUESTION)
        await sc.wait_trace(lambda t: t.outcome == "spoken", since=said.onset)
        await sc.wait_idle()
        old_bob_ssrc = sc.members["Bob"].ssrc
        await fault_and_recover(sc, lambda sc: sc.server.disconnect_client(4006))
        assert any("tonight" in ln.text.lower() for ln in sc.human_lines())  # what it heard before: kept
        # Bob drops out and comes back: a new SSRC on the new connection, a new DAVE group again
        await sc.members["Bob"].leave()
        await sc.members["Bob"].rejoin()
        await sc.server.wait_dave_settled(40)
        assert sc.members["Bob"].ssrc != old_bob_ssrc
        await sc.wait_for(lambda: set(session.room.members) == {ALICE.user_id, BOB.user_id}, 10, "Bob back")
        await asyncio.sleep(0.3)
        asked = await sc.say("Bob", AFTER)
        trace = await sc.wait_trace(lambda t: t.kind == "respond_now" and t.outcome != "discarded", since=asked.onset)
        assert trace.outcome == "spoken", sc.describe()
        assert await sc.wait_heard("Bob", asked.true_end) >= asked.true_end
        assert any("books" in ln.text.lower() and ln.user_id == BOB.user_id for ln in sc.human_lines(asked.start))
        stats = session.receiver.stats.as_dict()
        assert stats["dropped_internal"] == 0 and stats["dropped_decrypt"] <= 2, stats
