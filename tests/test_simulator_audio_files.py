"""simulator.audio_files: everything a member speaks becomes 48 kHz stereo int16 in 20 ms frames."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from simulator import audio_files as af


def test_mono_float_16k_becomes_48k_stereo_int16():
    t = np.arange(16_000) / 16_000
    mono = (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    out = af.to_discord_pcm(mono, 16_000)
    assert out.dtype == np.int16 and out.shape == (48_000, 2)
    assert np.array_equal(out[:, 0], out[:, 1])
    spectrum = np.abs(np.fft.rfft(out[:, 0].astype(np.float64)))
    assert abs(int(np.argmax(spectrum)) - 300) <= 1  # 1 Hz bins over one second: the tone kept its pitch
    assert 15_000 < np.abs(out).max() <= 16_500


def test_wav_round_trip(tmp_path):
    pcm = (np.arange(22_050, dtype=np.int32) % 200 - 100).astype(np.int16) * 50
    path = tmp_path / "x.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(22_050)
        w.writeframes(pcm.tobytes())
    out = af.load_discord_pcm(path)
    assert out.shape == (48_000, 2) and out.dtype == np.int16


def test_frames_pad_the_last_one():
    frames = af.frames(np.ones((961, 2), dtype=np.int16))
    assert [len(f) for f in frames] == [3840, 3840]
    assert frames[1][4:] == bytes(3836)


@pytest.mark.parametrize("bad", [np.zeros(0), np.zeros((2, 2, 2))])
def test_bad_shapes_are_refused(bad):
    with pytest.raises(ValueError):
        af.to_discord_pcm(bad)
