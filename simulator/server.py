"""A loopback Discord voice server: voice gateway (WebSocket, v8) + UDP media, real crypto, DAVE external sender.

A real discord.py `VoiceClient` connects to it on 127.0.0.1 (see `simulator.harness` for the client side) and runs
the real protocol:

* gateway: hello 8 -> identify 0 (or resume 7 -> resumed 9) -> ready 2 (ssrc, ip, port, modes) -> UDP IP
  discovery -> select protocol 1 -> session description 4 (random 32-byte key, ``dave_protocol_version``);
  heartbeats 3/6; speaking 5 and clients connect 11 / client disconnect 13 for simulated members.
* media: ``aead_xchacha20_poly1305_rtpsize`` via `audio.rtp` both ways. Packets from the bot are decrypted and
  handed to every present `SimMember` (which DAVE-decrypts and Opus-decodes them); members' packets go to the bot
  with their own SSRC, sometimes with a header extension or padding, as Discord sends them.
* DAVE (binary frames): the server is the MLS external sender. After the bot's key package (26) it sends 25, then
  27 with Add proposals for the present members; the bot commits (28); the server welcomes the new members, sends
  29 to the bot, waits for its 23 and sends 22. Joins and leaves run the same way (Add / Remove proposals, the bot
  commits, members already in the group process the commit). Invalid commit (31) -> the group is rebuilt from the
  bot's fresh key package. `transition_dave(version)` downgrades with 21 -> 23 -> 22, or upgrades / re-keys with 24.

Members hear only the bot (the server does not relay member-to-member audio: the bot is the one under test).
One bot connection at a time. Media is relayed only while its voice websocket is up (a dropped or closed one stops
the relay until the session resumes or a new one starts), as a voice server does for a client it lost.

    async with LoopbackVoiceServer() as server:
        alice = await server.add_member(201, "Alice")
        async with connected_voice_client(server) as vc: ...
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_encrypt

from audio import rtp

from . import dave_external as mls
from .member import NetworkKnobs, SimMember
from .member_dave import IMPLEMENTATIONS, LeafTable

log = logging.getLogger(__name__)

DEFAULT_GUILD_ID = 700_000_000_000_000_001
DEFAULT_CHANNEL_ID = 700_000_000_000_000_002

# Voice gateway opcodes
IDENTIFY, SELECT_PROTOCOL, READY, HEARTBEAT, SESSION_DESCRIPTION, SPEAKING = 0, 1, 2, 3, 4, 5
HEARTBEAT_ACK, RESUME, HELLO, RESUMED, CLIENTS_CONNECT, CLIENT_DISCONNECT = 6, 7, 8, 9, 11, 13
DAVE_PREPARE_TRANSITION, DAVE_EXECUTE_TRANSITION, DAVE_TRANSITION_READY, DAVE_PREPARE_EPOCH = 21, 22, 23, 24
MLS_EXTERNAL_SENDER, MLS_KEY_PACKAGE, MLS_PROPOSALS, MLS_COMMIT_WELCOME = 25, 26, 27, 28
MLS_ANNOUNCE_COMMIT_TRANSITION, MLS_WELCOME, MLS_INVALID_COMMIT_WELCOME = 29, 30, 31

CLOSE_DECODE_ERROR = 4002
CLOSE_SESSION_INVALID = 4006
CLOSE_ABNORMAL = 1006  # never sent in a close frame: the connection just drops (what `disconnect_client(1006)` does)
SESSION_ENDING_CODES = frozenset({4006, 4009, 4014})  # a resume after these is refused (4006)
KEEPALIVE_SIZE = 8  # a client's UDP keepalive datagram; Discord echoes it back
CLOSE_AUTH_FAILED = 4004
CLOSE_DAVE_REQUIRED = 4017

PresenceListener = Callable[[SimMember, bool], None]


class DaveHandshakeError(RuntimeError):
    """The bot did not complete an MLS step (commit, transition ready) in time."""


@dataclass
class BotSession:
    """One voice session of the bot (survives a resume, not a new identify)."""

    user_id: int
    session_id: str
    ssrc: int
    secret_key: bytes = field(default_factory=lambda: os.urandom(32))
    max_dave_version: int = 0
    dave_version: int = 0
    mode: str | None = None
    udp_addr: tuple[str, int] | None = None
    ws: web.WebSocketResponse | None = None
    transport: Any = None  # the websocket's TCP transport (aborted to drop the connection without a close frame)
    resumable: bool = True  # False once closed with a code that ends the session (4006, 4009, 4014)
    seq: int = 0
    nonce: int = 0
    key_packages: int = 0  # op 26 received
    key_package: bytes = b""  # the latest one
    welcomes: int = 0  # op 30 sent
    commits: int = 0  # op 28 received
    invalid_commits: list[int] = field(default_factory=list)  # transition ids from op 31
    transitions_executed: list[int] = field(default_factory=list)
    packets_from_bot: int = 0
    packets_while_down: int = 0  # media from the bot while its websocket was gone (not relayed)
    bad_packets_from_bot: int = 0
    speaking_announced: set[int] = field(default_factory=set)  # member ssrcs sent in op 5 on this connection
    recent_frames: deque = field(default_factory=lambda: deque(maxlen=100))  # transport-decrypted frames from the bot

    @property
    def media_live(self) -> bool:
        """Media is relayed while the session's websocket is up: a voice server whose signalling connection to
        a client dropped (or that crashed, 4015) relays nothing for it until it resumes or starts anew."""
        return self.ws is not None and not self.ws.closed


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

    MAX_GROUP_RESTARTS = 3  # consecutive failed MLS steps answered with a fresh group (op 24)

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
        self.external_sender = mls.ExternalSender()
        self.members: dict[int, SimMember] = {}
        self.bot: BotSession | None = None
        self.connections = 0  # identifies (new sessions)
        self.resumes = 0
        self.close_codes_sent: list[int] = []
        self.blocked_udp: set[tuple[str, int]] = set()  # bot UDP addresses whose traffic is dropped both ways
        self.keepalives_echoed = 0
        self.errors: list[str] = []  # failed MLS steps (also logged)
        self._failures_in_a_row = 0
        self._presence_listeners: list[PresenceListener] = []
        self._runner: web.AppRunner | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._next_ssrc = 1000 + secrets.randbelow(1000)
        self._next_transition = 0
        # MLS group state (the bot's group): epoch None = no established group
        self.group_epoch: int | None = None
        self._group_members: set[int] = set()
        self.leaves = LeafTable()  # who sits at which leaf of the bot's group (needed for Remove proposals)
        self._mls_lock = asyncio.Lock()
        self._commit_waiter: asyncio.Future[bytes] | None = None
        self._ready_waiters: dict[int, asyncio.Future[None]] = {}
        self._state_changed = asyncio.Condition()
        self._sync_task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()

    # --- lifecycle -------------------------------------------------------------------------------------------------

    async def start(self) -> LoopbackVoiceServer:
        app = web.Application()
        app.router.add_get("/", self._ws_handler)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.ws_port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(self.host, 0), family=socket.AF_INET
        )
        self.udp_port = self._udp.get_extra_info("sockname")[1]
        log.info("loopback voice server: ws://%s udp %s", self.endpoint, self.udp_port)
        return self

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.bot is not None and self.bot.ws is not None and not self.bot.ws.closed:
            await self.bot.ws.close(code=1001)
        if self._udp is not None:
            self._udp.close()
        if self._runner is not None:
            await self._runner.cleanup()

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

    @property
    def group_user_ids(self) -> set[int]:
        """Simulated members in the bot's current MLS group."""
        return set(self._group_members)

    def add_presence_listener(self, listener: PresenceListener) -> None:
        """``listener(member, present)`` on every join / leave (the harness turns them into VOICE_STATE_UPDATEs)."""
        self._presence_listeners.append(listener)

    def remove_presence_listener(self, listener: PresenceListener) -> None:
        if listener in self._presence_listeners:
            self._presence_listeners.remove(listener)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("loopback server task %s failed", task.get_name(), exc_info=task.exception())

    async def _changed(self) -> None:
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
        await self.wait_for(lambda: self.bot is not None and self.bot.mode is not None and self.bot.ws is not None
                            and not self.bot.ws.closed, timeout, "the bot to connect")
        assert self.bot is not None
        return self.bot

    def dave_settled(self) -> bool:
        """DAVE off, or the bot's group holds exactly the present members and no MLS step is running."""
        if self.bot is None or self.bot.mode is None:
            return False
        if self.bot.dave_version == 0:
            return True
        present = {m.user_id for m in self.members.values() if m.present}
        if not present:
            return self.bot.key_packages > 0 and not self._mls_lock.locked()
        return self.group_epoch is not None and self._group_members == present and not self._mls_lock.locked()

    async def wait_dave_settled(self, timeout: float = 30.0) -> None:
        await self.wait_for(self.dave_settled, timeout, "the DAVE group to settle")

    # --- members ---------------------------------------------------------------------------------------------------

    async def add_member(self, user_id: int, name: str, *, knobs: NetworkKnobs | None = None,
                         dave: str | None = None) -> SimMember:
        """A member joins the channel (returns once it is in the bot's DAVE group, if a bot is connected).
        ``dave``: its DAVE implementation (default: the server's ``member_dave``)."""
        if user_id in self.members:
            raise ValueError(f"member {user_id} already exists")
        member = SimMember(self, user_id, name, knobs=knobs, dave=dave or self.member_dave)
        self.members[user_id] = member
        await self._member_join(member)
        return member

    def _new_ssrc(self) -> int:
        self._next_ssrc += 1 + secrets.randbelow(50)
        return self._next_ssrc

    async def _member_join(self, member: SimMember) -> None:
        if member.present:
            return
        member.ssrc = self._new_ssrc()
        member.present = True
        member.in_group = False
        for listener in list(self._presence_listeners):
            listener(member, True)
        if self.bot is not None and self.bot.mode is not None:
            await self._send_json(CLIENTS_CONNECT, {"user_ids": [str(member.user_id)]})
            if self.announce_ssrcs_on_connect:
                await self._announce_ssrc(member)
        await self._changed()
        await self._sync_group_now()

    async def _member_leave(self, member: SimMember) -> None:
        if not member.present:
            return
        member.present = False
        for listener in list(self._presence_listeners):
            listener(member, False)
        if self.bot is not None and self.bot.mode is not None:
            await self._send_json(CLIENT_DISCONNECT, {"user_id": str(member.user_id)})
        await self._changed()
        await self._sync_group_now()

    async def _announce_ssrc(self, member: SimMember, speaking: bool = False) -> None:
        if self.bot is None or self.bot.mode is None or not member.present:
            return
        self.bot.speaking_announced.add(member.ssrc)
        await self._send_json(SPEAKING, {"user_id": str(member.user_id), "ssrc": member.ssrc,
                                         "speaking": 1 if speaking else 0})

    async def _announce_speaking(self, member: SimMember, speaking: bool) -> None:
        if speaking:
            await self._announce_ssrc(member, True)

    # --- media -----------------------------------------------------------------------------------------------------

    def _encrypt_for_bot(self, **kw: Any) -> bytes | None:
        bot = self.bot
        if bot is None or bot.udp_addr is None or bot.mode is None:
            return None
        bot.nonce = (bot.nonce + 1) & 0xFFFFFFFF
        return rtp.encrypt_packet(key=bot.secret_key, nonce=bot.nonce, **kw)

    def _send_rtcp_receiver_report(self, sender_ssrc: int) -> None:
        """An RTCP receiver report (PT 201) about the bot's stream, transport-encrypted the rtpsize way
        (8-byte RTCP header clear as additional data, the rest sealed, 4-byte nonce trailer)."""
        bot = self.bot
        if bot is None or bot.udp_addr is None or bot.mode is None:
            return
        header = struct.pack(">BBHI", 0x81, 201, 7, sender_ssrc)  # V=2, RC=1, length 7 words - 1
        block = struct.pack(">IIIIII", bot.ssrc, 0, bot.packets_from_bot & 0xFFFF, 0, 0, 0)
        bot.nonce = (bot.nonce + 1) & 0xFFFFFFFF
        trailer = struct.pack(">I", bot.nonce)
        sealed = crypto_aead_xchacha20poly1305_ietf_encrypt(block, header, trailer + bytes(20), bot.secret_key)
        self._send_to_bot(header + sealed + trailer)

    def _send_to_bot(self, packet: bytes) -> None:
        bot = self.bot
        if (bot is not None and bot.udp_addr is not None and self._udp is not None and bot.media_live
                and bot.udp_addr not in self.blocked_udp):
            self._udp.sendto(packet, bot.udp_addr)

    def _udp_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr in self.blocked_udp:
            return
        if len(data) == KEEPALIVE_SIZE:  # a keepalive: echoed, as Discord's voice servers do
            self.keepalives_echoed += 1
            self._udp.sendto(data, addr)  # type: ignore[union-attr]
            return
        if len(data) == 74 and data[:4] == b"\x00\x01\x00\x46":  # IP discovery request
            ssrc = struct.unpack_from(">I", data, 4)[0]
            reply = bytearray(74)
            struct.pack_into(">HHI", reply, 0, 2, 70, ssrc)
            ip = addr[0].encode()
            reply[8 : 8 + len(ip)] = ip
            struct.pack_into(">H", reply, 72, addr[1])
            self._udp.sendto(bytes(reply), addr)  # type: ignore[union-attr]
            return
        bot = self.bot
        if bot is None or bot.mode is None:
            return
        if not bot.media_live:  # no relay for a session whose signalling is gone (until it resumes)
            bot.packets_while_down += 1
            return
        try:
            header, frame = rtp.decrypt_packet(data, bot.secret_key)
        except rtp.RtpError as exc:
            bot.bad_packets_from_bot += 1
            log.debug("bad packet from the bot: %s", exc)
            return
        if header.ssrc != bot.ssrc:
            bot.bad_packets_from_bot += 1
            return
        bot.packets_from_bot += 1
        bot.recent_frames.append(frame)
        arrival = time.monotonic()
        for member in list(self.members.values()):
            if member.present:
                member._on_bot_frame(bot.user_id, header.ssrc, frame, arrival)

    # --- gateway ---------------------------------------------------------------------------------------------------

    async def _send_json(self, op: int, d: Any, bot: BotSession | None = None) -> None:
        bot = bot or self.bot
        if bot is None or bot.ws is None or bot.ws.closed:
            return
        bot.seq = (bot.seq + 1) & 0xFFFF
        await bot.ws.send_str(json.dumps({"op": op, "d": d, "seq": bot.seq}))

    async def _send_binary(self, op: int, payload: bytes, bot: BotSession | None = None) -> None:
        bot = bot or self.bot
        if bot is None or bot.ws is None or bot.ws.closed:
            return
        bot.seq = (bot.seq + 1) & 0xFFFF
        await bot.ws.send_bytes(struct.pack(">HB", bot.seq, op) + payload)

    async def _ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        transport = request.transport
        await ws.send_str(json.dumps({"op": HELLO, "d": {"v": 8, "heartbeat_interval": self.heartbeat_interval_ms}}))
        session: BotSession | None = None
        try:
            async for msg in ws:
                try:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        session = await self._on_json(ws, session, json.loads(msg.data))
                        if session is not None and session.ws is ws:
                            session.transport = transport
                    elif msg.type == aiohttp.WSMsgType.BINARY:
                        if session is not None and session is self.bot:
                            await self._on_binary(session, msg.data)
                    elif msg.type == aiohttp.WSMsgType.ERROR:
                        break
                except (ValueError, KeyError, TypeError, mls.MlsDecodeError) as exc:
                    # like Discord: a payload it cannot decode closes the socket with 4002
                    log.warning("bad voice gateway payload from the client (%s): %r", exc, msg.data[:200])
                    self.close_codes_sent.append(CLOSE_DECODE_ERROR)
                    await ws.close(code=CLOSE_DECODE_ERROR)
                    break
        finally:
            if session is not None and session.ws is ws:
                log.info("bot voice websocket closed (code %s)", ws.close_code)
                self._bot_gone(session)
            await self._changed()
        return ws

    def _bot_gone(self, session: BotSession) -> None:
        session.ws = None
        if self._commit_waiter is not None and not self._commit_waiter.done():
            self._commit_waiter.set_exception(DaveHandshakeError("the bot disconnected"))
        for fut in self._ready_waiters.values():
            if not fut.done():
                fut.set_exception(DaveHandshakeError("the bot disconnected"))

    async def _on_json(self, ws: web.WebSocketResponse, session: BotSession | None, msg: dict) -> BotSession | None:
        op, d = msg.get("op"), msg.get("d") or {}
        if op == HEARTBEAT:
            await ws.send_str(json.dumps({"op": HEARTBEAT_ACK, "d": {"t": d.get("t") if isinstance(d, dict) else d}}))
        elif op == IDENTIFY:
            return await self._identify(ws, d)
        elif op == RESUME:
            return await self._resume(ws, d)
        elif session is None or session is not self.bot:
            log.warning("voice op %s before identify; closing", op)
            await ws.close(code=4003)
        elif op == SELECT_PROTOCOL:
            await self._select_protocol(session, d)
        elif op == SPEAKING:
            if d.get("ssrc") != session.ssrc:
                log.warning("bot announced ssrc %s, expected %s", d.get("ssrc"), session.ssrc)
        elif op == DAVE_TRANSITION_READY:
            fut = self._ready_waiters.get(int(d["transition_id"]))
            if fut is not None and not fut.done():
                fut.set_result(None)
        elif op == MLS_INVALID_COMMIT_WELCOME:
            tid = int(d.get("transition_id", 0))
            log.info("bot reported an invalid commit/welcome (transition %s); the group will be rebuilt", tid)
            session.invalid_commits.append(tid)
            self._reset_group()
            await self._changed()
        return session

    async def _identify(self, ws: web.WebSocketResponse, d: dict) -> BotSession | None:
        if d.get("token") != self.token or int(d.get("server_id", 0)) != self.guild_id:
            self.close_codes_sent.append(CLOSE_AUTH_FAILED)
            await ws.close(code=CLOSE_AUTH_FAILED)
            return None
        max_dave = int(d.get("max_dave_protocol_version", 0))
        if self.require_dave and max_dave < 1:
            self.close_codes_sent.append(CLOSE_DAVE_REQUIRED)
            await ws.close(code=CLOSE_DAVE_REQUIRED, message=b"E2EE/DAVE protocol required")
            return None
        old = self.bot
        if old is not None and old.ws is not None and not old.ws.closed:
            await old.ws.close(code=CLOSE_SESSION_INVALID)
        session = BotSession(user_id=int(d["user_id"]), session_id=str(d["session_id"]), ssrc=self._new_ssrc(),
                             max_dave_version=max_dave, ws=ws)
        self.bot = session
        self.connections += 1
        self._reset_group()
        await self._send_json(READY, {
            "ssrc": session.ssrc, "ip": self.host, "port": self.udp_port,
            "modes": ["aead_aes256_gcm_rtpsize", rtp.MODE], "experiments": [], "streams": [],
        })
        return session

    async def _resume(self, ws: web.WebSocketResponse, d: dict) -> BotSession | None:
        bot = self.bot
        if (bot is None or not bot.resumable or d.get("token") != self.token
                or d.get("session_id") != bot.session_id):
            self.close_codes_sent.append(CLOSE_SESSION_INVALID)
            await ws.close(code=CLOSE_SESSION_INVALID)
            return None
        if bot.ws is not None and bot.ws is not ws and not bot.ws.closed:
            await bot.ws.close(code=CLOSE_SESSION_INVALID)
        bot.ws = ws
        self.resumes += 1
        await self._send_json(RESUMED, None)
        await self._changed()
        return bot

    async def _select_protocol(self, session: BotSession, d: dict) -> None:
        data = d.get("data") or {}
        mode = data.get("mode")
        if mode != rtp.MODE:
            self.close_codes_sent.append(4016)
            await session.ws.close(code=4016)  # type: ignore[union-attr]  # unknown encryption mode
            return
        session.udp_addr = (data["address"], int(data["port"]))
        session.dave_version = min(self.dave_protocol_version, session.max_dave_version)
        session.mode = mode
        await self._send_json(SESSION_DESCRIPTION, {
            "mode": mode, "secret_key": list(session.secret_key), "dave_protocol_version": session.dave_version,
            "audio_codec": "opus", "video_codec": "H264", "media_session_id": secrets.token_hex(16),
        })
        present = [m for m in self.members.values() if m.present]
        if present:
            await self._send_json(CLIENTS_CONNECT, {"user_ids": [str(m.user_id) for m in present]})
            if self.announce_ssrcs_on_connect:
                for member in present:
                    await self._announce_ssrc(member)
        await self._changed()

    async def _on_binary(self, session: BotSession, data: bytes) -> None:
        if not data:
            return
        op, payload = data[0], data[1:]
        if op == MLS_KEY_PACKAGE:
            session.key_packages += 1
            session.key_package = payload
            self._reset_group()
            await self._send_binary(MLS_EXTERNAL_SENDER, self.external_sender.package())
            await self._changed()
            self._sync_group_soon()
        elif op == MLS_COMMIT_WELCOME:
            session.commits += 1
            if self._commit_waiter is not None and not self._commit_waiter.done():
                self._commit_waiter.set_result(payload)
            else:
                log.warning("unexpected commit from the bot (%d bytes)", len(payload))
        else:
            log.warning("unexpected binary voice op %s from the bot", op)

    # --- DAVE group management -------------------------------------------------------------------------------------

    def _reset_group(self) -> None:
        self.group_epoch = None
        self._group_members.clear()
        self.leaves.reset()
        for member in self.members.values():
            member.in_group = False

    def _next_transition_id(self) -> int:
        self._next_transition = self._next_transition % 0xFFFF + 1
        return self._next_transition

    def _sync_group_soon(self) -> None:
        self._spawn(self._sync_group_now(), "dave-sync")

    async def _sync_group_now(self) -> None:
        """Bring the bot's MLS group in line with the present members (one MLS step at a time)."""
        async with self._mls_lock:
            try:
                await self._sync_group()
                self._failures_in_a_row = 0
            except Exception as exc:  # a failed MLS step resets the group; the next key package rebuilds it
                log.warning("DAVE group sync failed: %s: %s", type(exc).__name__, exc,
                            exc_info=not isinstance(exc, DaveHandshakeError))
                self.errors.append(f"{type(exc).__name__}: {exc}")
                self._reset_group()
                await self._restart_group()
        await self._changed()

    async def _restart_group(self) -> None:
        """After a failed step the bot's group and ours may differ: ask for a brand-new group (op 24, epoch 1);
        the bot reinitialises, sends a fresh key package and the group is rebuilt from it."""
        self._failures_in_a_row += 1
        if self._failures_in_a_row > self.MAX_GROUP_RESTARTS:
            log.error("DAVE group failed %d times in a row; not restarting it again", self._failures_in_a_row)
            return
        bot = self.bot
        if bot is not None and bot.dave_version > 0 and bot.ws is not None and not bot.ws.closed:
            await self._send_json(DAVE_PREPARE_EPOCH, {"epoch": 1, "protocol_version": bot.dave_version})

    async def _sync_group(self) -> None:
        bot = self.bot
        if bot is None or bot.dave_version == 0 or bot.key_packages == 0 or bot.ws is None or bot.ws.closed:
            return
        group_id = mls.group_id_for_channel(self.channel_id)
        present = {uid for uid, m in self.members.items() if m.present}
        to_add = sorted(present - self._group_members)
        to_remove = sorted(self._group_members - present)
        if not to_add and not to_remove:
            return
        if self.group_epoch is None and self.bot_joins_by_welcome and to_add:
            await self._build_group_welcoming_bot(bot, to_add)
            return
        if self.group_epoch is None:
            epoch, stayers, to_remove = 0, [], []  # the bot's pending group (epoch 0, alone): build it
            self.leaves.reset(bot.user_id)
        else:
            epoch = self.group_epoch
            stayers = sorted(self._group_members & present)
        messages = []
        recognized = present | {bot.user_id}
        for uid in to_remove:
            messages.append(self.external_sender.remove_proposal(group_id, epoch, self.leaves.index(uid)))
            self.members[uid].in_group = False
        for uid in to_add:
            kp = self.members[uid]._new_dave_session(bot.dave_version, self.channel_id, self.external_sender.package())
            messages.append(self.external_sender.add_proposal(group_id, epoch, kp))
        payload = mls.proposals_payload(messages)
        for uid in stayers:  # members already in the group store the proposals (the bot's commit references them;
            self.members[uid].group().process_proposals(payload, recognized)  # a commit of their own is not used)
        loop = asyncio.get_running_loop()
        self._commit_waiter = loop.create_future()
        await self._send_binary(MLS_PROPOSALS, payload)
        try:
            commit_welcome = await asyncio.wait_for(self._commit_waiter, self.step_timeout)
        except TimeoutError:
            raise DaveHandshakeError("the bot sent no commit for our proposals") from None
        finally:
            self._commit_waiter = None
        info, commit, welcome = mls.split_commit_welcome(commit_welcome)
        if info.epoch != epoch:
            raise DaveHandshakeError(f"commit for epoch {info.epoch}, expected {epoch}")
        if to_add and welcome is None:
            raise DaveHandshakeError("commit adds members but carries no welcome")
        tid = self._next_transition_id()
        ready = loop.create_future()
        self._ready_waiters[tid] = ready
        try:
            for uid in stayers:
                self.members[uid].group().process_commit(commit)
            for uid in to_add:
                assert welcome is not None  # checked above: a commit that adds members carries one
                self.members[uid].group().process_welcome(welcome, recognized)  # what op 30 carries
                self.members[uid].in_group = True
            await self._send_binary(MLS_ANNOUNCE_COMMIT_TRANSITION, struct.pack(">H", tid) + commit)
            await asyncio.wait_for(ready, self.step_timeout)
        except TimeoutError:
            raise DaveHandshakeError(f"the bot did not answer transition {tid} with op 23") from None
        finally:
            self._ready_waiters.pop(tid, None)
        self.group_epoch = epoch + 1
        self._group_members = (self._group_members - set(to_remove)) | set(to_add)
        self.leaves.apply(to_remove, to_add)
        await self._execute_transition(bot, tid)
        log.info("DAVE group epoch %s: members %s (added %s, removed %s)", self.group_epoch,
                 sorted(self._group_members), to_add, to_remove)

    async def _build_group_welcoming_bot(self, bot: BotSession, present: list[int]) -> None:
        """A member creates the group, committing Adds of the other members and of the bot; the bot gets op 30."""
        group_id = mls.group_id_for_channel(self.channel_id)
        package = self.external_sender.package()
        creator, *others = (self.members[uid] for uid in present)
        creator._new_dave_session(bot.dave_version, self.channel_id, package)
        messages = [self.external_sender.add_proposal(group_id, 0, m._new_dave_session(
            bot.dave_version, self.channel_id, package)) for m in others]
        messages.append(self.external_sender.add_proposal(group_id, 0, bot.key_package))
        recognized = set(present) | {bot.user_id}
        result = creator.group().process_proposals(mls.proposals_payload(messages), recognized)
        if result is None or result[1] is None:
            raise DaveHandshakeError("the creating member produced no commit/welcome")
        commit, welcome = result
        assert welcome is not None  # checked above
        creator.group().process_commit(commit)
        for member in others:
            member.group().process_welcome(welcome, recognized)
        for member in (creator, *others):
            member.in_group = True
        tid = self._next_transition_id()
        ready = asyncio.get_running_loop().create_future()
        self._ready_waiters[tid] = ready
        try:
            await self._send_binary(MLS_WELCOME, struct.pack(">H", tid) + welcome)
            bot.welcomes += 1
            await asyncio.wait_for(ready, self.step_timeout)
        except TimeoutError:
            raise DaveHandshakeError(f"the bot did not answer welcome transition {tid} with op 23") from None
        finally:
            self._ready_waiters.pop(tid, None)
        self.group_epoch = 1  # the creator's commit made epoch 1
        self._group_members = set(present)
        self.leaves.reset(creator.user_id, *(m.user_id for m in others), bot.user_id)  # the commit's add order
        await self._execute_transition(bot, tid)
        log.info("DAVE group epoch %s created by member %s; the bot joined by welcome", self.group_epoch,
                 creator.user_id)

    async def _execute_transition(self, bot: BotSession, tid: int) -> None:
        """op 22 to everyone in the call: clients that switch their sending key only now (libdave) do so."""
        await self._send_json(DAVE_EXECUTE_TRANSITION, {"transition_id": tid})
        bot.transitions_executed.append(tid)
        for uid in self._group_members:
            member = self.members[uid]
            if member.present and member.dave is not None:
                member.dave.execute_transition()

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
                from .member import OPUS_SILENCE, SpeakReport

                packet = member._build_packet(OPUS_SILENCE, SpeakReport(start=time.monotonic()), marker=False)
                if packet is not None:
                    self._send_to_bot(packet)
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
        self.blocked_udp.add(bot.udp_addr)
        return bot.udp_addr

    async def transition_dave(self, version: int, *, timeout: float | None = None) -> int:
        """Change the call's DAVE protocol version mid-stream, or re-key (``version`` == the current one).

        0 from 1: op 21 (prepare, version 0) -> the bot's op 23 -> op 22 (execute); members send plain Opus.
        1 (from 0, or re-key at 1): op 24 (prepare epoch 1) -> the bot reinitialises and sends a key package ->
        a new group is built with every present member (25, 27, 28, 29, 23, 22). Returns the transition id used
        (0 for the epoch path). Returns when the change is complete.
        """
        bot = self.bot
        if bot is None or bot.ws is None or bot.mode is None:
            raise RuntimeError("no bot connected")
        timeout = timeout or self.step_timeout
        if version == 0:
            if bot.dave_version == 0:
                return 0
            async with self._mls_lock:
                tid = self._next_transition_id()
                ready = asyncio.get_running_loop().create_future()
                self._ready_waiters[tid] = ready
                try:
                    await self._send_json(DAVE_PREPARE_TRANSITION, {"transition_id": tid, "protocol_version": 0})
                    await asyncio.wait_for(ready, timeout)
                finally:
                    self._ready_waiters.pop(tid, None)
                bot.dave_version = 0
                self.group_epoch = None  # members keep their sessions: frames still in flight decrypt
                self._group_members.clear()
                await self._send_json(DAVE_EXECUTE_TRANSITION, {"transition_id": tid})
                bot.transitions_executed.append(tid)
            await self._changed()
            return tid
        if version > bot.max_dave_version:
            raise ValueError(f"the bot supports DAVE up to version {bot.max_dave_version}")
        if bot.key_packages == 0:
            # discord.py 2.7.1 handles ops 21/22/24 only once it has a DaveSession, i.e. when the session began
            # with DAVE: a call that started unencrypted cannot be upgraded (reconnect with DAVE on instead).
            raise RuntimeError("the bot's voice session started without DAVE; discord.py ignores op 24 then")
        before = bot.key_packages
        bot.dave_version = version
        self._reset_group()
        await self._send_json(DAVE_PREPARE_EPOCH, {"epoch": 1, "protocol_version": version})
        await self.wait_for(lambda: bot.key_packages > before, timeout, "the bot's new key package")
        await self.wait_dave_settled(timeout)
        return 0

    async def send_invalid_commit(self, timeout: float | None = None) -> int:
        """Announce a bogus commit (op 29); the bot must answer op 31 and a fresh key package, and the group is
        rebuilt. Returns the transition id of the bogus commit once the group has settled again."""
        bot = self.bot
        if bot is None or bot.ws is None:
            raise RuntimeError("no bot connected")
        timeout = timeout or self.step_timeout
        before_invalid, before_kp = len(bot.invalid_commits), bot.key_packages
        async with self._mls_lock:
            tid = self._next_transition_id()
            await self._send_binary(MLS_ANNOUNCE_COMMIT_TRANSITION, struct.pack(">H", tid) + os.urandom(64))
        await self.wait_for(lambda: len(bot.invalid_commits) > before_invalid and bot.key_packages > before_kp,
                            timeout, "op 31 and a new key package")
        await self.wait_dave_settled(timeout)
        return tid


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: LoopbackVoiceServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.server._udp_received(data, addr)
        except Exception:  # one bad packet never stops the server
            log.exception("error handling a UDP packet from %s", addr)
