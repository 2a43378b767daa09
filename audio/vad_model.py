"""The voice activity model: one shared silero ONNX session (`SileroVad`, loaded once through
`runtime.models.MODELS`), and the interface a speaker's detector (`audio.vad.SpeakerVad`) needs of it.

Silero v5/v6 take 512-sample windows at 16 kHz, prefixed by the last 64 samples of the previous window (the
"context"), plus a recurrent state tensor of shape (2, batch, 128).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from audio.types import STT_RATE


class VadModel(Protocol):
    def new_state(self) -> np.ndarray: ...
    def probability(self, window_with_context: np.ndarray, state: np.ndarray) -> tuple[float, np.ndarray]: ...


class SileroVad:
    """The silero VAD ONNX model run with onnxruntime (thread-safe; state lives with the caller)."""

    def __init__(self, path: str) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        names = {i.name: i for i in self._session.get_inputs()}
        if not {"input", "state", "sr"} <= set(names):
            from runtime.errors import ModelLoadError

            raise ModelLoadError(
                f"silero VAD at {path} has inputs {sorted(names)}; expected input/state/sr (silero v5 or v6)"
            )
        self._sr = np.array(STT_RATE, dtype=np.int64)

    def new_state(self) -> np.ndarray:
        return np.zeros((2, 1, 128), dtype=np.float32)

    def probability(self, window_with_context: np.ndarray, state: np.ndarray) -> tuple[float, np.ndarray]:
        """Speech probability of one (CONTEXT + WINDOW)-sample window, and the next state."""
        out, new_state = self._session.run(
            None, {"input": window_with_context.reshape(1, -1), "state": state, "sr": self._sr}
        )
        return float(out.reshape(-1)[0]), new_state


def load_silero_vad() -> SileroVad:
    """The process-wide silero session (loaded once, shared by every member and guild)."""
    from runtime.models import MODELS, silero_vad_path

    return MODELS.get("vad:silero", lambda: SileroVad(str(silero_vad_path())))
