"""Shared helpers for the listening tests: Piper speech at 16 kHz, synthetic non-speech, frame feeding.

`speech`, `silence` and `frames` come from `simulator.speech` (benchmarks use them too); models load
once per process through `runtime.models.MODELS`.
"""

from __future__ import annotations

import asyncio

import numpy as np

from audio.types import STT_RATE, MemberFrame
from runtime.settings import load_settings
from simulator.speech import frames_16k as frames
from simulator.speech import piper_speech_16k as speech
from simulator.speech import silence_16k as silence

__all__ = ["feed_streams", "frames", "music", "settings", "silence", "speech", "white_noise", "words"]


def white_noise(seconds: float, level: float = 0.1, seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * STT_RATE)) * level).astype(np.float32)


def music(seconds: float, level: float = 0.2) -> np.ndarray:
    """Chords with harmonics (a I-vi-IV-V progression, 0.5 s each, soft attack/decay): music-like, no voice."""
    t = np.arange(int(seconds * STT_RATE)) / STT_RATE
    chords = [(261.6, 329.6, 392.0), (220.0, 261.6, 329.6), (174.6, 220.0, 261.6), (196.0, 246.9, 293.7)]
    out = np.zeros_like(t)
    beat = 0.5
    for i in range(int(np.ceil(seconds / beat))):
        sel = (t >= i * beat) & (t < (i + 1) * beat)
        tt = t[sel] - i * beat
        env = np.minimum(1.0, tt / 0.02) * np.exp(-tt * 2.5)
        for f in chords[i % len(chords)]:
            for h, a in ((1, 1.0), (2, 0.5), (3, 0.25), (4, 0.12)):
                out[sel] += a * env * np.sin(2 * np.pi * f * h * tt)
    out /= np.abs(out).max() + 1e-9
    return (out * level).astype(np.float32)


def settings(**env: str):
    return load_settings(env=env, env_file=None)


async def feed_streams(listener, streams: dict[int, np.ndarray], *, t0: float = 1000.0, speed: float = 0.0) -> None:
    """Feed several members' audio interleaved frame by frame (frame i of every member at t0 + 0.02 i).

    speed=0: as fast as the listener's queue allows; speed=1: real time.
    """
    per_member = {uid: frames(pcm) for uid, pcm in streams.items()}
    n = max(len(f) for f in per_member.values())
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(n):
        for uid, fr in per_member.items():
            if i < len(fr):
                listener.feed(MemberFrame(uid, fr[i], t0 + (i + 1) * 0.02))
        if speed > 0:
            delay = start + (i + 1) * 0.02 / speed - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        elif i % 25 == 0:
            await asyncio.sleep(0.005)  # let callbacks run; the VAD thread keeps up


def words(text: str) -> list[str]:
    from audio.hallucinations import normalize_text

    return normalize_text(text).split()
