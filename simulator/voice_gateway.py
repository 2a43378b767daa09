"""The loopback voice server's voice gateway: the bot's websocket (v8, JSON and binary DAVE frames).

hello 8 -> identify 0 (or resume 7 -> resumed 9) -> ready 2 (ssrc, ip, port, modes) -> UDP IP discovery (see
`simulator.media_relay`) -> select protocol 1 -> session description 4 (random 32-byte key,
``dave_protocol_version``); heartbeats 3/6; speaking 5 and clients connect 11 / client disconnect 13 for simulated
members. MLS ops (23, 26, 28, 31) go to the server's `simulator.dave_group.DaveGroup`. A payload it cannot decode
closes the socket with 4002, as Discord does.
"""

from __future__ import annotations

import json
import logging
import secrets
import socket
import struct
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from audio import rtp

from . import dave_external as mls
from .voice_protocol import (
    CLIENTS_CONNECT,
    CLOSE_AUTH_FAILED,
    CLOSE_DAVE_REQUIRED,
    CLOSE_DECODE_ERROR,
    CLOSE_SESSION_INVALID,
    DAVE_TRANSITION_READY,
    HEARTBEAT,
    HEARTBEAT_ACK,
    HELLO,
    IDENTIFY,
    MLS_COMMIT_WELCOME,
    MLS_INVALID_COMMIT_WELCOME,
    MLS_KEY_PACKAGE,
    READY,
    RESUME,
    RESUMED,
    SELECT_PROTOCOL,
    SESSION_DESCRIPTION,
    SPEAKING,
    BotSession,
)

if TYPE_CHECKING:
    from .member import SimMember
    from .server import LoopbackVoiceServer

log = logging.getLogger(__name__)


class VoiceGateway:
    """The websocket endpoint the bot's `VoiceClient` connects to (one bot session at a time, kept on the server)."""

    def __init__(self, server: LoopbackVoiceServer) -> None:
        self.server = server
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self, host: str) -> int:
        """Listen on ``host``; returns the port."""
        app = web.Application()
        app.router.add_get("/", self._ws_handler)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self.port

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def send_json(self, op: int, d: Any, bot: BotSession | None = None) -> None:
        bot = bot or self.server.bot
        if bot is None or bot.ws is None or bot.ws.closed:
            return
        bot.seq = (bot.seq + 1) & 0xFFFF
        await bot.ws.send_str(json.dumps({"op": op, "d": d, "seq": bot.seq}))

    async def send_binary(self, op: int, payload: bytes, bot: BotSession | None = None) -> None:
        bot = bot or self.server.bot
        if bot is None or bot.ws is None or bot.ws.closed:
            return
        bot.seq = (bot.seq + 1) & 0xFFFF
        await bot.ws.send_bytes(struct.pack(">HB", bot.seq, op) + payload)

    async def announce_ssrc(self, member: SimMember, speaking: bool = False) -> None:
        """op 5: which SSRC is ``member``'s (sent once the bot has a session description)."""
        bot = self.server.bot
        if bot is None or bot.mode is None or not member.present:
            return
        bot.speaking_announced.add(member.ssrc)
        await self.send_json(
            SPEAKING, {"user_id": str(member.user_id), "ssrc": member.ssrc, "speaking": 1 if speaking else 0}
        )

    async def announce_speaking(self, member: SimMember, speaking: bool) -> None:
        """op 5 when a member starts talking; stopping sends nothing."""
        if speaking:
            await self.announce_ssrc(member, True)

    async def _ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        transport = request.transport
        hello = {"v": 8, "heartbeat_interval": self.server.heartbeat_interval_ms}
        await ws.send_str(json.dumps({"op": HELLO, "d": hello}))
        session: BotSession | None = None
        try:
            async for msg in ws:
                try:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        session = await self._on_json(ws, session, json.loads(msg.data))
                        if session is not None and session.ws is ws:
                            session.transport = transport
                    elif msg.type == aiohttp.WSMsgType.BINARY:
                        if session is not None and session is self.server.bot:
                            await self._on_binary(session, msg.data)
                    elif msg.type == aiohttp.WSMsgType.ERROR:
                        break
                except (ValueError, KeyError, TypeError, mls.MlsDecodeError) as exc:
                    # like Discord: a payload it cannot decode closes the socket with 4002
                    log.warning("bad voice gateway payload from the client (%s): %r", exc, msg.data[:200])
                    self.server.close_codes_sent.append(CLOSE_DECODE_ERROR)
                    await ws.close(code=CLOSE_DECODE_ERROR)
                    break
        finally:
            if session is not None and session.ws is ws:
                log.info("bot voice websocket closed (code %s)", ws.close_code)
                session.ws = None
                self.server.dave.bot_gone()
            await self.server.notify_changed()
        return ws

    async def _on_json(self, ws: web.WebSocketResponse, session: BotSession | None, msg: dict) -> BotSession | None:
        op, d = msg.get("op"), msg.get("d") or {}
        if op == HEARTBEAT:
            await ws.send_str(json.dumps({"op": HEARTBEAT_ACK, "d": {"t": d.get("t") if isinstance(d, dict) else d}}))
        elif op == IDENTIFY:
            return await self._identify(ws, d)
        elif op == RESUME:
            return await self._resume(ws, d)
        elif session is None or session is not self.server.bot:
            log.warning("voice op %s before identify; closing", op)
            await ws.close(code=4003)
        elif op == SELECT_PROTOCOL:
            await self._select_protocol(session, d)
        elif op == SPEAKING:
            if d.get("ssrc") != session.ssrc:
                log.warning("bot announced ssrc %s, expected %s", d.get("ssrc"), session.ssrc)
        elif op == DAVE_TRANSITION_READY:
            self.server.dave.on_transition_ready(int(d["transition_id"]))
        elif op == MLS_INVALID_COMMIT_WELCOME:
            tid = int(d.get("transition_id", 0))
            log.info("bot reported an invalid commit/welcome (transition %s); the group will be rebuilt", tid)
            session.invalid_commits.append(tid)
            self.server.dave.reset()
            await self.server.notify_changed()
        return session

    async def _identify(self, ws: web.WebSocketResponse, d: dict) -> BotSession | None:
        if d.get("token") != self.server.token or int(d.get("server_id", 0)) != self.server.guild_id:
            self.server.close_codes_sent.append(CLOSE_AUTH_FAILED)
            await ws.close(code=CLOSE_AUTH_FAILED)
            return None
        max_dave = int(d.get("max_dave_protocol_version", 0))
        if self.server.require_dave and max_dave < 1:
            self.server.close_codes_sent.append(CLOSE_DAVE_REQUIRED)
            await ws.close(code=CLOSE_DAVE_REQUIRED, message=b"E2EE/DAVE protocol required")
            return None
        old = self.server.bot
        if old is not None and old.ws is not None and not old.ws.closed:
            await old.ws.close(code=CLOSE_SESSION_INVALID)
        session = BotSession(
            user_id=int(d["user_id"]),
            session_id=str(d["session_id"]),
            ssrc=self.server.new_ssrc(),
            max_dave_version=max_dave,
            ws=ws,
        )
        self.server.bot = session
        self.server.connections += 1
        self.server.dave.reset()
        await self.send_json(
            READY,
            {
                "ssrc": session.ssrc,
                "ip": self.server.host,
                "port": self.server.udp_port,
                "modes": ["aead_aes256_gcm_rtpsize", rtp.MODE],
                "experiments": [],
                "streams": [],
            },
        )
        return session

    async def _resume(self, ws: web.WebSocketResponse, d: dict) -> BotSession | None:
        bot = self.server.bot
        if (
            bot is None
            or not bot.resumable
            or d.get("token") != self.server.token
            or d.get("session_id") != bot.session_id
        ):
            self.server.close_codes_sent.append(CLOSE_SESSION_INVALID)
            await ws.close(code=CLOSE_SESSION_INVALID)
            return None
        if bot.ws is not None and bot.ws is not ws and not bot.ws.closed:
            await bot.ws.close(code=CLOSE_SESSION_INVALID)
        bot.ws = ws
        self.server.resumes += 1
        await self.send_json(RESUMED, None)
        await self.server.notify_changed()
        return bot

    async def _select_protocol(self, session: BotSession, d: dict) -> None:
        data = d.get("data") or {}
        mode = data.get("mode")
        if mode != rtp.MODE:
            self.server.close_codes_sent.append(4016)
            await session.ws.close(code=4016)  # type: ignore[union-attr]  # unknown encryption mode
            return
        session.udp_addr = (data["address"], int(data["port"]))
        session.dave_version = min(self.server.dave_protocol_version, session.max_dave_version)
        session.mode = mode
        await self.send_json(
            SESSION_DESCRIPTION,
            {
                "mode": mode,
                "secret_key": list(session.secret_key),
                "dave_protocol_version": session.dave_version,
                "audio_codec": "opus",
                "video_codec": "H264",
                "media_session_id": secrets.token_hex(16),
            },
        )
        present = [m for m in self.server.members.values() if m.present]
        if present:
            await self.send_json(CLIENTS_CONNECT, {"user_ids": [str(m.user_id) for m in present]})
            if self.server.announce_ssrcs_on_connect:
                for member in present:
                    await self.announce_ssrc(member)
        await self.server.notify_changed()

    async def _on_binary(self, session: BotSession, data: bytes) -> None:
        if not data:
            return
        op, payload = data[0], data[1:]
        if op == MLS_KEY_PACKAGE:
            await self.server.dave.on_key_package(session, payload)
        elif op == MLS_COMMIT_WELCOME:
            session.commits += 1
            self.server.dave.on_commit(payload)
        else:
            log.warning("unexpected binary voice op %s from the bot", op)
