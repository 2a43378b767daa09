"""A member opts out WHILE speaking, on the loopback voice channel with the real pipeline (receive + DAVE + Opus,
VAD, tiny.en, turn-taking, SmolLM2, Piper) and the real SQLite database.

Bob says a whole line (heard, in the history, captioned), then a long one: at his first partial (between a
partial and its final) he runs /privacy optout. From then on nothing of his is anywhere: no transcript of his
is delivered (the buffered audio and the pending final are dropped, not flushed), his earlier line left the
history, no caption with his words is posted, no prompt carries his words or his name, no row about him, no log
line above DEBUG. Then he opts in, speaks again, and opts out as soon as his speech starts (mid-word): the same.
Every wait is on a condition (a partial, the listener settled), never a sleep.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest

from bot.voice_session import OPTED_OUT_NAME
from simulator.join_command import JoinInteraction
from tests.fixtures_scenarios import ALICE, BOB, bot_in_channel, scenario_settings

pytestmark = [pytest.mark.timeout(900)]

FIRST = "I keep bees in my garden behind the old stone house."
LONG = ("My cousin Robert and I go sailing on the lake near the harbour every summer, and we always "
        "bring sandwiches, lemonade and a big yellow umbrella for the afternoon sun.")
COMMON = {"with", "that", "this", "there", "every", "always", "and", "the", "for"}


class Witness:
    """Everything that could carry Bob's words after his opt-out: transcripts delivered, captions posted,
    prompts given to the LLM (replies and prefills)."""

    def __init__(self, sc: Any) -> None:
        session = sc.session
        self.utterances: list[tuple[float, Any]] = []
        self.captions: list[tuple[float, str]] = []
        self.prompts: list[tuple[float, str]] = []
        on_utterance = session.listener.on_utterance

        def tap_utterance(utt: Any) -> None:
            self.utterances.append((time.monotonic(), utt))
            on_utterance(utt)

        session.listener.on_utterance = tap_utterance

        async def caption(text: str) -> None:
            self.captions.append((time.monotonic(), text))

        session.captions = caption
        inner = session.responder.inner
        respond, prefill = inner.respond, inner.prefill

        def prompt_text(history: Any, kwargs: dict) -> str:
            lines = " | ".join(f"{getattr(ln, 'name', '')}: {getattr(ln, 'text', ln)}" for ln in history)
            return f"{lines} || {kwargs.get('member_names')} || {kwargs.get('memory', '')}"

        async def tap_respond(persona: Any, history: Any, **kwargs: Any) -> Any:
            self.prompts.append((time.monotonic(), prompt_text(history, kwargs)))
            return await respond(persona, history, **kwargs)

        def tap_prefill(persona: Any, history: Any, cancel: Any = None, **kwargs: Any) -> Any:
            self.prompts.append((time.monotonic(), prompt_text(history, kwargs)))
            return prefill(persona, history, cancel, **kwargs)

        inner.respond, inner.prefill = tap_respond, tap_prefill

    def bob_texts(self, before: float = float("inf")) -> list[str]:
        return [u.text for t, u in self.utterances if u.user_id == BOB.user_id and u.text.strip() and t < before]


def words_of(texts: list[str]) -> set[str]:
    return {w for text in texts for w in re.findall(r"[a-z]{4,}", text.lower()) if w not in COMMON}


async def opt_out(sc: Any) -> float:
    privacy = sc.bot.get_cog("PrivacyCog")
    asked = JoinInteraction(sc.guild, sc.guild.get_member(BOB.user_id))
    at = time.monotonic()
    await privacy.optout.callback(privacy, asked)
    assert "no longer listen" in asked.replies[-1], asked.replies
    return at


async def settled(sc: Any, speaking: asyncio.Task) -> None:
    """Bob's line sent, every frame through the VAD, every pending final delivered or withheld, writes done."""
    await speaking
    await sc.session.listener.flush(120)
    recorder = sc.bot.memory.recorders[sc.guild.id]
    recorder.poll()
    await sc.bot.memory.writes.drain(30)


async def assert_nothing_of_bob_since(sc: Any, witness: Witness, since: float, heard: set[str],
                                      caplog: pytest.LogCaptureFixture) -> None:
    assert heard, "no word of Bob's was transcribed before his opt-out (the test's precondition)"
    late = [(round(t - since, 2), u.final, u.text) for t, u in witness.utterances
            if u.user_id == BOB.user_id and t >= since]
    assert not late, f"transcripts of Bob delivered after his opt-out: {late}"
    history = list(sc.session.room.history)
    assert not [ln for ln in history if ln.user_id == BOB.user_id], history
    in_history = words_of([ln.text for ln in history]) & heard
    assert not in_history, (in_history, history)
    captions = [text for t, text in witness.captions if t >= since]
    assert not words_of(captions) & heard and not any("Bob" in c for c in captions), captions
    prompts = [text for t, text in witness.prompts if t >= since]
    assert not [p for p in prompts if words_of([p]) & heard or "Bob" in p], prompts
    member = sc.session.room.members.get(BOB.user_id)
    assert member is not None and member.name == OPTED_OUT_NAME and member.partial is None
    store = sc.bot.memory.store
    assert await store.count_about(sc.guild.id, BOB.user_id) == 0
    rows = await store.about(sc.guild.id, ALICE.user_id)
    assert not words_of([m.text for m in rows]) & heard, rows
    logged = [r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG
              and not r.name.startswith("simulator")]
    assert not [m for m in logged if words_of([m]) & heard], [m for m in logged if words_of([m]) & heard]


@pytest.mark.asyncio
async def test_opt_out_while_speaking_leaves_nothing_of_theirs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    settings = scenario_settings(tmp_path, MEMORY_SUMMARY="extractive")
    async with bot_in_channel(settings, [ALICE, BOB], synthesize=[("Bob", FIRST), ("Bob", LONG)]) as sc:
        witness = Witness(sc)
        members = sc.session.room.members

        # a whole line first: heard, in the history (his earlier lines must go too)
        said = await sc.say("Bob", FIRST)
        await sc.wait_for(lambda: [ln for ln in sc.human_lines(said.start) if ln.user_id == BOB.user_id], 90,
                          "Bob's first line in the history")
        await sc.wait_idle()

        # between a partial and its final: opt out at his first partial of the long line
        started = time.monotonic()
        speaking = asyncio.create_task(sc.say("Bob", LONG))
        await sc.wait_for(lambda: (m := members.get(BOB.user_id)) is not None and m.partial is not None
                          and m.partial.start >= started - 0.5, 120, "a partial of Bob's long line")
        assert not speaking.done(), "Bob finished his line before his first partial: nothing to test"
        since = await opt_out(sc)
        heard = words_of(witness.bob_texts(before=since))
        await settled(sc, speaking)
        await assert_nothing_of_bob_since(sc, witness, since, heard, caplog)
        assert sc.session.receiver.stats.as_dict()["dropped_opted_out"] > 20  # the rest of his line, at receive

        # mid-word: opted in again, he speaks; he opts out as soon as the VAD hears him start
        privacy = sc.bot.get_cog("PrivacyCog")
        back = JoinInteraction(sc.guild, sc.guild.get_member(BOB.user_id))
        await privacy.optin.callback(privacy, back)
        assert "listen to you again" in back.replies[-1]
        started = time.monotonic()
        speaking = asyncio.create_task(sc.say("Bob", LONG))
        assert sc.heard is not None
        await sc.wait_for(lambda: sc.heard.starts(BOB.user_id, since=started), 60, "Bob's speech start")
        since = await opt_out(sc)
        await settled(sc, speaking)
        await assert_nothing_of_bob_since(sc, witness, since, heard, caplog)
