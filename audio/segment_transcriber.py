"""The transcription of one member's speech segment: partials, the speculative final at a pause, the final.

The listener's VAD thread tells `SegmentTranscriber` what the VAD saw for a segment (begin, pause, resume,
finish, discard); it queues the work on the shared `SttScheduler` and delivers Utterances through the
listener's `deliver` callback (which hops to the event loop):

* begin  -> partials at STT_PARTIAL_INTERVAL_S cadence;
* pause  -> the end of turn is judged on the member's audio (`audio.pause_judge`), their latest partial goes
            out again marked timings["paused"], and a SPECULATIVE final of the audio so far is queued at once
            (ranked with finals); its text goes out as a partial marked timings["speculative"]. Until they
            speak again the pause's partials stay their latest;
* resume -> the speculation is cancelled (or its text becomes a partial); the pause's partial goes out again
            without a mark (timings["resumed"]);
* finish -> the speculative result is the final when no voice came after it (usually already computed: that
            is the latency removed), else a final is queued;
* discard-> an empty final closes a segment with too little voice.

EVERY segment gets exactly one final Utterance (its text, or empty when rejected or discarded). The
end-of-turn probability rides on every Utterance of the segment while no voice came after the pause it
was judged at (`Utterance.end_of_turn`).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable

import numpy as np

from audio.doubted_words import DoubtedWords
from audio.end_of_turn import SmartTurn
from audio.final_name_look import FinalNameLook, NameLookFor
from audio.pause_judge import PauseJudge, judged_probability, judged_times
from audio.segment_turn import SegmentTurn
from audio.stt_result import SttResult
from audio.stt_scheduler import PartialSource, SttJob, SttScheduler
from audio.types import STT_RATE
from audio.vad import Segment, VadConfig, VadEvent

log = logging.getLogger(__name__)

TAIL_S = 0.25  # silence kept after the last voiced window (helps Whisper close the sentence)
MIN_PAUSE_MS = 64

Deliver = Callable[..., None]  # (user_id, result, start, end, final, timings, end_of_turn) -> None, any thread


class SegmentTranscriber:
    """Per-segment transcription work for one listener (VAD thread and STT worker; state under each turn's lock)."""

    def __init__(
        self,
        *,
        settings: Any,
        scheduler: SttScheduler,
        stats: Any,
        vad_config: VadConfig,
        end_of_turn: SmartTurn | None,
        deliver: Deliver,
        expect_final: Callable[[int], None],
        speculative: bool = True,
        name_look_for: NameLookFor | None = None,
    ) -> None:
        self.settings = settings
        self.scheduler = scheduler
        self.stats = stats
        self.vad_config = vad_config
        self.pause_judge = PauseJudge(end_of_turn, stats) if end_of_turn is not None else None
        self.speculative = speculative
        self._deliver = deliver
        self._expect_final = expect_final
        self._doubted = DoubtedWords()
        self._name_look = FinalNameLook(name_look_for, send=self._send, doubted=self._doubted, audio=self._final_audio)

    def pause(self, turn: SegmentTurn) -> None:
        """The VAD heard a pause: mark the latest partial at once (an early start may begin on it: its audio
        is held until the final, which carries the end-of-turn judgement), judge the end of turn, speculate."""
        turn.in_pause = True
        self._paused(turn)
        self._judge_end_of_turn(turn)
        if self.speculative:
            self._speculate(turn)

    def resume(self, turn: SegmentTurn) -> None:
        turn.in_pause = False
        self.abandon_speculation(turn)
        self._resumed(turn)

    def ended(self, turn: SegmentTurn, ev: VadEvent) -> None:
        """The segment ended (or was discarded): its final; its audio stays as context for the next one."""
        if ev.kind == "discard":
            self.discard(turn, ev)
            return
        self.finish(turn, ev)
        if self.pause_judge is not None:
            self.pause_judge.remember(turn.segment)

    def forget(self, user_id: int) -> None:
        if self.pause_judge is not None:
            self.pause_judge.forget(user_id)
        self._doubted.forget(user_id)

    def _send(
        self,
        user_id: int,
        result: SttResult,
        start: float,
        end: float,
        final: bool,
        timings: dict[str, float],
        end_of_turn: float | None,
    ) -> None:
        """Deliver a transcript of a segment, after the words of the member's previous segment if Whisper
        doubted those (`audio.doubted_words`)."""
        result = self._doubted.joined(user_id, result, start, final=final)
        self._deliver(user_id, result, start, end, final, timings, end_of_turn)

    def begin(self, seg: Segment) -> SegmentTurn:
        """A new segment: partials start at their cadence."""
        turn = SegmentTurn(seg)

        def snapshot() -> np.ndarray:  # on the STT worker, just before the partial runs
            turn.partial_voice_sample = seg.last_voice_sample
            return seg.audio()

        self.scheduler.start_partials(
            PartialSource(
                user_id=seg.user_id,
                snapshot=snapshot,
                on_done=lambda result, started, stale: self._partial_done(turn, result, started),
                is_stale=seg.ended.is_set,
                is_paused=lambda: turn.in_pause,
                next_due=time.monotonic() + self.settings.stt_partial_interval_s,
            )
        )
        return turn

    def _final_audio(self, seg: Segment) -> np.ndarray:
        return seg.audio(seg.last_voice_sample + int(TAIL_S * STT_RATE))

    def _speculate(self, turn: SegmentTurn) -> None:
        seg = turn.segment
        with turn.lock:
            old = turn.speculative
            if old is not None and turn.spec_voice_sample == seg.last_voice_sample:
                return  # already speculating on exactly this audio
        if old is not None:
            self.abandon_speculation(turn)
        self._transcribe_segment(turn, "speculative")

    def _transcribe_segment(self, turn: SegmentTurn, kind: str) -> None:
        """Queue the transcription of the whole segment so far: a "speculative" one (at a pause) or the
        "final" one (its result is the final); a partial that saw all the voice may stand in for it."""
        seg = turn.segment
        job = SttJob(
            user_id=seg.user_id,
            kind=kind,
            audio=self._final_audio(seg),
            on_done=lambda job, result: self._speculative_done(turn, job, result),
            tag=seg,
        )
        with turn.lock:
            turn.speculative = job
            turn.spec_voice_sample = seg.last_voice_sample
            turn.spec_result = None
            turn.promoted = kind == "final"
            turn.superseded = False
        self.scheduler.submit(job)

    def abandon_speculation(self, turn: SegmentTurn) -> None:
        with turn.lock:
            job = turn.speculative
            if job is None:
                return
            turn.speculative = None
            turn.superseded = True
            result, turn.spec_result = turn.spec_result, None
        self.scheduler.cancel(job)
        if result is not None and job.kind == "speculative" and not turn.segment.ended.is_set():
            self._emit_partial(turn, result, job.started)  # it ran: its text is a fine partial
        # when it runs now, _speculative_done sees `superseded` and makes it a partial

    def discard(self, turn: SegmentTurn, ev: VadEvent) -> None:
        """A started segment with too little voice (a cough): no transcription, but its empty final closes it."""
        self.abandon_speculation(turn)
        turn.ended_t = ev.t
        turn.speech_end_t = ev.speech_end_t
        self._expect_final(+1)
        seg = turn.segment
        reason = f"vad: {seg.voiced_s * 1000:.0f} ms of voice < VAD_MIN_SPEECH_MS"
        result = SttResult("", 0.0, -math.inf, 1.0, 0.0, reason, "", seg.n_samples / STT_RATE, 0.0)
        record = SttJob(seg.user_id, "discard", np.zeros(0, np.float32), _noop, started=ev.t)
        record.finished = ev.t
        self._emit_final(turn, record, result, from_speculation=False)

    def finish(self, turn: SegmentTurn, ev: VadEvent) -> None:
        seg = turn.segment
        turn.ended_t = ev.t
        turn.speech_end_t = ev.speech_end_t
        self._expect_final(+1)
        with turn.lock:
            job = turn.speculative
            reuse = job is not None and turn.spec_voice_sample == seg.last_voice_sample and not job.cancelled
            ready = None
            if reuse:
                turn.promoted = True
                ready = turn.spec_result
        if reuse and job is not None:
            if ready is not None:
                self._emit_final(turn, job, ready, from_speculation=True)
            return  # else: _speculative_done emits it
        if job is not None:
            self.abandon_speculation(turn)
        self._transcribe_segment(turn, "final")

    # -- STT worker callbacks ---------------------------------------------------------------------

    def _speculative_done(self, turn: SegmentTurn, job: SttJob, result: SttResult) -> None:
        with turn.lock:
            current = turn.speculative is job
            promoted = turn.promoted and current
            if current and not promoted:
                turn.spec_result = result  # the final if the end comes before more voice
                # and already now all their words so far (the prompter prepares its reply with them);
                # under the lock, so it cannot overtake the final
                self._emit_partial(turn, result, job.started, speculative=True)
        if promoted:
            self._emit_final(turn, job, result, from_speculation=job.kind != "final")
        elif not current and not turn.segment.ended.is_set():
            self._emit_partial(turn, result, job.started)

    def _partial_done(self, turn: SegmentTurn, result: SttResult, started: float) -> None:
        """A partial that saw all the voice of the segment so far stands in for a queued speculative/final job."""
        seg = turn.segment
        voice_sample = turn.partial_voice_sample
        final_now: SttJob | None = None
        with turn.lock:
            job = turn.speculative
            # (only when finals are greedy too: a partial is always greedy)
            covers = voice_sample >= 0 and voice_sample == seg.last_voice_sample and self.settings.stt_beam_size == 1
            stands_in = covers and turn.spec_result is None and (job is None or self.scheduler.cancel(job))
            if stands_in:
                record = SttJob(seg.user_id, "partial", np.zeros(0, np.float32), _noop, started=started)
                record.finished = time.monotonic()
                turn.speculative = record
                turn.spec_voice_sample = voice_sample
                if turn.promoted and job is not None:
                    final_now = record
                else:
                    turn.promoted = False
                    turn.spec_result = result
        if final_now is not None:
            self._emit_final(turn, final_now, result, from_speculation=True)
        elif not seg.ended.is_set():
            # in a pause, a partial of all their words is the speculative transcript
            self._emit_partial(turn, result, started, speculative=stands_in and turn.in_pause)

    def _emit_partial(self, turn: SegmentTurn, result: SttResult, started: float, *, speculative: bool = False) -> None:
        """Deliver a partial. A speculative one (all their words, taken at a pause) always goes out, and
        until they speak again (`_resumed`) the pause's partials are their latest: others are held back."""
        seg = turn.segment
        end_of_turn = self._current_end_of_turn(turn)
        with turn.lock:
            if (
                turn.finalized
                or not result.text
                or (not speculative and (result.text == turn.last_partial or turn.paused_partial))
            ):
                return
            turn.last_partial = result.text
            turn.last_partial_result = result
            timings = {"speech_start": seg.start_t, "stt_start": started}
            if speculative:
                timings["speculative"] = time.monotonic()
                turn.paused_partial = result
            self.stats.partials += 1
            self._send(seg.user_id, result, seg.start_t, seg.last_voice_t, False, timings, end_of_turn)

    def _judge_end_of_turn(self, turn: SegmentTurn) -> None:
        """At a pause: has the member finished? (`audio.pause_judge`) The speculative transcript and the final of
        the pause carry the judgement."""
        seg = turn.segment
        sample = seg.last_voice_sample
        if self.pause_judge is None or turn.end_of_turn_sample == sample:
            return
        future = self.pause_judge.judge(seg)
        with turn.lock:
            stale, turn.end_of_turn = turn.end_of_turn, future
            turn.end_of_turn_sample = sample
        if stale is not None:
            stale.cancel()  # an earlier pause's judgement not started yet: they spoke since, it would be stale
        future.add_done_callback(self.pause_judge.judged)

    @staticmethod
    def _current_end_of_turn(turn: SegmentTurn, *, wait: bool = True) -> float | None:
        """The end-of-turn probability, if it was judged on all the voice of the segment so far (waiting a
        moment for a judgement in progress: it began at the pause, before any transcription of it)."""
        if turn.end_of_turn_sample != turn.segment.last_voice_sample:
            return None
        return judged_probability(turn.end_of_turn, wait=wait)

    def _paused(self, turn: SegmentTurn) -> None:
        """They went silent (VAD pause): their latest partial again, marked "paused", so the prompter may
        start preparing a reply to it while the speculative transcript and the end are still to come."""
        seg = turn.segment
        end_of_turn = self._current_end_of_turn(turn, wait=False)  # a judgement of this pause is not in yet
        with turn.lock:
            result = turn.last_partial_result
            if result is None or turn.paused_partial is not None or turn.finalized:
                return
            turn.paused_partial = result
            timings = {"speech_start": seg.start_t, "paused": time.monotonic()}
            self._send(seg.user_id, result, seg.start_t, seg.last_voice_t, False, timings, end_of_turn)

    def _resumed(self, turn: SegmentTurn) -> None:
        """They speak again after a pause that went out as a marked partial: their words so far again,
        without a mark, say that the pause is over."""
        seg = turn.segment
        with turn.lock:
            result, turn.paused_partial = turn.paused_partial, None
            if result is not None and not turn.finalized:
                timings = {"speech_start": seg.start_t, "resumed": time.monotonic()}
                self._send(seg.user_id, result, seg.start_t, seg.last_voice_t, False, timings, None)

    def _emit_final(self, turn: SegmentTurn, job: SttJob, result: SttResult, *, from_speculation: bool) -> None:
        """Emit the segment's one final: its text, or an empty final when it was rejected or discarded."""
        seg = turn.segment
        with turn.lock:
            duplicate = turn.finalized
            turn.finalized = True
        if duplicate:  # a second transcription of the same segment: never a second final
            self.stats.finals_duplicate += 1
            log.warning("segment %s of %s: a second final dropped", seg.id, seg.user_id)
            return
        if job.kind != "discard":
            self.update_pause(self.scheduler.final_compute_ema)
        if not result.text:
            if job.kind == "discard":
                self.stats.finals_discarded += 1
            else:
                self.stats.finals_rejected += 1
            log.info(
                "segment %s of %s (%.2f s) rejected: %s",
                seg.id,
                seg.user_id,
                result.duration_s,
                result.rejected or "no text",
            )
            if result.raw_text:
                log.debug("segment %s: Whisper heard %r (DEBUG only)", seg.id, result.raw_text)
        else:
            self.stats.finals += 1
            if from_speculation:
                self.stats.finals_from_speculation += 1
        timings = {
            "speech_start": seg.start_t,
            "speech_end": turn.speech_end_t,
            "vad_end": turn.ended_t,
            "stt_queued": job.submitted,
            "stt_start": job.started,
            "stt_done": job.finished,
        }
        end_of_turn = self._current_end_of_turn(turn)
        if end_of_turn is not None:
            timings.update(judged_times(turn.end_of_turn))  # the judgement of the pause that ended the turn
        if self._name_look.started(seg, result, timings, end_of_turn):  # it sends the final when done
            return
        self._send(seg.user_id, result, seg.start_t, turn.speech_end_t, True, timings, end_of_turn)
        if job.kind != "discard":
            self._doubted.hold(seg, result)

    def update_pause(self, compute_s: float) -> None:
        """Speculate only as early as needed for the final to be ready when the end is confirmed."""
        cfg = self.vad_config
        cfg.pause_ms = int(min(cfg.end_silence_ms, max(MIN_PAUSE_MS, cfg.end_silence_ms - 1000 * compute_s)))


def _noop(*_args: Any) -> None:
    pass
