"""Prefill: the conversation so far is evaluated while a member speaks, so the reply evaluates only
their new line. Measured in evaluated tokens (what llama.cpp actually computes), not in seconds."""

from __future__ import annotations

import time

import pytest

from runtime.scheduler import ModelScheduler
from runtime.settings import load_settings
from brain.llm import make_backend
from brain.prompt import HistoryLine
from brain.responder import Responder
from tests.fixtures_thinking import RecordingSink, juniper, question

# One llama.cpp instance: one prompt cache to measure (routing among several: tests/test_llama_pool.py).
SETTINGS = load_settings(env={"LLM_TEMPERATURE": "0", "LLM_MAX_TOKENS": "8", "LLM_INSTANCES": "1"}, env_file=None)


@pytest.fixture(scope="module")
def responder():
    r = Responder.from_settings(SETTINGS, llm=make_backend(SETTINGS), scheduler=ModelScheduler("pipelined"))
    r.tts_for(juniper())
    return r


@pytest.fixture
def evaluated(responder, monkeypatch):
    """Counts the tokens llama.cpp evaluates (the prompt part that was not in its cache), on every instance."""
    counts: list[int] = []

    def counting(real_eval):
        def counting_eval(tokens):
            counts.append(len(tokens))
            return real_eval(tokens)

        return counting_eval

    for instance in responder.llm.pool.instances:
        monkeypatch.setattr(instance.llm, "eval", counting(instance.llm.eval))
    return counts


def conversation(turns: int) -> list[HistoryLine]:
    now = time.monotonic()
    lines = []
    for i in range(turns):
        lines.append(
            HistoryLine("Bob", f"I went hiking on trail number {i} and saw a heron by the water.", now - 60 + i, False)
        )
        lines.append(HistoryLine("Juniper", f"A heron on trail {i}? That sounds lovely, Bob.", now - 59 + i, True))
    return lines


async def reply_cost(responder, history, evaluated) -> int:
    evaluated.clear()
    sink = RecordingSink()
    await responder.respond(juniper(), history, situation=SITUATION, sink=sink)
    return sum(evaluated)


SITUATION = "Alice is talking to you; reply to Alice."


@pytest.mark.asyncio
async def test_prefill_of_the_partial_leaves_only_the_last_words_to_evaluate(responder, evaluated):
    earlier = conversation(3)
    now = time.monotonic()
    partial = HistoryLine("Alice", "Juniper, what is your favourite kind of soup when it is", now, False)
    final = HistoryLine("Alice", "Juniper, what is your favourite kind of soup when it is cold outside?", now, False)

    responder.warm_up(juniper())
    responder.prefill(juniper(), [*earlier, partial], situation=SITUATION)  # with Alice's words so far
    await reply_cost(responder, [*earlier, final], evaluated)
    warm = evaluated[0]  # the prompt's evaluation (the generated tokens follow one by one)

    responder.warm_up(juniper())
    responder.prefill(juniper(), earlier, situation=SITUATION)  # before Alice said anything
    await reply_cost(responder, [*earlier, final], evaluated)
    cold = evaluated[0]

    last_words = responder.llm.count_tokens(" cold outside?")
    assert warm <= last_words + 8, (warm, last_words)  # their last words and the turn's end markers
    assert cold - warm >= responder.llm.count_tokens(partial.text) - 2, (cold, warm)


@pytest.mark.asyncio
@pytest.mark.parametrize("turns", [2, 3])  # the small layout's history window keeps its start over these
async def test_prefill_leaves_only_the_new_line_to_evaluate(responder, evaluated, turns):
    earlier = conversation(turns)
    new_line = HistoryLine("Alice", "Juniper, what is your favourite bird?", time.monotonic(), False)

    responder.warm_up(juniper())  # cache holds the persona prompt only
    cold = await reply_cost(responder, [*earlier, new_line], evaluated)

    responder.warm_up(juniper())
    responder.prefill(juniper(), earlier, situation=SITUATION)  # while Alice is speaking
    warm = await reply_cost(responder, [*earlier, new_line], evaluated)

    history_tokens = sum(responder.llm.count_tokens(line.text) for line in earlier)
    assert cold - warm >= history_tokens * 0.8, (cold, warm, history_tokens)
    assert warm < cold / 2


def test_prefill_is_cancellable(responder):
    import threading

    cancel = threading.Event()
    cancel.set()
    started = time.monotonic()
    responder.prefill(juniper(), conversation(12), cancel)
    assert time.monotonic() - started < 0.5


def test_prefill_is_background_work_under_the_scheduler(responder):
    """Under `exclusive` the prefill holds the LLM slot (no TTS meanwhile); it waits while a reply is in flight,
    and a reply of another guild cancels it."""
    import threading

    exclusive = Responder.from_settings(SETTINGS, llm=responder.llm, scheduler=ModelScheduler("exclusive"))
    assert exclusive.prefill(juniper(), conversation(2), situation=SITUATION, group=1) == "done"
    slots = exclusive.scheduler.intervals("llm")
    assert [iv.owner for iv in slots] == ["prefill-1"] and slots[0].seconds > 0

    outcome: list[str] = []
    cancel = threading.Event()
    with exclusive.scheduler.foreground(2):  # another guild's reply in flight
        worker = threading.Thread(
            target=lambda: outcome.append(
                exclusive.prefill(
                    juniper(), conversation(6), cancel, situation=SITUATION, group=1, give_way=lambda: True
                )
            )
        )
        worker.start()
        time.sleep(0.2)
        assert outcome == []  # waiting: nothing evaluated while the reply is being made
    worker.join(30)
    assert outcome == ["superseded"]  # it waited, and a newer request had come meanwhile

    started = threading.Event()
    evaluating = Responder.from_settings(SETTINGS, llm=responder.llm, scheduler=ModelScheduler("pipelined"))
    real_stream = evaluating.llm.stream

    def announcing_stream(*args, **kwargs):
        for item in real_stream(*args, **kwargs):
            started.set()
            yield item

    evaluating.llm = type(
        "Announcing", (), {"stream": staticmethod(announcing_stream), "count_tokens": responder.llm.count_tokens}
    )()
    outcome.clear()
    worker = threading.Thread(
        target=lambda: outcome.append(evaluating.prefill(juniper(), conversation(16), situation=SITUATION, group=1))
    )
    worker.start()
    assert started.wait(10)
    t0 = time.monotonic()
    with evaluating.scheduler.foreground(2):
        worker.join(10)
    assert outcome == ["cancelled"] and time.monotonic() - t0 < 2.0
    assert evaluating.scheduler.preemptions == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("warm_up_group", [1, None])
async def test_a_guilds_first_reply_lets_its_warm_up_finish(responder, evaluated, warm_up_group):
    """The persona's warm-up (its prompt put in the LLM's cache at /join) is the guild's own background work:
    a reply for that guild that comes while it evaluates waits for it and evaluates only its own lines. Cut
    short (a warm-up of no guild, which every reply preempts), it leaves the reply the whole prompt, cold."""
    import asyncio
    import threading

    other = juniper(name="Captain Hollis", aliases=(), description="A retired sea captain.")
    responder.prefill(other, [])  # the instance holds another persona's prompt, not Juniper's
    parallel = Responder.from_settings(SETTINGS, llm=responder.llm, scheduler=ModelScheduler("parallel", slots=2))
    instance = responder.llm.pool.instances[0]
    evaluated.clear()
    warming = threading.Thread(target=parallel.warm_up, args=(juniper(), warm_up_group))
    warming.start()
    deadline = time.monotonic() + 10
    while not (instance.lock.locked() and evaluated):  # the warm-up is evaluating the persona prompt
        assert time.monotonic() < deadline
        await asyncio.sleep(0.001)
    warm_up_tokens = evaluated[0]
    evaluated.clear()
    with parallel.scheduler.foreground(1):
        await parallel.respond(
            juniper(),
            question("Juniper, what is your favourite soup?"),
            situation=SITUATION,
            sink=RecordingSink(),
            group=1,
        )
    await asyncio.to_thread(warming.join, 30)
    reply_tokens = evaluated[0]
    if warm_up_group == 1:
        assert parallel.scheduler.preemptions == 0
        assert reply_tokens < warm_up_tokens / 2, (reply_tokens, warm_up_tokens)
    else:
        assert parallel.scheduler.preemptions >= 1
        assert reply_tokens > warm_up_tokens, (reply_tokens, warm_up_tokens)
