"""Deterministic Piper speech for tests and benchmarks: the same text gives the same 16 kHz audio every run.

Also the 16 kHz helpers that go with it: digital silence, and 20 ms frames as the listener receives them.
"""

from __future__ import annotations

import functools
import io
import wave

import numpy as np

from audio.tts_engines.piper import load_piper_voice
from audio.types import STT_FRAME_SAMPLES, STT_RATE


@functools.lru_cache(maxsize=64)
def _speech_16k(text: str) -> np.ndarray:
    from faster_whisper.audio import decode_audio
    from piper.config import SynthesisConfig

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        # No generator/duration noise, so a test or benchmark hears the same clip every run.
        load_piper_voice().synthesize_wav(text, w, syn_config=SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0))
    buf.seek(0)
    return decode_audio(buf, sampling_rate=STT_RATE)  # 22050 -> 16000 with libav's resampler


def piper_speech_16k(text: str) -> np.ndarray:
    """The embedded Piper voice saying `text`, 16 kHz mono float32 (a fresh copy)."""
    return _speech_16k(text).copy()


def silence_16k(seconds: float) -> np.ndarray:
    """`seconds` of digital silence, 16 kHz mono float32."""
    return np.zeros(int(seconds * STT_RATE), dtype=np.float32)


def frames_16k(pcm: np.ndarray) -> list[np.ndarray]:
    """16 kHz mono audio as 20 ms frames (the `MemberFrame.pcm` size; the last one zero-padded)."""
    n = int(np.ceil(len(pcm) / STT_FRAME_SAMPLES))
    padded = np.zeros(n * STT_FRAME_SAMPLES, dtype=np.float32)
    padded[: len(pcm)] = pcm
    return [padded[i * STT_FRAME_SAMPLES : (i + 1) * STT_FRAME_SAMPLES] for i in range(n)]
