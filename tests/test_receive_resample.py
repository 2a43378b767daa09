"""audio.resample: the receive downsampler (48k stereo s16 -> 16k mono f32) and the any-rate stream resampler."""

from __future__ import annotations

import numpy as np
import pytest

from audio.resample import Downsampler48kTo16k, StreamResampler, resample_once


def tone48_stereo(freq: float, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(48_000 * seconds)) / 48_000
    x = (amp * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    return np.repeat(x[:, None], 2, axis=1).reshape(-1)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


@pytest.mark.parametrize(
    "freq, lo, hi",
    [
        (300, 0.98, 1.02),
        (1000, 0.98, 1.02),
        (4000, 0.97, 1.03),
        (9000, 0.0, 0.001),
        (15000, 0.0, 0.001),
        (23000, 0.0, 0.001),
    ],
)
def test_downsampler_passband_and_alias_rejection(freq, lo, hi):
    d = Downsampler48kTo16k()
    x = tone48_stereo(freq)
    out = np.concatenate([d.process(x[i : i + 1920].tobytes()) for i in range(0, x.size, 1920)])
    assert out.dtype == np.float32 and out.size == 16_000
    gain = rms(out[200:]) / (0.5 / np.sqrt(2))
    assert lo <= gain <= hi, gain


def test_downsampler_one_frame_in_320_samples_out_and_chunking_does_not_matter():
    d1, d2 = Downsampler48kTo16k(), Downsampler48kTo16k()
    x = (np.random.default_rng(0).standard_normal(48_000 * 2) * 3000).astype(np.int16)
    a = [d1.process(x[i : i + 1920]) for i in range(0, x.size, 1920)]
    assert all(f.size == 320 for f in a)
    b = []
    i = 0
    for n in (2, 1000, 1918, 6, 3840, 14):  # odd chunk sizes too (whole stereo samples)
        b.append(d2.process(x[i : i + n]))
        i += n
    b.append(d2.process(x[i:]))
    assert np.allclose(np.concatenate(a), np.concatenate(b), atol=1e-6)


def test_downsampler_downmixes_channels():
    d = Downsampler48kTo16k()
    left = tone48_stereo(500).reshape(-1, 2)[:, 0]
    st = np.stack([left, np.zeros_like(left)], axis=1).reshape(-1)
    out = d.process(st)
    assert abs(rms(out[200:]) - 0.25 / np.sqrt(2)) < 0.005


@pytest.mark.parametrize(
    "fin, fout",
    [(22_050, 48_000), (16_000, 48_000), (24_000, 48_000), (44_100, 48_000), (48_000, 16_000), (8_000, 48_000)],
)
def test_stream_resampler_streaming_equals_one_shot_and_keeps_pitch(fin, fout):
    t = np.arange(fin) / fin
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    one = resample_once(x, fin, fout)
    r = StreamResampler(fin, fout)
    rng = np.random.default_rng(1)
    parts, i = [], 0
    while i < x.size:
        n = int(rng.integers(1, 2000))
        parts.append(r.process(x[i : i + n]))
        i += n
    parts.append(r.drain())  # soxr holds its look-ahead back until the end of the signal
    streamed = np.concatenate(parts)
    assert streamed.size == one.size and np.allclose(streamed, one, atol=1e-5)
    assert abs(one.size - fout) <= 1
    seg = one[fout // 10 : fout // 10 + 16384]
    spec = np.abs(np.fft.rfft(seg * np.hanning(seg.size)))
    peak = np.fft.rfftfreq(seg.size, 1 / fout)[np.argmax(spec)]
    assert abs(peak - 440) < 4
    assert abs(rms(seg) - 0.5 / np.sqrt(2)) < 0.01


def test_stream_resampler_stereo_and_drain():
    r = StreamResampler(24_000, 48_000)
    x = np.random.default_rng(2).standard_normal((2400, 2)).astype(np.float32) * 0.1
    y = r.process(x)
    tail = r.drain(2)
    assert y.shape[1] == 2 and tail.shape[1] == 2
    assert abs(y.shape[0] + tail.shape[0] - 4800) <= 1
    again = r.process(x)  # after a drain, the next line starts with a fresh filter: the same output
    assert np.allclose(np.concatenate([again, r.drain(2)]), np.concatenate([y, tail]), atol=1e-6)
    with pytest.raises(ValueError):
        StreamResampler(0, 48_000)
