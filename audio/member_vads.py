"""Every member's voice activity, on a listener's VAD thread: each member's `SpeakerVad` fed their frames, and
what it reports routed to the segment's transcription (`audio.segment_transcriber`): start, pause, resume, end
or discard. A start and an end are also told to `speaking` (user id, speaking, t), the end before the final."""

from __future__ import annotations

import logging
import queue
from typing import Any, Callable

import numpy as np

from audio.gap_fill import GapFiller
from audio.segment_transcriber import SegmentTranscriber
from audio.segment_turn import SegmentTurn
from audio.stt_scheduler import SttScheduler
from audio.types import MemberFrame
from audio.vad import SpeakerVad, VadConfig, VadEvent
from audio.vad_model import VadModel

log = logging.getLogger(__name__)


class MemberVads:
    """The members' detectors and their segments in progress (VAD thread only)."""

    def __init__(
        self,
        vad_model: VadModel,
        vad_config: VadConfig,
        segments: SegmentTranscriber,
        scheduler: SttScheduler,
        stats: Any,
        *,
        pings: queue.SimpleQueue,
        speaking: Callable[[int, bool, float], None],
        quiet: Callable[[int, float | None], None] | None = None,
    ) -> None:
        self.vad_model = vad_model
        self.vad_config = vad_config
        self.segments = segments
        self.scheduler = scheduler
        self.stats = stats
        self._speaking = speaking
        self._quiet = quiet  # (user id, silent since | None: voice again) within a segment, at a VAD pause
        self.members: dict[int, SpeakerVad] = {}
        self.gaps = GapFiller(pings, vad_config, stats, self.on_vad_event)
        self._turns: dict[int, SegmentTurn] = {}  # user id -> current turn

    def on_frame(self, frame: MemberFrame, arrival: float) -> None:
        pcm = frame.pcm
        if not isinstance(pcm, np.ndarray) or pcm.ndim != 1 or pcm.size == 0 or not np.isfinite(pcm).all():
            self.stats.bad_frames += 1
            log.warning("dropped a bad frame from %s (%r)", frame.user_id, getattr(pcm, "shape", type(pcm)))
            return
        vad = self.members.get(frame.user_id)
        if vad is None:
            vad = self.members[frame.user_id] = SpeakerVad(frame.user_id, self.vad_model, self.vad_config)
        self.gaps.heard(frame.user_id, arrival, frame.t)
        for event in vad.push(pcm.astype(np.float32, copy=False), frame.t):
            self.on_vad_event(event)

    def end_member(self, user_id: int, t: float, *, drop: bool) -> None:
        vad = self.members.get(user_id)
        if vad is not None:
            for event in vad.flush(t):
                self.on_vad_event(event)
        if drop:
            self.members.pop(user_id, None)
            self.gaps.forget(user_id)
            self._turns.pop(user_id, None)
            self.segments.forget(user_id)
            self.scheduler.stop_partials(user_id)

    def drop_member(self, user_id: int) -> None:
        """Discard the member's VAD state and segment without ending them (`drop`)."""
        self.members.pop(user_id, None)
        self.gaps.forget(user_id)
        turn = self._turns.pop(user_id, None)
        if turn is not None:
            turn.segment.ended.set()  # its partial cadence is stale from now on
        self.segments.forget(user_id)
        self.scheduler.drop(user_id)

    def on_vad_event(self, ev: VadEvent) -> None:
        uid = ev.segment.user_id
        if ev.kind == "start":
            self._speaking(uid, True, ev.t)
            self._turns[uid] = self.segments.begin(ev.segment)
        elif ev.kind == "pause":
            turn = self._turns.get(uid)
            if turn is not None:
                if self._quiet is not None:
                    self._quiet(uid, ev.speech_end_t or ev.t)
                self.segments.pause(turn)
        elif ev.kind == "resume":
            turn = self._turns.get(uid)
            if turn is not None:
                if self._quiet is not None:
                    self._quiet(uid, None)
                self.segments.resume(turn)
        elif ev.kind in ("end", "discard"):
            turn = self._turns.pop(uid, None)
            self.scheduler.stop_partials(uid)
            if not ev.split:
                self._speaking(uid, False, ev.t)  # before the final: the member stopped, then we understood
            if turn is not None:
                self.segments.ended(turn, ev)
            if ev.split:
                vad = self.members.get(uid)
                if vad is not None and vad.segment is not None:
                    self._turns[uid] = self.segments.begin(vad.segment)
