"""Memory and consent on the loopback voice channel, with the real pipeline (receive + DAVE + Opus, VAD, STT,
turn-taking, SmolLM2, Piper) and a real SQLite database that outlives the bot between the two calls.

Call one: the bot says out loud that it listens and how to opt out; Alice tells two things about herself; the facts are stored as she says them; /leave summarizes her
part. Call two (a new bot process on the same data): Alice asks about one of them; the reply's prompt carries
it. Bob opts out with /privacy optout: his speech is dropped at receive before decoding (counted), never
transcribed, never stored. Alice's /memory forget leaves no row about her.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from simulator.join_command import JoinInteraction
from simulator.voices import voiced_frames
from tests.fixtures_scenarios import ALICE, BOB, bot_in_channel, scenario_settings

pytestmark = [pytest.mark.timeout(600)]

SISTER = "My sister is called Maya."
CELLO = "I really love playing the cello."
QUESTION = "Hey Juniper, what is my sister called?"
BOB_LINE = "My name is Robert and I love sailing on the lake."


async def wait_rows(sc, user_id: int, predicate, timeout: float = 60.0) -> list:
    memory = sc.bot.memory
    deadline = time.monotonic() + timeout
    while True:
        await memory.writes.drain(5)
        rows = await memory.about(sc.guild.id, user_id)
        if predicate(rows) or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.25)


@pytest.mark.asyncio
async def test_two_calls_remember_and_respect(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    settings = scenario_settings(tmp_path, MEMORY_SUMMARY="extractive")
    first_call = scenario_settings(tmp_path, MEMORY_SUMMARY="extractive", PRIVACY_NOTICE_SPOKEN="true")
    lines = [("Alice", SISTER), ("Alice", CELLO), ("Alice", QUESTION), ("Bob", BOB_LINE)]

    # --- call one: the spoken notice, two facts, then /leave -------------------------------------------------
    async with bot_in_channel(first_call, [ALICE, BOB], synthesize=lines) as sc:
        await sc.wait_idle()  # the notice is the session's first line: heard before anyone spoke
        notice_s = float(voiced_frames(sc.ears["Bob"].pcm()).sum()) * 0.02
        assert notice_s >= 2.0, notice_s
        for text in (SISTER, CELLO):
            said = await sc.say("Alice", text)
            await sc.wait_for(lambda: sc.human_lines(said.start), 60, "Alice's line")
            await sc.wait_idle()
        rows = await wait_rows(sc, ALICE.user_id, lambda r: len([m for m in r if m.kind == "fact"]) >= 2)
        facts = {m.key.split(":")[0]: m.text for m in rows if m.kind == "fact"}
        assert set(facts) == {"rel", "likes"}, (rows, sc.describe())
        assert facts["rel"].startswith("sister is called") and "cello" in facts["likes"], facts
        sister_name = facts["rel"].split()[-1]  # as the STT heard it
    # /leave: the rest of the call is summarized in the background; the bot's close waits for it

    # --- call two: Alice asks; Bob opts out -------------------------------------------------------------
    async with bot_in_channel(settings, [ALICE, BOB], synthesize=lines) as sc:
        rows = await sc.bot.memory.about(sc.guild.id, ALICE.user_id)
        assert [m for m in rows if m.kind == "summary"], rows  # written at the end of call one
        said = await sc.say("Alice", QUESTION)
        trace = await sc.wait_trace(lambda t: t.kind == "respond_now" and t.outcome != "discarded", since=said.onset)
        assert trace.outcome == "spoken", sc.describe()
        memory_block = sc.session.responder.last_memory
        assert f"Alice's sister is called {sister_name}" in memory_block, memory_block
        print(f"asked: {QUESTION!r}; memory in the prompt: {memory_block!r}; the bot said: {trace.text!r}")
        await sc.wait_idle()

        privacy = sc.bot.get_cog("PrivacyCog")
        asked = JoinInteraction(sc.guild, sc.guild.get_member(BOB.user_id))
        await privacy.optout.callback(privacy, asked)
        assert "no longer listen" in asked.replies[-1]
        receiver = sc.session.receiver
        before = receiver.stats.as_dict()
        opted_at = time.monotonic()
        said = await sc.say("Bob", BOB_LINE)
        await asyncio.sleep(3.0)  # past the VAD's end of speech and a transcription
        stats = receiver.stats.as_dict()
        dropped = stats["dropped_opted_out"] - before.get("dropped_opted_out", 0)
        assert dropped >= said.sent - 5, (stats, said.sent)  # counted at receive, before decoding
        assert stats["decoded"] - before["decoded"] < 5  # (the others' silence aside, nothing of his decoded)
        assert not [f for f in sc.heard.frames if f[0] == BOB.user_id and f[2] >= opted_at]  # never reached STT
        assert not [ln for ln in sc.human_lines(said.start) if ln.user_id == BOB.user_id]  # no transcript
        assert await sc.bot.memory.store.count_about(sc.guild.id, BOB.user_id) == 0  # no row

        # /memory forget (confirmed): no row about Alice
        assert await sc.bot.memory.forget(sc.guild.id, ALICE.user_id, ["Alice"]) >= 2
        assert await sc.bot.memory.store.count_about(sc.guild.id, ALICE.user_id) == 0

    # nothing members said, nor what the bot remembers or replied, is in the bot's logs at INFO or above
    bot_records = [r for r in caplog.records if r.levelno >= logging.INFO and not r.name.startswith("simulator")]
    logged = "\n".join(r.getMessage() for r in bot_records).lower()
    for words in ("maya", "cello", "sailing", "sister"):
        assert words not in logged, [r.getMessage() for r in bot_records if words in r.getMessage().lower()]
