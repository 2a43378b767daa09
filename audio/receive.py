"""Hear every member under DAVE, on top of discord.py 2.7.1's own voice connection (which has no receive path).

Seams into discord.py (private; pinned, and guarded by tests/test_receive_canary.py):

* ``voice_client._connection.add_socket_listener(cb)``: discord.py's socket-reader thread calls ``cb(packet)``
  for every UDP datagram. The listener only parses and filters (cheap) and queues the packet.
* ``_connection.hook``: discord.py passes it to every voice websocket it creates (reconnects included) and each
  websocket awaits ``hook(ws, msg)`` after handling a JSON message. We chain ours there (and on the websocket
  already open) to see ops 5 (SPEAKING: ssrc -> user), 11/12 (clients connect) and 13 (client disconnect).
* ``_connection.secret_key`` / ``mode`` / ``ssrc`` / ``dave_session`` / ``dave_protocol_version``: re-read for
  every packet, so a new key, SSRC or DAVE group after a reconnect or transition is picked up at once.

A worker thread does the real work (transport decrypt, DAVE decrypt, Opus decode, 16 kHz resample) and hands
frames to the event loop with ``call_soon_threadsafe``. Nothing raises out of the listener or the worker; each
packet lands in exactly one `ReceiveStats` bucket.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import socket
import threading
import time
from collections import OrderedDict, deque
from typing import Any, Callable

import discord
from discord.voice_state import VoiceConnectionState

from audio import rtp
from audio.opus_streams import OpusStream
from audio.receive_stats import ReceiveStats
from audio.types import MemberFrame

try:
    import davey
except ImportError:  # pragma: no cover - discord.py[voice] 2.7.1 always brings davey
    davey = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

OPUS_SILENCE = b"\xf8\xff\xfe"
DAVE_MAGIC = b"\xfa\xfa"  # every DAVE-encrypted frame ends with this marker

OP_READY = 2
OP_SPEAKING = 5
OP_CLIENTS_CONNECT = 11
OP_CLIENT_CONNECT = 12
OP_CLIENT_DISCONNECT = 13

_STOP = object()


class VoiceReceiver:
    """Per-member 16 kHz mono float32 frames from one discord.py `VoiceClient` (see module docstring)."""

    QUEUE_MAX = 2048  # packets waiting for the worker (~2 s of 20 speakers)
    HOLD_PER_SSRC = 50  # packets held for an SSRC not mapped yet (1 s)
    HOLD_SSRCS = 16  # unmapped SSRCs held at once
    HOLD_SECONDS = 1.0
    MAX_STREAMS = 64
    STREAM_IDLE_SECONDS = 600.0
    MAX_SSRC_MAP = 512
    TICK = 0.02
    INFER_MAX_CANDIDATES = 32  # DAVE decrypt attempts to identify an unannounced SSRC
    INFER_MAX_FAILURES = 25  # packets of an SSRC tried before giving up on identifying it
    LOG_INTERVAL = 30.0

    def __init__(
        self,
        voice_client: discord.VoiceClient,
        *,
        on_frame: Callable[[MemberFrame], None],
        on_member_left: Callable[[int], None] | None = None,
        own_user_id: int | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._vc = voice_client
        self._conn = voice_client._connection
        self._loop = loop or voice_client.loop
        self._on_frame = on_frame
        self._on_member_left = on_member_left
        if own_user_id is None:
            try:
                own_user_id = voice_client.user.id
            except Exception:  # no logged-in user (tests)
                own_user_id = None
        self.own_user_id = own_user_id
        self.stats = ReceiveStats()

        # written on the loop thread, read by the reader/worker threads (single dict ops are atomic under the GIL)
        self._ssrc_user: OrderedDict[int, int] = OrderedDict()
        self._opted_out: frozenset[int] = frozenset()  # replaced whole (atomic for the reader/worker threads)
        self._drop_predicate: Callable[[int], bool] | None = None
        self._video_ssrcs: OrderedDict[int, None] = OrderedDict()
        self.present_user_ids: set[int] = set()

        # worker-owned
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=self.QUEUE_MAX)
        self._controls: deque[tuple[Any, ...]] = deque()
        self._streams: dict[int, OpusStream] = {}
        self._holds: OrderedDict[int, deque[tuple[rtp.RtpHeader, bytes, float]]] = OrderedDict()
        self._hold_since: dict[int, float] = {}
        self._infer_failures: dict[int, int] = {}
        self._left_user_ids: set[int] = set()  # written on the loop thread (op 13 adds, ops 5/11/12 remove)
        self._key_src: Any = None
        self._key: bytes = b""

        self._running = False
        self._worker: threading.Thread | None = None
        self._hook_fn = self._ws_hook  # one bound method object, so identity checks work
        self._prev_hook: Callable[..., Any] | None = None
        self._hooked_ws: Any = None
        self._ws_had_own_hook = False

    # --- lifecycle --------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Register the socket listener and the voice-gateway hook; start the worker. Idempotent."""
        if self._running:
            return
        if self._worker is not None and self._worker.is_alive():
            self._worker.join(2.0)  # a previous stop(): its worker exits within one tick
        self._running = True
        self._worker = threading.Thread(target=self._worker_main, name=f"voice-receive:{id(self):#x}", daemon=True)
        self._worker.start()
        conn = self._conn
        if conn.hook is not self._hook_fn:
            self._prev_hook = conn.hook
            conn.hook = self._hook_fn
        ws = conn.ws
        if ws and getattr(ws, "_hook", None) is not self._hook_fn:
            self._ws_had_own_hook = "_hook" in vars(ws)
            ws._hook = self._hook_fn
            self._hooked_ws = ws
        self._seed_from_recorder()
        self._install_reader_wake()
        conn.add_socket_listener(self.on_packet)
        log.debug("voice receiver started (own user %s)", self.own_user_id)

    def _install_reader_wake(self) -> None:
        """Work around a stall in discord.py 2.7.1's SocketReader once it has listeners: on a reconnect it pauses
        and the old UDP socket is closed while the reader thread sits in ``select([old socket], timeout=30)``, so
        the new connection's IP discovery (which needs that thread) waits up to 30 s. Shutting the socket down
        when discord.py pauses or stops the reader (it closes the socket right after, in both places) wakes it."""
        reader = self._conn._socket_reader
        if "pause" in vars(reader):
            return
        conn = self._conn
        orig_pause, orig_stop = reader.pause, reader.stop

        def wake() -> None:
            sock = conn.socket
            if sock:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                    log.debug("woke the socket reader (fd %s)", sock.fileno())
                except OSError as exc:
                    log.debug("could not wake the socket reader: %s", exc)

        def pause() -> None:
            orig_pause()
            wake()

        def stop() -> None:
            orig_stop()
            wake()

        reader.pause = pause
        reader.stop = stop

    def _seed_from_recorder(self) -> None:
        """Replay what a `ListeningVoiceClient` recorded before we started (op 5/11/12/13 sent during connect)."""
        recorder = getattr(self._vc, "gateway_recorder", None)
        if isinstance(recorder, GatewayRecorder):
            for msg in recorder.messages():
                try:
                    self.handle_gateway_message(msg, replay=True)
                except Exception:
                    log.exception("voice receive: bad recorded voice gateway message %r", msg)

    def stop(self) -> None:
        """Unregister everything; the worker drops what is still queued (counted as ``stopped``) and exits."""
        if not self._running:
            return
        self._running = False
        conn = self._conn
        try:
            conn.remove_socket_listener(self.on_packet)
        except Exception:
            log.debug("removing the socket listener failed", exc_info=True)
        if conn.hook is self._hook_fn:
            conn.hook = self._prev_hook
        ws = self._hooked_ws
        if ws is not None and vars(ws).get("_hook") is self._hook_fn:
            if self._ws_had_own_hook and self._prev_hook is not None:
                ws._hook = self._prev_hook
            else:
                del ws._hook
        self._hooked_ws = None
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:
            pass  # the worker polls `_running` as well

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker to finish after `stop` (tests); True when it has."""
        if self._worker is None:
            return True
        self._worker.join(timeout)
        return not self._worker.is_alive()

    @property
    def running(self) -> bool:
        return self._running

    def user_for_ssrc(self, ssrc: int) -> int | None:
        return self._ssrc_user.get(ssrc)

    # --- opt-out: members whose packets are dropped before DAVE decryption and Opus decoding (any thread) ----------
    @property
    def opted_out(self) -> frozenset[int]:
        return self._opted_out

    def opt_out(self, user_id: int) -> None:
        self._opted_out = self._opted_out | {int(user_id)}

    def opt_in(self, user_id: int) -> None:
        self._opted_out = self._opted_out - {int(user_id)}

    def set_opted_out(self, user_ids: Any) -> None:
        self._opted_out = frozenset(int(u) for u in user_ids)

    def set_drop_predicate(self, predicate: Callable[[int], bool] | None) -> None:
        """Also drop the packets of members for whom `predicate(user_id)` is true; it runs for every packet
        on the reader and worker threads (fast, thread-safe). A predicate that raises drops the packet."""
        self._drop_predicate = predicate

    def _is_dropped(self, user_id: int) -> bool:
        if user_id in self._opted_out:
            return True
        predicate = self._drop_predicate
        if predicate is None:
            return False
        try:
            return bool(predicate(user_id))
        except Exception:
            return True

    # --- socket reader thread ---------------------------------------------------------------------------------

    def on_packet(self, data: bytes) -> None:
        """discord.py socket-listener callback: cheap filtering, then queue for the worker. Never raises."""
        try:
            self.stats.received()
            if not self._running:
                self.stats.drop("stopped")
                return
            if len(data) >= 2 and (data[0] >> 6) == 2 and rtp.is_rtcp(data):
                self.stats.drop("rtcp")
                return
            try:
                header = rtp.parse_header(data)
            except rtp.RtpError:
                self.stats.drop("malformed")
                return
            if header.payload_type != rtp.OPUS_PT:
                self.stats.drop("not_opus")
                return
            ssrc = header.ssrc
            if ssrc in self._video_ssrcs:
                self.stats.drop("video")
                return
            if ssrc == self._own_ssrc():
                self.stats.drop("own")
                return
            user_id = self._ssrc_user.get(ssrc)
            if user_id is not None and self._is_dropped(user_id):
                self.stats.drop("opted_out")
                return
            self.stats.pend()
            try:
                self._queue.put_nowait((data, header, time.monotonic()))
            except queue.Full:
                self.stats.drop("overload", was_pending=True)
        except Exception:
            log.exception("voice receive: unexpected error in the socket listener")
            self.stats.drop("internal")

    def _own_ssrc(self) -> int | None:
        ssrc = self._conn.ssrc
        return ssrc if isinstance(ssrc, int) else None

    # --- voice gateway (event loop thread) --------------------------------------------------------------------

    async def _ws_hook(self, ws: Any, msg: dict[str, Any]) -> None:
        try:
            self.handle_gateway_message(msg)
        except Exception:
            log.exception("voice receive: bad voice gateway message %r", msg)
        prev = self._prev_hook
        if prev is not None and prev is not self._hook_fn:
            await prev(ws, msg)

    def handle_gateway_message(self, msg: dict[str, Any], *, replay: bool = False) -> None:
        """Track SSRC -> member from voice gateway JSON messages (ops 2, 5, 11, 12, 13)."""
        if not isinstance(msg, dict):
            return
        op = msg.get("op")
        d = msg.get("d")
        if not isinstance(d, dict):
            return
        if op == OP_SPEAKING:
            if "user_id" in d and "ssrc" in d:
                self._map(int(d["ssrc"]), int(d["user_id"]))
        elif op == OP_CLIENTS_CONNECT:
            for uid in d.get("user_ids") or ():
                self.present_user_ids.add(int(uid))
                self._left_user_ids.discard(int(uid))
        elif op == OP_CLIENT_CONNECT:
            if "user_id" not in d:
                return
            uid = int(d["user_id"])
            self.present_user_ids.add(uid)
            self._left_user_ids.discard(uid)
            if d.get("audio_ssrc"):
                self._map(int(d["audio_ssrc"]), uid)
            for key in ("video_ssrc", "rtx_ssrc"):
                if d.get(key):
                    self._mark_video(int(d[key]))
            for stream in d.get("streams") or ():
                if isinstance(stream, dict):
                    for key in ("ssrc", "rtx_ssrc"):
                        if stream.get(key):
                            self._mark_video(int(stream[key]))
        elif op == OP_CLIENT_DISCONNECT:
            if "user_id" in d:
                self._member_left(int(d["user_id"]), notify=not replay)
        elif op == OP_READY:
            # a new voice session (not a resume): SSRC numbering starts over on the server; decoders restart
            self._controls.append(("reset",))

    def _map(self, ssrc: int, user_id: int) -> None:
        if ssrc == 0:
            return
        old = self._ssrc_user.get(ssrc)
        self._ssrc_user[ssrc] = user_id
        self._ssrc_user.move_to_end(ssrc)
        while len(self._ssrc_user) > self.MAX_SSRC_MAP:
            self._ssrc_user.popitem(last=False)
        self._video_ssrcs.pop(ssrc, None)
        self.present_user_ids.add(user_id)
        self._left_user_ids.discard(user_id)
        if old != user_id:
            self._controls.append(("map", ssrc, user_id))

    def _mark_video(self, ssrc: int) -> None:
        if ssrc in self._ssrc_user:
            return
        self._video_ssrcs[ssrc] = None
        while len(self._video_ssrcs) > self.MAX_SSRC_MAP:
            self._video_ssrcs.popitem(last=False)

    def _member_left(self, user_id: int, *, notify: bool = True) -> None:
        ssrcs = [s for s, u in list(self._ssrc_user.items()) if u == user_id]
        for s in ssrcs:
            self._ssrc_user.pop(s, None)
        self.present_user_ids.discard(user_id)
        self._left_user_ids.add(user_id)
        if len(self._left_user_ids) > self.MAX_SSRC_MAP:
            self._left_user_ids.clear()
        self._controls.append(("left", user_id, tuple(ssrcs)))
        if notify and self._on_member_left is not None and user_id != self.own_user_id:
            try:
                self._on_member_left(user_id)
            except Exception:
                log.exception("on_member_left(%s) failed", user_id)

    # --- worker thread ----------------------------------------------------------------------------------------

    def _worker_main(self) -> None:
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

    def _run_controls(self) -> None:
        while self._controls:
            ctl = self._controls.popleft()
            kind = ctl[0]
            if kind == "map":
                _, ssrc, user_id = ctl
                stream = self._streams.get(ssrc)
                if stream is not None and stream.user_id != user_id:  # SSRC reassigned to someone else
                    stream.close("member_left")
                    del self._streams[ssrc]
                self._release_held(ssrc, user_id)
            elif kind == "left":
                _, user_id, ssrcs = ctl
                for ssrc in ssrcs:
                    stream = self._streams.pop(ssrc, None)
                    if stream is not None:
                        stream.close("member_left")
                for ssrc, stream in list(self._streams.items()):
                    if stream.user_id == user_id:
                        stream.close("member_left")
                        del self._streams[ssrc]
            elif kind == "reset":
                for stream in self._streams.values():
                    stream.close("member_left")
                self._streams.clear()

    def _guarded_deliver(self, ssrc: int, user_id: int, header: rtp.RtpHeader, payload: bytes, t: float) -> None:
        try:
            self._deliver(ssrc, user_id, header, payload, t)
        except Exception:
            log.exception("voice receive: unexpected error delivering a held packet")
            self.stats.drop("internal", was_pending=True)

    def _process(self, data: bytes, header: rtp.RtpHeader, t: float) -> None:
        try:
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
            ssrc = header.ssrc
            user_id = self._ssrc_user.get(ssrc)
            if user_id is None:
                inferred = self._infer_user(ssrc, payload)
                if inferred is None:
                    self._hold(ssrc, header, payload, t)
                    return
                user_id, opus = inferred
                self._adopt(ssrc, user_id)
                self._deliver(ssrc, user_id, header, payload, t, opus=opus)
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

    def _deliver(self, ssrc: int, user_id: int, header: rtp.RtpHeader, payload: bytes, t: float,
                 *, opus: bytes | None = None) -> None:
        if user_id == self.own_user_id:
            self.stats.drop("own", was_pending=True)
            return
        if opus is None and self._is_dropped(user_id):
            self.stats.drop("opted_out", was_pending=True)
            return
        stream = self._streams.get(ssrc)
        if stream is not None and stream.is_duplicate(header.sequence):
            self.stats.drop("duplicate", was_pending=True)
            return
        if opus is None:
            opus = self._dave_decrypt(user_id, payload)
            if opus is None:
                return
        if stream is None:
            stream = self._new_stream(ssrc, user_id)
        self._emit(stream.push(header.sequence, opus, t))

    def _infer_user(self, ssrc: int, payload: bytes) -> tuple[int, bytes] | None:
        """An SSRC nobody announced (op 5 missed, e.g. sent before we started): under DAVE, the member whose
        key opens the frame is its sender (DAVE frames are authenticated per sender). Returns (user, Opus)."""
        if not payload.endswith(DAVE_MAGIC) or self._infer_failures.get(ssrc, 0) >= self.INFER_MAX_FAILURES:
            return None
        conn = self._conn
        session = conn.dave_session
        if not conn.dave_protocol_version or session is None or not session.ready:
            return None
        try:
            user_ids = [int(u) for u in session.get_user_ids()]
        except Exception:
            return None
        mapped = set(self._ssrc_user.values())
        left = self._left_user_ids  # op 13 seen: their MLS removal may lag; never re-attribute them
        candidates = sorted((u for u in user_ids if u != self.own_user_id and u not in left), key=lambda u: u in mapped)
        for user_id in candidates[: self.INFER_MAX_CANDIDATES]:
            try:
                opus = session.decrypt(user_id, davey.MediaType.audio, payload)
            except Exception:
                continue
            return user_id, opus
        if len(self._infer_failures) >= self.MAX_SSRC_MAP:
            self._infer_failures.clear()
        self._infer_failures[ssrc] = self._infer_failures.get(ssrc, 0) + 1
        return None

    def _adopt(self, ssrc: int, user_id: int) -> None:
        """Map an inferred SSRC (worker thread) and release what was held for it."""
        log.info("voice receive: SSRC %d identified as user %d by its DAVE key (no SPEAKING seen)", ssrc, user_id)
        self.stats.add("ssrc_inferred")
        self._ssrc_user[ssrc] = user_id
        self.present_user_ids.add(user_id)
        self._infer_failures.pop(ssrc, None)
        self._release_held(ssrc, user_id)

    def _release_held(self, ssrc: int, user_id: int) -> None:
        held = self._holds.pop(ssrc, None)
        self._hold_since.pop(ssrc, None)
        for header, payload, t in held or ():
            self._guarded_deliver(ssrc, user_id, header, payload, t)

    def _new_stream(self, ssrc: int, user_id: int) -> OpusStream:
        if len(self._streams) >= self.MAX_STREAMS:
            victim = min(self._streams, key=lambda s: self._streams[s].last_activity)
            self._streams.pop(victim).close("member_left")
        stream = self._streams[ssrc] = OpusStream(ssrc, user_id, self.stats)
        return stream

    def _dave_decrypt(self, user_id: int, payload: bytes) -> bytes | None:
        """DAVE step: the Opus frame, or None (counted) when it must not reach the decoder."""
        if payload == OPUS_SILENCE:
            return payload
        conn = self._conn
        session = conn.dave_session
        version = conn.dave_protocol_version
        if not version:
            if not payload.endswith(DAVE_MAGIC):
                return payload  # DAVE off: plain Opus
            if session is None:
                self.stats.drop("dave_unexpected", was_pending=True)
                return None
            # a downgrade in flight: the member may still encrypt; let the session decide
        elif session is None:
            self.stats.drop("dave_no_session", was_pending=True)
            return None
        try:
            return session.decrypt(user_id, davey.MediaType.audio, payload)
        except Exception as exc:  # davey raises ValueError('Failed to decrypt: <reason>')
            msg = str(exc)
            if "NoDecryptorForUser" in msg:
                if not session.ready and not payload.endswith(DAVE_MAGIC):
                    # no group yet (upgrade transition in flight): members still send plain Opus, as we do
                    self.stats.add("dave_plain_before_group")
                    return payload
                reason = "dave_no_decryptor"
            elif "UnencryptedWhenPassthroughDisabled" in msg:
                reason = "dave_unencrypted"
            else:
                reason = "dave_error"
            log.debug("DAVE decrypt for user %s failed: %s", user_id, msg)
            self.stats.drop(reason, was_pending=True)
            return None

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
        if not frames:
            return
        try:
            self._loop.call_soon_threadsafe(self._dispatch, frames)
        except RuntimeError:  # loop closed
            self.stats.add("frames_undelivered", len(frames))

    def _dispatch(self, frames: list[MemberFrame]) -> None:
        for frame in frames:
            if self._is_dropped(frame.user_id):  # opted out while these were being decoded
                self.stats.add("frames_withheld")
                continue
            try:
                self._on_frame(frame)
            except Exception:
                log.exception("on_frame failed for user %s", frame.user_id)


class GatewayRecorder:
    """Keeps the voice-gateway messages a receiver needs (ops 2, 5, 11, 12, 13; bounded) from the first one on."""

    OPS = frozenset({OP_READY, OP_SPEAKING, OP_CLIENTS_CONNECT, OP_CLIENT_CONNECT, OP_CLIENT_DISCONNECT})

    def __init__(self, maxlen: int = 1024) -> None:
        self._messages: deque[dict[str, Any]] = deque(maxlen=maxlen)

    async def __call__(self, ws: Any, msg: dict[str, Any]) -> None:
        if isinstance(msg, dict) and msg.get("op") in self.OPS:
            self._messages.append(msg)

    def messages(self) -> list[dict[str, Any]]:
        return list(self._messages)


class ListeningVoiceClient(discord.VoiceClient):
    """A `discord.VoiceClient` that records SSRC announcements from its first voice-gateway message, so a
    `VoiceReceiver` started after ``connect()`` returns misses none of them::

        vc = await channel.connect(cls=ListeningVoiceClient)
        VoiceReceiver(vc, on_frame=...).start()
    """

    gateway_recorder: GatewayRecorder

    def create_connection_state(self) -> VoiceConnectionState:
        self.gateway_recorder = GatewayRecorder()
        return VoiceConnectionState(self, hook=self.gateway_recorder)
