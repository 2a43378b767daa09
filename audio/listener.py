"""Listening for one voice session: per-member VAD and streaming transcription on one shared model.

    receive (event loop) --feed()--> [vad thread] --jobs--> [stt worker] --call_soon_threadsafe--> callbacks

`feed()` only queues the frame. The VAD thread runs every member's `SpeakerVad` (`audio.member_vads`): a start becomes
SpeakingEvent(speaking=True), an end SpeakingEvent(speaking=False), and every VAD event of a segment goes to
the `SegmentTranscriber` (`audio.segment_transcriber`), which queues the work for the single `SttScheduler`:
partials while they speak; at a pause the end of turn judged by the semantic end-of-turn model (Smart Turn,
TURN_MODEL=smart_turn; tens of milliseconds on this thread, once per pause), the latest partial marked
"paused" and a speculative final; at the end the final (usually the speculation, already computed).

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
speaking member whose frames stop is heard as silence in real time (`audio.gap_fill`). Feeders faster than
real time (files, tests) pass `fill_gaps=False` and call `flush()` at the end.

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
from typing import Callable, Iterable

import numpy as np

from audio.end_of_turn import SmartTurn, load_smart_turn
from audio.listener_stats import ListenerStats
from audio.member_vads import MemberVads
from audio.name_look import NameLook, NameQueryLike
from audio.segment_transcriber import SegmentTranscriber
from audio.stt_result import SttResult
from audio.stt import WhisperTranscriber, make_transcriber
from audio.stt_scheduler import SttScheduler
from audio.types import MemberFrame, SpeakingEvent, Utterance
from audio.vad import VadConfig
from audio.vad_model import VadModel, load_silero_vad

log = logging.getLogger(__name__)

MAX_QUEUED_FRAMES = 50 * 240  # ~4 min of one member's audio (~15 MB): beyond this the VAD thread is hopelessly behind


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
        names_for: Callable[[int, str], NameQueryLike | None] | None = None,
    ) -> None:
        self.settings = settings
        self.name_of = name_of
        self.on_speaking = on_speaking
        self.on_utterance = on_utterance
        # (user id, silent since | None) at a pause within their speech and when their voice comes back: set by
        # whoever reads the room (the VAD's end-of-speech silence is no voice, a short "mm-hm" stays short)
        self.on_quiet: Callable[[int, float | None], None] | None = None
        self.ignore_user_ids: set[int] = set(ignore_user_ids)
        self.speculative = speculative
        self.fill_gaps = fill_gaps
        self.stats = ListenerStats()
        self.transcriber = transcriber or make_transcriber(settings)
        self.vad_model = vad_model or load_silero_vad()
        # True: the model TURN_MODEL names (none when "off"); a SmartTurn: that one; False/None: none
        if end_of_turn is True:
            end_of_turn = load_smart_turn() if getattr(settings, "turn_model", "off") == "smart_turn" else None
        self.end_of_turn: SmartTurn | None = end_of_turn or None
        # names_for(user_id, text): what to listen for in a final that names nobody (the bot's names, the
        # others'), None for no second look; the look needs the in-process Whisper
        self.names_for = names_for
        self.name_look: NameLook | None = None
        if (
            names_for is not None
            and getattr(settings, "stt_name_look", False)
            and isinstance(self.transcriber, WhisperTranscriber)
        ):
            self.name_look = NameLook(self.transcriber)
        self.vad_config = VadConfig.from_settings(settings)
        if end_silence_ms is not None:
            self.vad_config.end_silence_ms = end_silence_ms
        self.scheduler = SttScheduler(
            self.transcriber,
            partial_interval_s=settings.stt_partial_interval_s,
            max_batch=max_batch,
            partials=partials,
        )
        self.segments = SegmentTranscriber(
            settings=settings,
            scheduler=self.scheduler,
            stats=self.stats,
            vad_config=self.vad_config,
            end_of_turn=self.end_of_turn,
            speculative=speculative,
            deliver=lambda *args: self._call_soon(self._deliver, *args),
            expect_final=self._expect_final,
            name_look_for=self._name_look_for if self.name_look is not None else None,
        )
        self.segments.update_pause(0.4)
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._vads = MemberVads(
            self.vad_model,
            self.vad_config,
            self.segments,
            self.scheduler,
            self.stats,
            pings=self._queue,
            speaking=self._speaking,
            quiet=self._quiet,
        )
        self._members = self._vads.members  # user id -> their SpeakerVad (VAD thread)
        self._muted: set[int] = set()  # members who opted out: their frames are refused (event loop thread)
        self._dropped_before: dict[int, float] = {}  # user id -> when they opted out: nothing heard before is delivered
        self._outstanding = 0  # finals expected but not delivered yet
        self._outstanding_lock = threading.Lock()
        self._closed = False
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
        if frame.user_id in self._muted:
            self.stats.dropped_opted_out += 1
            return
        if self._queue.qsize() > MAX_QUEUED_FRAMES:
            self.stats.dropped_overload += 1
            return
        self._queue.put(("frame", (frame, time.monotonic())))

    @staticmethod
    async def preload(settings) -> None:
        """Load the shared models in a thread, so that constructing a Listener on the loop does not block it."""
        from audio.stt import preload_transcriber

        def load() -> None:
            preload_transcriber(settings)
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

    def drop(self, user_id: int) -> None:
        """A member opted out: what is buffered of them is discarded unheard (no final is made of it), their
        queued transcriptions end empty, and nothing of theirs heard before now is delivered any more (a
        transcription already running is withheld when it completes). Their frames are refused until
        `undrop`. Event loop thread."""
        self._muted.add(user_id)
        self._dropped_before[user_id] = time.monotonic()
        self._queue.put(("drop", user_id))

    def undrop(self, user_id: int) -> None:
        """The member opted in again: their new speech is heard (what was dropped stays dropped)."""
        self._muted.discard(user_id)

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
                    self._vads.on_frame(*arg)
                elif kind == "alive":
                    self._vads.gaps.alive(arg)
                elif kind == "forget":
                    self._vads.end_member(arg, time.monotonic(), drop=True)
                elif kind == "drop":
                    self._vads.drop_member(arg)
                elif kind == "flush":
                    for uid in list(self._members):
                        self._vads.end_member(uid, time.monotonic(), drop=False)
                    self._call_soon(_set_result, arg)
                if self.fill_gaps and self._queue.qsize() == 0:  # every fed frame seen: gaps are real
                    self._fill_gaps()
            except Exception:
                log.exception("listener failed on %s", kind)

    def _fill_gaps(self) -> None:
        self._vads.gaps.fill(self._members, self._loop)

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

    def _quiet(self, user_id: int, since: float | None) -> None:
        if self.on_quiet is not None:
            self._call_soon(self._deliver_quiet, user_id, since)

    def _deliver_quiet(self, user_id: int, since: float | None) -> None:
        callback = self.on_quiet
        if callback is None or self._withheld(user_id, since if since is not None else math.inf):
            return
        try:
            callback(user_id, since)
        except Exception:
            log.exception("on_quiet callback failed")

    def _withheld(self, user_id: int, start: float) -> bool:
        """Heard before the member opted out (or while they are opted out): never delivered."""
        return user_id in self._muted or start < self._dropped_before.get(user_id, -math.inf)

    def _name_look_for(
        self, user_id: int, text: str, doubted: bool
    ) -> Callable[[np.ndarray, SttResult], str | None] | None:
        """On the STT worker: a second look for the bot's name in this final, when its text names nobody; words
        Whisper doubted (`doubted`: its guard dropped them) that call the bot are kept as they are."""
        look, query = self.name_look, self.names_for(user_id, text) if self.names_for is not None else None
        if look is None or query is None:
            return None
        if query.named:
            return (lambda audio, result: text) if doubted else None

        def run(audio: np.ndarray, result: SttResult) -> str | None:
            own_score = result.avg_logprob if result.raw_text.strip() == result.text else None
            heard = look.look_for(query, audio, text, encoded=result.encoded, avg_logprob=own_score)
            if heard is not None and heard.member:
                self.stats.member_names_restored += 1
            elif heard is not None:
                self.stats.names_restored += 1
            return heard.text if heard is not None else None

        return run

    def _deliver_speaking(self, event: SpeakingEvent) -> None:
        if self._withheld(event.user_id, event.t):
            return
        try:
            self.on_speaking(event)
        except Exception:
            log.exception("on_speaking callback failed")

    def _deliver(self, user_id, result: SttResult, start, end, final, timings, end_of_turn=None) -> None:
        if self._withheld(user_id, start):
            self.stats.dropped_opted_out += 1
            if final:
                self._expect_final(-1)
            return
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


def _set_result(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)
