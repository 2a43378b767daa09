"""Listening for one voice session: per-member VAD and streaming transcription on one shared model.

    receive (event loop) --feed()--> [vad thread] --jobs--> [stt worker] --call_soon_threadsafe--> callbacks

`feed()` only queues the frame. The VAD thread runs every member's `SpeakerVad` and turns its events
into work for the single `SttScheduler`:

* start  -> SpeakingEvent(speaking=True); partials begin at STT_PARTIAL_INTERVAL_S cadence;
* pause  -> the latest partial again, marked timings["paused"]; and a SPECULATIVE final of the audio so
            far is queued at once (ranked with finals), so the transcription runs while the
            end-of-speech silence is still being confirmed; its text is delivered at once as a partial
            marked timings["speculative"] (all the words so far). Until they speak again, other
            partials are held back: the pause's partials stay their latest;
* resume -> the speculative job is cancelled (or its text becomes a partial); the pause's partial goes
            out again without a mark (timings["resumed"]): the pause is over;
* end    -> SpeakingEvent(speaking=False); the speculative result is the final when no voice came
            after it (usually already computed: that is the latency removed), else a final is queued.

At every pause the member's audio (this segment, after their previous one when it ended moments before)
goes to the semantic end-of-turn model (`audio.end_of_turn`, Smart Turn; TURN_MODEL=smart_turn): the
probability that they finished rides on every Utterance of the segment until they speak again
(`Utterance.end_of_turn`), so the prompter can answer a finished question at once and wait longer after
"I was wondering...". It runs on this (VAD) thread: tens of milliseconds, once per pause.

Utterances and SpeakingEvents are delivered on the event loop thread, SpeakingEvent(speaking=False)
before the segment's final. EVERY segment announced by SpeakingEvent(speaking=True) gets exactly one
final Utterance: its text, or, when the guards rejected it (noise, music, hallucination, low
confidence) or the VAD discarded it (too short), an EMPTY final (text "") that closes the segment,
logged at INFO with the reason. The bot's own user ids are never transcribed.

Utterance.start/end are the segment's first and last voiced moments (monotonic, from MemberFrame.t);
timings: "speech_start", "speech_end" (arrival of the last voiced 32 ms window), "vad_end" (end of
speech confirmed), "stt_start"/"stt_done" (the transcription that produced the text; for a
speculative final these come BEFORE vad_end), "final" (delivered on the loop); partials carry
"speech_start", "stt_start", "partial" (and "speculative" for the transcript taken at a pause).

Discord sends nothing while a member is silent: with `fill_gaps` (the default, for live sources) a
speaking member whose frames stop is heard as silence in real time (`SpeakerVad.idle`: counted, no audio
added), so their speech still ends. Late frames must not cut a word in two, so: a gap counts only up to
the last moment the event loop proved responsive (a ping sent through the loop came back), a gap may
start a speculative final after GAP_S but ENDS the speech only once it lasts VAD_END_SILENCE_MS (the
sender may only be late: jitter, a stall), and frames arriving after a gap continue the audio seamlessly.
A gap after silent frames (Discord clients send five when a member stops) is the end it looks like: with
the silence heard it counts toward VAD_END_SILENCE_MS once it lasts GAP_S.
Feeders faster than real time (files, tests) pass `fill_gaps=False` and call `flush()` at the end.

The first Listener loads the shared models (seconds): `await Listener.preload(settings)` first when
constructing it on the event loop (or construct it in a thread: it binds to the loop at the first feed()).

Why a bare name before a long pause ("Juniper, <360 ms> what is ...") is its own segment and final, not
merged back into the next one: the Room merges a member's consecutive finals into one line, and holding
the name's final until the next segment would only add latency.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from audio.end_of_turn import SmartTurn, load_smart_turn
from audio.stt import PartialSource, SttJob, SttResult, SttScheduler, WhisperTranscriber
from audio.types import STT_RATE, MemberFrame, SpeakingEvent, Utterance
from audio.vad import Segment, SpeakerVad, VadConfig, VadEvent, VadModel, load_silero_vad

log = logging.getLogger(__name__)

TAIL_S = 0.25  # silence kept after the last voiced window (helps Whisper close the sentence)
MIN_PAUSE_MS = 64
GAP_S = 0.1  # no frame from a speaking member for this long: they stopped sending (Discord sends no silence)
TRAILING_SILENCE_S = 0.06  # silence heard before a gap: the client said it stopped (5 silent frames on Discord)
PING_INTERVAL_S = 0.02  # event-loop liveness pings while someone speaks (see _loop_alive_until)
MAX_QUEUED_FRAMES = 50 * 240  # ~4 min of one member's audio (~15 MB): beyond this the VAD thread is hopelessly behind
TURN_CONTEXT_GAP_S = 2.0  # the member's previous segment, if it ended this recently, is context for the end of turn
TURN_CONTEXT_PAUSE_S = 1.0  # the silence between the two, at most, in that context
TURN_CONTEXT_S = 8.0  # what the end-of-turn model reads


@dataclass(eq=False)
class _Turn:
    """Transcription state of one segment (shared by the VAD thread and the STT worker)."""

    segment: Segment
    lock: threading.RLock = field(default_factory=threading.RLock)
    speculative: SttJob | None = None
    spec_voice_sample: int = -1
    spec_result: SttResult | None = None  # set (under lock) when the speculative job completed
    promoted: bool = False  # the speculative job IS the final: emit it when it completes
    superseded: bool = False  # speech resumed: the speculative result is only a partial
    last_partial: str = ""  # text of the last partial delivered (repeats are not sent again)
    last_partial_result: SttResult | None = None
    paused_partial: SttResult | None = None  # the partial delivered (marked) in the current pause
    in_pause: bool = False  # the VAD reported a pause and no voice since (no partials: the speculation covers it)
    partial_voice_sample: int = -1  # segment.last_voice_sample when the running partial took its snapshot
    end_of_turn: float | None = None  # the end-of-turn probability judged at the last pause
    end_of_turn_sample: int = -1  # segment.last_voice_sample it was judged at (stale once they speak on)
    ended_t: float = 0.0
    speech_end_t: float = 0.0
    finalized: bool = False  # its one final Utterance (text or empty) has been emitted


@dataclass
class ListenerStats:
    frames: int = 0
    ignored_own: int = 0
    dropped_overload: int = 0
    bad_frames: int = 0
    finals: int = 0
    finals_rejected: int = 0
    finals_discarded: int = 0
    finals_duplicate: int = 0
    gap_fills: int = 0
    finals_from_speculation: int = 0
    partials: int = 0
    end_of_turn_calls: int = 0
    end_of_turn_ms_total: float = 0.0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class Listener:
    """Per-speaker VAD + streaming STT for all members of one voice session, one shared model."""

    def __init__(
        self,
        settings,
        *,
        name_of: Callable[[int], str],
        on_speaking: Callable[[SpeakingEvent], None],
        on_utterance: Callable[[Utterance], None],
        ignore_user_ids: Iterable[int] = (),
        transcriber: WhisperTranscriber | None = None,
        vad_model: VadModel | None = None,
        speculative: bool = True,
        partials: bool = True,
        max_batch: int = 4,
        end_silence_ms: int | None = None,
        fill_gaps: bool = True,
        end_of_turn: SmartTurn | None | bool = True,
    ) -> None:
        self.settings = settings
        self.name_of = name_of
        self.on_speaking = on_speaking
        self.on_utterance = on_utterance
        self.ignore_user_ids: set[int] = set(ignore_user_ids)
        self.speculative = speculative
        self.fill_gaps = fill_gaps
        self.stats = ListenerStats()
        self.transcriber = transcriber or WhisperTranscriber(settings)
        self.vad_model = vad_model or load_silero_vad()
        # True: the model TURN_MODEL names (none when "off"); a SmartTurn: that one; False/None: none
        if end_of_turn is True:
            end_of_turn = load_smart_turn() if getattr(settings, "turn_model", "off") == "smart_turn" else None
        self.end_of_turn: SmartTurn | None = end_of_turn or None
        self._previous: dict[int, tuple[float, np.ndarray]] = {}  # user -> (end of their last segment, its audio)
        self.vad_config = VadConfig.from_settings(settings)
        if end_silence_ms is not None:
            self.vad_config.end_silence_ms = end_silence_ms
        self._update_pause(0.4)
        self.scheduler = SttScheduler(
            self.transcriber,
            partial_interval_s=settings.stt_partial_interval_s,
            max_batch=max_batch,
            partials=partials,
        )
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._members: dict[int, SpeakerVad] = {}
        self._last_frame: dict[int, tuple[float, float, float]] = {}  # user id -> (arrival, frame.t, idle s counted)
        self._turns: dict[int, _Turn] = {}  # user id -> current turn (VAD thread)
        self._outstanding = 0  # finals expected but not delivered yet
        self._outstanding_lock = threading.Lock()
        self._closed = False
        self._alive_t = 0.0  # send time of the last ping that came back through the event loop
        self._ping_sent = 0.0
        self._ping_pending = False
        self._thread = threading.Thread(target=self._vad_loop, name="vad", daemon=True)
        self._thread.start()

    # -- API (event loop thread) ----------------------------------------------------------------

    def feed(self, frame: MemberFrame) -> None:
        """Queue one member frame (cheap, non-blocking). The bot's own frames are dropped."""
        if self._closed:
            return
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self.stats.frames += 1
        if frame.user_id in self.ignore_user_ids:
            self.stats.ignored_own += 1
            return
        if self._queue.qsize() > MAX_QUEUED_FRAMES:
            self.stats.dropped_overload += 1
            return
        self._queue.put(("frame", (frame, time.monotonic())))

    @staticmethod
    async def preload(settings) -> None:
        """Load the shared models in a thread, so that constructing a Listener on the loop does not block it."""
        from audio.stt import load_whisper

        def load() -> None:
            load_whisper(settings)
            load_silero_vad()
            if getattr(settings, "turn_model", "off") == "smart_turn":
                load_smart_turn()

        await asyncio.to_thread(load)

    @property
    def backlog(self) -> int:
        """Frames queued for the VAD thread (a feeder faster than real time can wait on this)."""
        return self._queue.qsize()

    def ignore(self, user_id: int) -> None:
        """Never transcribe this user (the bot itself)."""
        self.ignore_user_ids.add(user_id)
        self._queue.put(("forget", user_id))

    def forget(self, user_id: int) -> None:
        """A member left: finish what they said, then drop their state."""
        self._queue.put(("forget", user_id))

    async def flush(self, timeout: float = 60.0) -> None:
        """End everyone's speech now and wait until every pending final has been delivered."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        done = self._loop.create_future()
        self._queue.put(("flush", done))
        await asyncio.wait_for(done, timeout)
        deadline = time.monotonic() + timeout
        while True:
            with self._outstanding_lock:
                outstanding = self._outstanding
            if outstanding == 0 and self.scheduler.idle():
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{outstanding} finals still pending")
            await asyncio.sleep(0.01)
        await asyncio.sleep(0)  # let already-scheduled callbacks run

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join, 5.0)
        await asyncio.to_thread(self.scheduler.close, 10.0)

    # -- VAD thread -----------------------------------------------------------------------------

    def _vad_loop(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=0.02 if self.fill_gaps else None)
            except queue.Empty:
                try:
                    self._fill_gaps()
                except Exception:
                    log.exception("listener failed filling gaps")
                continue
            if item is None:
                return
            kind, arg = item
            try:
                if kind == "frame":
                    self._on_frame(*arg)
                elif kind == "alive":
                    self._alive_t = max(self._alive_t, arg)
                    self._ping_pending = False
                elif kind == "forget":
                    self._end_member(arg, time.monotonic(), drop=True)
                elif kind == "flush":
                    for uid in list(self._members):
                        self._end_member(uid, time.monotonic(), drop=False)
                    self._call_soon(_set_result, arg)
                if self.fill_gaps and self._queue.qsize() == 0:  # every fed frame seen: gaps are real
                    self._fill_gaps()
            except Exception:
                log.exception("listener failed on %s", kind)

    def _loop_alive_until(self) -> float:
        """The latest time up to which every frame the event loop was given has reached our queue.

        A ping (its send time) goes through the loop into the queue behind any frame the loop delivers
        before it; when it comes back, a member with no frame since that time really sent nothing.
        """
        now = time.monotonic()
        loop = self._loop
        if loop is None or loop.is_closed():
            return now
        if not self._ping_pending and now - self._ping_sent >= PING_INTERVAL_S:
            self._ping_sent = now
            self._ping_pending = True
            try:
                loop.call_soon_threadsafe(self._queue.put, ("alive", now))
            except RuntimeError:  # loop closing: nothing more will come through it
                self._ping_pending = False
                return now
        return self._alive_t

    def _fill_gaps(self) -> None:
        """Discord stops sending when a member stops talking: hear that as silence, in real time."""
        if not any(vad.in_speech for vad in self._members.values()):
            return
        now = self._loop_alive_until()
        end_gap = max(GAP_S, self.vad_config.end_silence_ms / 1000.0)
        for uid, (arrival, frame_t, counted) in list(self._last_frame.items()):
            vad = self._members.get(uid)
            gap = now - arrival
            if vad is None or not vad.in_speech or gap < GAP_S or gap - counted < 0.02:
                continue
            # silence without audio; only a gap as long as the end-of-speech silence may END the speech
            # (a shorter one may be late frames: jitter, a stalled sender), unless the member's client
            # sent silence before going quiet (what Discord clients do when a member stops talking)
            may_end = gap >= end_gap or (gap >= GAP_S and vad.silence_heard_s >= TRAILING_SILENCE_S)
            self.stats.gap_fills += int((gap - counted) / 0.02)
            for event in vad.idle(gap - counted, frame_t + gap, may_end=may_end):
                self._on_vad_event(event)
            self._last_frame[uid] = (arrival, frame_t, gap)

    def _on_frame(self, frame: MemberFrame, arrival: float) -> None:
        pcm = frame.pcm
        if not isinstance(pcm, np.ndarray) or pcm.ndim != 1 or pcm.size == 0 or not np.isfinite(pcm).all():
            self.stats.bad_frames += 1
            log.warning("dropped a bad frame from %s (%r)", frame.user_id, getattr(pcm, "shape", type(pcm)))
            return
        vad = self._members.get(frame.user_id)
        if vad is None:
            vad = self._members[frame.user_id] = SpeakerVad(frame.user_id, self.vad_model, self.vad_config)
        self._last_frame[frame.user_id] = (arrival, frame.t, 0.0)
        for event in vad.push(pcm.astype(np.float32, copy=False), frame.t):
            self._on_vad_event(event)

    def _end_member(self, user_id: int, t: float, *, drop: bool) -> None:
        vad = self._members.get(user_id)
        if vad is not None:
            for event in vad.flush(t):
                self._on_vad_event(event)
        if drop:
            self._members.pop(user_id, None)
            self._last_frame.pop(user_id, None)
            self._turns.pop(user_id, None)
            self._previous.pop(user_id, None)
            self.scheduler.stop_partials(user_id)

    def _on_vad_event(self, ev: VadEvent) -> None:
        uid = ev.segment.user_id
        if ev.kind == "start":
            self._speaking(uid, True, ev.t)
            self._begin_turn(ev.segment)
        elif ev.kind == "pause":
            turn = self._turns.get(uid)
            if turn is not None:
                turn.in_pause = True
                self._judge_end_of_turn(turn)
                self._paused(turn)
                if self.speculative:
                    self._speculate(turn)
        elif ev.kind == "resume":
            turn = self._turns.get(uid)
            if turn is not None:
                turn.in_pause = False
                self._abandon_speculation(turn)
                self._resumed(turn)
        elif ev.kind in ("end", "discard"):
            turn = self._turns.pop(uid, None)
            self.scheduler.stop_partials(uid)
            if not ev.split:
                self._speaking(uid, False, ev.t)  # before the final: the member stopped, then we understood
            if turn is not None:
                if ev.kind == "discard":
                    self._discard_turn(turn, ev)
                else:
                    self._finish_turn(turn, ev)
                    if self.end_of_turn is not None:
                        seg = turn.segment
                        keep = int(TURN_CONTEXT_S * STT_RATE)
                        self._previous[uid] = (seg.last_voice_t, seg.audio(seg.last_voice_sample)[-keep:])
            if ev.split:
                vad = self._members.get(uid)
                if vad is not None and vad.segment is not None:
                    self._begin_turn(vad.segment)

    def _begin_turn(self, seg: Segment) -> None:
        turn = _Turn(seg)
        self._turns[seg.user_id] = turn

        def snapshot() -> np.ndarray:  # on the STT worker, just before the partial runs
            turn.partial_voice_sample = seg.last_voice_sample
            return seg.audio()

        self.scheduler.start_partials(
            PartialSource(
                user_id=seg.user_id,
                snapshot=snapshot,
                on_done=lambda result, started, stale, turn=turn: self._partial_done(turn, result, started),
                is_stale=seg.ended.is_set,
                is_paused=lambda turn=turn: turn.in_pause,
                next_due=time.monotonic() + self.settings.stt_partial_interval_s,
            )
        )

    def _final_audio(self, seg: Segment) -> np.ndarray:
        return seg.audio(seg.last_voice_sample + int(TAIL_S * STT_RATE))

    def _speculate(self, turn: _Turn) -> None:
        seg = turn.segment
        with turn.lock:
            old = turn.speculative
            if old is not None and turn.spec_voice_sample == seg.last_voice_sample:
                return  # already speculating on exactly this audio
        if old is not None:
            self._abandon_speculation(turn)
        self._transcribe_segment(turn, "speculative")

    def _transcribe_segment(self, turn: _Turn, kind: str) -> None:
        """Queue the transcription of the whole segment so far: a "speculative" one (at a pause) or the
        "final" one (its result is the final); a partial that saw all the voice may stand in for it."""
        seg = turn.segment
        job = SttJob(
            user_id=seg.user_id,
            kind=kind,
            audio=self._final_audio(seg),
            on_done=lambda job, result, turn=turn: self._speculative_done(turn, job, result),
            tag=seg,
        )
        with turn.lock:
            turn.speculative = job
            turn.spec_voice_sample = seg.last_voice_sample
            turn.spec_result = None
            turn.promoted = kind == "final"
            turn.superseded = False
        self.scheduler.submit(job)

    def _abandon_speculation(self, turn: _Turn) -> None:
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

    def _discard_turn(self, turn: _Turn, ev: VadEvent) -> None:
        """A started segment with too little voice (a cough): no transcription, but its empty final closes it."""
        self._abandon_speculation(turn)
        turn.ended_t = ev.t
        turn.speech_end_t = ev.speech_end_t
        self._expect_final(+1)
        seg = turn.segment
        reason = f"vad: {seg.voiced_s * 1000:.0f} ms of voice < VAD_MIN_SPEECH_MS"
        result = SttResult("", 0.0, -math.inf, 1.0, 0.0, reason, "", seg.n_samples / STT_RATE, 0.0)
        record = SttJob(seg.user_id, "discard", np.zeros(0, np.float32), _noop, started=ev.t)
        record.finished = ev.t
        self._emit_final(turn, record, result, from_speculation=False)

    def _finish_turn(self, turn: _Turn, ev: VadEvent) -> None:
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
        if reuse:
            if ready is not None:
                self._emit_final(turn, job, ready, from_speculation=True)
            return  # else: _speculative_done emits it
        if job is not None:
            self._abandon_speculation(turn)
        self._transcribe_segment(turn, "final")

    # -- STT worker callbacks ---------------------------------------------------------------------

    def _speculative_done(self, turn: _Turn, job: SttJob, result: SttResult) -> None:
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

    def _partial_done(self, turn: _Turn, result: SttResult, started: float) -> None:
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

    def _emit_partial(self, turn: _Turn, result: SttResult, started: float, *, speculative: bool = False) -> None:
        """Deliver a partial. A speculative one (all their words, taken at a pause) always goes out, and
        until they speak again (`_resumed`) the pause's partials are their latest: others are held back."""
        seg = turn.segment
        with turn.lock:
            if turn.finalized or not result.text or (
                    not speculative and (result.text == turn.last_partial or turn.paused_partial)):
                return
            turn.last_partial = result.text
            turn.last_partial_result = result
            timings = {"speech_start": seg.start_t, "stt_start": started}
            if speculative:
                timings["speculative"] = time.monotonic()
                turn.paused_partial = result
            self.stats.partials += 1
            self._call_soon(self._deliver, seg.user_id, result, seg.start_t, seg.last_voice_t, False, timings,
                            self._current_end_of_turn(turn))

    def _judge_end_of_turn(self, turn: _Turn) -> None:
        """At a pause: has the member finished? Their audio so far, after their previous segment when it
        ended moments before (what they said before a pause is part of the sentence being judged)."""
        model = self.end_of_turn
        seg = turn.segment
        if model is None or turn.end_of_turn_sample == seg.last_voice_sample:
            return
        audio = seg.audio()
        previous = self._previous.get(seg.user_id)
        if previous is not None and 0.0 <= seg.start_t - previous[0] <= TURN_CONTEXT_GAP_S:
            gap = np.zeros(int(min(seg.start_t - previous[0], TURN_CONTEXT_PAUSE_S) * STT_RATE), dtype=np.float32)
            audio = np.concatenate((previous[1], gap, audio[seg.onset_sample:]))
        try:
            estimate = model.estimate(audio[-int(TURN_CONTEXT_S * STT_RATE):])
        except Exception:
            log.exception("end-of-turn model failed; going on without it for this pause")
            return
        self.stats.end_of_turn_calls += 1
        self.stats.end_of_turn_ms_total += estimate.compute_s * 1000.0
        with turn.lock:
            turn.end_of_turn = estimate.probability
            turn.end_of_turn_sample = seg.last_voice_sample

    @staticmethod
    def _current_end_of_turn(turn: _Turn) -> float | None:
        """The end-of-turn probability, if it was judged on all the voice of the segment so far."""
        if turn.end_of_turn_sample == turn.segment.last_voice_sample:
            return turn.end_of_turn
        return None

    def _paused(self, turn: _Turn) -> None:
        """They went silent (VAD pause): their latest partial again, marked "paused", so the prompter may
        start preparing a reply to it while the speculative transcript and the end are still to come."""
        seg = turn.segment
        with turn.lock:
            result = turn.last_partial_result
            if result is None or turn.paused_partial is not None or turn.finalized:
                return
            turn.paused_partial = result
            timings = {"speech_start": seg.start_t, "paused": time.monotonic()}
            self._call_soon(self._deliver, seg.user_id, result, seg.start_t, seg.last_voice_t, False, timings,
                            self._current_end_of_turn(turn))

    def _resumed(self, turn: _Turn) -> None:
        """They speak again after a pause that went out as a marked partial: their words so far again,
        without a mark, say that the pause is over."""
        seg = turn.segment
        with turn.lock:
            result, turn.paused_partial = turn.paused_partial, None
            if result is not None and not turn.finalized:
                timings = {"speech_start": seg.start_t, "resumed": time.monotonic()}
                self._call_soon(self._deliver, seg.user_id, result, seg.start_t, seg.last_voice_t, False, timings)

    def _emit_final(self, turn: _Turn, job: SttJob, result: SttResult, *, from_speculation: bool) -> None:
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
            self._update_pause(self.scheduler.final_compute_ema)
        if not result.text:
            if job.kind == "discard":
                self.stats.finals_discarded += 1
            else:
                self.stats.finals_rejected += 1
            log.info("segment %s of %s (%.2f s) rejected: %s", seg.id, seg.user_id, result.duration_s,
                     result.rejected or "no text")
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
            "stt_start": job.started,
            "stt_done": job.finished,
        }
        self._call_soon(self._deliver, seg.user_id, result, seg.start_t, turn.speech_end_t, True, timings,
                        self._current_end_of_turn(turn))

    def _update_pause(self, compute_s: float) -> None:
        """Speculate only as early as needed for the final to be ready when the end is confirmed."""
        cfg = self.vad_config
        cfg.pause_ms = int(min(cfg.end_silence_ms, max(MIN_PAUSE_MS, cfg.end_silence_ms - 1000 * compute_s)))

    # -- event loop side ------------------------------------------------------------------------

    def _call_soon(self, fn, *args) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # loop closing
            pass

    def _expect_final(self, delta: int) -> None:
        with self._outstanding_lock:
            self._outstanding += delta

    def _speaking(self, user_id: int, speaking: bool, t: float) -> None:
        self._call_soon(self._deliver_speaking, SpeakingEvent(user_id, speaking, t))

    def _deliver_speaking(self, event: SpeakingEvent) -> None:
        try:
            self.on_speaking(event)
        except Exception:
            log.exception("on_speaking callback failed")

    def _deliver(self, user_id, result: SttResult, start, end, final, timings, end_of_turn=None) -> None:
        now = time.monotonic()
        timings["final" if final else "partial"] = now
        try:
            name = self.name_of(user_id)
        except Exception:
            log.exception("name_of(%s) failed", user_id)
            name = str(user_id)
        utt = Utterance(
            user_id=user_id,
            name=name,
            text=result.text,
            start=start,
            end=end,
            final=final,
            confidence=result.confidence,
            timings=timings,
            end_of_turn=end_of_turn,
        )
        try:
            self.on_utterance(utt)
        except Exception:
            log.exception("on_utterance callback failed")
        finally:
            if final:
                self._expect_final(-1)


def _noop(*_args) -> None:
    pass


def _set_result(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)
