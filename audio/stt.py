"""Shared faster-whisper transcription: one model per process, several clips per call.

`WhisperTranscriber` runs one process-wide `faster_whisper.WhisperModel` (via `runtime.models.MODELS`)
below its `transcribe()` helper: features, one encoder call and one greedy/beam decode per batch of
clips, so several members' finals can share one call. Latency tricks (measured on tiny.en, 2 cores):

* no timestamps, no previous-text conditioning, no fallback temperatures, no built-in VAD (ours ran);
* a SHORT ENCODER WINDOW (STT_ENCODER_WINDOW_S): clips up to `window - 1.5` s are encoded as a 10 s
  window instead of Whisper's 30 s (CTranslate2 accepts it; the encoder is ~4x cheaper). The rest of the window is padded
  with the log-mel value of silence (not zeros, which read as noise and make Whisper loop);
* a token budget proportional to the clip's length, and repeated-sentence collapse, so a looping
  decode is cut short instead of running to 448 tokens.

Guards drop text from non-speech: `no_speech_prob`, average log-probability, compression ratio and
the known-hallucination list (`audio.hallucinations`).

The work reaches it through `audio.stt_scheduler` (a lane per guild) and `audio.stt_worker`: one worker
thread per model for every guild of the process, finals before partials, guilds and their members taking turns.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Sequence

import numpy as np

from audio.stt_result import SttResult, collapse_repeats, compression_ratio, text_rejection
from audio.types import STT_RATE
from runtime.metrics import record_model_time

log = logging.getLogger(__name__)

HOP = 160  # samples per mel frame
FULL_WINDOW_FRAMES = 3000  # Whisper's 30 s window
TOKENS_PER_S = 8.0  # generous upper bound of speech tokens per second of audio
MAX_NEW_TOKENS = 220


class WhisperTranscriber:
    """One shared faster-whisper model; `transcribe()` is blocking and thread-safe (call it off the loop)."""

    def __init__(
        self,
        settings,
        *,
        short_window_s: float | None = None,
        model=None,
    ) -> None:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        self.settings = settings
        if short_window_s is None:
            short_window_s = settings.stt_encoder_window_s
        self.model = model if model is not None else load_whisper(settings)
        language = None if settings.stt_language in ("", "auto") else settings.stt_language
        multilingual = self.model.model.is_multilingual
        if multilingual and language is None:
            language = "en"  # per-utterance language detection costs a second pass; fixed is the fast path
            log.warning("STT_LANGUAGE=auto: using 'en' (set STT_LANGUAGE for another language)")
        self.tokenizer = Tokenizer(self.model.hf_tokenizer, multilingual, task="transcribe", language=language or "en")
        self.prompt = self.model.get_prompt(self.tokenizer, [], without_timestamps=True)
        self.suppress_tokens = list(get_suppressed_tokens(self.tokenizer, [-1]))
        self.short_frames = int(short_window_s * STT_RATE / HOP) if short_window_s > 0 else FULL_WINDOW_FRAMES
        self.short_frames = min(self.short_frames, FULL_WINDOW_FRAMES)
        self._short_max_samples = int(max(0.0, short_window_s - 1.5) * STT_RATE)
        self.calls = 0

    @property
    def batch_key(self) -> tuple:
        """Transcribers with equal keys give the same results: their clips may share one Whisper call."""
        s = self.settings
        return (
            id(self.model),
            tuple(self.prompt),
            tuple(self.suppress_tokens),
            self.short_frames,
            s.stt_beam_size,
            s.stt_no_speech_threshold,
            s.stt_logprob_threshold,
        )

    def window_frames(self, n_samples: int) -> int:
        """Encoder window for a clip: the short window when the clip fits it with a silent margin."""
        return self.short_frames if n_samples <= self._short_max_samples else FULL_WINDOW_FRAMES

    def _features(self, audio: np.ndarray, frames: int) -> np.ndarray:
        fe = self.model.feature_extractor
        audio = audio[: FULL_WINDOW_FRAMES * HOP]
        # compute the mel of the clip followed by real silence, then fill the window with silence's value
        padded = np.concatenate((audio, np.zeros(STT_RATE // 2, dtype=np.float32)))
        mel = fe(padded)
        out = np.empty((mel.shape[0], frames), dtype=np.float32)
        n = min(mel.shape[-1], frames)
        out[:, :n] = mel[:, :n]
        out[:, n:] = mel.min()
        return out

    def transcribe(self, audios: Sequence[np.ndarray], *, beam_size: int | None = None) -> list[SttResult]:
        """Transcribe several clips (16 kHz mono float32) in one batch per encoder window size."""
        if not audios:
            return []
        beam = beam_size or self.settings.stt_beam_size
        results: list[SttResult | None] = [None] * len(audios)
        groups: dict[int, list[int]] = {}
        for i, audio in enumerate(audios):
            groups.setdefault(self.window_frames(len(audio)), []).append(i)
        for frames, idxs in groups.items():
            t0 = time.perf_counter()
            feats = np.stack([self._features(np.asarray(audios[i], dtype=np.float32), frames) for i in idxs])
            longest = max(len(audios[i]) for i in idxs) / STT_RATE
            max_new = min(MAX_NEW_TOKENS, int(12 + TOKENS_PER_S * longest))
            encoder_output = self.model.encode(feats)
            gen = self.model.model.generate(
                encoder_output,
                [self.prompt] * len(idxs),
                beam_size=beam,
                max_length=len(self.prompt) + max_new,
                return_scores=True,
                return_no_speech_prob=True,
                suppress_blank=True,
                suppress_tokens=self.suppress_tokens,
            )
            compute = time.perf_counter() - t0
            record_model_time("stt", compute)
            self.calls += 1
            encoded = np.asarray(encoder_output)
            for k, (i, res) in enumerate(zip(idxs, gen)):
                results[i] = self._judge(res, len(audios[i]) / STT_RATE, compute, len(idxs), encoded[k : k + 1].copy())
        return [r for r in results if r is not None]

    def _judge(self, res, duration_s: float, compute_s: float, batch: int, encoded: Any = None) -> SttResult:
        s = self.settings
        tokens = res.sequences_ids[0]
        seq_len = len(tokens)
        avg_logprob = (res.scores[0] * seq_len) / (seq_len + 1) if seq_len else -math.inf
        raw = self.tokenizer.decode(tokens).strip()
        text = collapse_repeats(raw)
        ratio = compression_ratio(text)
        no_speech = float(res.no_speech_prob)
        reason = None
        if not text:
            reason = "empty"
        elif no_speech > s.stt_no_speech_threshold:
            reason = f"no_speech_prob {no_speech:.2f} > {s.stt_no_speech_threshold}"
        elif avg_logprob < s.stt_logprob_threshold:
            reason = f"avg_logprob {avg_logprob:.2f} < {s.stt_logprob_threshold}"
        else:
            reason = text_rejection(text, ratio)
        if reason:
            log.debug("stt dropped %r: %s", raw, reason)
        confidence = math.exp(avg_logprob) if seq_len else 0.0
        return SttResult(
            text="" if reason else text,
            confidence=confidence,
            avg_logprob=avg_logprob,
            no_speech_prob=no_speech,
            compression_ratio=ratio,
            rejected=reason,
            raw_text=raw,
            duration_s=duration_s,
            compute_s=compute_s,
            batch=batch,
            encoded=encoded,
        )


def make_transcriber(settings):
    """The transcriber STT_BACKEND names: in-process faster-whisper, or a Wyoming STT server."""
    if getattr(settings, "stt_backend", "local") == "wyoming":
        from audio.wyoming_stt import WyomingTranscriber

        return WyomingTranscriber(settings)
    return WhisperTranscriber(settings)


def preload_transcriber(settings) -> None:
    """Load what transcription needs before the first member speaks (the local model; nothing for a server)."""
    if getattr(settings, "stt_backend", "local") == "local":
        load_whisper(settings)


def load_whisper(settings):
    """The process-wide faster-whisper model for these settings (loaded once)."""
    from runtime.models import MODELS, resolve_whisper_model

    path = resolve_whisper_model(settings.stt_model)
    device = settings.stt_device
    compute_type = settings.stt_compute_type

    def loader():
        from faster_whisper import WhisperModel

        return WhisperModel(path, device=device, compute_type=compute_type)

    return MODELS.get(f"whisper:{path}:{device}:{compute_type}", loader)
