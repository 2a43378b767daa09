"""Text to speech: one interface over Piper (in-process, default), Coqui XTTS (GPU extra) and espeak-ng.

`TtsEngine.synthesize(text, cancel)` yields mono PCM chunks `(array, rate)` (int16 or float32)
as they are made, blocking (run it in a worker thread). Setting `cancel` stops the output at
the next chunk; compute stops after the piece in flight (Piper works in clause-sized pieces).

Piper and XTTS are RealtimeTTS engines (`RealtimeTTS.engines.BaseEngine`: `synthesize()` fills
`engine.queue`, `stop()` sets `stop_synthesis_event`), driven headless by `RealtimeEngineTts`:
no PyAudio stream is ever opened. RealtimeTTS's own PiperEngine starts a piper process per
sentence (~0.5 s before audio), so chorus' `PiperInProcessEngine` runs `piper.PiperVoice` in
the process instead (first audio in ~0.1 s).
"""

from __future__ import annotations

import logging
import queue
import threading
from abc import ABC, abstractmethod
from typing import Any, Callable, Iterator

import numpy as np

log = logging.getLogger(__name__)

PA_FLOAT32, PA_INT32, PA_INT16 = 1, 2, 8  # PyAudio sample formats RealtimeTTS engines report


class TtsError(RuntimeError):
    """Synthesis failed for a reason other than a missing model (that is ModelLoadError)."""


class TtsEngine(ABC):
    """A voice. Instances may be shared by many sessions; `synthesize` is thread-safe."""

    name: str = "tts"
    on_gpu: bool = False

    @abstractmethod
    def synthesize(self, text: str, cancel: threading.Event) -> Iterator[tuple[np.ndarray, int]]:
        """Yield mono PCM chunks (int16 or float32 array, sample rate) for `text`."""

    def describe(self) -> str:
        return self.name


def pcm_from_bytes(chunk: bytes | bytearray, sample_format: int, channels: int = 1) -> np.ndarray:
    """Bytes from a RealtimeTTS engine queue → mono numpy samples."""
    if sample_format == PA_FLOAT32:
        samples = np.frombuffer(chunk, dtype=np.float32)
    elif sample_format == PA_INT16:
        samples = np.frombuffer(chunk, dtype=np.int16)
    elif sample_format == PA_INT32:
        samples = (np.frombuffer(chunk, dtype=np.int32).astype(np.float32) / 2**31).astype(np.float32)
    else:
        raise TtsError(f"unsupported sample format {sample_format} from the TTS engine")
    if channels > 1:
        usable = len(samples) - len(samples) % channels
        samples = samples[:usable].reshape(-1, channels).mean(axis=1).astype(samples.dtype)
    return samples


def trim_leading_silence(pcm: np.ndarray, rate: int, *, threshold: float = 0.01, keep_s: float = 0.01) -> np.ndarray:
    """Drop the silence a voice puts before its first sound (Piper: 30-60 ms), keeping `keep_s`: the
    start of a reply is heard that much sooner. `threshold` is a share of full scale; all-quiet audio
    is returned unchanged."""
    full_scale = 32768.0 if pcm.dtype == np.int16 else 1.0
    loud = np.flatnonzero(np.abs(pcm) > threshold * full_scale)
    if loud.size == 0:
        return pcm
    return pcm[max(0, int(loud[0]) - int(keep_s * rate)) :]


class RealtimeEngineTts(TtsEngine):
    """Drives a RealtimeTTS engine headless: synthesize in a helper thread, stream its queue.

    `make_engine` builds an engine. With `shared=True` one engine serves every call, one at a
    time (heavy engines such as XTTS); otherwise each call gets a fresh, light engine object
    over a shared model, so sessions synthesize in parallel.
    """

    def __init__(self, make_engine: Callable[[], Any], *, name: str, shared: bool, on_gpu: bool = False) -> None:
        self.name = name
        self.on_gpu = on_gpu
        self._make_engine = make_engine
        self._shared_engine = make_engine() if shared else None
        self._shared_lock = threading.Lock() if shared else None

    def synthesize(self, text: str, cancel: threading.Event) -> Iterator[tuple[np.ndarray, int]]:
        if not text.strip() or cancel.is_set():
            return
        if self._shared_lock is not None:
            while not self._shared_lock.acquire(timeout=0.02):
                if cancel.is_set():
                    return
        try:
            engine = self._shared_engine if self._shared_engine is not None else self._make_engine()
            yield from self._run(engine, text, cancel)
        finally:
            if self._shared_lock is not None:
                self._shared_lock.release()

    def _run(self, engine: Any, text: str, cancel: threading.Event) -> Iterator[tuple[np.ndarray, int]]:
        sample_format, channels, rate = engine.get_stream_info()
        _drain(engine.queue)  # leftovers of a cancelled call on a shared engine
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                outcome["ok"] = engine.synthesize(text)
            except BaseException as exc:  # reported to the consumer below
                outcome["error"] = exc

        worker = threading.Thread(target=work, name=f"tts-{self.name}", daemon=True)
        worker.start()
        try:
            while True:
                if cancel.is_set():
                    engine.stop()
                    return
                try:
                    chunk = engine.queue.get(timeout=0.01)
                except queue.Empty:
                    if not worker.is_alive() and engine.queue.empty():
                        break
                    continue
                if cancel.is_set():
                    engine.stop()
                    return
                samples = (
                    pcm_from_bytes(chunk, sample_format, channels)
                    if isinstance(chunk, (bytes, bytearray))
                    else np.asarray(chunk)
                )
                if samples.size:
                    yield samples, rate
            if "error" in outcome:
                error = outcome["error"]
                raise TtsError(f"{self.name} synthesis failed: {type(error).__name__}: {error}") from error
        finally:
            if worker.is_alive():
                engine.stop()
                # Wait for the piece in flight: the caller's scheduler slot must cover real compute.
                worker.join()
            _drain(engine.queue)


def _drain(q: "queue.Queue[Any]") -> None:
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return
