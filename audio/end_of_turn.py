"""Semantic end of turn: has the member finished, or only paused? (Smart Turn v3.2, ONNX.)

Smart Turn reads the last <= 8 s of a speaker's 16 kHz audio (left-padded with zeros to exactly 8 s),
as Whisper-style log-mel features of the waveform normalised to zero mean and unit variance, and gives
the probability that the speaker has finished their turn: intonation, pace and the shape of the
sentence ("I was wondering..." is not finished even after a long pause; "...have you been to the sea?"
is). It complements the VAD, which only hears silence: a complete turn may be answered after a short
silence, an incomplete one is given longer (bounded by the prompter).

The model ships in the `pipecat-ai` wheel (BSD-2-Clause), installed `--no-deps` as a data package:
only its ONNX file is used, with onnxruntime; the features come from faster-whisper's own
`FeatureExtractor` (the same log-mel recipe as Whisper's: 400-point STFT, hop 160, 80 Slaney mels).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from audio.types import STT_RATE

log = logging.getLogger(__name__)

WINDOW_S = 8  # the model's input: the last 8 s of audio
WINDOW_SAMPLES = WINDOW_S * STT_RATE
NORM_EPS = 1e-7


@dataclass(frozen=True, slots=True)
class TurnEstimate:
    """Smart Turn's judgement of a speaker's audio up to a moment of silence."""

    probability: float  # that the turn is complete
    compute_s: float  # model time, features included


class SmartTurn:
    """The Smart Turn v3 ONNX model (thread-safe: one onnxruntime session, one thread per call)."""

    def __init__(self, path: str) -> None:
        import onnxruntime as ort
        from faster_whisper.feature_extractor import FeatureExtractor

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        inputs = {i.name: i.shape for i in self._session.get_inputs()}
        if "input_features" not in inputs:
            from runtime.errors import ModelLoadError

            raise ModelLoadError(f"Smart Turn model at {path} has inputs {sorted(inputs)}; expected input_features")
        self._features = FeatureExtractor(feature_size=80, sampling_rate=STT_RATE, chunk_length=WINDOW_S)
        self._lock = threading.Lock()  # FeatureExtractor mutates itself per call

    def features(self, audio: np.ndarray) -> np.ndarray:
        """(1, 80, 800) float32 log-mel features of the last 8 s of `audio` (16 kHz mono float32)."""
        x = np.asarray(audio, dtype=np.float32).reshape(-1)[-WINDOW_SAMPLES:]
        if x.size < WINDOW_SAMPLES:
            x = np.concatenate((np.zeros(WINDOW_SAMPLES - x.size, dtype=np.float32), x))
        x = (x - x.mean()) / np.sqrt(x.var() + NORM_EPS)
        with self._lock:
            mel = self._features(x, padding=0, chunk_length=WINDOW_S)
        return np.ascontiguousarray(mel[None, :, : WINDOW_SAMPLES // 160], dtype=np.float32)

    def estimate(self, audio: np.ndarray) -> TurnEstimate:
        """Probability that the speaker of `audio` (ending in the silence just heard) has finished."""
        started = time.perf_counter()
        feats = self.features(audio)
        out = self._session.run(None, {"input_features": feats})[0]
        probability = float(np.asarray(out).reshape(-1)[0])
        return TurnEstimate(min(1.0, max(0.0, probability)), time.perf_counter() - started)


def load_smart_turn() -> SmartTurn:
    """The process-wide Smart Turn session (loaded once, shared by every member and guild)."""
    from runtime.models import MODELS, smart_turn_path

    return MODELS.get("turn:smart-turn-v3.2", lambda: SmartTurn(str(smart_turn_path())))
