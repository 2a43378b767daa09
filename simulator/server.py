"""A loopback Discord voice server: voice gateway (WebSocket, v8) + UDP media, real crypto, DAVE external sender.

A real discord.py `VoiceClient` connects to it on 127.0.0.1 (see `simulator.harness` for the client side) and runs
the real protocol. The server holds the channel (its members, the bot's session) and the faults a test injects;
its parts do one job each: `simulator.voice_gateway` (the websocket: identify / resume, session description,
speaking and client ops), `simulator.media_relay` (UDP: IP discovery, keepalives, transport-encrypted media both
ways), `simulator.dave_group` (the bot's MLS group, the server being its external sender) and
`simulator.voice_protocol` (opcodes, close codes, the bot's session state).

Members hear only the bot (the server does not relay member-to-member audio: the bot is the one under test).
One bot connection at a time. Media is relayed only while its voice websocket is up (a dropped or closed one stops
the relay until the session resumes or a new one starts), as a voice server does for a client it lost.

    async with LoopbackVoiceServer() as server:
        alice = await server.add_member(201, "Alice")
        async with connected_voice_client(server) as vc: ...
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any

from .dave_group import DaveGroup
from .media_relay import MediaRelay
from .member import OPUS_SILENCE, NetworkKnobs, SimMember, SpeakReport
from .member_dave import IMPLEMENTATIONS
from .voice_gateway import VoiceGateway
from .voice_protocol import (
    CLIENT_DISCONNECT,
    CLIENTS_CONNECT,
    CLOSE_ABNORMAL,
    CLOSE_SESSION_INVALID,
    DEFAULT_CHANNEL_ID,
    DEFAULT_GUILD_ID,
    SESSION_ENDING_CODES,
    BotSession,
)

log = logging.getLogger(__name__)

PresenceListener = Callable[[SimMember, bool], None]


class LoopbackVoiceServer:
    """Voice gateway + UDP media + DAVE external sender on 127.0.0.1 (see the module docstring).

    ``dave_protocol_version``: what op 4 announces (1 = DAVE on, 0 = off). ``require_dave``: close a client that
    cannot do DAVE with 4017, like Discord since March 2026. ``bot_joins_by_welcome``: when members are present
    as the bot's group forms, a member commits the Add of the bot's key package and the bot joins through a
    Welcome (op 30), as when a bot enters a channel where people already talk; otherwise the bot commits (27/28).
    ``announce_ssrcs_on_connect``: op 5 (speaking 0) with each present member's SSRC right after op 11 when the
    bot connects or a member joins; False leaves the mapping to the op 5 that precedes speech.
    ``speaking_after_packets``: send that op 5 only after a member's first N packets (SPEAKING racing the media,
    so the receive path meets packets from an SSRC it cannot map yet).
    ``member_dave``: the DAVE implementation members run unless `add_member` says otherwise: ``"davey"`` or
    ``"libdave"`` (Discord's own library, as its apps run it; see `simulator.member_dave`).
    """

    def __init__(
        self,
        *,
        dave_protocol_version: int = 1,
        require_dave: bool = False,
        guild_id: int = DEFAULT_GUILD_ID,
        channel_id: int = DEFAULT_CHANNEL_ID,
        heartbeat_interval_ms: float = 13_750.0,
        step_timeout: float = 20.0,
        bot_joins_by_welcome: bool = False,
        announce_ssrcs_on_connect: bool = True,
        speaking_after_packets: int = 0,
        member_dave: str = "davey",
    ) -> None:
        if member_dave not in IMPLEMENTATIONS:
            raise ValueError(f"member_dave must be one of {IMPLEMENTATIONS}, not {member_dave!r}")
        self.member_dave = member_dave
        self.dave_protocol_version = dave_protocol_version
        self.bot_joins_by_welcome = bot_joins_by_welcome
        self.announce_ssrcs_on_connect = announce_ssrcs_on_connect
        self.speaking_after_packets = speaking_after_packets
        self.require_dave = require_dave
        self.guild_id = guild_id
        self.channel_id = channel_id
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.step_timeout = step_timeout
        self.token = secrets.token_hex(16)
        self.host = "127.0.0.1"
        self.ws_port = 0
        self.udp_port = 0
        self.members: dict[int, SimMember] = {}
        self.bot: BotSession | None = None
        self.connections = 0  # identifies (new sessions)
        self.resumes = 0
        self.close_codes_sent: list[int] = []
        self.gateway = VoiceGateway(self)
        self.media = MediaRelay(self)
        self.dave = DaveGroup(self)
        self._presence_listeners: list[PresenceListener] = []
        self._next_ssrc = 1000 + secrets.randbelow(1000)
        self._state_changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- lifecycle -------------------------------------------------------------------------------------------------

    async def start(self) -> LoopbackVoiceServer:
        self.ws_port = await self.gateway.start(self.host)
        self.udp_port = await self.media.start(self.host)
        log.info("loopback voice server: ws://%s udp %s", self.endpoint, self.udp_port)
        return self

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.bot is not None and self.bot.ws is not None and not self.bot.ws.closed:
            await self.bot.ws.close(code=1001)
        self.media.close()
        await self.gateway.close()

    async def __aenter__(self) -> LoopbackVoiceServer:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    @property
    def endpoint(self) -> str:
        """What VOICE_SERVER_UPDATE carries (host:port, no scheme)."""
        return f"{self.host}:{self.ws_port}"

    @property
    def bot_user_id(self) -> int | None:
        return self.bot.user_id if self.bot else None

    @property
    def dave_active(self) -> bool:
        """Whether the current bot session negotiated DAVE (members encrypt when their session is ready)."""
        return self.bot is not None and self.bot.dave_version > 0

    def add_presence_listener(self, listener: PresenceListener) -> None:
        """``listener(member, present)`` on every join / leave (the harness turns them into VOICE_STATE_UPDATEs)."""
        self._presence_listeners.append(listener)

    def remove_presence_listener(self, listener: PresenceListener) -> None:
        if listener in self._presence_listeners:
            self._presence_listeners.remove(listener)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """A background task the server cancels on close (failures are logged)."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("loopback server task %s failed", task.get_name(), exc_info=task.exception())

    async def notify_changed(self) -> None:
        """Wake `wait_for` callers: the session, the members or the group changed."""
        async with self._state_changed:
            self._state_changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
        """Wait (event-driven) until ``predicate()`` holds; raises TimeoutError naming ``what``."""
        async with self._state_changed:
            try:
                await asyncio.wait_for(self._state_changed.wait_for(predicate), timeout)
            except TimeoutError:
                raise TimeoutError(f"loopback voice server: timed out waiting for {what}") from None

    async def wait_connected(self, timeout: float = 30.0) -> BotSession:
        """Until the bot has a session description (its UDP address known)."""
        await self.wait_for(
            lambda: (
                self.bot is not None
                and self.bot.mode is not None
                and self.bot.ws is not None
                and not self.bot.ws.closed
            ),
            timeout,
            "the bot to connect",
        )
        assert self.bot is not None
        return self.bot

    async def wait_dave_settled(self, timeout: float = 30.0) -> None:
        """Until DAVE is off, or the bot's group holds exactly the present members (`DaveGroup.settled`)."""
        await self.wait_for(self.dave.settled, timeout, "the DAVE group to settle")

    # --- members ---------------------------------------------------------------------------------------------------

    async def add_member(
        self, user_id: int, name: str, *, knobs: NetworkKnobs | None = None, dave: str | None = None
    ) -> SimMember:
        """A member joins the channel (returns once it is in the bot's DAVE group, if a bot is connected).
        ``dave``: its DAVE implementation (default: the server's ``member_dave``)."""
        if user_id in self.members:
            raise ValueError(f"member {user_id} already exists")
        member = SimMember(self, user_id, name, knobs=knobs, dave=dave or self.member_dave)
        self.members[user_id] = member
        await self._member_join(member)
        return member

    def new_ssrc(self) -> int:
        """A fresh SSRC (the bot's on identify, a member's on each join)."""
        self._next_ssrc += 1 + secrets.randbelow(50)
        return self._next_ssrc

    async def _member_join(self, member: SimMember) -> None:
        if member.present:
            return
        member.ssrc = self.new_ssrc()
        member.present = True
        member.in_group = False
        for listener in list(self._presence_listeners):
            listener(member, True)
        if self.bot is not None and self.bot.mode is not None:
            await self.gateway.send_json(CLIENTS_CONNECT, {"user_ids": [str(member.user_id)]})
            if self.announce_ssrcs_on_connect:
                await self.gateway.announce_ssrc(member)
        await self.notify_changed()
        await self.dave.sync_now()

    async def _member_leave(self, member: SimMember) -> None:
        if not member.present:
            return
        member.present = False
        for listener in list(self._presence_listeners):
            listener(member, False)
        if self.bot is not None and self.bot.mode is not None:
            await self.gateway.send_json(CLIENT_DISCONNECT, {"user_id": str(member.user_id)})
        await self.notify_changed()
        await self.dave.sync_now()

    # --- server-side knobs -----------------------------------------------------------------------------------------

    async def disconnect_client(self, code: int = CLOSE_SESSION_INVALID, *, nudge_udp: bool = True) -> None:
        """Close the bot's voice websocket with ``code`` (4006 session no longer valid, 4009 session timed out:
        a new session is needed; 4014: disconnected (a forced disconnect or a move); 4015: the voice server
        crashed, resume). ``1006`` drops the TCP connection without a close frame, as a broken network does.
        discord.py 2.7.1 on its own: waits a random back-off that grows with each reconnect, leaves and rejoins
        the channel; its 4015 resume never completes (it re-requests the voice state while still "connected" and
        waits for a session description that a resume does not bring); chorus' voice layer
        (`audio.voice_connection`) reconnects instead.

        ``nudge_udp``: first relay one Opus silence packet from a present member (ordinary traffic in a call
        with members). discord.py 2.7.1's socket reader thread may sit in a 30 s ``select()`` on the UDP socket
        that the reconnect closes; with no traffic, the new connection's IP discovery then stalls up to 30 s.
        ``nudge_udp=False`` reproduces that stall (it is discord.py behaviour, not the simulator's).
        """
        bot = self.bot
        if bot is None or bot.ws is None or bot.ws.closed:
            raise RuntimeError("no bot connected")
        if nudge_udp:
            member = next((m for m in self.members.values() if m.present), None)
            if member is not None:
                packet = member._build_packet(OPUS_SILENCE, SpeakReport(start=time.monotonic()), marker=False)
                if packet is not None:
                    self.media.send_to_bot(packet)
        self.close_codes_sent.append(code)
        if code in SESSION_ENDING_CODES:
            bot.resumable = False
        if code == CLOSE_ABNORMAL:
            if bot.transport is not None:
                bot.transport.abort()
            return
        await bot.ws.close(code=code)

    def block_udp(self) -> tuple[str, int] | None:
        """UDP silence: from now on drop every datagram to and from the bot's current UDP address (its NAT
        mapping died, a route broke), while its websocket stays up. A new voice connection (a new socket, a new
        address) gets through. Returns the blocked address."""
        bot = self.bot
        if bot is None or bot.udp_addr is None:
            raise RuntimeError("no bot connected")
        self.media.blocked_udp.add(bot.udp_addr)
        return bot.udp_addr

    async def transition_dave(self, version: int, *, timeout: float | None = None) -> int:
        """Change the call's DAVE protocol version mid-stream, or re-key (see `DaveGroup.transition`)."""
        return await self.dave.transition(version, timeout=timeout)

    async def send_invalid_commit(self, timeout: float | None = None) -> int:
        """Announce a bogus commit (op 29): the bot answers op 31 (see `DaveGroup.send_invalid_commit`)."""
        return await self.dave.send_invalid_commit(timeout)
