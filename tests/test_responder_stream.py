"""The Responder on the real SmolLM2 + Piper: streamed, cleaned, in-limits replies; fast cancellation."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time

import numpy as np
import pytest

from runtime.scheduler import ModelScheduler
from runtime.settings import load_settings
from brain.chunker import SpeechChunker
from brain.llm import OpenAiBackend, make_backend
from brain.llm_options import LlmOptions
from brain.prompt import HistoryLine
from brain.responder import Responder, ReplyResult
from conversation.persona import VoiceSpec
from tests.fixtures_thinking import RecordingSink, juniper, question

SETTINGS = load_settings(env={"LLM_TEMPERATURE": "0"}, env_file=None)  # greedy: the same replies every run
SITUATION = "Alice just asked you a question. Answer her."


@pytest.fixture(scope="module")
def llm():
    return make_backend(SETTINGS)


def responder(llm, policy: str = "pipelined") -> Responder:
    r = Responder.from_settings(SETTINGS, llm=llm, scheduler=ModelScheduler(policy))
    r.tts_for(juniper())  # load the voice outside the timed parts
    return r


@pytest.mark.asyncio
@pytest.mark.parametrize("policy", ["pipelined", "exclusive", "parallel"])
async def test_a_question_yields_streamed_text_and_audio(llm, policy) -> None:
    r = responder(llm, policy)
    persona = juniper()
    sink = RecordingSink()
    result = await r.respond(
        persona, question("Juniper, what should I cook tonight? I have eggs and rice."), situation=SITUATION, sink=sink
    )

    assert result.error is None and not result.cancelled
    assert result.fragments and result.text == " ".join(result.fragments)
    assert sink.texts == result.fragments  # each fragment announced before its audio
    assert sink.done_calls == 1 and sink.events[-1][0] == "done"
    assert not sink.wrong_thread  # sink calls happen on the event loop thread
    kinds = [k for k, _, _ in sink.events]
    assert kinds[0] == "text" and kinds.count("audio") >= len(result.fragments)
    # Plausible speech: 1.2–6 words per second of audio.
    words = len(result.text.split())
    assert result.audio_seconds == pytest.approx(sink.audio_seconds)
    assert 1.2 <= words / result.audio_seconds <= 6.0, (words, result.audio_seconds)
    t = result.timings
    assert t["request"] <= t["first_token"] <= t["first_fragment"] <= t["first_audio"] <= t["done"]
    if len(result.fragments) > 1:
        assert t["first_fragment"] < t["llm_done"]  # TTS got its first fragment before the model finished
    assert result.spoken_text == result.text
    pcm, rate = sink.first_pcm
    voiced = np.flatnonzero(np.abs(pcm.astype(np.float32) / (32768.0 if pcm.dtype == np.int16 else 1.0)) > 0.01)
    assert voiced[0] <= 0.011 * rate  # the reply's voice starts at once (the TTS's leading silence trimmed)


@pytest.mark.asyncio
async def test_reply_is_clean_in_character_and_within_limits(llm) -> None:
    r = responder(llm)
    persona = juniper(max_reply_words=20, max_reply_sentences=2)
    questions = ["What is your favourite book?", "Do you like cats or dogs more?"]
    for text in questions:
        result = await r.respond(persona, question(text), situation=SITUATION, sink=RecordingSink())
        spoken = result.text
        assert spoken, result.raw_text
        assert len(spoken.split()) <= 20
        sentences = [
            f
            for f in SpeechChunker(first_clause_words=100, first_max_words=100, max_words=100).feed(spoken + " ")
            if f.sentence_end
        ]
        assert len(sentences) <= 2, spoken
        assert not re.search(r"\b(Alice|Bob|Juniper|User)\s*:", spoken)  # no speaker labels or other lines
        assert not re.search(r"[*_#`~]|https?://|[\U0001F300-\U0001FAFF]", spoken)  # no markdown, URLs, emoji
        assert result.stop_reason in ("end", "limit", "other_speaker")


async def _cancel_after(task: asyncio.Task, event: asyncio.Event | None, delay: float) -> float:
    if event is not None:
        await asyncio.wait_for(event.wait(), 60)
    await asyncio.sleep(delay)
    cancelled_at = time.monotonic()
    task.cancel()
    return cancelled_at


@pytest.mark.asyncio
@pytest.mark.parametrize("policy", ["pipelined", "exclusive", "parallel"])
async def test_cancel_during_speech_stops_text_and_audio_within_100_ms(llm, policy) -> None:
    r = responder(llm, policy)
    persona = juniper(max_reply_words=150, max_reply_sentences=10)
    sink = RecordingSink()
    progress = ReplyResult()
    task = asyncio.create_task(
        r.respond(
            persona,
            question("Tell me a long story about your hometown, with lots of details."),
            situation=SITUATION,
            sink=sink,
            result=progress,
        )
    )
    cancelled_at = await _cancel_after(task, sink.first_audio, 0.05)
    with pytest.raises(asyncio.CancelledError):
        await task
    returned_at = time.monotonic()
    assert returned_at - cancelled_at < 0.35  # respond() gives its threads a moment, never more than that
    assert all(t <= cancelled_at for _, t, _ in sink.events)  # nothing reached the sink after the cancel
    assert sink.done_calls == 0
    assert progress.cancelled and progress.stop_reason == "cancelled"
    # The models really stopped: every LLM/TTS interval of this reply ended within 100 ms of the cancel.
    ends = [iv.end for iv in r.scheduler.intervals() if iv.kind in ("llm", "tts")]
    assert ends and max(ends) - cancelled_at < 0.1, f"work went on {max(ends) - cancelled_at:.3f} s"
    raw_then = progress.raw_text
    await asyncio.sleep(0.2)
    assert progress.raw_text == raw_then  # no more tokens


@pytest.mark.asyncio
async def test_cancel_while_thinking(llm) -> None:
    r = responder(llm)
    sink = RecordingSink()
    progress = ReplyResult()
    task = asyncio.create_task(
        r.respond(
            juniper(), question("What do you think about rainy days?"), situation=SITUATION, sink=sink, result=progress
        )
    )
    await asyncio.sleep(0.03)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.15)
    ends = [iv.end for iv in r.scheduler.intervals() if iv.kind in ("llm", "tts")]
    assert not ends or max(ends) - cancelled_at < 0.1
    assert all(t <= cancelled_at for _, t, _ in sink.events)
    # The model is free for the next reply.
    again = await r.respond(juniper(), question("Say hi to Bob."), situation=SITUATION, sink=RecordingSink())
    assert again.text


@pytest.mark.asyncio
async def test_an_unusable_voice_falls_back_to_piper(llm, tmp_path) -> None:
    reference = tmp_path / "ref.wav"
    reference.write_bytes(b"RIFF")
    persona = juniper(voice=VoiceSpec(engine="xtts", voice="", reference_wav=reference))
    r = Responder.from_settings(SETTINGS, llm=llm, scheduler=ModelScheduler("pipelined"))
    result = await r.respond(persona, question("Hi Juniper!"), situation=SITUATION, sink=RecordingSink())
    assert result.tts_engine == "piper" and result.audio_seconds > 0.3


@pytest.mark.asyncio
async def test_an_unreachable_llm_server_ends_the_reply_with_an_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = SETTINGS.replace(llm_backend="openai", llm_base_url=f"http://127.0.0.1:{port}/v1")
    r = Responder.from_settings(
        settings, llm=OpenAiBackend(LlmOptions.from_settings(settings)), scheduler=ModelScheduler("exclusive")
    )
    sink = RecordingSink()
    result = await r.respond(juniper(), question("Hello?"), situation=SITUATION, sink=sink)
    assert result.stop_reason == "error" and "cannot reach the LLM server" in (result.error or "")
    assert result.text == "" and sink.done_calls == 1


def test_stop_strings_name_the_other_members(llm) -> None:
    r = Responder.from_settings(SETTINGS, llm=llm, scheduler=ModelScheduler("pipelined"))
    assert r.stop_strings(juniper(), ["Alice", "Bob", "Juniper", "Alice"]) == ["\nAlice:", "\nBob:", "\nUser:"]


class FirstSampleWrites:
    """The real model, except that its first `times` samples are `first` (what SmolLM2 sometimes
    writes: a script line for another member, or nothing at all). Records the temperatures asked for."""

    def __init__(self, llm, first: list[str], hold: threading.Event | None = None, times: int = 1) -> None:
        self.llm = llm
        self.first = list(first)
        self.times = times
        self.hold = hold  # the first sample ends only once this is set
        self.temperature = llm.temperature
        self.profile = llm.profile  # the real model's layout, sampling and repairs
        self.temperatures: list[float | None] = []

    def count_tokens(self, text: str) -> int:
        return self.llm.count_tokens(text)

    def stream(self, messages, *, max_tokens, stop, cancel, temperature=None):
        self.temperatures.append(temperature)
        if len(self.temperatures) <= self.times:
            yield ""
            yield from self.first
            if self.hold is not None:
                self.hold.wait(10)
            return
        yield from self.llm.stream(messages, max_tokens=max_tokens, stop=stop, cancel=cancel, temperature=temperature)


@pytest.mark.asyncio
@pytest.mark.parametrize("first", [["(", "Bob", ":", " you", " tell", " it", "!)"], [], ["*", "smiles", "*"]])
async def test_a_sample_with_nothing_to_say_is_sampled_again(llm, first) -> None:
    model = FirstSampleWrites(llm, first)
    r = Responder.from_settings(SETTINGS, llm=model, scheduler=ModelScheduler("exclusive"))
    sink = RecordingSink()
    result = await r.respond(
        juniper(),
        question("Juniper, tell me a story about a dragon."),
        situation=SITUATION,
        sink=sink,
        member_names=["Alice", "Bob"],
    )
    assert result.attempts == 2 and len(model.temperatures) == 2
    assert model.temperatures[0] == 0.0 and model.temperatures[1] >= 0.9  # greedy would repeat itself
    assert result.text and sink.texts == result.fragments and result.audio_seconds > 0.3
    assert "Bob" not in result.text and result.stop_reason in ("end", "limit", "other_speaker")


@pytest.mark.asyncio
async def test_a_cancelled_reply_is_not_sampled_again(llm) -> None:
    hold = threading.Event()
    model = FirstSampleWrites(llm, ["*", "smiles"], hold=hold)
    r = Responder.from_settings(SETTINGS, llm=model, scheduler=ModelScheduler("exclusive"))
    progress = ReplyResult()
    task = asyncio.create_task(
        r.respond(juniper(), question("Juniper?"), situation=SITUATION, sink=RecordingSink(), result=progress)
    )
    while not model.temperatures:  # the first sample is under way
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    hold.set()  # the sample ends with nothing to say, after the cancel
    await asyncio.sleep(0.3)
    assert len(model.temperatures) == 1 and progress.stop_reason == "cancelled"


@pytest.mark.asyncio
async def test_a_sample_that_only_repeats_the_bots_last_line_is_sampled_again(llm) -> None:
    earlier = "Fried rice is the answer, with a fried egg on top of it."
    history = question("Juniper, what about tomorrow night?")
    history.insert(2, HistoryLine("Juniper", earlier, history[-1].t - 1, True))
    model = FirstSampleWrites(llm, [earlier[i : i + 4] for i in range(0, len(earlier), 4)])
    r = Responder.from_settings(SETTINGS, llm=model, scheduler=ModelScheduler("exclusive"))
    result = await r.respond(
        juniper(), history, situation=SITUATION, sink=RecordingSink(), member_names=["Alice", "Bob"]
    )
    assert result.attempts == 2 and result.text and earlier not in result.text


@pytest.mark.asyncio
async def test_a_model_that_only_repeats_itself_is_heard_on_the_last_sample(llm) -> None:
    earlier = "Fried rice is the answer, with a fried egg on top of it."
    history = question("Juniper, what about tomorrow night?")
    history.insert(2, HistoryLine("Juniper", earlier, history[-1].t - 1, True))
    model = FirstSampleWrites(llm, [earlier[i : i + 4] for i in range(0, len(earlier), 4)], times=3)
    r = Responder.from_settings(SETTINGS, llm=model, scheduler=ModelScheduler("exclusive"))
    result = await r.respond(
        juniper(), history, situation=SITUATION, sink=RecordingSink(), member_names=["Alice", "Bob"]
    )
    assert result.attempts == 3 and result.text == earlier  # a repeat is better than silence


@pytest.mark.asyncio
async def test_a_reply_the_model_slipped_on_stays_out_of_later_prompts(llm) -> None:
    model = FirstSampleWrites(llm, ["*", "smiles", "*"])  # nothing to say: sampled again
    r = Responder.from_settings(SETTINGS, llm=model, scheduler=ModelScheduler("exclusive"))
    history = question("Juniper, tell me a story about a dragon.")
    result = await r.respond(
        juniper(), history, situation=SITUATION, sink=RecordingSink(), member_names=["Alice", "Bob"]
    )
    assert result.attempts == 2 and result.text
    later = [
        *history,
        HistoryLine("Juniper", result.text, history[-1].t + 1, True),
        HistoryLine("Bob", "Juniper, and then?", history[-1].t + 2, False),
    ]
    prompt = "\n".join(m["content"] for m in r.build_prompt(juniper(), later, SITUATION))
    assert result.text not in prompt and "and then?" in prompt
    assert r.profile.layout.own_lines == "heard"  # the embedded model's profile leaves such lines out


@pytest.mark.asyncio
@pytest.mark.parametrize("policy", ["pipelined", "exclusive", "parallel"])
async def test_a_scripted_line_is_spoken_as_written_without_the_model(llm, policy) -> None:
    """The listening notice and the persona's greeting: the words given, in the persona's voice, no generation."""
    model = FirstSampleWrites(llm, ["Never", " spoken."], times=99)
    r = Responder.from_settings(SETTINGS, llm=model, scheduler=ModelScheduler(policy))
    sink = RecordingSink()
    line = "Hey hey, Juniper here! What are we all up to tonight, Alice and Bob?"
    result = await r.respond(juniper(), [], situation="", sink=sink, script=line)
    assert model.temperatures == []  # the model was never asked
    assert result.error is None and result.text == line and " ".join(sink.texts) == line
    assert len(sink.texts) >= 2  # cut into fragments: the first is heard while the rest is synthesized
    assert 1.2 <= len(line.split()) / result.audio_seconds <= 6.0 and sink.done_calls == 1
