"""The semantic end-of-turn model (Smart Turn v3.2, ONNX) on real speech, and its place in the listener."""

from __future__ import annotations

import numpy as np
import pytest

from audio.end_of_turn import WINDOW_SAMPLES, load_smart_turn
from simulator.speech import piper_speech_16k, silence_16k


def spoken(text: str) -> np.ndarray:
    """Piper saying `text`, its own trailing silence cut, then 0.2 s of silence (what the VAD hears at a pause)."""
    audio = piper_speech_16k(text)
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    return np.concatenate((audio[: loud[-1] + 1], silence_16k(0.2)))


def test_features_are_whisper_log_mels_of_the_last_8_seconds():
    model = load_smart_turn()
    long = np.random.default_rng(1).normal(0, 0.1, WINDOW_SAMPLES + 16000).astype(np.float32)
    feats = model.features(long)
    assert feats.shape == (1, 80, 800) and feats.dtype == np.float32
    assert np.allclose(feats, model.features(long[-WINDOW_SAMPLES:]), atol=1e-5)  # only the last 8 s count
    short = model.features(long[:8000])  # shorter audio is left-padded with silence
    assert short.shape == (1, 80, 800) and np.isfinite(short).all()


@pytest.mark.parametrize(
    "text",
    ["Juniper, have you ever been to the sea?", "What should I cook tonight?", "I think it's going to rain tomorrow."],
)
def test_a_finished_sentence_sounds_finished(text):
    estimate = load_smart_turn().estimate(spoken(text))
    assert estimate.probability > 0.5, (text, estimate)
    assert estimate.compute_s > 0


@pytest.mark.parametrize(
    "text",
    [
        "Juniper, I was wondering",
        "So I went to the store and",
        "Um, I think that",
        "For the picnic we need bread, cheese,",
    ],
)
def test_a_sentence_broken_off_sounds_unfinished(text):
    estimate = load_smart_turn().estimate(spoken(text))
    assert estimate.probability < 0.5, (text, estimate)


@pytest.mark.asyncio
async def test_the_listener_judges_the_end_of_turn_at_each_pause_and_it_rides_on_the_utterances():
    """A broken-off line, a pause (a pause to the VAD, which speculates 400 ms before the end of speech at
    900 ms), the rest: what was judged at the first pause says "not finished", the final
    (judged at the last pause, with the first part as context) sounds more finished than that."""
    import asyncio
    import time

    from audio.listener import Listener
    from audio.types import MemberFrame
    from runtime.settings import load_settings
    from simulator.speech import frames_16k

    settings = load_settings(env={"VAD_END_SILENCE_MS": "900", "STT_PARTIAL_INTERVAL_S": "0.4"}, env_file=None)
    assert settings.turn_model == "smart_turn"
    utterances = []
    listener = await asyncio.to_thread(
        Listener,
        settings,
        name_of=lambda uid: "Alice",
        on_speaking=lambda e: None,
        on_utterance=utterances.append,
        fill_gaps=False,
    )
    try:
        pcm = np.concatenate(
            (
                silence_16k(0.3),
                spoken("So I went to the store and"),
                silence_16k(0.7),
                spoken("I bought a bag of apples."),
                silence_16k(1.3),
            )
        )
        t0 = time.monotonic()
        for i, frame in enumerate(frames_16k(pcm)):
            listener.feed(MemberFrame(7, frame, t0 + i * 0.02))
            if i % 10 == 0:
                await asyncio.sleep(0.2)  # give the VAD thread and the STT worker time, as in real time
        await listener.flush()
    finally:
        await listener.close()
    seen = [(u.text, u.end_of_turn, u.final) for u in utterances]
    broken_off = [u.end_of_turn for u in utterances if u.end_of_turn is not None and "apples" not in u.text]
    finals = [u for u in utterances if u.final and "apples" in u.text]
    # (how the 0.7 s pause is cut into segments depends on how fast Whisper runs: the judgements compare)
    assert broken_off and min(broken_off) < 0.5, seen
    assert finals and finals[-1].end_of_turn is not None and finals[-1].end_of_turn > min(broken_off), seen
    assert listener.stats.end_of_turn_calls >= 2
