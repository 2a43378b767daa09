"""A member opts out WHILE speaking, on the loopback voice channel with the real pipeline (receive + DAVE + Opus,
VAD, tiny.en, turn-taking, SmolLM2, Piper) and the real SQLite database.

Bob says a whole line (heard, in the history), then a long one: at his first partial (between a partial and
its final) he runs /privacy optout. From then on nothing of his is anywhere (`simulator.privacy_witness`): no
transcript of his is delivered (the buffered audio and the pending final are dropped, not flushed), his earlier
line left the history, no caption with his words is posted, no prompt carries his words or his name, no row
about him, no log line above DEBUG with his words. Then he opts in, speaks again, and opts out as soon as his
speech starts (mid-word), and once more while a partial of his is being transcribed (mid-partial): the same.
Every wait is on a condition (a partial, the listener settled), never a sleep.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bot.session_members import OPTED_OUT_NAME
from simulator.privacy_witness import LogTap, PartialWatch, Witness, opt_in, opt_out, settled, words_of
from tests.fixtures_scenarios import ALICE, BOB, bot_in_channel, scenario_settings

pytestmark = [pytest.mark.timeout(900)]

FIRST = "I keep bees in my garden behind the old stone house."
LONG = (
    "My cousin Robert and I go sailing on the lake near the harbour every summer, and we always "
    "bring sandwiches, lemonade and a big yellow umbrella for the afternoon sun."
)


async def assert_nothing_of_bob_since(sc, witness: Witness, since: float, heard: set[str], logs: LogTap) -> None:
    assert heard, "no word of Bob's was transcribed before his opt-out (the test's precondition)"
    found = await witness.leaks(BOB.user_id, "Bob", since, heard, logs)
    assert not any(found.values()), {place: what for place, what in found.items() if what}
    member = sc.session.room.members.get(BOB.user_id)
    assert member is not None and member.name == OPTED_OUT_NAME and member.partial is None


@pytest.mark.asyncio
async def test_opt_out_while_speaking_leaves_nothing_of_theirs(tmp_path: Path) -> None:
    settings = scenario_settings(tmp_path, MEMORY_SUMMARY="extractive")
    with LogTap() as logs:
        async with bot_in_channel(settings, [ALICE, BOB], synthesize=[("Bob", FIRST), ("Bob", LONG)]) as sc:
            witness = Witness(sc)
            members = sc.session.room.members

            # a whole line first: heard, in the history (his earlier lines must go too)
            said = await sc.say("Bob", FIRST)
            await sc.wait_for(
                lambda: [ln for ln in sc.human_lines(said.start) if ln.user_id == BOB.user_id],
                90,
                "Bob's first line in the history",
            )
            await sc.wait_idle()

            # between a partial and its final: opt out at his first partial of the long line
            started = time.monotonic()
            speaking = asyncio.create_task(sc.say("Bob", LONG))
            await sc.wait_for(
                lambda: (
                    (m := members.get(BOB.user_id)) is not None
                    and m.partial is not None
                    and m.partial.start >= started - 0.5
                ),
                120,
                "a partial of Bob's long line",
            )
            assert not speaking.done(), "Bob finished his line before his first partial: nothing to test"
            since = await opt_out(sc, BOB.user_id)
            heard = words_of(witness.texts_of(BOB.user_id, before=since))
            await settled(sc, speaking)
            await assert_nothing_of_bob_since(sc, witness, since, heard, logs)
            assert sc.session.receiver.stats.as_dict()["dropped_opted_out"] > 20  # the rest of his line, at receive

            # mid-word: opted in again, he speaks; he opts out as soon as the VAD hears him start
            await opt_in(sc, BOB.user_id)
            started = time.monotonic()
            speaking = asyncio.create_task(sc.say("Bob", LONG))
            assert sc.heard is not None
            await sc.wait_for(lambda: sc.heard.starts(BOB.user_id, since=started), 60, "Bob's speech start")
            since = await opt_out(sc, BOB.user_id)
            await settled(sc, speaking)
            await assert_nothing_of_bob_since(sc, witness, since, heard, logs)

            # mid-partial: opted in again, he speaks; he opts out while a partial of his is being transcribed
            await opt_in(sc, BOB.user_id)
            watch = PartialWatch(sc.session.listener.scheduler, BOB.user_id)
            speaking = asyncio.create_task(sc.say("Bob", LONG))
            await sc.wait_for(lambda: watch.running, 120, "a partial of Bob's being transcribed")
            since = await opt_out(sc, BOB.user_id)  # takes effect before its first await: the partial still runs
            assert watch.runs >= 1
            await settled(sc, speaking)
            await assert_nothing_of_bob_since(sc, witness, since, heard, logs)
