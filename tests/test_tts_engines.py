"""TTS engines: Piper in-process (RealtimeTTS engine), espeak-ng streaming, XTTS availability, selection."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from audio.tts import PA_FLOAT32, PA_INT16, RealtimeEngineTts, TtsError, pcm_from_bytes, trim_leading_silence
from audio.tts_factory import load_voice, make_tts
from audio.tts_engines.espeak import EspeakTts
from audio.tts_engines.piper import PiperInProcessEngine, load_piper_voice, split_for_synthesis
from runtime.errors import ModelLoadError
from runtime.settings import load_settings
from conversation.persona import VoiceSpec

SETTINGS = load_settings(env={}, env_file=None)
LONG = (
    "This is a rather long sentence, with a few clauses in it, that keeps going for a while, "
    "so that the voice has plenty to say before it is done; and then it goes on even longer, just to be sure."
)


def synth(tts, text: str, cancel: threading.Event | None = None) -> tuple[np.ndarray, int, int]:
    cancel = cancel or threading.Event()
    chunks, rate = [], 0
    for pcm, rate in tts.synthesize(text, cancel):
        assert pcm.ndim == 1 and pcm.dtype in (np.int16, np.float32)
        chunks.append(pcm.astype(np.float32) / (32768.0 if pcm.dtype == np.int16 else 1.0))
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return audio, rate, len(chunks)


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(audio**2))) if audio.size else 0.0


@pytest.fixture(scope="module")
def piper():
    return make_tts(SETTINGS, VoiceSpec())


def test_piper_speaks_with_a_plausible_duration(piper) -> None:
    assert piper.name == "piper"
    audio, rate, n = synth(piper, "Hello there, how are you doing today?")
    assert rate == 22050 and n >= 1
    seconds = audio.size / rate
    assert 1.0 < seconds < 4.5  # seven words
    assert rms(audio) > 0.02  # speech, not silence


def lead_ms(audio: np.ndarray, rate: int) -> float:
    return float(np.flatnonzero(np.abs(audio) > 0.01)[0]) / rate * 1000.0


def test_leading_silence_is_trimmed_to_10_ms_and_nothing_else_changes(piper) -> None:
    audio, rate, _ = synth(piper, "Hey Alice,")
    assert lead_ms(audio, rate) >= 20  # Piper starts with silence
    trimmed = trim_leading_silence(audio, rate)
    assert 9 <= lead_ms(trimmed, rate) <= 11
    assert np.array_equal(trimmed, audio[audio.size - trimmed.size :])  # only the start went
    # int16 input is judged on its own full scale: the same cut as the same signal in float. (A voice's
    # samples near the threshold round differently in int16, so the check uses a clean step.)
    step = np.concatenate([np.zeros(1000, np.float32), np.full(500, 0.5, np.float32)])
    cut = trim_leading_silence(step, rate)
    assert cut.size == 500 + int(0.01 * rate)
    assert trim_leading_silence((step * 32767).astype(np.int16), rate).size == cut.size
    quiet = np.zeros(2205, np.float32)
    assert trim_leading_silence(quiet, rate) is quiet  # nothing to find: unchanged


def test_piper_voice_is_loaded_once_and_speed_comes_from_the_voice_spec(piper) -> None:
    assert make_tts(SETTINGS, VoiceSpec()) is piper
    normal, rate, _ = synth(piper, "One two three four five six seven eight.")
    fast, _, _ = synth(make_tts(SETTINGS, VoiceSpec(speed=1.6)), "One two three four five six seven eight.")
    assert 0.45 < (fast.size / normal.size) < 0.8


def test_piper_streams_long_text_in_pieces(piper) -> None:
    _, _, n = synth(piper, LONG)
    assert n >= 3  # clause pieces, not one blob at the end


def test_piper_cancel_mid_sentence_stops_within_100_ms(piper) -> None:
    cancel = threading.Event()
    got_after_cancel = 0
    cancelled_at = None
    for _pcm, _rate in piper.synthesize(LONG + " " + LONG, cancel):
        if cancelled_at is not None:
            got_after_cancel += 1
        elif cancelled_at is None:
            cancelled_at = time.monotonic()
            cancel.set()  # the next piece is being computed right now
    ended = time.monotonic()
    assert cancelled_at is not None
    assert got_after_cancel == 0
    assert ended - cancelled_at < 0.1, f"synthesis went on {ended - cancelled_at:.3f} s after the cancel"


def test_piper_cancel_before_the_first_chunk_aborts_the_onnx_run(piper) -> None:
    cancel = threading.Event()
    timer = threading.Timer(0.02, cancel.set)
    started = time.monotonic()
    timer.start()
    chunks = list(
        piper.synthesize(
            "A single sentence without any commas that is long enough to take a while to synthesize here.", cancel
        )
    )
    ended = time.monotonic()
    assert chunks == []  # one ~6 s piece: its ONNX run was cut short, not waited for
    assert ended - started < 0.02 + 0.1


def test_split_for_synthesis() -> None:
    assert split_for_synthesis("Short and sweet.") == ["Short and sweet."]
    pieces = split_for_synthesis(
        "one two three four, five six seven eight, nine ten eleven twelve, thirteen.", piece_words=8
    )
    assert pieces == ["one two three four, five six seven eight,", "nine ten eleven twelve, thirteen."]
    assert split_for_synthesis(
        "no commas at all in this very long sentence of many many words here", piece_words=4
    ) == ["no commas at all in this very long sentence of many many words here"]


def test_piper_engine_plays_in_realtimetts_text_to_audio_stream() -> None:
    """PiperInProcessEngine is a proper RealtimeTTS engine: TextToAudioStream drives it headless."""
    from RealtimeTTS import TextToAudioStream

    engine = PiperInProcessEngine(load_piper_voice())
    chunks: list[bytes] = []
    stream = TextToAudioStream(engine, muted=True, tokenizer="rule-based")
    stream.feed("Hello there. This is chorus speaking.")
    stream.play(muted=True, on_audio_chunk=chunks.append)
    seconds = sum(len(c) for c in chunks) / 2 / 22050
    assert 1.0 < seconds < 5.0


def test_espeak_streams_and_cancels_fast() -> None:
    tts = make_tts(SETTINGS.replace(tts_engine="espeak"), VoiceSpec())  # the setting overrides the persona
    assert isinstance(tts, EspeakTts)
    audio, rate, n = synth(tts, "Hello there, this is the fallback voice.")
    assert rate == 22050 and 1.0 < audio.size / rate < 5.0 and rms(audio) > 0.02
    assert n >= 2  # read from the pipe as it comes
    cancel = threading.Event()
    started = time.monotonic()
    for _ in tts.synthesize(LONG * 4, cancel):
        cancel.set()
    assert time.monotonic() - started < 0.3


def test_espeak_voice_and_pitch_from_the_persona() -> None:
    tts = make_tts(SETTINGS, VoiceSpec(engine="espeak", voice="en-gb", speed=1.2, pitch=70))
    assert isinstance(tts, EspeakTts) and tts.voice == "en-gb" and tts.pitch == 70 and tts.wpm == 198
    audio, _, _ = synth(tts, "Cheerio.")
    assert audio.size > 0
    with pytest.raises(ModelLoadError, match="no voice 'no-such-voice-xx'"):
        EspeakTts("no-such-voice-xx")
    assert EspeakTts("en+m3").voice == "en+m3"  # voice + variant


def test_xtts_without_the_gpu_extra_is_a_clear_model_load_error(tmp_path: Path) -> None:
    reference = tmp_path / "voice.wav"
    reference.write_bytes(b"RIFF")
    with pytest.raises(ModelLoadError, match="requirements-gpu.txt"):
        make_tts(SETTINGS, VoiceSpec(engine="xtts", voice="", reference_wav=reference))
    with pytest.raises(ModelLoadError, match="requirements-gpu.txt"):
        make_tts(SETTINGS.replace(tts_engine="xtts"), VoiceSpec())


def test_a_voice_that_cannot_load_falls_back_to_piper_then_espeak(tmp_path: Path) -> None:
    reference = tmp_path / "voice.wav"
    reference.write_bytes(b"RIFF")
    xtts = VoiceSpec(engine="xtts", voice="", reference_wav=reference)
    assert load_voice(SETTINGS, xtts) is make_tts(SETTINGS, VoiceSpec())  # the embedded Piper voice
    missing = tmp_path / "no-such-voice.onnx"
    espeak = load_voice(SETTINGS, VoiceSpec(engine="piper", voice=str(missing)))
    assert espeak is make_tts(SETTINGS.replace(tts_engine="espeak"), VoiceSpec())


def test_pcm_from_realtimetts_queue_bytes() -> None:
    ints = np.array([0, 1000, -1000], dtype=np.int16)
    assert np.array_equal(pcm_from_bytes(ints.tobytes(), PA_INT16), ints)
    floats = np.array([0.0, 0.5, -0.5, 0.25], dtype=np.float32)
    assert np.allclose(pcm_from_bytes(floats.tobytes(), PA_FLOAT32, channels=2), [0.25, -0.125])
    with pytest.raises(TtsError):
        pcm_from_bytes(b"\0\0", 99)


def test_engine_errors_reach_the_caller() -> None:
    class Broken(PiperInProcessEngine):
        def synthesize(self, text: str, sentence_count: int = 0) -> bool:
            raise RuntimeError("voice model exploded")

    tts = RealtimeEngineTts(lambda: Broken(load_piper_voice()), name="broken", shared=False)
    with pytest.raises(TtsError, match="voice model exploded"):
        list(tts.synthesize("hello", threading.Event()))
