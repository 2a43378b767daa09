"""Parts of the end-to-end benchmark that need no voice channel: the faithful seed-style baseline (the whole LLM
reply, then sentence by sentence as it is synthesized) and the per-turn quality columns."""

from __future__ import annotations

import pytest

from benchmarks.e2e_bench import ALONE, GROUP, script, split_turns, summarize
from benchmarks.seed_baseline import WholeReplyResponder
from runtime.scheduler import ModelScheduler
from runtime.settings import load_settings
from brain.llm import make_backend
from conversation.situation import Situation
from tests.fixtures_thinking import RecordingSink, juniper, question


@pytest.mark.asyncio
async def test_the_baseline_waits_for_the_whole_reply_then_plays_it_sentence_by_sentence() -> None:
    settings = load_settings(env={"LLM_SEED": "11"}, env_file=None)
    llm = make_backend(settings)
    baseline = WholeReplyResponder(settings, llm=llm, scheduler=ModelScheduler("exclusive"))
    persona = juniper(max_reply_words=40, max_reply_sentences=3)
    sink = RecordingSink()
    situation = Situation(
        "Alice is talking to you; reply to Alice.", short="Alice is talking to you.", addressee="Alice"
    )
    result = await baseline.respond(
        persona,
        question("Juniper, tell me about the lake where you grew up."),
        situation=situation,
        sink=sink,
        member_names=["Alice", "Bob"],
    )
    t = result.timings
    assert result.text and sink.texts == result.fragments and sink.done_calls == 1
    assert t["llm_done"] <= t["first_fragment"] <= t["first_audio"]  # nothing is heard before the whole reply
    assert all(f.rstrip()[-1] in ".!?…" for f in result.fragments[:-1])  # whole sentences, in order
    if len(result.fragments) > 1:  # the first sentence is heard before the last one is synthesized
        first_text = next(i for i, (k, _, _) in enumerate(sink.events) if k == "text")
        second_text = [i for i, (k, _, _) in enumerate(sink.events) if k == "text"][1]
        assert any(k == "audio" for k, _, _ in sink.events[first_text:second_text])
        assert t["first_audio"] < t["tts_done"]
    assert result.audio_seconds == pytest.approx(sink.audio_seconds)


def test_the_scripts_vary_where_the_name_is_and_include_follow_ups() -> None:
    texts = [a.text for a in GROUP]
    assert any(t.startswith("Juniper") for t in texts)
    assert any(t.endswith("Juniper?") for t in texts)
    assert any(", Juniper," in t for t in texts)
    assert any("what did" in t.lower() for t in texts)
    assert all("juniper" not in a.text.lower() for a in ALONE)
    assert all(not a.rubric.empty for a in (*GROUP, *ALONE))
    assert split_turns(12) == (8, 4) and len(script(GROUP, 3)) == 4


def test_latency_is_reported_over_all_answers_and_over_on_topic_ones() -> None:
    def row(latency, on_topic):
        checks = {
            c: True
            for c in ("spoken", "on_topic", "right_addressee", "identity", "no_repeat", "no_instructions", "length")
        }
        checks["on_topic"] = on_topic
        return {"warmup": False, "latency_s": latency, "stages_s": {}, "quality": {"checks": checks}}

    summary = summarize([row(0.5, False), row(1.0, True), row(2.0, True), row(None, False)])
    assert summary["answered"] == 3 and summary["on_topic"] == 2
    assert summary["latency_s"]["p50"] == 1.0 and summary["latency_on_topic_s"]["p50"] == 1.5
    assert summary["quality"]["on_topic_rate"] == 0.5
