"""Admission, not collapse (`brain.admission`): a reply that waits for a busy model speaks a holding line, is
kept short, and is dropped once its question is old; on the real SmolLM2 + Piper and the real scheduler, the
model held the way another guild's generation holds it (its lock)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from brain.admission import DROP, GO, SHORT, Admission, ModelWait, first_item
from brain.llm import make_backend
from brain.responder import Responder
from conversation.greeting import DEFAULT_HOLDING_LINES, holding_line, holding_lines
from runtime.scheduler import ModelScheduler
from runtime.settings import load_settings
from runtime.stage_times import stage_waits
from tests.fixtures_thinking import RecordingSink, juniper, question

SETTINGS = load_settings(  # one llama.cpp instance: holding its lock is what a busy model is
    env={
        "LLM_TEMPERATURE": "0",
        "REPLY_HOLD_AFTER_S": "0.4",
        "REPLY_DROP_AFTER_S": "3.0",
        "SCHEDULER_POLICY": "exclusive",
    },
    env_file=None,
)
HOLD_ONLY = SETTINGS.replace(reply_drop_after_s=0.0)  # a loaded machine may take seconds to the first words
SITUATION = "Alice just asked you a question. Answer her."
ASK = "Juniper, what should I cook tonight? I have eggs and rice."


@pytest.fixture(scope="module")
def llm():
    return make_backend(SETTINGS)


def test_the_verdict_follows_the_bounds() -> None:
    admission = Admission(hold_after_s=1.5, drop_after_s=4.0)
    assert [admission.verdict(s) for s in (0.2, 1.4, 1.6, 3.9, 4.1)] == [GO, GO, SHORT, SHORT, DROP]
    assert Admission(hold_after_s=0.0, drop_after_s=0.0).verdict(60.0) == GO  # both off
    assert Admission.from_settings(SETTINGS) == Admission(0.4, 3.0)


def test_the_holding_line_comes_only_while_the_model_is_still_busy() -> None:
    lock = threading.Lock()

    def stream():  # a backend's stream: "" once the model is ours (brain.llm.LlmBackend)
        with lock:
            yield ""
            yield "Hi"

    held: list[str] = []
    lock.acquire()
    threading.Timer(0.5, lock.release).start()
    wait = ModelWait(
        Admission(hold_after_s=0.2, drop_after_s=2.0), asked_at=time.monotonic(), on_hold=lambda: held.append("x")
    )
    with wait.waiting():
        assert first_item(stream()) is None
    assert held == ["x"] and wait.verdict() == SHORT
    quick = ModelWait(
        Admission(hold_after_s=0.2, drop_after_s=2.0), asked_at=time.monotonic(), on_hold=lambda: held.append("y")
    )
    with quick.waiting():
        assert first_item(stream()) is None
    assert quick.verdict() == GO
    time.sleep(0.3)
    assert held == ["x"]  # the model was free at once: no holding line, even after the bound


def test_holding_lines_are_the_personas_own_or_plain_ones() -> None:
    persona = juniper()
    assert holding_lines(persona) == persona.holding and persona.holding
    assert holding_line(persona) in persona.holding
    assert holding_lines(juniper(holding=())) == DEFAULT_HOLDING_LINES


async def reply_while_the_model_is_busy(llm, busy_s: float, policy: str = "exclusive", settings=SETTINGS):
    responder = Responder.from_settings(settings, llm=llm, scheduler=ModelScheduler(policy))
    responder.tts_for(juniper())
    model_lock = llm._loaded.lock  # what another guild's generation holds while it runs
    if busy_s > 0:
        model_lock.acquire()
        threading.Timer(busy_s, model_lock.release).start()
    sink = RecordingSink()
    result = await asyncio.wait_for(responder.respond(juniper(), question(ASK), situation=SITUATION, sink=sink), 60)
    return responder, result, sink


@pytest.mark.asyncio
async def test_a_reply_that_waits_past_the_hold_bound_says_a_holding_line_then_answers_in_one_sentence(llm) -> None:
    responder, result, sink = await reply_while_the_model_is_busy(llm, busy_s=0.9, settings=HOLD_ONLY)
    t = result.timings
    assert sink.texts[0] in juniper().holding  # heard first, in the persona's words
    assert sink.texts[1:] == result.fragments and result.fragments  # then the answer
    assert 0.35 <= t["holding_line"] - t["request"] <= 0.8
    assert t["holding_audio"] < t["first_audio"]
    assert "shortened" in t and result.stop_reason in ("end", "limit") and "dropped_stale" not in t
    assert sum(f.rstrip()[-1:] in ".!?" for f in result.fragments) <= 1  # one sentence
    waited, _ = stage_waits(t)["llm_first_token"]
    assert waited >= 0.8  # the wait for the model shows as a wait, not as compute
    first_llm = min((iv for iv in responder.scheduler.intervals("llm")), key=lambda iv: iv.start)
    assert first_llm.asked is not None and first_llm.start - first_llm.asked >= 0.8  # the scheduler's record too
    assert responder.holding.cached(responder.tts_for(juniper()), sink.texts[0])


@pytest.mark.asyncio
async def test_a_reply_whose_question_grew_old_is_dropped_after_its_holding_line(llm) -> None:
    _, result, sink = await reply_while_the_model_is_busy(llm, busy_s=3.5)
    t = result.timings
    assert result.stop_reason == "stale" and "dropped_stale" in t
    assert result.fragments == [] and result.text == ""  # no late answer
    assert len(sink.texts) == 1 and sink.texts[0] in juniper().holding and sink.audio_seconds > 0.2


@pytest.mark.asyncio
async def test_a_reply_whose_first_words_would_come_too_late_is_dropped_before_they_are_spoken(llm) -> None:
    """The model was free, but its slot was not (another guild's TTS held the exclusive slot) past the bound: the
    holding line is said, and the answer, ready only after the drop bound, is not."""
    responder = Responder.from_settings(SETTINGS, llm=llm, scheduler=ModelScheduler("exclusive"))
    responder.tts_for(juniper())
    inside, release = threading.Event(), threading.Event()

    def other_guild_speaks() -> None:
        with responder.scheduler.hold("tts", owner="other-guild"):
            inside.set()
            release.wait(10)

    threading.Thread(target=other_guild_speaks, daemon=True).start()
    assert inside.wait(5)
    threading.Timer(3.5, release.set).start()
    sink = RecordingSink()
    result = await asyncio.wait_for(responder.respond(juniper(), question(ASK), situation=SITUATION, sink=sink), 60)
    t = result.timings
    assert result.stop_reason == "stale" and "dropped_stale" in t and t["dropped_stale"] - t["request"] > 3.0
    assert t["first_fragment"] - t["request"] > 3.0 and "first_audio" not in t  # ready, too late: not spoken
    assert len(sink.texts) == 1 and sink.texts[0] in juniper().holding
    assert result.text == "" and result.fragments == []


@pytest.mark.asyncio
@pytest.mark.parametrize("policy", ["exclusive", "pipelined"])
async def test_a_reply_with_a_free_model_is_untouched_and_its_stages_show_wait_and_compute(llm, policy) -> None:
    _, result, sink = await reply_while_the_model_is_busy(llm, busy_s=0.0, policy=policy)
    t = result.timings
    assert not {"holding_line", "shortened", "dropped_stale"} & set(t)
    assert sink.texts == result.fragments and result.fragments
    stages = stage_waits(t)
    assert set(stages) == {"llm_first_token", "tts_first_audio"}
    assert stages["llm_first_token"][0] < 0.3 and stages["llm_first_token"][1] > 0.0
    assert stages["tts_first_audio"][1] > 0.0


class SlowToThink:
    """The real model, slow to its first token (a loaded machine): it is ours at once, then computes 3.5 s."""

    def __init__(self, llm) -> None:
        self.llm, self.profile, self.temperature = llm, llm.profile, llm.temperature

    def count_tokens(self, text: str) -> int:
        return self.llm.count_tokens(text)

    def stream(self, messages, **kwargs):
        yield ""
        time.sleep(3.5)
        yield from self.llm.stream(messages, **kwargs)


@pytest.mark.asyncio
async def test_slow_compute_alone_never_drops_a_reply(llm) -> None:
    responder = Responder.from_settings(SETTINGS, llm=SlowToThink(llm), scheduler=ModelScheduler("exclusive"))
    sink = RecordingSink()
    result = await asyncio.wait_for(responder.respond(juniper(), question(ASK), situation=SITUATION, sink=sink), 60)
    t = result.timings
    assert not {"holding_line", "shortened", "dropped_stale"} & set(t)
    assert result.fragments and sink.texts == result.fragments and t["first_audio"] - t["request"] > 3.0
