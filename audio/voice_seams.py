"""discord.py 2.7.1 seams the receive path needs (private; pinned, and guarded by tests/test_receive_canary.py).

* `GatewayRecorder` / `ListeningVoiceClient`: keep the voice-gateway messages that map SSRCs to members from the
  first one on, so a receiver started after ``connect()`` returns misses none of them.
* `GatewayHook`: chains a handler into ``_connection.hook``, which discord.py passes to every voice websocket it
  creates (reconnects included), and into the websocket already open; each websocket awaits ``hook(ws, msg)``
  after handling a JSON message. Unhooking restores what was there.
* `install_reader_wake`: works around a 30 s stall of discord.py's SocketReader on reconnects.
"""

from __future__ import annotations

import logging
import socket
from collections import deque
from typing import Any, Awaitable, Callable

import discord
from discord.voice_state import VoiceConnectionState

log = logging.getLogger(__name__)

OP_READY = 2
OP_SPEAKING = 5
OP_CLIENTS_CONNECT = 11
OP_CLIENT_CONNECT = 12
OP_CLIENT_DISCONNECT = 13

Hook = Callable[[Any, dict[str, Any]], Awaitable[None]]


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
    `VoiceReceiver` started after ``connect()`` returns misses none of them, and whose connection comes back
    fast after a drop (`audio.voice_connection.ChorusConnectionState`)::

        vc = await channel.connect(cls=ListeningVoiceClient)
        VoiceReceiver(vc, on_frame=...).start()
    """

    gateway_recorder: GatewayRecorder

    def create_connection_state(self) -> VoiceConnectionState:
        from audio.voice_connection import ChorusConnectionState  # its fast reconnects (and the UDP watchdog)

        self.gateway_recorder = GatewayRecorder()
        return ChorusConnectionState(self, hook=self.gateway_recorder)


def recorded_messages(voice_client: Any) -> list[dict[str, Any]]:
    """What a `ListeningVoiceClient` recorded so far (empty for any other client)."""
    recorder = getattr(voice_client, "gateway_recorder", None)
    return recorder.messages() if isinstance(recorder, GatewayRecorder) else []


class GatewayHook:
    """Our handler in the voice-gateway hook chain of one connection (loop thread only)."""

    def __init__(self, conn: Any, handle: Callable[[dict[str, Any]], None]) -> None:
        self._conn = conn
        self._handle = handle
        self.fn: Hook = self._hook  # one bound method object, so identity checks work
        self._prev: Hook | None = None
        self._hooked_ws: Any = None
        self._ws_had_own_hook = False

    async def _hook(self, ws: Any, msg: dict[str, Any]) -> None:
        try:
            self._handle(msg)
        except Exception:
            log.exception("voice receive: bad voice gateway message %r", msg)
        prev = self._prev
        if prev is not None and prev is not self.fn:
            await prev(ws, msg)

    def install(self) -> None:
        conn = self._conn
        if conn.hook is not self.fn:
            self._prev = conn.hook
            conn.hook = self.fn
        ws = conn.ws
        if ws and getattr(ws, "_hook", None) is not self.fn:
            self._ws_had_own_hook = "_hook" in vars(ws)
            ws._hook = self.fn
            self._hooked_ws = ws

    def remove(self) -> None:
        conn = self._conn
        if conn.hook is self.fn:
            conn.hook = self._prev
        ws = self._hooked_ws
        if ws is not None and vars(ws).get("_hook") is self.fn:
            if self._ws_had_own_hook and self._prev is not None:
                ws._hook = self._prev
            else:
                del ws._hook
        self._hooked_ws = None


def install_reader_wake(conn: Any) -> None:
    """Work around a stall in discord.py 2.7.1's SocketReader once it has listeners: on a reconnect it pauses
    and the old UDP socket is closed while the reader thread sits in ``select([old socket], timeout=30)``, so
    the new connection's IP discovery (which needs that thread) waits up to 30 s. Shutting the socket down
    when discord.py pauses or stops the reader (it closes the socket right after, in both places) wakes it."""
    reader = conn._socket_reader
    if "pause" in vars(reader):
        return
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
