"""Many concurrent replies on the real SmolLM2 + Piper: no LLM/TTS overlap under `exclusive`, overlap under `pipelined`,
replies of different guilds at once under `parallel` (two llama.cpp instances), each in lockstep, saying the same."""

from __future__ import annotations

import asyncio

import pytest

from runtime.scheduler import ModelScheduler
from runtime.settings import load_settings
from brain.llm import make_backend
from brain.responder import Responder
from tests.fixtures_thinking import RecordingSink, juniper, question

# Greedy: the same replies every run. Admission off: every reply is made in full however long it queued (the
# holding line and dropping are tests/test_reply_admission.py's).
SETTINGS = load_settings(
    env={"LLM_TEMPERATURE": "0", "REPLY_HOLD_AFTER_S": "0", "REPLY_DROP_AFTER_S": "0"}, env_file=None
)
QUESTIONS = [
    ("Alice", "What should I cook tonight?"),
    ("Bob", "Do you like rainy days?"),
    ("Chen", "What is the best board game?"),
    ("Dana", "Any plans for the weekend?"),
]


async def run_replies(policy: str, slots: int = 1) -> tuple[Responder, list]:
    llm = make_backend(SETTINGS.replace(llm_instances=max(2, slots)))
    responder = Responder.from_settings(SETTINGS, llm=llm, scheduler=ModelScheduler(policy, slots=slots))
    persona = juniper(max_reply_words=18, max_reply_sentences=2)
    responder.tts_for(persona)
    results = await asyncio.wait_for(
        asyncio.gather(
            *(
                responder.respond(
                    persona, question(text, speaker), situation=f"{speaker} asked you something.", sink=RecordingSink()
                )
                for speaker, text in QUESTIONS
            )
        ),
        timeout=240,
    )
    return responder, results


@pytest.mark.asyncio
async def test_exclusive_policy_never_runs_llm_and_tts_at_once() -> None:
    responder, results = await run_replies("exclusive")
    scheduler = responder.scheduler
    assert all(r.error is None and r.text and r.audio_seconds > 0.2 for r in results), [
        (r.error, r.audio_seconds) for r in results
    ]
    assert scheduler.overlap_seconds("llm", "tts") == 0.0
    # Work is granted per chunk: a reply of several fragments alternates LLM and TTS turns.
    multi = [r for r in results if len(r.fragments) >= 2]
    owners = {iv.owner for iv in scheduler.intervals("llm")}
    assert len(owners) == len(QUESTIONS)
    if multi:
        per_owner = {}
        for iv in sorted(scheduler.intervals(), key=lambda iv: iv.start):
            per_owner.setdefault(iv.owner, []).append(iv.kind)
        assert any(kinds[:3] == ["llm", "tts", "llm"] for kinds in per_owner.values()), per_owner


@pytest.mark.asyncio
async def test_pipelined_policy_overlaps_llm_and_tts() -> None:
    responder, results = await run_replies("pipelined")
    assert all(r.error is None and r.text and r.audio_seconds > 0.2 for r in results), [
        (r.error, r.stop_reason, r.raw_text, r.audio_seconds) for r in results
    ]
    assert responder.scheduler.overlap_seconds("llm", "tts") > 0.05


@pytest.mark.asyncio
async def test_parallel_policy_runs_two_replies_at_once_each_in_lockstep_saying_the_same() -> None:
    responder, results = await run_replies("parallel", slots=2)
    assert all(r.error is None and r.text and r.audio_seconds > 0.2 for r in results), [
        (r.error, r.audio_seconds) for r in results
    ]
    heavy = [iv for iv in responder.scheduler.intervals() if iv.kind in ("llm", "tts")]
    at_once = max(sum(1 for other in heavy if other.start <= iv.start < other.end) for iv in heavy)
    assert at_once == 2  # two replies computed at the same time, never three
    for owner in {iv.owner for iv in heavy}:  # each reply: its LLM and TTS take turns
        own = sorted((iv.start, iv.end) for iv in heavy if iv.owner == owner)
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(own, own[1:]))
    # Overlap does not change what is said: greedy replies are the ones made one at a time.
    _, alone = await run_replies("exclusive")
    assert [r.text for r in results] == [r.text for r in alone]
