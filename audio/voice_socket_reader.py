"""discord.py's UDP reader thread, made safe across reconnects (`audio.voice_connection`): its ``select()``
waited up to 30 s on the socket it read last, and a descriptor number reused by the next connection left it
watching the wrong socket."""

from __future__ import annotations

import logging
import select

from discord.voice_state import SocketReader, VoiceConnectionState

log = logging.getLogger(__name__)

SELECT_TIMEOUT_S = 0.2
NO_SOCKET_SLEEP_S = 0.01


class ChorusSocketReader(SocketReader):
    """discord.py's UDP reader thread, but it never waits long on a socket that may have been replaced: each
    ``select()`` lasts at most `SELECT_TIMEOUT_S`, reads only the socket it waited on if that is still the
    connection's socket, and does not spin while there is no socket."""

    def _do_run(self) -> None:
        while not self._end.is_set():
            if not self._running.is_set():
                self._running.wait()
                continue
            sock = self.state.socket
            try:
                readable, _, _ = select.select([sock], [], [], SELECT_TIMEOUT_S)
            except (ValueError, TypeError, OSError):  # closed, or none yet: look again in a moment
                self._end.wait(NO_SOCKET_SLEEP_S)
                continue
            if not readable or sock is not self.state.socket:
                continue
            try:
                data = sock.recv(2048)
            except OSError:
                continue
            for callback in list(self._callbacks):
                try:
                    callback(data)
                except Exception:
                    log.exception("voice socket listener %s failed", callback)


def replace_reader(state: VoiceConnectionState) -> None:
    """Start a `ChorusSocketReader` for `state` and end the reader discord.py started (it may not have run yet:
    stop it until it has)."""
    old = state._socket_reader
    state._socket_reader = ChorusSocketReader(state)
    state._socket_reader.start()
    for _ in range(40):
        old.stop()
        old.join(0.025)
        if not old.is_alive():
            return
    log.warning("discord.py's voice socket reader did not stop; it stays idle")
