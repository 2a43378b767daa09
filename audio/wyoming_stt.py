"""Transcription by a Wyoming STT server (`wyoming-faster-whisper`), behind the same `transcribe()` as the
in-process `WhisperTranscriber`, so the STT scheduler, partials, speculative finals, VAD and end of turn work
unchanged (STT_BACKEND=wyoming).

One clip is one Wyoming request on its own connection: transcribe, audio-start, audio chunks, audio-stop, then
the server's transcript (a streaming server's transcript-start/-chunk events are skipped). The clips of a
batch go out concurrently, so the server's own concurrency is used. The server returns text only, so the
guards that need Whisper's scores (no_speech_prob, average log-probability) cannot run here; the text guards
(repeat collapse, compression ratio, the known hallucinations) do.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Sequence

import numpy as np
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop

from audio import wyoming_client
from audio.stt_result import SttResult, collapse_repeats, compression_ratio, text_rejection
from audio.types import STT_RATE
from runtime.metrics import record_model_time

log = logging.getLogger(__name__)

CHUNK_SAMPLES = STT_RATE // 2  # audio sent in 0.5 s events


def _pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class WyomingTranscriber:
    """Blocking and thread-safe like `WhisperTranscriber`: call it from the STT worker, never the event loop."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.uri = settings.stt_server_uri
        wyoming_client.check_uri(self.uri, "STT_SERVER_URI")
        self.language = None if settings.stt_language in ("", "auto") else settings.stt_language
        # Every guild's transcriber for one server shares one STT worker and batches together
        # (audio/stt_worker.py keys workers by `model` and batches by `batch_key`).
        self.model = f"wyoming:{self.uri}"
        self.batch_key = (self.model, self.language)
        self.calls = 0

    def transcribe(self, audios: Sequence[np.ndarray], *, beam_size: int | None = None) -> list[SttResult]:
        """Transcribe clips (16 kHz mono float32); `beam_size` is the server's own setting (--beam-size)."""
        if not audios:
            return []
        started = time.perf_counter()
        texts = wyoming_client.run_blocking(self._all(list(audios)))
        compute = time.perf_counter() - started
        record_model_time("stt", compute)
        self.calls += 1
        return [judge_text(text, len(audio) / STT_RATE, compute, len(audios)) for text, audio in zip(texts, audios)]

    async def _all(self, audios: list[np.ndarray]) -> list[str]:
        return list(await asyncio.gather(*(self._one(audio) for audio in audios)))

    async def _one(self, audio: np.ndarray) -> str:
        client = await wyoming_client.connect(self.uri, "STT")
        try:
            await client.write_event(Transcribe(language=self.language).event())
            await client.write_event(AudioStart(rate=STT_RATE, width=2, channels=1).event())
            pcm = _pcm16(audio)
            step = CHUNK_SAMPLES * 2
            for offset in range(0, len(pcm), step):
                await client.write_event(
                    AudioChunk(rate=STT_RATE, width=2, channels=1, audio=pcm[offset : offset + step]).event()
                )
            await client.write_event(AudioStop().event())
            while True:
                event = await wyoming_client.read_event(client, self.uri, "STT")
                if Transcript.is_type(event.type):
                    return Transcript.from_event(event).text or ""
        finally:
            await wyoming_client.close(client)


def judge_text(raw: str, duration_s: float, compute_s: float, batch: int) -> SttResult:
    """An SttResult from a server's text, through the guards that need no model scores."""
    raw = (raw or "").strip()
    text = collapse_repeats(raw)
    ratio = compression_ratio(text)
    reason = "empty" if not text else text_rejection(text, ratio)
    if reason:
        log.debug("stt dropped %r: %s", raw, reason)
    return SttResult(
        text="" if reason else text,
        confidence=1.0 if text else 0.0,  # the server gives no scores
        avg_logprob=0.0 if text else -math.inf,
        no_speech_prob=0.0,
        compression_ratio=ratio,
        rejected=reason,
        raw_text=raw,
        duration_s=duration_s,
        compute_s=compute_s,
        batch=batch,
    )
