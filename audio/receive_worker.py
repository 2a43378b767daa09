"""The receive worker thread: transport decrypt, DAVE decrypt, Opus decode and 16 kHz resample, per packet.

It owns the per-SSRC decoders (`OpusStream`), the packets held for SSRCs not mapped yet and the transport-key
cache; nothing else touches them. Other threads talk to it through its bounded packet queue (`submit`, socket
reader thread) and its control queue (`post`, loop thread: a mapping changed, a member left or opted out, a new
voice session). Decoded frames go to the event loop with ``call_soon_threadsafe``. Nothing raises out of it;
every packet it takes lands in exactly one `ReceiveStats` bucket.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict, deque
from typing import Any, Callable

from audio import rtp
from audio.opus_streams import OpusStream
from audio.receive_dave import dave_decrypt, group_user_ids, identify_sender
from audio.receive_members import MemberDirectory
from audio.receive_stats import ReceiveStats
from audio.types import MemberFrame

log = logging.getLogger(__name__)

_STOP = object()


class ReceiveWorker:
    QUEUE_MAX = 2048  # packets waiting for the worker (~2 s of 20 speakers)
    HOLD_PER_SSRC = 50  # packets held for an SSRC not mapped yet (1 s)
    HOLD_SSRCS = 16  # unmapped SSRCs held at once
    HOLD_SECONDS = 1.0
    MAX_STREAMS = 64
    STREAM_IDLE_SECONDS = 600.0
    TICK = 0.02
    INFER_MAX_CANDIDATES = 32  # DAVE decrypt attempts to identify an unannounced SSRC
    INFER_MAX_FAILURES = 25  # packets of an SSRC tried before giving up on identifying it
    MAX_INFER_TRACKED = 512
    LOG_INTERVAL = 30.0

    def __init__(
        self,
        conn: Any,
        members: MemberDirectory,
        stats: ReceiveStats,
        *,
        emit: Callable[[list[MemberFrame]], None],
        name: str,
    ) -> None:
        self._conn = conn
        self._members = members
        self.stats = stats
        self._emit_frames = emit
        self._name = name
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=self.QUEUE_MAX)
        self._controls: deque[tuple[Any, ...]] = deque()  # appended by the loop thread, popped here
        self._streams: dict[int, OpusStream] = {}
        self._holds: OrderedDict[int, deque[tuple[rtp.RtpHeader, bytes, float]]] = OrderedDict()
        self._hold_since: dict[int, float] = {}
        self._infer_failures: dict[int, int] = {}
        self._key_src: Any = None
        self._key: bytes = b""
        self._running = False
        self._thread: threading.Thread | None = None

    # --- other threads ----------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(2.0)  # a previous stop(): its thread exits within one tick
        self._running = True
        self._thread = threading.Thread(target=self._main, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._running = False
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:
            pass  # the thread polls `_running` as well

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def submit(self, data: bytes, header: rtp.RtpHeader, t: float) -> bool:
        """Queue a packet counted as pending (socket reader thread); False when the queue is full."""
        try:
            self._queue.put_nowait((data, header, t))
            return True
        except queue.Full:
            return False

    def post(self, *control: Any) -> None:
        """("map", ssrc, user) | ("left", user, ssrcs) | ("drop_user", user) | ("reset",): applied in order
        before the next packet."""
        self._controls.append(control)

    # --- the thread -------------------------------------------------------------------------------------------

    def _main(self) -> None:
        next_tick = time.monotonic()
        while True:
            try:
                self._run_controls()
                try:
                    item = self._queue.get(timeout=self.TICK)
                except queue.Empty:
                    item = None
                if not self._running:  # _STOP only wakes us; a stale one after a restart is ignored
                    if item is not None and item is not _STOP:
                        self.stats.drop("stopped", was_pending=True)
                    break
                if item is not None and item is not _STOP:
                    self._process(*item)
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = now + self.TICK
                    self._tick(now)
            except Exception:
                log.exception("voice receive: unexpected error in the worker")
        self._shutdown()

    def _shutdown(self) -> None:
        try:
            while True:
                item = self._queue.get_nowait()
                if item is not _STOP:
                    self.stats.drop("stopped", was_pending=True)
        except queue.Empty:
            pass
        for ssrc in list(self._holds):
            self.stats.drop_many("stopped", len(self._holds.pop(ssrc)))
        self._hold_since.clear()
        for stream in self._streams.values():
            stream.close("stopped")
        self._streams.clear()
        self.stats.maybe_log(log, 0.0)

    def _close_streams(self, reason: str, match: Callable[[int, OpusStream], bool]) -> None:
        for ssrc, stream in list(self._streams.items()):
            if match(ssrc, stream):
                stream.close(reason)
                del self._streams[ssrc]

    def _run_controls(self) -> None:
        while self._controls:
            ctl = self._controls.popleft()
            kind = ctl[0]
            if kind == "map":  # SSRC (re)assigned: a stream of someone else on it ends
                _, ssrc, user_id = ctl
                self._close_streams("member_left", lambda s, st: s == ssrc and st.user_id != user_id)
                self._release_held(ssrc, user_id)
            elif kind == "left":
                _, user_id, ssrcs = ctl
                self._close_streams("member_left", lambda s, st: s in ssrcs or st.user_id == user_id)
            elif kind == "drop_user":
                _, user_id = ctl
                self._close_streams("opted_out", lambda s, st: st.user_id == user_id)
            elif kind == "reset":
                self._close_streams("member_left", lambda s, st: True)

    def _process(self, data: bytes, header: rtp.RtpHeader, t: float) -> None:
        try:
            ssrc = header.ssrc
            user_id = self._members.user_for(ssrc)
            if user_id is not None and self._members.is_dropped(user_id):  # not even transport-decrypted
                self._release_held(ssrc, user_id)  # (each counted as opted_out too)
                self.stats.drop("opted_out", was_pending=True)
                return
            conn = self._conn
            key = self._current_key(conn)
            if key is None or conn.mode != rtp.MODE:
                self.stats.drop("no_key", was_pending=True)
                return
            try:
                payload = rtp.decrypt_payload(data, header, key)
            except rtp.RtpError:
                self.stats.drop("decrypt", was_pending=True)
                return
            if not payload:
                self.stats.drop("empty", was_pending=True)
                return
            if user_id is None:
                self._unmapped(ssrc, header, payload, t)
                return
            if ssrc in self._holds:  # mapped on the loop thread just now: what was held goes first, in order
                self._release_held(ssrc, user_id)
            self._deliver(ssrc, user_id, header, payload, t)
        except Exception:
            log.exception("voice receive: unexpected error processing a packet")
            self.stats.drop("internal", was_pending=True)

    def _current_key(self, conn: Any) -> bytes | None:
        src = conn.secret_key
        if src is not self._key_src:
            self._key_src = src
            try:
                key = bytes(src) if src else b""
            except (TypeError, ValueError):
                key = b""
            self._key = key if len(key) == rtp.KEY_LEN else b""
        return self._key or None

    # --- SSRCs nobody announced ---------------------------------------------------------------------------------

    def _unmapped(self, ssrc: int, header: rtp.RtpHeader, payload: bytes, t: float) -> None:
        found = self._identify(ssrc, payload)
        if found is None:
            self._hold(ssrc, header, payload, t)
            return
        user_id, opus = found
        owner = self._members.adopt(ssrc, user_id)
        if owner is None:  # the member left while we were identifying them: their audio is not taken
            self.stats.drop("member_left", was_pending=True)
            return
        if owner == user_id:
            log.info("voice receive: SSRC %d identified as user %d by its DAVE key (no SPEAKING seen)", ssrc, user_id)
            self.stats.add("ssrc_inferred")
            self._infer_failures.pop(ssrc, None)
        self._release_held(ssrc, owner)
        self._deliver(ssrc, owner, header, payload, t, opus=opus if owner == user_id else None)

    def _identify(self, ssrc: int, payload: bytes) -> tuple[int, bytes] | None:
        if self._infer_failures.get(ssrc, 0) >= self.INFER_MAX_FAILURES:
            return None
        members = group_user_ids(self._conn)
        if members is None:
            return None
        candidates = self._members.candidates(members)[: self.INFER_MAX_CANDIDATES]
        found = identify_sender(self._conn, payload, candidates)
        if found is None:
            if len(self._infer_failures) >= self.MAX_INFER_TRACKED:
                self._infer_failures.clear()
            self._infer_failures[ssrc] = self._infer_failures.get(ssrc, 0) + 1
        return found

    def _hold(self, ssrc: int, header: rtp.RtpHeader, payload: bytes, t: float) -> None:
        held = self._holds.get(ssrc)
        if held is None:
            if len(self._holds) >= self.HOLD_SSRCS:
                old_ssrc, old = self._holds.popitem(last=False)
                self._hold_since.pop(old_ssrc, None)
                self.stats.drop_many("unmapped", len(old))
            held = self._holds[ssrc] = deque()
            self._hold_since[ssrc] = t
        if len(held) >= self.HOLD_PER_SSRC:
            held.popleft()
            self.stats.drop("unmapped", was_pending=True)
        held.append((header, payload, t))

    def _release_held(self, ssrc: int, user_id: int) -> None:
        held = self._holds.pop(ssrc, None)
        self._hold_since.pop(ssrc, None)
        for header, payload, t in held or ():
            try:
                self._deliver(ssrc, user_id, header, payload, t)
            except Exception:
                log.exception("voice receive: unexpected error delivering a held packet")
                self.stats.drop("internal", was_pending=True)

    # --- decoding -----------------------------------------------------------------------------------------------

    def _deliver(
        self, ssrc: int, user_id: int, header: rtp.RtpHeader, payload: bytes, t: float, *, opus: bytes | None = None
    ) -> None:
        if user_id == self._members.own_user_id:
            self.stats.drop("own", was_pending=True)
            return
        if self._members.is_dropped(user_id):  # before DAVE and Opus: an opted-out member is never decoded
            self.stats.drop("opted_out", was_pending=True)
            return
        stream = self._streams.get(ssrc)
        if stream is not None and stream.is_duplicate(header.sequence):
            self.stats.drop("duplicate", was_pending=True)
            return
        if opus is None:
            opus, note = dave_decrypt(self._conn, user_id, payload)
            if opus is None:
                self.stats.drop(note or "dave_error", was_pending=True)
                return
            if note:
                self.stats.add(note)
        if stream is None:
            stream = self._new_stream(ssrc, user_id)
        self._emit(stream.push(header.sequence, opus, t))

    def _new_stream(self, ssrc: int, user_id: int) -> OpusStream:
        if len(self._streams) >= self.MAX_STREAMS:
            victim = min(self._streams, key=lambda s: self._streams[s].last_activity)
            self._streams.pop(victim).close("member_left")
        stream = self._streams[ssrc] = OpusStream(ssrc, user_id, self.stats)
        return stream

    def _tick(self, now: float) -> None:
        for ssrc in [s for s, since in self._hold_since.items() if now - since > self.HOLD_SECONDS]:
            held = self._holds.pop(ssrc, None)
            self._hold_since.pop(ssrc, None)
            if held:
                self.stats.drop_many("unmapped", len(held))
        for ssrc, stream in list(self._streams.items()):
            if stream.pending:
                self._emit(stream.tick(now))
            elif now - stream.last_activity > self.STREAM_IDLE_SECONDS:
                del self._streams[ssrc]
        self.stats.maybe_log(log, self.LOG_INTERVAL, now=now)

    def _emit(self, frames: list[MemberFrame]) -> None:
        if frames:
            self._emit_frames(frames)
