"""Piper in the process, as a RealtimeTTS engine (`PiperInProcessEngine`) and as a chorus TtsEngine.

The ONNX voice loads once (`runtime.models.MODELS`) and is shared; each synthesis gets a light
engine object over it. Text is synthesized in clause-sized pieces (long sentences are cut at
commas/semicolons) and `stop()` also aborts the ONNX run in flight (onnxruntime
`RunOptions.terminate`), so a cancel ends compute within milliseconds, not after the piece.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
from RealtimeTTS.engines.base_engine import BaseEngine

from audio.tts import PA_INT16, RealtimeEngineTts
from audio.g2p import guard_piper_voice
from runtime.models import MODELS, embedded_piper_voice
from runtime.errors import ModelLoadError

log = logging.getLogger(__name__)

PIECE_WORDS = 10  # a sentence longer than this is synthesized clause by clause
_CLAUSE_CUT = re.compile(r"(?<=[,;:—–])\s+")


def load_piper_voice(voice: str = "embedded") -> Any:
    """A `piper.PiperVoice` from `embedded` or a .onnx path (its .onnx.json beside it), loaded once."""
    if voice in ("", "embedded"):
        model, config = embedded_piper_voice()
    else:
        model = Path(voice).expanduser()
        config = Path(f"{model}.json")
        if not model.is_file():
            raise ModelLoadError(f"Piper voice not found: {model}")
        if not config.is_file():
            raise ModelLoadError(f"Piper voice config not found: {config} (it must sit beside the .onnx)")

    def load() -> Any:
        import json

        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        # Same as PiperVoice.load, but ONNX Runtime's worker threads sleep instead of spinning
        # between runs: spinning threads starve llama.cpp when LLM and TTS share a few cores.
        options = onnxruntime.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        with open(config, encoding="utf-8") as fh:
            piper_config = PiperConfig.from_dict(json.load(fh))
        loaded = guard_piper_voice(
            PiperVoice(
                config=piper_config,
                session=onnxruntime.InferenceSession(
                    str(model), sess_options=options, providers=["CPUExecutionProvider"]
                ),
            )
        )  # its espeak-ng calls and name spotting's (audio.g2p) never run at once
        for _ in loaded.synthesize("Ready."):  # warm up: the first ONNX run is several times slower
            pass
        return loaded

    return MODELS.get(f"piper-voice:{model}", load)


def split_for_synthesis(text: str, piece_words: int = PIECE_WORDS) -> list[str]:
    """Cut text at clause punctuation into pieces of about `piece_words` words (never mid-clause)."""
    clauses = [c for c in _CLAUSE_CUT.split(text.strip()) if c]
    pieces: list[str] = []
    current: list[str] = []
    words = 0
    for clause in clauses:
        n = len(clause.split())
        if current and words + n > piece_words:
            pieces.append(" ".join(current))
            current, words = [], 0
        current.append(clause)
        words += n
    if current:
        pieces.append(" ".join(current))
    return pieces


class _AbortableSession:
    """An onnxruntime session view whose runs share one RunOptions, so `abort()` ends a run in flight.

    Each run also shrinks ONNX Runtime's CPU arena back to its first region: otherwise the arena doubles each
    time a piece needs more than it holds and keeps it for good (measured: 620 MB held after 300 sentences
    against 95 MB, at the same speed; `tests/test_piper_memory.py`)."""

    def __init__(self, session: Any) -> None:
        import onnxruntime

        self._session = session
        self.run_options = onnxruntime.RunOptions()
        self.run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def run(self, output_names: Any, input_feed: Any, run_options: Any = None) -> Any:
        return self._session.run(output_names, input_feed, run_options or self.run_options)

    def abort(self) -> None:
        self.run_options.terminate = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


class PiperInProcessEngine(BaseEngine):
    """RealtimeTTS engine running `piper.PiperVoice` in-process; puts int16 mono bytes on `queue`."""

    def __init__(self, voice: Any, *, speed: float = 1.0, piece_words: int = PIECE_WORDS) -> None:
        self._session = _AbortableSession(voice.session)
        # Same config and model; only the session view differs (per engine, so aborts stay local).
        self.voice = dataclasses.replace(voice, session=self._session)
        self.speed = speed
        self.piece_words = piece_words

    def post_init(self) -> None:
        self.engine_name = "piper_inprocess"
        self.can_consume_generators = False

    def get_stream_info(self) -> tuple[int, int, int]:
        return PA_INT16, 1, int(self.voice.config.sample_rate)

    def _syn_config(self) -> Any:
        from piper import SynthesisConfig

        base = self.voice.config.length_scale or 1.0
        return SynthesisConfig(length_scale=base / max(self.speed, 0.1))

    def synthesize(self, text: str, sentence_count: int = 0) -> bool:
        super().synthesize(text, sentence_count)  # clears the stop event
        config = self._syn_config()
        try:
            for piece in split_for_synthesis(text, self.piece_words):
                for chunk in self.voice.synthesize(piece, syn_config=config):
                    if self.stop_synthesis_event.is_set():
                        return False
                    audio: np.ndarray = chunk.audio_int16_array
                    if audio.size:
                        self.queue.put(audio.tobytes())
                if self.stop_synthesis_event.is_set():
                    return False
        except Exception:
            if self.stop_synthesis_event.is_set():
                return False  # the ONNX run was aborted by stop()
            raise
        return True

    def stop(self) -> None:
        super().stop()
        self._session.abort()

    def get_voices(self) -> list[Any]:
        return [self.voice]

    def set_voice(self, voice: Any) -> None:
        self.voice = voice

    def set_voice_parameters(self, **voice_parameters: Any) -> None:
        if "speed" in voice_parameters:
            self.speed = float(voice_parameters["speed"])


def make_piper_tts(voice: str = "embedded", *, speed: float = 1.0) -> RealtimeEngineTts:
    piper_voice = load_piper_voice(voice)
    tts = RealtimeEngineTts(lambda: PiperInProcessEngine(piper_voice, speed=speed), name="piper", shared=False)
    tts.sample_rate = int(piper_voice.config.sample_rate)  # type: ignore[attr-defined]
    return tts
