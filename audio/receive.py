"""Hear every member under DAVE, on top of discord.py 2.7.1's own voice connection (which has no receive path).

Seams into discord.py (private; pinned, and guarded by tests/test_receive_canary.py; see `audio.voice_seams`):

* ``voice_client._connection.add_socket_listener(cb)``: discord.py's socket-reader thread calls ``cb(packet)``
  for every UDP datagram. `VoiceReceiver.on_packet` only parses and filters (cheap) and queues the packet.
* ``_connection.hook``: our `GatewayHook` sees ops 5 (SPEAKING: ssrc -> user), 11/12 (clients connect) and
  13 (client disconnect) on every voice websocket, reconnects included.
* ``_connection.secret_key`` / ``mode`` / ``ssrc`` / ``dave_session`` / ``dave_protocol_version``: re-read for
  every packet, so a new key, SSRC or DAVE group after a reconnect or transition is picked up at once.

Threads: the socket reader filters, the `ReceiveWorker` decrypts and decodes, the event loop handles the voice
gateway and gets the frames. What they share lives in `MemberDirectory` (atomic, locked) and `ReceiveStats`
(locked); the rest is owned by one thread. Nothing raises out of the listener or the worker; each packet lands in
exactly one `ReceiveStats` bucket.

Opt-out: `opt_out(user_id)` (or `set_opted_out`, or a `set_drop_predicate`) drops a member's packets before DAVE
decryption and Opus decoding, counted as ``dropped_opted_out``; from the moment it returns on the loop thread, no
frame of that member reaches ``on_frame``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Iterable

import discord

from audio import rtp
from audio.receive_members import DropPredicate, MemberDirectory
from audio.receive_stats import ReceiveStats
from audio.receive_worker import ReceiveWorker
from audio.types import MemberFrame
from audio.voice_connection import KEEPALIVE_SIZE
from audio.voice_seams import (
    OP_CLIENT_CONNECT,
    OP_CLIENT_DISCONNECT,
    OP_CLIENTS_CONNECT,
    OP_READY,
    OP_SPEAKING,
    GatewayHook,
    GatewayRecorder,
    ListeningVoiceClient,
    install_reader_wake,
    recorded_messages,
)

__all__ = ["GatewayRecorder", "ListeningVoiceClient", "VoiceReceiver"]

log = logging.getLogger(__name__)


class VoiceReceiver:
    """Per-member 16 kHz mono float32 frames from one discord.py `VoiceClient` (see module docstring)."""

    QUEUE_MAX = ReceiveWorker.QUEUE_MAX
    HOLD_SECONDS = ReceiveWorker.HOLD_SECONDS
    MAX_SSRC_MAP = 512

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
        self.members = MemberDirectory(own_user_id=own_user_id, max_ssrcs=self.MAX_SSRC_MAP)
        self._worker = ReceiveWorker(
            self._conn, self.members, self.stats, emit=self._emit, name=f"voice-receive:{id(self):#x}"
        )
        self._hook = GatewayHook(self._conn, self.handle_gateway_message)
        self._hook_fn = self._hook.fn
        self._running = False

    # --- lifecycle --------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Register the socket listener and the voice-gateway hook; start the worker. Idempotent."""
        if self._running:
            return
        self._running = True
        self._worker.start()
        self._hook.install()
        for msg in recorded_messages(self._vc):  # what a ListeningVoiceClient saw before we started
            try:
                self.handle_gateway_message(msg, replay=True)
            except Exception:
                log.exception("voice receive: bad recorded voice gateway message %r", msg)
        install_reader_wake(self._conn)
        self._conn.add_socket_listener(self.on_packet)
        log.debug("voice receiver started (own user %s)", self.own_user_id)

    def stop(self) -> None:
        """Unregister everything; the worker drops what is still queued (counted as ``stopped``) and exits."""
        if not self._running:
            return
        self._running = False
        try:
            self._conn.remove_socket_listener(self.on_packet)
        except Exception:
            log.debug("removing the socket listener failed", exc_info=True)
        self._hook.remove()
        self._worker.stop()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker to finish after `stop` (tests); True when it has."""
        return self._worker.join(timeout)

    @property
    def running(self) -> bool:
        return self._running

    def user_for_ssrc(self, ssrc: int) -> int | None:
        return self.members.user_for(ssrc)

    @property
    def present_user_ids(self) -> frozenset[int]:
        """Members the voice gateway reported in the channel (a snapshot)."""
        return self.members.present_user_ids

    # --- opt-out (any thread; meant for the loop thread) ---------------------------------------------------------

    @property
    def opted_out(self) -> frozenset[int]:
        """Members whose audio is dropped unheard."""
        return self.members.opted_out

    def opt_out(self, user_id: int) -> None:
        """Drop this member's packets from now on, before DAVE decryption and Opus decoding (``opted_out``);
        what is buffered of them is dropped too."""
        if self.members.opt_out(int(user_id)):
            self._worker.post("drop_user", int(user_id))
            log.info("voice receive: user %s opted out; their audio is dropped unheard", user_id)

    def opt_in(self, user_id: int) -> None:
        """Hear this member again (from their next packet on)."""
        if self.members.opt_in(int(user_id)):
            log.info("voice receive: user %s opted in again", user_id)

    def set_opted_out(self, user_ids: Iterable[int]) -> None:
        """Replace the whole opt-out set (e.g. from storage at session start)."""
        for user_id in self.members.set_opted_out(user_ids):
            self._worker.post("drop_user", user_id)

    def set_drop_predicate(self, predicate: DropPredicate | None) -> None:
        """Also drop the packets of every member for whom ``predicate(user_id)`` is true (None: no predicate).
        It runs on the socket reader and worker threads for every packet: keep it fast, thread-safe, non-blocking.
        A predicate that raises drops the packet. Members it newly covers lose what is buffered of them only
        when they are also passed to `opt_out`; their frames stop at once either way."""
        self.members.set_drop_predicate(predicate)

    # --- socket reader thread ---------------------------------------------------------------------------------

    def on_packet(self, data: bytes) -> None:
        """discord.py socket-listener callback: cheap filtering, then queue for the worker. Never raises."""
        stats = self.stats
        try:
            stats.received()
            if not self._running:
                stats.drop("stopped")
                return
            if len(data) == KEEPALIVE_SIZE:
                stats.drop("keepalive")
                return
            if len(data) >= 2 and (data[0] >> 6) == 2 and rtp.is_rtcp(data):
                stats.drop("rtcp")
                return
            try:
                header = rtp.parse_header(data)
            except rtp.RtpError:
                stats.drop("malformed")
                return
            if header.payload_type != rtp.OPUS_PT:
                stats.drop("not_opus")
                return
            ssrc = header.ssrc
            if self.members.is_video(ssrc):
                stats.drop("video")
                return
            if ssrc == self._own_ssrc():
                stats.drop("own")
                return
            user_id = self.members.user_for(ssrc)
            if user_id is not None and self.members.is_dropped(user_id):
                stats.drop("opted_out")
                return
            stats.pend()
            if not self._worker.submit(data, header, time.monotonic()):
                stats.drop("overload", was_pending=True)
        except Exception:
            log.exception("voice receive: unexpected error in the socket listener")
            stats.drop("internal")

    def _own_ssrc(self) -> int | None:
        ssrc = self._conn.ssrc
        return ssrc if isinstance(ssrc, int) else None

    # --- voice gateway (event loop thread) --------------------------------------------------------------------

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
                self.members.connected(int(uid))
        elif op == OP_CLIENT_CONNECT:
            if "user_id" not in d:
                return
            uid = int(d["user_id"])
            self.members.connected(uid)
            if d.get("audio_ssrc"):
                self._map(int(d["audio_ssrc"]), uid)
            for key in ("video_ssrc", "rtx_ssrc"):
                if d.get(key):
                    self.members.mark_video(int(d[key]))
            for stream in d.get("streams") or ():
                if isinstance(stream, dict):
                    for key in ("ssrc", "rtx_ssrc"):
                        if stream.get(key):
                            self.members.mark_video(int(stream[key]))
        elif op == OP_CLIENT_DISCONNECT:
            if "user_id" in d:
                self._member_left(int(d["user_id"]), notify=not replay)
        elif op == OP_READY:
            # a new voice session (not a resume): SSRC numbering starts over on the server; decoders restart
            self._worker.post("reset")

    def _map(self, ssrc: int, user_id: int) -> None:
        if self.members.map(ssrc, user_id):
            self._worker.post("map", ssrc, user_id)

    def _member_left(self, user_id: int, *, notify: bool = True) -> None:
        ssrcs = self.members.left(user_id)
        self._worker.post("left", user_id, ssrcs)
        if notify and self._on_member_left is not None and user_id != self.own_user_id:
            try:
                self._on_member_left(user_id)
            except Exception:
                log.exception("on_member_left(%s) failed", user_id)

    # --- frames to the event loop -----------------------------------------------------------------------------

    def _emit(self, frames: list[MemberFrame]) -> None:
        """Worker thread: hand decoded frames to the loop."""
        try:
            self._loop.call_soon_threadsafe(self._dispatch, frames)
        except RuntimeError:  # loop closed
            self.stats.add("frames_undelivered", len(frames))

    def _dispatch(self, frames: list[MemberFrame]) -> None:
        """Loop thread. Frames of a member who opted out or left since they were decoded are withheld."""
        members = self.members
        for frame in frames:
            if members.is_dropped(frame.user_id) or members.has_left(frame.user_id):
                self.stats.add("frames_withheld")
                continue
            try:
                self._on_frame(frame)
            except Exception:
                log.exception("on_frame failed for user %s", frame.user_id)
