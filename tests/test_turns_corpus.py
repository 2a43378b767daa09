"""A selection of the turn-taking corpus (`corpora/turns.toml`), one scenario of every family, played against
the real bot on the loopback voice channel (Opus, DAVE, Whisper, Smart Turn, the LLM, Piper). Each asserts
what the bot did (spoke, kept quiet, went on, yielded; never talked over anyone), not how fast: the
timings are the benchmark's (`python -m benchmarks.turns_bench`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from benchmarks.turns_bench import bench_settings
from simulator.turn_corpus import load_corpus
from simulator.turn_runner import run_scenario

pytestmark = [pytest.mark.timeout(600)]

SELECTION = [
    "pause-wondering-sea",  # mid-sentence pause: waits, then answers the whole question
    "pause-picnic-list",  # a list said to the bot with pauses: "…we have bread." is no end (a statement may go on)
    "name-end-puppy",  # the bot's name at the end, an espeak voice
    "similar-holly-keys",  # a member called Holly is spoken to: not Captain Hollis; then he is
    "chat-three-game",  # three people chatting, no names
    "statement-three-rain-answered",  # a remark to the room, answered by another member
    "backchannel-mmhm-dragon",  # "mm-hm" over the bot: it goes on
    "takeover-halting-wait",  # "Wait, wait, stop, ...": it stops
    "turn-to-bob-weekend",  # after its question, a member turns to another member
    "answer-bot-movie",  # after its question, a member answers it (the small model asks this one more often)
    "alone-spider",  # alone with the bot, a question without its name
    "room-nobody-sail-flat",  # a question to the room nobody takes up (a flat voice: maybe no '?'): the bot does
]
# The corpus's deadlines (`within`, 3 s for a question left hanging) are the benchmark's; played here on a
# loaded 2-core machine, an answer within this bound is what is judged.
CI_WITHIN_S = 5.0


def test_the_selection_covers_every_family():
    corpus = load_corpus()
    assert {corpus.get(sid).family for sid in SELECTION} == set(corpus.families)


@pytest.mark.parametrize("scenario_id", SELECTION)
@pytest.mark.asyncio
async def test_scenario(scenario_id: str, tmp_path: Path) -> None:
    scenario = load_corpus().get(scenario_id)
    scenario = dataclasses.replace(
        scenario,
        steps=tuple(
            dataclasses.replace(s, within=max(s.within, CI_WITHIN_S)) if s.within is not None else s
            for s in scenario.steps
        ),
    )
    result = await run_scenario(scenario, bench_settings(), tmp=tmp_path, attempts=4)
    steps = [(s.said, s.expect, s.observed, s.note) for s in result.steps]
    assert not result.error, result.error
    # Every step that ran is judged, also in a play whose precondition failed later on.
    judged = [s for s in result.steps if s.ok is not None]
    assert all(s.ok for s in judged), (steps, result.heard, result.bot_lines, result.decisions)
    assert not result.talk_overs, (result.talk_overs, result.heard, result.bot_lines)
    if result.precondition_failed:
        # The scenario's setup is the model's to give (a question from the bot, a line long enough to talk
        # over), and a small model sometimes does not, whatever is tried: that is no verdict on the steps it
        # never reached, so the test says so (pytest -ra prints it) after judging the ones that ran. The rules
        # behind each family are also tested on fake time (tests/test_rules_floor.py, tests/test_rules_turns.py).
        pytest.skip(
            f"{scenario_id}: the bot never gave the scenario its setup in {result.attempts} tries "
            f"({len(judged)} steps judged, all right): "
            f"{[s.note for s in result.steps if s.observed == 'precondition_failed']}"
        )


@pytest.mark.asyncio
async def test_after_its_greeting_the_members_chat_on(tmp_path: Path) -> None:
    """Greeting on, as shipped: the members begin once the bot said hello to the room (its greeting ends with a
    question, "What are we all up to tonight?"). Their own chat is no answer to it: the bot stays out."""
    scenario = load_corpus().get("chat-swimming-lull")  # "It is so hot today." / "I know, I might go swimming…"
    result = await run_scenario(scenario, bench_settings(env={"PROMPTER_GREET": "true"}), tmp=tmp_path, attempts=2)
    assert not result.error, result.error
    assert all(s.ok for s in result.steps if s.ok is not None), (result.heard, result.bot_lines, result.decisions)
    assert not result.talk_overs, (result.talk_overs, result.heard, result.bot_lines)
