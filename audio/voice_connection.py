"""The bot's voice connection comes back within seconds: chorus' reconnects on top of discord.py 2.7.1's.

discord.py 2.7.1 (pinned) reconnects a voice connection by itself, but slowly or never:

* after a close it does not handle by name (1006 network drop, 4006 session no longer valid, 4009 session
  timed out, ...) it first waits a random back-off that grows with every reconnect of the connection's life
  (0-2 s, then 0-4, 0-8 ... up to 17 minutes), then leaves and rejoins the channel;
* its 4015 resume (the voice server crashed) never completes: it re-requests the voice state while it still
  counts as connected and waits for a session description that a resume does not bring; it gives up after
  its connect timeout and leaves the channel;
* its IP discovery sends one datagram and waits forever for the answer (a lost datagram stalls the connect
  until its timeout);
* its socket reader thread waits in ``select()`` up to 30 s on the socket it read last: when a reconnect
  closes that socket and the descriptor number is reused at once (the new websocket's TCP socket), the reader
  watches the wrong descriptor and the new connection's IP discovery stalls for up to 30 s;
* it sends no UDP keepalives: Discord stops sending voice to a client that sent nothing for minutes (a bot that
  only listens); and a UDP path that dies while the websocket lives (a NAT mapping lost, a route changed) is
  never noticed;
* its audio player gives up for good when a reconnect wakes its wait for the connection (``disconnect()``
  flips the connected event): the player thread ends, yet the voice client still says it is playing, so
  nothing starts it again and the bot stays mute.

`ChorusConnectionState` (what `audio.voice_seams.ListeningVoiceClient` creates) replaces the websocket poller:

* 1006, 4015 (and any other unnamed close, a timeout): RESUME first (a new websocket, op 7 -> op 9 RESUMED:
  the same session, UDP socket, key and DAVE group), within `RESUME_TIMEOUT_S`; if that fails,
* a fresh session at once: discord.py's own leave + rejoin and handshake, each attempt bounded by
  `ATTEMPT_TIMEOUT_S`, retried after 0.25, 0.5, 1, 2 s... until the connect timeout (4006 and 4009 go here
  directly: their session is gone);
* 1000, 4014, 4021, 4022 keep discord.py's meaning (a normal close, a disconnect or move, rate limiting);
* IP discovery resends its datagram every `DISCOVERY_RESEND_S` (`ChorusVoiceWebSocket`), and the socket reader
  (`ChorusSocketReader`, `audio.voice_socket_reader`) waits at most `SELECT_TIMEOUT_S` before it looks at the current socket again;
* a player that gave up while the connection was away is started again with its source;
* UDP keepalives (8 bytes, a counter) every `KEEPALIVE_EVERY_S`; and a watchdog, armed only once the voice
  server has echoed one in this session: some echo them, others do not (discord.js stopped relying on echoes
  in 2023), and without echoes a silent channel and a dead path look alike. Armed, it probes every
  `KEEPALIVE_IDLE_S` once nothing arrives, and nothing at all for `UDP_SILENCE_S` despite two probes means the
  path is dead: a fresh session (a new socket) is made.

Every recovery is recorded (`reconnects`: what closed, how, how long, how many attempts) and logged once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import struct
import time
from dataclasses import dataclass
from typing import Any

from discord.errors import ConnectionClosed
from discord.gateway import DiscordVoiceWebSocket
from discord.utils import MISSING
from discord.voice_state import ConnectionFlowState, VoiceConnectionState

from audio.voice_socket_reader import replace_reader

log = logging.getLogger(__name__)

RESUME_TIMEOUT_S = 2.0
ATTEMPT_TIMEOUT_S = 4.0
RETRY_DELAYS_S = (0.25, 0.5, 1.0, 2.0)  # before the 2nd, 3rd, ... fresh attempt (the last one repeats)
DISCOVERY_RESEND_S = 0.5
KEEPALIVE_EVERY_S = 5.0
KEEPALIVE_IDLE_S = 0.5
UDP_SILENCE_S = 2.0
WATCH_TICK_S = 0.25
PLAYER_CHECKS_S = (0.05, 0.5, 2.0)
MAX_RECORDS = 100

OP_RESUMED = 9
KEEPALIVE_SIZE = 8
CLOSE_UDP_SILENT = 4900  # ours, never sent to Discord: the watchdog closes the websocket to start a fresh session
FRESH_SESSION_CODES = frozenset({4006, 4009, CLOSE_UDP_SILENT})  # the session is gone: no resume
DISCORD_HANDLED_CODES = frozenset({1000, 4014, 4021, 4022})


@dataclass
class Reconnect:
    """One recovery of the voice connection."""

    code: int | None  # the close code (None: a timeout waiting for the voice gateway)
    started: float  # monotonic
    finished: float | None = None
    how: str = ""  # "resume" | "fresh" | "" (gave up)
    attempts: int = 0
    ok: bool = False

    @property
    def seconds(self) -> float | None:
        return None if self.finished is None else self.finished - self.started


class ChorusVoiceWebSocket(DiscordVoiceWebSocket):
    """discord.py's voice websocket whose IP discovery resends its datagram until it is answered."""

    async def discover_ip(self) -> tuple[str, int]:
        state = self._connection
        packet = bytearray(74)
        struct.pack_into(">HHI", packet, 0, 1, 70, state.ssrc)  # request, length 70, our SSRC
        loop = self.loop
        answer: asyncio.Future[bytes] = loop.create_future()

        def answered(data: bytes) -> None:  # event loop: the first answer wins
            if not answer.done():
                answer.set_result(data)

        def on_packet(data: bytes) -> None:  # socket reader thread
            if len(data) == 74 and data[1] == 0x02:
                loop.call_soon_threadsafe(answered, data)

        state.add_socket_listener(on_packet)
        try:
            while True:
                await loop.sock_sendall(state.socket, packet)
                try:
                    recv = await asyncio.wait_for(asyncio.shield(answer), DISCOVERY_RESEND_S)
                    break
                except asyncio.TimeoutError:
                    log.debug("IP discovery unanswered after %.1f s; sending it again", DISCOVERY_RESEND_S)
        finally:
            state.remove_socket_listener(on_packet)
        ip = recv[8 : recv.index(0, 8)].decode("ascii")
        port = struct.unpack_from(">H", recv, len(recv) - 2)[0]
        return ip, port


class ChorusConnectionState(VoiceConnectionState):
    """A voice connection that recovers fast (see the module docstring)."""

    def __init__(self, voice_client: Any, *, hook: Any = None) -> None:
        super().__init__(voice_client, hook=hook)
        replace_reader(self)
        self.reconnects: list[Reconnect] = []
        self._last_rx = time.monotonic()
        self._keepalives = itertools.count(1)
        self._sent_keepalives: set[bytes] = set()  # the latest few, to recognise their echo
        self._echoes = False  # the voice server echoed a keepalive in this session: the watchdog is armed
        self._unanswered = 0
        self._resumed: asyncio.Event | None = None
        self._watching_rx = False

    # -- the websocket -----------------------------------------------------------------------------

    async def _connect_websocket(self, resume: bool) -> DiscordVoiceWebSocket:
        seq_ack = self.ws.seq_ack if self.ws is not MISSING else -1
        ws = await ChorusVoiceWebSocket.from_connection_state(
            self, resume=resume, hook=self._hook_chain, seq_ack=seq_ack
        )
        self.state = ConnectionFlowState.websocket_connected
        return ws

    async def _hook_chain(self, ws: Any, msg: dict[str, Any]) -> None:
        """Every websocket's hook: notes RESUMED, then whatever `hook` is now (receivers chain into it)."""
        if msg.get("op") == OP_RESUMED and self._resumed is not None:
            self._resumed.set()
        if self.hook is not None:
            await self.hook(ws, msg)

    async def _poll_voice_ws(self, reconnect: bool) -> None:
        if not self._watching_rx:  # registered once connected (a reader with a listener runs; it needs a socket)
            self._watching_rx = True
            self.add_socket_listener(self._saw_packet)
        watchdog = asyncio.create_task(self._watch_udp(), name="voice-udp-watchdog")
        try:
            while True:
                try:
                    await self.ws.poll_event()
                except asyncio.CancelledError:
                    return
                except (ConnectionClosed, asyncio.TimeoutError) as exc:
                    code = exc.code if isinstance(exc, ConnectionClosed) else None
                    if code in DISCORD_HANDLED_CODES or not reconnect:
                        if not await self._discord_close(code, reconnect):
                            return
                        continue
                    if not await self._recover(code):
                        log.warning(
                            "voice connection to guild %s lost (close code %s) and not recovered; leaving",
                            self.guild.id,
                            code,
                        )
                        if self.state is not ConnectionFlowState.disconnected:
                            await self.disconnect()
                        return
        finally:
            watchdog.cancel()

    async def _discord_close(self, code: int | None, reconnect: bool) -> bool:
        """discord.py's handling of the closes chorus leaves to it. True: keep polling (reconnected)."""
        if code == 1000:
            if not self._expecting_disconnect:
                await self.disconnect()
            return False
        if code in (4014, 4022):
            if self._disconnected.is_set():
                await self.disconnect()
                return False
            if await self._potential_reconnect():  # moved to another channel
                return True
            if self.state is not ConnectionFlowState.disconnected:
                await self.disconnect()
            return False
        if code == 4021:
            log.warning("rate limited while connecting to voice; disconnecting")
        if self.state is not ConnectionFlowState.disconnected:
            await self.disconnect()
        return False

    # -- recovery ------------------------------------------------------------------------------------

    async def _recover(self, code: int | None) -> bool:
        record = Reconnect(code, time.monotonic())
        self.reconnects.append(record)
        del self.reconnects[:-MAX_RECORDS]
        deadline = record.started + max(float(self.timeout), ATTEMPT_TIMEOUT_S)
        if code not in FRESH_SESSION_CODES and self.state is ConnectionFlowState.connected:
            record.attempts += 1
            if await self._resume():
                return self._recovered(record, "resume")
        for fresh in itertools.count():
            if fresh:
                delay = RETRY_DELAYS_S[min(fresh - 1, len(RETRY_DELAYS_S) - 1)]
                await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            if time.monotonic() >= deadline:
                break
            record.attempts += 1
            try:
                await self.disconnect(cleanup=False)
                await self._connect(
                    reconnect=True,
                    timeout=min(ATTEMPT_TIMEOUT_S, max(0.1, deadline - time.monotonic())),
                    self_deaf=(self.self_voice_state or self).self_deaf,
                    self_mute=(self.self_voice_state or self).self_mute,
                    resume=False,
                )
                return self._recovered(record, "fresh")
            except (ConnectionClosed, asyncio.TimeoutError, OSError) as exc:
                log.info(
                    "voice reconnect attempt %d to guild %s failed (%s)",
                    record.attempts,
                    self.guild.id,
                    type(exc).__name__,
                )
        record.finished = time.monotonic()
        return False

    def _recovered(self, record: Reconnect, how: str) -> bool:
        record.finished, record.how, record.ok = time.monotonic(), how, True
        self._last_rx = time.monotonic()
        self._unanswered = 0
        if how == "fresh":
            self._echoes = False  # another voice server, maybe: armed again by its own echo
        loop = asyncio.get_running_loop()
        for delay in PLAYER_CHECKS_S:  # the player may still be on its way out when the connection is back
            loop.call_later(delay, self._revive_player)
        log.info(
            "voice connection to guild %s back after close code %s: %s in %.2f s (%d attempt%s)",
            self.guild.id,
            record.code,
            "resumed" if how == "resume" else "new session",
            record.seconds,
            record.attempts,
            "" if record.attempts == 1 else "s",
        )
        return True

    def _revive_player(self) -> None:
        """discord.py's player thread ended while the connection was away (see the module docstring), yet it
        still counts as playing: start a new one with the same source and `after` callback."""
        vc = self.voice_client
        player = getattr(vc, "_player", None)
        if player is None or player.is_alive() or player._end.is_set() or not self.is_connected() or not player.ident:
            return
        log.info("voice player in guild %s stopped while the connection was away; starting it again", self.guild.id)
        source, after = player.source, player.after
        vc.stop()
        try:
            vc.play(source, after=after)
        except Exception:
            log.exception("voice player in guild %s could not be started again", self.guild.id)

    async def _resume(self) -> bool:
        """The same session on a new websocket (op 7 -> op 9): UDP socket, key, SSRC and DAVE group stay."""
        old = self.ws
        self._resumed = asyncio.Event()
        ws = None
        try:
            ws = await asyncio.wait_for(
                ChorusVoiceWebSocket.from_connection_state(
                    self, resume=True, hook=self._hook_chain, seq_ack=old.seq_ack
                ),
                RESUME_TIMEOUT_S,
            )
            deadline = time.monotonic() + RESUME_TIMEOUT_S
            while not self._resumed.is_set():
                await asyncio.wait_for(ws.poll_event(), max(0.01, deadline - time.monotonic()))
        except (ConnectionClosed, asyncio.TimeoutError, OSError) as exc:
            log.info("voice resume in guild %s failed (%s); starting a new session", self.guild.id, type(exc).__name__)
            if ws is not None:
                await ws.close(4000)
            return False
        finally:
            self._resumed = None
        ws.secret_key = old.secret_key
        self.ws = ws
        await old.close(4000)  # already dropped: this stops its heartbeat thread
        return True

    # -- the UDP watchdog ------------------------------------------------------------------------------

    def _saw_packet(self, data: bytes) -> None:  # socket reader thread: anything at all arrived
        self._last_rx = time.monotonic()
        self._unanswered = 0
        if len(data) == KEEPALIVE_SIZE and not self._echoes and data in self._sent_keepalives:
            self._echoes = True
            log.debug("voice server in guild %s echoes UDP keepalives: the UDP watchdog is armed", self.guild.id)

    def _send_keepalive(self) -> None:
        packet = struct.pack("<Q", next(self._keepalives) & 0xFFFFFFFF)
        if len(self._sent_keepalives) > 16:
            self._sent_keepalives.clear()
        self._sent_keepalives.add(packet)
        self.socket.send(packet)

    @property
    def udp_watchdog_armed(self) -> bool:
        """The voice server echoed a keepalive in this session: a silent UDP path will be noticed."""
        return self._echoes

    async def _watch_udp(self) -> None:
        sent_at = float("-inf")
        while True:
            if self.state is not ConnectionFlowState.connected or not self.socket:
                await asyncio.sleep(WATCH_TICK_S)
                continue
            now = time.monotonic()
            quiet = now - self._last_rx
            if self._echoes and quiet >= UDP_SILENCE_S and self._unanswered >= 2:
                log.warning(
                    "voice UDP in guild %s silent for %.1f s (%d keepalives unanswered); reconnecting",
                    self.guild.id,
                    quiet,
                    self._unanswered,
                )
                self._unanswered = 0
                self._last_rx = now
                await self.ws.close(CLOSE_UDP_SILENT)  # the poller sees the close and makes a new session
                continue
            probing = self._echoes and quiet >= KEEPALIVE_IDLE_S
            if now - sent_at >= (KEEPALIVE_IDLE_S if probing else KEEPALIVE_EVERY_S):
                try:
                    self._send_keepalive()
                    self._unanswered += 1
                    sent_at = now
                except OSError as exc:  # closed meanwhile, or the network is down
                    log.debug("voice keepalive not sent: %s", exc)
            await asyncio.sleep(WATCH_TICK_S)
