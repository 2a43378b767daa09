"""Load and shape audio for simulated members: everything becomes 48 kHz stereo int16, Discord's wire format."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

DISCORD_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms per channel at 48 kHz


def to_int16(pcm: np.ndarray) -> np.ndarray:
    """Float in [-1, 1] (clipped) or any integer PCM -> int16."""
    if pcm.dtype == np.int16:
        return pcm
    if np.issubdtype(pcm.dtype, np.floating):
        return (np.clip(pcm, -1.0, 1.0) * 32767.0).round().astype(np.int16)
    if pcm.dtype == np.int32:
        return (pcm >> 16).astype(np.int16)
    if pcm.dtype == np.uint8:
        return ((pcm.astype(np.int16) - 128) << 8).astype(np.int16)
    raise ValueError(f"unsupported PCM dtype {pcm.dtype}")


def resample(pcm: np.ndarray, rate: int, target: int = DISCORD_RATE) -> np.ndarray:
    """Linear-interpolation resampling per channel (fine for test speech; keeps dtype float32)."""
    x = pcm.astype(np.float32)
    if rate == target:
        return x
    if x.ndim == 1:
        x = x[:, None]
    n_out = int(round(x.shape[0] * target / rate))
    t_out = np.arange(n_out, dtype=np.float64) * (rate / target)
    t_in = np.arange(x.shape[0], dtype=np.float64)
    out = np.stack([np.interp(t_out, t_in, x[:, c]) for c in range(x.shape[1])], axis=1).astype(np.float32)
    return out[:, 0] if pcm.ndim == 1 else out


def to_discord_pcm(pcm: np.ndarray, rate: int = DISCORD_RATE) -> np.ndarray:
    """Any mono (n,) or (n, ch) PCM at ``rate`` -> (n, 2) int16 at 48 kHz."""
    pcm = np.asarray(pcm)
    if pcm.ndim not in (1, 2) or pcm.size == 0:
        raise ValueError(f"expected non-empty mono (n,) or (n, channels) PCM, got shape {pcm.shape}")
    if rate != DISCORD_RATE:
        scale = 32768.0 if pcm.dtype == np.int16 else 1.0
        pcm = resample(pcm.astype(np.float32) / scale, rate)
    pcm = to_int16(pcm)
    if pcm.ndim == 1:
        pcm = pcm[:, None]
    if pcm.shape[1] == 1:
        pcm = np.repeat(pcm, 2, axis=1)
    elif pcm.shape[1] > 2:
        pcm = pcm[:, :2]
    return np.ascontiguousarray(pcm)


def load_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a PCM WAV file -> (samples as (n, channels) int16/uint8/int32, rate)."""
    with wave.open(str(path), "rb") as w:
        width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
        raw = w.readframes(w.getnframes())
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}.get(width)
    if dtype is None:
        raise ValueError(f"{path}: unsupported sample width {width} bytes")
    return np.frombuffer(raw, dtype=dtype).reshape(-1, channels), rate


def load_discord_pcm(path: str | Path) -> np.ndarray:
    """A WAV file as 48 kHz stereo int16, ready for `SimMember.speak`."""
    pcm, rate = load_wav(path)
    return to_discord_pcm(pcm, rate)


def frames(pcm: np.ndarray) -> list[bytes]:
    """Split (n, 2) int16 48 kHz PCM into 20 ms frames of 3840 bytes, zero-padding the last one."""
    n = pcm.shape[0]
    pad = (-n) % FRAME_SAMPLES
    if pad:
        pcm = np.concatenate([pcm, np.zeros((pad, 2), dtype=np.int16)])
    data = pcm.tobytes()
    step = FRAME_SAMPLES * 4
    return [data[i : i + step] for i in range(0, len(data), step)]


def sine(seconds: float, freq: float = 440.0, amplitude: float = 0.5, rate: int = DISCORD_RATE) -> np.ndarray:
    """A stereo int16 test tone at ``rate``."""
    t = np.arange(int(seconds * rate)) / rate
    mono = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return to_discord_pcm(mono, rate)
