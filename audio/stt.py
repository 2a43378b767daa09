"""Shared faster-whisper transcription and the fair scheduler that feeds it.

`WhisperTranscriber` runs one process-wide `faster_whisper.WhisperModel` (via `bot.models.MODELS`)
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

`SttScheduler` is the ONE worker thread for every member of a session: finals (confirmed and
speculative) always run before partials, members take turns (round-robin), several pending finals are
batched, partials run at a cadence only when nothing else waits and are dropped when stale.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from audio.hallucinations import is_hallucination
from audio.types import STT_RATE
from bot.metrics import record_model_time

log = logging.getLogger(__name__)

HOP = 160  # samples per mel frame
FULL_WINDOW_FRAMES = 3000  # Whisper's 30 s window
COMPRESSION_RATIO_MAX = 2.4
TOKENS_PER_S = 8.0  # generous upper bound of speech tokens per second of audio
MAX_NEW_TOKENS = 220


@dataclass(frozen=True, slots=True)
class SttResult:
    text: str  # "" when rejected
    confidence: float  # exp(avg_logprob), 0..1
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    rejected: str | None  # why the guards dropped it, None when kept
    raw_text: str  # what Whisper said before the guards
    duration_s: float  # audio length
    compute_s: float  # wall time of the batch this clip was in
    batch: int = 1


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


_SENTENCE = re.compile(r"[^.!?]+[.!?]*")


def collapse_repeats(text: str) -> str:
    """'Can you hear me? Can you hear me? Can you' -> 'Can you hear me?' (a looping decode)."""
    sentences = [s.strip() for s in _SENTENCE.findall(text) if s.strip()]
    if len(sentences) < 2:
        return text.strip()
    for size in range(1, len(sentences) // 2 + 1):
        unit = sentences[:size]
        norm_unit = [s.lower() for s in unit]
        ok = True
        for i in range(size, len(sentences)):
            expected = norm_unit[i % size]
            got = sentences[i].lower()
            last = i == len(sentences) - 1
            if got != expected and not (last and expected.startswith(got.rstrip(".!?"))):
                ok = False
                break
        if ok:
            return " ".join(unit)
    return text.strip()


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
            for i, res in zip(idxs, gen):
                results[i] = self._judge(res, len(audios[i]) / STT_RATE, compute, len(idxs))
        return [r for r in results if r is not None]

    def _judge(self, res, duration_s: float, compute_s: float, batch: int) -> SttResult:
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
        elif ratio > COMPRESSION_RATIO_MAX:
            reason = f"compression_ratio {ratio:.2f} > {COMPRESSION_RATIO_MAX}"
        elif is_hallucination(text):
            reason = "known hallucination"
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
        )


def load_whisper(settings):
    """The process-wide faster-whisper model for these settings (loaded once)."""
    from bot.models import MODELS, resolve_whisper_model

    path = resolve_whisper_model(settings.stt_model)
    device = settings.stt_device
    compute_type = settings.stt_compute_type

    def loader():
        from faster_whisper import WhisperModel

        return WhisperModel(path, device=device, compute_type=compute_type)

    return MODELS.get(f"whisper:{path}:{device}:{compute_type}", loader)


# --------------------------------------------------------------------------------------------
# The scheduler


@dataclass(eq=False)
class SttJob:
    """One transcription request. `kind` is "final" or "speculative" (both ranked as finals)."""

    user_id: int
    kind: str
    audio: np.ndarray
    on_done: Callable[["SttJob", SttResult], None]
    submitted: float = field(default_factory=time.monotonic)
    started: float = 0.0
    finished: float = 0.0
    cancelled: bool = False
    result: SttResult | None = None
    done: threading.Event = field(default_factory=threading.Event)
    tag: object = None  # the caller's (e.g. the segment)


@dataclass(eq=False)
class PartialSource:
    """A member who is speaking: `snapshot()` gives the audio so far; `on_done` receives partials."""

    user_id: int
    snapshot: Callable[[], np.ndarray]
    on_done: Callable[[SttResult, float, bool], None]  # (result, started, stale)
    is_stale: Callable[[], bool]
    next_due: float
    last_samples: int = 0
    is_paused: Callable[[], bool] = lambda: False  # silent for now: the speculative final covers it


@dataclass
class SchedulerStats:
    finals: int = 0
    speculative: int = 0
    partials: int = 0
    partials_stale: int = 0
    batches: int = 0
    max_batch_seen: int = 0
    cancelled: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class SttScheduler:
    """One worker thread for all members: finals before partials, round-robin, batches of finals."""

    def __init__(
        self,
        transcriber: WhisperTranscriber,
        *,
        partial_interval_s: float,
        max_batch: int = 4,
        partials: bool = True,
        min_partial_audio_s: float = 0.6,
        name: str = "stt-worker",
    ) -> None:
        self.transcriber = transcriber
        self.partial_interval_s = partial_interval_s
        self.max_batch = max(1, max_batch)
        self.partials_enabled = partials
        self.min_partial_samples = int(min_partial_audio_s * STT_RATE)
        self.stats = SchedulerStats()
        self._cond = threading.Condition()
        self._finals: dict[int, deque[SttJob]] = {}
        self._turns: deque[int] = deque()  # members in round-robin order
        self._partials: dict[int, PartialSource] = {}
        self._closed = False
        self._partials_resume = 0.0  # partials wait until then: they use at most ~half of the worker
        self.busy = False
        self.final_compute_ema = 0.4  # seconds; informs when speculation is worth starting
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- API (any thread) -----------------------------------------------------------------------

    def submit(self, job: SttJob) -> SttJob:
        with self._cond:
            if self._closed:
                raise RuntimeError("scheduler closed")
            self._finals.setdefault(job.user_id, deque()).append(job)
            if job.user_id not in self._turns:
                self._turns.append(job.user_id)
            self._cond.notify()
        return job

    def cancel(self, job: SttJob) -> bool:
        """Cancel a job that has not started; returns False when it already runs or ran."""
        with self._cond:
            if job.started:
                return False
            job.cancelled = True
            queue = self._finals.get(job.user_id)
            if queue and job in queue:
                queue.remove(job)
                self.stats.cancelled += 1
            return True

    def start_partials(self, source: PartialSource) -> None:
        if not self.partials_enabled:
            return
        with self._cond:
            self._partials[source.user_id] = source
            if source.user_id not in self._turns:
                self._turns.append(source.user_id)
            self._cond.notify()

    def stop_partials(self, user_id: int) -> None:
        with self._cond:
            self._partials.pop(user_id, None)

    def forget(self, user_id: int) -> None:
        with self._cond:
            for job in self._finals.pop(user_id, ()):  # queued, not started
                job.cancelled = True
            self._partials.pop(user_id, None)
            if user_id in self._turns:
                self._turns.remove(user_id)

    def pending_finals(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._finals.values())

    def idle(self) -> bool:
        with self._cond:
            return not self.busy and not any(self._finals.values())

    def close(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    # -- worker ---------------------------------------------------------------------------------

    def _prune(self) -> None:
        """Members with no queued work leave the rotation (bounded state over a long session)."""
        for uid in [u for u, q in self._finals.items() if not q]:
            del self._finals[uid]
        if any(u not in self._finals and u not in self._partials for u in self._turns):
            self._turns = deque(u for u in self._turns if u in self._finals or u in self._partials)

    def _take_finals(self) -> list[SttJob]:
        """Up to max_batch jobs: confirmed finals first, then speculative ones; one per member per round."""
        batch: list[SttJob] = []
        for kind in ("final", "speculative"):
            progress = True
            while progress and len(batch) < self.max_batch:
                progress = False
                for _ in range(len(self._turns)):
                    uid = self._turns[0]
                    self._turns.rotate(-1)
                    queue = self._finals.get(uid)
                    job = next((j for j in queue if j.kind == kind), None) if queue else None
                    if job is not None:
                        queue.remove(job)
                        job.started = time.monotonic()  # under the lock: cancel() now says no
                        batch.append(job)
                        progress = True
                        if len(batch) >= self.max_batch:
                            break
        return batch

    def _take_partial(self, now: float) -> tuple[PartialSource | None, float | None]:
        """The next due partial (round-robin), else the time the next one is due."""
        if self._partials and now < self._partials_resume:
            return None, self._partials_resume
        soonest = None
        for _ in range(len(self._turns)):
            uid = self._turns[0]
            src = self._partials.get(uid)
            self._turns.rotate(-1)
            if src is None:
                continue
            if src.next_due <= now:
                return src, None
            soonest = src.next_due if soonest is None else min(soonest, src.next_due)
        return None, soonest

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed and not any(self._finals.values()):
                        return
                    self._prune()
                    batch = self._take_finals()
                    if batch:
                        break
                    src, due = self._take_partial(time.monotonic())
                    if src is not None:
                        break
                    self._cond.wait(None if due is None else max(0.0, due - time.monotonic()))
                self.busy = True
            try:
                if batch:
                    self._run_finals(batch)
                else:
                    self._run_partial(src)
            except Exception as exc:
                self.stats.errors += 1
                log.exception("transcription failed")
                failed = SttResult("", 0.0, -math.inf, 1.0, 0.0, f"error: {type(exc).__name__}: {exc}", "", 0.0, 0.0)
                for job in batch:
                    if job.result is None:  # tell the caller, so nothing waits for it forever
                        job.result = failed
                        job.done.set()
                        try:
                            job.on_done(job, failed)
                        except Exception:
                            log.exception("stt callback failed")
            finally:
                with self._cond:
                    self.busy = False

    def _run_finals(self, batch: list[SttJob]) -> None:
        started = min(job.started for job in batch)
        results = self.transcriber.transcribe([job.audio for job in batch])
        finished = time.monotonic()
        self.stats.batches += 1
        self.stats.max_batch_seen = max(self.stats.max_batch_seen, len(batch))
        self.final_compute_ema = 0.8 * self.final_compute_ema + 0.2 * (finished - started)
        for job, result in zip(batch, results):
            job.finished = finished
            job.result = result
            if job.kind == "final":
                self.stats.finals += 1
            else:
                self.stats.speculative += 1
            job.done.set()
            try:
                job.on_done(job, result)
            except Exception:
                log.exception("stt callback failed")

    def _run_partial(self, src: PartialSource) -> None:
        now = time.monotonic()
        audio = src.snapshot()
        if (len(audio) < self.min_partial_samples or len(audio) - src.last_samples < STT_RATE // 4 or src.is_stale()
                or src.is_paused()):
            src.next_due = now + self.partial_interval_s / 2
            return
        started = time.monotonic()
        result = self.transcriber.transcribe([audio], beam_size=1)[0]  # partials: greedy, always
        took = time.monotonic() - started
        src.last_samples = len(audio)
        self._partials_resume = time.monotonic() + took
        # behind schedule (slow machine or many speakers): space partials out; across members they take
        # at most ~half of the worker (after each partial the worker rests or runs finals as long)
        src.next_due = started + max(self.partial_interval_s, 2.0 * took)
        stale = src.is_stale()  # the segment ended meanwhile: the caller may still use it as the final
        if stale:
            self.stats.partials_stale += 1
        else:
            self.stats.partials += 1
        try:
            src.on_done(result, started, stale)
        except Exception:
            log.exception("partial callback failed")
