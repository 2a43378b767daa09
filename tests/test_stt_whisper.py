"""Shared faster-whisper transcription on the real embedded tiny.en, its guards and the fair scheduler."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from audio.hallucinations import is_hallucination, normalize_text
from audio.stt import WhisperTranscriber
from audio.stt_result import collapse_repeats
from audio.stt_scheduler import PartialSource, SttJob, SttScheduler
from tests.fixtures_listening import music, settings, silence, speech, white_noise, words

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Can you hear me now?",
    "I think we should order pizza for dinner tonight.",
    "Turn left at the second light.",
    "Hello there.",
]


@pytest.fixture(scope="module")
def transcriber():
    return WhisperTranscriber(settings())


def test_sentences_come_back_word_for_word(transcriber):
    clips = [np.concatenate((silence(0.2), speech(s), silence(0.3))) for s in SENTENCES]
    results = [transcriber.transcribe([clip])[0] for clip in clips]
    for sentence, result in zip(SENTENCES, results):
        assert words(result.text) == words(sentence), (sentence, result)
        assert result.rejected is None and 0.3 < result.confidence <= 1.0


def test_batched_finals_equal_single_ones(transcriber):
    clips = [speech(s) for s in SENTENCES[:4]]
    batched = transcriber.transcribe(clips)
    assert [words(r.text) for r in batched] == [words(s) for s in SENTENCES[:4]]
    assert all(r.batch == 4 for r in batched)


def test_long_clip_uses_the_full_window(transcriber):
    text = (
        "My favourite book is about a sailor who travels around the world, meeting strange people on "
        "every island and writing long letters home to his sister about the weather."
    )
    clip = speech(text)
    assert len(clip) > transcriber._short_max_samples
    result = transcriber.transcribe([clip])[0]
    got, want = words(result.text), words(text)
    assert len(set(got) & set(want)) >= len(set(want)) - 2, result.text


@pytest.mark.parametrize(
    "make",
    [lambda: silence(10.0), lambda: white_noise(10.0, level=0.1), lambda: music(10.0)],
    ids=["silence", "white-noise", "music"],
)
def test_non_speech_gives_no_text(transcriber, make):
    """Even if VAD let it through, the guards drop what Whisper makes of non-speech."""
    audio = make()
    for clip in (audio[: 16000 * 3], audio[16000 * 3 : 16000 * 8], audio):
        result = transcriber.transcribe([clip])[0]
        assert result.text == "", result


def test_guards_reject_with_a_reason(transcriber):
    strict = WhisperTranscriber(settings(STT_LOGPROB_THRESHOLD="-0.0001"), model=transcriber.model)
    result = strict.transcribe([speech("Turn left at the second light.")])[0]
    assert result.text == "" and result.rejected.startswith("avg_logprob")
    assert "second light" in result.raw_text.lower()


def test_hallucination_list():
    for text in (
        "Thanks for watching!",
        " you",
        "[Music]",
        "(upbeat music)",
        "♪ ♪",
        "Please subscribe.",
        "you you you",
    ):
        assert is_hallucination(text), text
    for text in ("Thank you, that was helpful.", "You should subscribe to the newsletter, Bob.", "Okay.", "Thank you."):
        assert not is_hallucination(text), text
    assert normalize_text("  Don't STOP, me-now! ") == "dont stop me now"


def test_collapse_repeats():
    assert collapse_repeats("Can you hear me? Can you hear me? Can you") == "Can you hear me?"
    assert collapse_repeats("Yes. Yes. Yes.") == "Yes."
    assert collapse_repeats("I went home. Then I slept.") == "I went home. Then I slept."


class GatedTranscriber:
    """The real transcriber, but the first call waits for a gate: lets a test queue work up behind it."""

    def __init__(self, inner):
        self.inner = inner
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls: list[int] = []

    def transcribe(self, audios, **kw):
        self.entered.set()
        self.gate.wait(10)
        self.calls.append(len(audios))
        return self.inner.transcribe(audios, **kw)


def test_scheduler_runs_finals_before_partials_round_robin(transcriber):
    gated = GatedTranscriber(transcriber)
    sched = SttScheduler(gated, partial_interval_s=0.2, max_batch=2)
    order: list[tuple[str, int]] = []
    clip = speech("Hello there.")
    try:
        # a blocking first job occupies the worker
        sched.submit(SttJob(9, "final", clip, lambda j, r: order.append(("first", 9))))
        assert gated.entered.wait(5)
        # meanwhile: member 1 queues three finals, member 2 one final, member 3 one speculative, member 4 partials
        sched.start_partials(
            PartialSource(
                4,
                snapshot=lambda: clip,
                on_done=lambda r, s, stale: order.append(("partial", 4)),
                is_stale=lambda: False,
                next_due=0.0,
            )
        )
        for _ in range(3):
            sched.submit(SttJob(1, "final", clip, lambda j, r: order.append(("final", j.user_id))))
        sched.submit(SttJob(3, "speculative", clip, lambda j, r: order.append(("speculative", j.user_id))))
        sched.submit(SttJob(2, "final", clip, lambda j, r: order.append(("final", j.user_id))))
        gated.gate.set()
        deadline = time.monotonic() + 60
        while ("partial", 4) not in order and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        sched.close()
    assert order[0] == ("first", 9)
    # round-robin among members, confirmed finals before speculative ones, partials last
    assert order[1:6] == [("final", 1), ("final", 2), ("final", 1), ("final", 1), ("speculative", 3)]
    assert order[6] == ("partial", 4)
    assert gated.calls[:4] == [1, 2, 2, 1]  # batches of two finals
    assert sched.stats.finals == 5 and sched.stats.speculative == 1


def test_scheduler_drops_cancelled_and_stale_work(transcriber):
    gated = GatedTranscriber(transcriber)
    sched = SttScheduler(gated, partial_interval_s=0.2, max_batch=4)
    done: list[str] = []
    clip = speech("Hello there.")
    try:
        sched.submit(SttJob(1, "final", clip, lambda j, r: done.append("first")))
        assert gated.entered.wait(5)
        spec = sched.submit(SttJob(2, "speculative", clip, lambda j, r: done.append("spec")))
        assert sched.cancel(spec)
        gated.gate.set()
        deadline = time.monotonic() + 30
        while not sched.idle() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert done == ["first"] and sched.stats.cancelled == 1
    finally:
        sched.close()


def test_a_failing_transcription_is_reported_not_lost(transcriber):
    class Broken:
        def transcribe(self, audios, **kw):
            raise RuntimeError("CUDA out of memory")

    sched = SttScheduler(Broken(), partial_interval_s=1.0)
    got = []
    try:
        job = sched.submit(SttJob(1, "final", speech("Hello there."), lambda j, r: got.append(r)))
        assert job.done.wait(5)
    finally:
        sched.close()
    assert got and got[0].text == "" and got[0].rejected.startswith("error: RuntimeError")
    assert sched.stats.errors == 1
