"""Per-speaker VAD on the real silero ONNX model (and the state machine on scripted probabilities)."""

from __future__ import annotations

import numpy as np
import pytest

from audio.types import STT_RATE
from audio.vad import WINDOW, SpeakerVad, VadConfig, dbfs
from audio.vad_model import load_silero_vad
from tests.fixtures_listening import frames, music, silence, speech, white_noise

LEAD_S = 1.0


@pytest.fixture(scope="module")
def model():
    return load_silero_vad()


def run(vad: SpeakerVad, pcm: np.ndarray, t0: float = 0.0):
    """Feed 20 ms frames; frame i arrives at t0 + 0.02 (i + 1). Returns all events."""
    events = []
    for i, fr in enumerate(frames(pcm)):
        events.extend(vad.push(fr, t0 + (i + 1) * 0.02))
    return events


def voice_bounds(pcm: np.ndarray) -> tuple[float, float]:
    """First/last 10 ms block louder than -40 dBFS (ground truth for Piper speech)."""
    blocks = pcm[: len(pcm) // 160 * 160].reshape(-1, 160)
    loud = np.flatnonzero([dbfs(b) > -40 for b in blocks])
    return loud[0] * 0.01, (loud[-1] + 1) * 0.01


def test_model_signature_and_probabilities(model):
    voice = speech("Hello, this is a test of the voice detector.")
    vad = SpeakerVad(1, model, VadConfig(energy_gate_dbfs=-90))
    probs = [vad._prob(voice[i : i + WINDOW]) for i in range(0, len(voice) - WINDOW, WINDOW)]
    assert max(probs) > 0.9  # speech is detected
    vad2 = SpeakerVad(1, model, VadConfig(energy_gate_dbfs=-90))
    noise_probs = [vad2._prob(x) for x in np.split(white_noise(2.0)[: 62 * WINDOW], 62)]
    assert np.mean(noise_probs) < 0.2


def test_start_is_quick_and_end_follows_the_configured_silence(model):
    cfg = VadConfig(end_silence_ms=300, min_speech_ms=120, preroll_ms=300)
    voice = speech("The quick brown fox jumps over the lazy dog.")
    onset, offset = voice_bounds(voice)
    pcm = np.concatenate((silence(LEAD_S), voice, silence(1.5)))
    events = run(SpeakerVad(7, model, cfg), pcm)
    kinds = [e.kind for e in events]
    assert kinds.count("start") == 1 and kinds.count("end") == 1, kinds
    start = next(e for e in events if e.kind == "start")
    end = next(e for e in events if e.kind == "end")
    start_latency = start.t - (LEAD_S + onset)
    assert 0.0 < start_latency <= 0.2, start_latency  # barge-in needs a quick start
    # the end comes after the configured silence (measured from the last voiced window), not much later
    assert end.t - end.speech_end_t == pytest.approx(0.3, abs=0.035)
    assert abs(end.speech_end_t - (LEAD_S + offset)) < 0.15
    assert end.segment.user_id == 7 and end.segment.ended.is_set()


def test_preroll_keeps_the_first_syllable(model):
    cfg = VadConfig(preroll_ms=300)
    voice = speech("Pack my box with five dozen liquor jugs.")
    onset, _ = voice_bounds(voice)
    pcm = np.concatenate((silence(LEAD_S), voice, silence(1.0)))
    end = next(e for e in run(SpeakerVad(1, model, cfg), pcm) if e.kind == "end")
    seg = end.segment
    audio = seg.audio()
    # the segment audio begins at least the pre-roll before the voice onset
    first_sample = seg.stream_offset
    assert first_sample <= (LEAD_S + onset) * STT_RATE - 0.25 * STT_RATE
    assert seg.onset_sample >= int(0.25 * STT_RATE)
    # it begins in the silence before the voice, so the voice's first syllable is inside it
    assert dbfs(audio[: int(0.1 * STT_RATE)]) < -50
    lead = int((LEAD_S + onset) * STT_RATE) - first_sample
    assert dbfs(audio[lead : lead + 1600]) > -40


def test_silence_noise_and_music_give_no_speech(model):
    for pcm in (silence(10.0), white_noise(10.0, level=0.05), music(10.0)):
        vad = SpeakerVad(1, model, VadConfig())
        kinds = [e.kind for e in run(vad, pcm)]
        assert "end" not in kinds, kinds


def test_energy_gate_skips_the_model_for_quiet_frames(model):
    vad = SpeakerVad(1, model, VadConfig(energy_gate_dbfs=-50))
    run(vad, np.concatenate((silence(2.0), white_noise(1.0, level=0.001))))  # -60 dBFS
    assert vad.stats.windows > 90 and vad.stats.gated == vad.stats.windows


class Scripted:
    """A VAD model that returns scripted probabilities: tests the state machine alone."""

    def __init__(self, probs):
        self.probs = list(probs)

    def new_state(self):
        return np.zeros((2, 1, 128), np.float32)

    def probability(self, x, state):
        assert x.shape == (64 + WINDOW,)
        return (self.probs.pop(0) if self.probs else 0.0), state


def windows(n: int, level: float = 0.1) -> np.ndarray:
    return np.full(n * WINDOW, level, dtype=np.float32)


def test_min_speech_discards_short_bursts_and_hysteresis_bridges_dips():
    cfg = VadConfig(threshold=0.5, end_silence_ms=200, min_speech_ms=250, energy_gate_dbfs=-90, pause_ms=64)
    # 5 voiced windows (160 ms < 250 ms): start confirmed at 96 ms, then discarded at the end
    vad = SpeakerVad(1, Scripted([0.9] * 5 + [0.0] * 10), cfg)
    kinds = [e.kind for e in vad.push(windows(15), 1.0)]
    assert kinds == ["start", "pause", "discard"]
    # 10 voiced windows with a dip to 0.4 (above threshold - 0.15): one segment, no pause
    vad = SpeakerVad(1, Scripted([0.9] * 5 + [0.4] + [0.9] * 4 + [0.0] * 10), cfg)
    events = vad.push(windows(20), 1.0)
    assert [e.kind for e in events] == ["start", "pause", "end"]
    assert events[-1].segment.voiced_s == pytest.approx(10 * WINDOW / STT_RATE)
    # a single voiced window never starts speech
    vad = SpeakerVad(1, Scripted([0.9] + [0.0] * 12), cfg)
    assert vad.push(windows(13), 1.0) == []


def test_pause_and_resume_inside_speech():
    cfg = VadConfig(end_silence_ms=300, min_speech_ms=100, energy_gate_dbfs=-90, pause_ms=64)
    probs = [0.9] * 6 + [0.1] * 4 + [0.9] * 6 + [0.1] * 12
    vad = SpeakerVad(1, Scripted(probs), cfg)
    kinds = [e.kind for e in vad.push(windows(len(probs)), 1.0)]
    assert kinds == ["start", "pause", "resume", "pause", "end"]


def test_frames_are_buffered_into_windows_and_state_is_per_member(model):
    voice = np.concatenate((silence(0.5), speech("Good morning everyone."), silence(1.0)))
    a, b = SpeakerVad(1, model, VadConfig()), SpeakerVad(2, model, VadConfig())
    ev_a, ev_b = [], []
    for i, fr in enumerate(frames(voice)):
        ev_a += a.push(fr, (i + 1) * 0.02)
        ev_b += b.push(np.zeros_like(fr), (i + 1) * 0.02)  # member 2 is silent meanwhile
    assert [e.kind for e in ev_a if e.kind in ("start", "end")] == ["start", "end"]
    assert ev_b == []
    assert a.stats.windows == len(frames(voice)) * 320 // WINDOW  # every 512 samples, across frame borders


def test_long_speech_is_split_into_whisper_sized_segments():
    cfg = VadConfig(end_silence_ms=200, min_speech_ms=100, energy_gate_dbfs=-90, max_segment_s=1.0)
    n = 70  # 2.24 s of continuous voice, segments hold ~1.28 s
    vad = SpeakerVad(1, Scripted([0.9] * n + [0.0] * 10), cfg)
    events = vad.push(windows(n + 10), 1.0)
    assert [(e.kind, e.split) for e in events] == [("start", False), ("end", True), ("pause", False), ("end", False)]
    first, last = events[1].segment, events[3].segment
    assert first.id != last.id and first.n_samples <= vad._capacity
    assert first.voiced_s + last.voiced_s == pytest.approx(n * WINDOW / STT_RATE)


def test_idle_time_is_silence_without_audio_and_ends_only_when_allowed(model):
    """Time with no frames at all (Discord sends none in silence): a pause, not an end, until allowed."""
    cfg = VadConfig(end_silence_ms=300, min_speech_ms=120, preroll_ms=300, pause_ms=64)
    voice = speech("Juniper, what is your favorite color?")
    cut = int(0.3 * STT_RATE)  # inside "Juniper"
    vad = SpeakerVad(3, model, cfg)
    events = run(vad, np.concatenate((silence(0.5), voice[:cut])))
    assert [e.kind for e in events] == ["start"]
    seg = vad.segment
    n = seg.n_samples
    t = 0.5 + cut / STT_RATE
    held = vad.idle(0.6, t + 0.6, may_end=False)  # frames late, not known to be silence yet
    assert [e.kind for e in held] == ["pause"] and vad.speaking and seg.n_samples == n  # no audio added
    # the late frames come: the word goes on in the same segment, seamlessly
    later = run(vad, np.concatenate((voice[cut:], silence(0.6))), t0=t + 0.6)
    kinds = [e.kind for e in later]
    assert kinds[0] == "resume" and kinds.count("end") >= 1, kinds
    first_end = next(e for e in later if e.kind == "end")
    assert first_end.segment is seg
    at = int(0.5 * STT_RATE) - seg.stream_offset  # where voice[0] sits in the segment's audio
    juniper = voice[: int(0.5 * STT_RATE)]
    assert np.array_equal(seg.audio()[at : at + len(juniper)], juniper)  # contiguous: no gap inserted
    # a gap long enough to be an end: allowed, it ends the speech (the held time counts)
    vad2 = SpeakerVad(4, model, cfg)
    run(vad2, np.concatenate((silence(0.5), voice[:cut])))
    assert [e.kind for e in vad2.idle(0.2, 1.0, may_end=False)] == ["pause"]
    assert [e.kind for e in vad2.idle(0.15, 1.2, may_end=True)] == ["end"]
    assert not vad2.in_speech
