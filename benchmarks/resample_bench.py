"""chorus' numpy polyphase resamplers (audio/resample.py) against soxr's streaming resampler, per use.

    python -m benchmarks.resample_bench [--seconds 20] [--out docs/resample-bench.json]

Both paths are run the way chorus runs them: the receive path converts 20 ms chunks of Discord's 48 kHz
stereo int16 to 16 kHz mono float32 (50 calls a second per speaker); the playback path converts a TTS
voice (22.05 kHz Piper, 16 and 24 kHz) to 48 kHz in 40 ms slices. Quality, on the streamed output:

* SINAD (dB) of in-band tones (0.3-6 kHz, and up to 0.9 of the lower Nyquist): a sine fitted at the known
  frequency over the steady part, the rest (noise, distortion, seams between chunks) against it;
* alias rejection (dB): tones above the output's Nyquist that must not come through (what a low-pass
  that is too short lets fold into speech);
* passband ripple (dB) at 0.9 of the lower Nyquist (how much of the top of the band survives);
* delay: the converter's latency in output samples and milliseconds.

Cost: microseconds of CPU per call (median and p95 over the run), single-threaded. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from typing import Callable

import numpy as np
import soxr

from audio.resample import Downsampler48kTo16k
from benchmarks.numpy_resampler import NumpyStreamResampler

RECEIVE_CHUNK = 960  # 20 ms at 48 kHz, per channel
PLAYBACK_SLICE_S = 0.04


def _sinad(y: np.ndarray, freq: float, rate: int) -> float:
    """Tone power over everything else, after least-squares fitting the tone (any phase, any delay)."""
    n = np.arange(y.size)
    basis = np.stack(
        [np.sin(2 * np.pi * freq * n / rate), np.cos(2 * np.pi * freq * n / rate), np.ones(y.size)], axis=1
    )
    coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
    fitted = basis @ coef
    residual = y - fitted
    return float(10 * np.log10(np.sum((fitted - coef[2]) ** 2) / max(np.sum(residual**2), 1e-30)))


def _steady(y: np.ndarray, rate: int) -> np.ndarray:
    """Drop the first and last 50 ms (the filters' start and the drained tail)."""
    cut = int(0.05 * rate)
    return y[cut:-cut]


# -- the converters, streamed -----------------------------------------------------------------


def receive_numpy(stereo16: np.ndarray, flush: bool = True) -> tuple[np.ndarray, list[float]]:
    down = Downsampler48kTo16k()
    out, times = [], []
    for i in range(0, stereo16.shape[0], RECEIVE_CHUNK):
        chunk = stereo16[i : i + RECEIVE_CHUNK].tobytes()
        t0 = time.perf_counter()
        out.append(down.process(chunk))
        times.append(time.perf_counter() - t0)
    return np.concatenate(out), times


def receive_soxr(stereo16: np.ndarray, quality: str, flush: bool = True) -> tuple[np.ndarray, list[float]]:
    stream = soxr.ResampleStream(48_000, 16_000, 1, dtype="float32", quality=quality)
    out, times = [], []
    for i in range(0, stereo16.shape[0], RECEIVE_CHUNK):
        chunk = stereo16[i : i + RECEIVE_CHUNK].tobytes()
        t0 = time.perf_counter()
        s = np.frombuffer(chunk, dtype=np.int16)
        mono = (s[0::2].astype(np.float32) + s[1::2]) * (0.5 / 32768.0)  # the same downmix as chorus'
        out.append(stream.resample_chunk(mono))
        times.append(time.perf_counter() - t0)
    if flush:
        out.append(stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    return np.concatenate(out), times


def playback_numpy(mono: np.ndarray, rate: int, flush: bool = True) -> tuple[np.ndarray, list[float]]:
    res = NumpyStreamResampler(rate, 48_000)
    step = int(PLAYBACK_SLICE_S * rate)
    out, times = [], []
    for i in range(0, mono.size, step):
        t0 = time.perf_counter()
        out.append(res.process(mono[i : i + step]))
        times.append(time.perf_counter() - t0)
    if flush:
        out.append(res.drain())
    return np.concatenate(out), times


def playback_soxr(mono: np.ndarray, rate: int, quality: str, flush: bool = True) -> tuple[np.ndarray, list[float]]:
    stream = soxr.ResampleStream(rate, 48_000, 1, dtype="float32", quality=quality)
    step = int(PLAYBACK_SLICE_S * rate)
    out, times = [], []
    for i in range(0, mono.size, step):
        t0 = time.perf_counter()
        out.append(stream.resample_chunk(mono[i : i + step]))
        times.append(time.perf_counter() - t0)
    if flush:
        out.append(stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    return np.concatenate(out), times


# -- measurements --------------------------------------------------------------------------------


def _tone(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    n = np.arange(int(seconds * rate))
    return (amp * np.sin(2 * np.pi * freq * n / rate)).astype(np.float32)


def _stereo16(mono: np.ndarray) -> np.ndarray:
    s = np.clip(mono * 32767, -32768, 32767).astype(np.int16)
    return np.stack([s, s], axis=1)


def _delay_samples(
    run: Callable[..., np.ndarray], make_input: Callable[[np.ndarray], np.ndarray], in_rate: int, out_rate: int
) -> int:
    """How late (in output samples) an input click is heard while streaming: where its peak lands in the
    output, minus where an ideal converter would put it, plus the output the converter still holds back
    when that much input has gone in (soxr withholds its look-ahead instead of shifting the signal)."""
    x = np.zeros(int(0.3 * in_rate), dtype=np.float32)
    at = int(0.1 * in_rate)
    x[at] = 0.9
    y = run(make_input(x))
    shift = int(np.argmax(np.abs(y))) - round(at * out_rate / in_rate)
    held = []
    for cut_s in (0.16, 0.18, 0.2, 0.22, 0.24):  # the hold-back depends on where the input stops: average it
        streamed = run(make_input(x[: int(cut_s * in_rate)]), flush=False)
        held.append(int(cut_s * in_rate) * out_rate / in_rate - streamed.size)
    return round(shift + float(np.mean(held)))


def _stats(times: list[float]) -> dict[str, float]:
    us = np.asarray(times) * 1e6
    return {"median_us": round(float(np.median(us)), 1), "p95_us": round(float(np.percentile(us, 95)), 1)}


def measure_receive(name: str, run: Callable[..., tuple[np.ndarray, list[float]]], seconds: float) -> dict:
    out_rate = 16_000
    inband = {}
    for f in (300.0, 1000.0, 3000.0, 6000.0):
        y, _ = run(_stereo16(_tone(f, 48_000, 2.0)))
        inband[f"{f:g}Hz"] = round(_sinad(_steady(y, out_rate), f, out_rate), 1)
    edge = 0.9 * 8000.0
    y, _ = run(_stereo16(_tone(edge, 48_000, 2.0)))
    ripple = 20 * np.log10(np.sqrt(2) * np.std(_steady(y, out_rate)) / 0.5)
    alias = {}
    for f in (9000.0, 12000.0, 20000.0):
        y, _ = run(_stereo16(_tone(f, 48_000, 2.0)))
        alias[f"{f:g}Hz"] = round(float(-20 * np.log10(max(np.sqrt(2) * np.std(_steady(y, out_rate)), 1e-12) / 0.5)), 1)
    rng = np.random.default_rng(5)
    speechlike = (rng.standard_normal(int(seconds * 48_000)) * 0.1).astype(np.float32)
    _, times = run(_stereo16(speechlike))
    delay = _delay_samples(lambda s, flush=True: run(s, flush)[0], _stereo16, 48_000, out_rate)
    return {
        "converter": name,
        "path": "receive 48k stereo s16 -> 16k mono f32, 20 ms chunks",
        "sinad_db": inband,
        "min_sinad_db": min(inband.values()),
        "edge_7200Hz_gain_db": round(float(ripple), 2),
        "alias_rejection_db": alias,
        "min_alias_rejection_db": min(alias.values()),
        "delay_out_samples": delay,
        "delay_ms": round(delay / out_rate * 1000, 2),
        "cost_per_20ms_chunk": _stats(times),
        "chunks": len(times),
        "cpu_share_per_speaker": round(float(np.median(times)) * 50, 5),
    }


def measure_playback(name: str, run: Callable[..., tuple[np.ndarray, list[float]]], rate: int, seconds: float) -> dict:
    out_rate = 48_000
    nyq = rate / 2
    inband = {}
    for f in (300.0, 1000.0, 3000.0, round(0.6 * nyq)):
        y, _ = run(_tone(f, rate, 2.0), rate)
        inband[f"{f:g}Hz"] = round(_sinad(_steady(y, out_rate), f, out_rate), 1)
    edge = 0.9 * nyq
    y, _ = run(_tone(edge, rate, 2.0), rate)
    ripple = 20 * np.log10(np.sqrt(2) * np.std(_steady(y, out_rate)) / 0.5)
    # imaging: a tone near the input's Nyquist leaves an image at rate - f in the output; measure it
    f = 0.8 * nyq
    y, _ = run(_tone(f, rate, 2.0), rate)
    y = _steady(y, out_rate)
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    freqs = np.fft.rfftfreq(y.size, 1 / out_rate)
    main = spec[np.argmin(np.abs(freqs - f))]
    band = (freqs > nyq * 1.05) & (freqs < out_rate / 2)
    image = float(-20 * np.log10(max(spec[band].max(), 1e-12) / main))
    rng = np.random.default_rng(6)
    speechlike = (rng.standard_normal(int(seconds * rate)) * 0.1).astype(np.float32)
    _, times = run(speechlike, rate)
    delay = _delay_samples(lambda s, flush=True: run(s, rate, flush)[0], lambda x: x, rate, out_rate)
    return {
        "converter": name,
        "path": f"playback {rate} Hz mono f32 -> 48k, {PLAYBACK_SLICE_S * 1000:g} ms slices",
        "sinad_db": inband,
        "min_sinad_db": min(inband.values()),
        "edge_gain_db": round(float(ripple), 2),
        "image_rejection_db": round(image, 1),
        "delay_out_samples": delay,
        "delay_ms": round(delay / out_rate * 1000, 2),
        "cost_per_slice": _stats(times),
        "slices": len(times),
        "cpu_share_realtime": round(float(np.median(times)) / PLAYBACK_SLICE_S, 5),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the timed noise signal")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    receive = [measure_receive("numpy-polyphase-96tap", receive_numpy, args.seconds)]
    for q in ("LQ", "MQ", "HQ", "VHQ"):
        receive.append(measure_receive(f"soxr-{q}", lambda s, flush=True, q=q: receive_soxr(s, q, flush), args.seconds))
    playback = []
    for rate in (22_050, 16_000, 24_000):
        playback.append(measure_playback("numpy-polyphase-24tap/phase", playback_numpy, rate, args.seconds))
        for q in ("LQ", "MQ", "HQ", "VHQ"):
            playback.append(
                measure_playback(
                    f"soxr-{q}", lambda x, r, flush=True, q=q: playback_soxr(x, r, q, flush), rate, args.seconds
                )
            )
    report = {
        "benchmark": "resample",
        "command": " ".join(["python -m benchmarks.resample_bench", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "soxr": soxr.__version__,
            "numpy": np.__version__,
        },
        "receive": receive,
        "playback": playback,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
