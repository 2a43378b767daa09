"""Discord's REST API and sharded main gateway on loopback, for bot PROCESSES (the shard tests).

discord.py's own HTTP client and gateway code talk to it over real HTTP and websockets (`simulator.bot_process`
aims discord.py at it). What it speaks, as Discord does:

* REST: ``/users/@me``, the application, ``/gateway/bot`` (the URL and a recommended shard count), command sync,
  and interaction callbacks (recorded, so a test sees each answer);
* gateway: HELLO, heartbeats (ACK), IDENTIFY with its ``shard`` field ``[shard_id, shard_count]``, then READY
  carrying the same ``shard`` field and only the guilds of that shard (Discord's rule:
  ``(guild_id >> 22) % shard_count == shard_id``), each followed by its GUILD_CREATE;
* an INTERACTION_CREATE (a slash command) goes to the one shard session that holds its guild, as Discord routes
  it; `command()` sends one and waits for the bot's callback.

`simulator.harness` fakes the gateway inside one client (for voice); this one runs outside the bot processes.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import secrets
import socket
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

APP_ID = 900_000_000_000_000_001
OWNER_ID = 700_000_000_000_000_001


def shard_for(guild_id: int, shard_count: int) -> int:
    """Discord's sharding rule: which shard receives a guild's events."""
    return (guild_id >> 22) % shard_count


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), status=status, content_type="application/json")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _user(user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
    return {"id": str(user_id), "username": name, "discriminator": "0", "global_name": name, "avatar": None, "bot": bot}


def _member(user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
    return {
        "user": _user(user_id, name, bot=bot),
        "roles": [],
        "joined_at": _dt.datetime.now(_dt.UTC).isoformat(),
        "deaf": False,
        "mute": False,
        "flags": 0,
        "nick": None,
    }


def guild_payload(guild_id: int, name: str) -> dict[str, Any]:
    """A GUILD_CREATE body: one text and one voice channel, the owner (a human) and the bot as members."""
    return {
        "id": str(guild_id),
        "name": name,
        "owner_id": str(OWNER_ID),
        "icon": None,
        "splash": None,
        "discovery_splash": None,
        "banner": None,
        "description": None,
        "features": [],
        "emojis": [],
        "stickers": [],
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "nsfw_level": 0,
        "premium_tier": 0,
        "preferred_locale": "en-US",
        "afk_channel_id": None,
        "afk_timeout": 300,
        "system_channel_id": None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "public_updates_channel_id": None,
        "roles": [
            {
                "id": str(guild_id),
                "name": "@everyone",
                "permissions": "0",
                "position": 0,
                "color": 0,
                "hoist": False,
                "managed": False,
                "mentionable": False,
                "flags": 0,
            }
        ],
        "channels": [
            {
                "id": str(guild_id + 1),
                "type": 0,
                "name": "general",
                "position": 0,
                "guild_id": str(guild_id),
                "permission_overwrites": [],
                "nsfw": False,
                "parent_id": None,
                "topic": None,
            },
            {
                "id": str(guild_id + 2),
                "type": 2,
                "name": "Voice",
                "position": 1,
                "guild_id": str(guild_id),
                "permission_overwrites": [],
                "bitrate": 64000,
                "user_limit": 0,
                "rtc_region": None,
                "nsfw": False,
                "parent_id": None,
            },
        ],
        "threads": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
        "members": [_member(APP_ID, "chorus", bot=True), _member(OWNER_ID, "Owner")],
        "voice_states": [],
        "presences": [],
        "member_count": 2,
        "large": False,
        "unavailable": False,
        "joined_at": _dt.datetime.now(_dt.UTC).isoformat(),
    }


@dataclass(eq=False)
class ShardSession:
    """One bot websocket that identified as `shard_id` of `shard_count`."""

    ws: web.WebSocketResponse
    shard_id: int
    shard_count: int
    guild_ids: list[int]
    seq: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        self.seq += 1
        await self.ws.send_str(json.dumps({"op": 0, "s": self.seq, "t": event, "d": data}))


class LoopbackDiscord:
    def __init__(self, guilds: dict[int, str], *, recommended_shards: int = 1, port: int | None = None) -> None:
        self.guilds = dict(guilds)
        self.recommended_shards = recommended_shards
        self.port = port or _free_port()
        self.identified: list[tuple[int, int] | None] = []  # each IDENTIFY's shard field, in order (None: unsharded)
        self.sessions: dict[int, ShardSession] = {}  # live sessions by shard id
        self.requests: list[str] = []
        self._callbacks: dict[str, asyncio.Future] = {}  # interaction id -> the bot's answer
        self._tokens: dict[str, str] = {}  # interaction token -> interaction id (follow-ups name the token)
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> "LoopbackDiscord":
        app = web.Application()
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest)
        app.router.add_get("/", self._gateway)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for session in list(self.sessions.values()):
            await session.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- REST ------------------------------------------------------------------------------------------
    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        self.requests.append(f"{request.method} {path}")
        if path == "/users/@me":
            return _json(_user(APP_ID, "chorus", bot=True))
        if path == "/oauth2/applications/@me":
            return _json(
                {
                    "id": str(APP_ID),
                    "name": "chorus",
                    "icon": None,
                    "description": "",
                    "bot_public": True,
                    "bot_require_code_grant": False,
                    "verify_key": "00",
                    "flags": 0,
                    "owner": _user(OWNER_ID, "Owner"),
                }
            )
        if path == "/gateway/bot":
            return _json(
                {
                    "url": self.base.replace("http://", "ws://"),
                    "shards": self.recommended_shards,
                    "session_start_limit": {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1},
                }
            )
        if path.endswith("/commands") and request.method == "PUT":
            return _json([])
        if path.startswith("/interactions/") and path.endswith("/callback"):
            interaction_id = path.split("/")[2]
            body = await request.json()
            future = self._callbacks.get(interaction_id)
            if future is not None and not future.done() and body.get("type") != 5:
                future.set_result(body)  # a deferred answer (type 5) comes later, as a follow-up (below)
            flags = int((body.get("data") or {}).get("flags") or 0)
            return _json(
                {
                    "interaction": {
                        "id": interaction_id,
                        "type": 2,
                        "response_message_loading": body.get("type") == 5,
                        "response_message_ephemeral": bool(flags & 64),
                    },
                    "resource": {"type": body.get("type", 4)},
                }
            )
        if path.startswith(f"/webhooks/{APP_ID}/") and request.method in ("POST", "PATCH"):
            return await self._follow_up(path.split("/")[3], await request.json())
        return _json({"message": "404: Not Found", "code": 0}, status=404)

    async def _follow_up(self, token: str, body: dict[str, Any]) -> web.Response:
        """A deferred interaction's answer (`followup.send` or an edit of the original): it resolves the
        command as an immediate answer would, with the message in `data`."""
        interaction_id = self._tokens.get(token, "")
        future = self._callbacks.get(interaction_id)
        if future is not None and not future.done():
            future.set_result({"type": 4, "data": body, "deferred": True})
        message = {
            "id": str(secrets.randbits(60)),
            "channel_id": "0",
            "content": body.get("content", ""),
            "author": _user(APP_ID, "chorus"),
            "timestamp": "2026-01-01T00:00:00+00:00",
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": int(body.get("flags") or 0),
        }
        return _json(message)

    # -- gateway ---------------------------------------------------------------------------------------
    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None}))
        session: ShardSession | None = None
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                op = data.get("op")
                if op == 1:  # heartbeat
                    await ws.send_str(json.dumps({"op": 11, "d": None, "s": None, "t": None}))
                elif op == 2:  # IDENTIFY
                    session = await self._identify(ws, data.get("d") or {})
        finally:
            if session is not None and self.sessions.get(session.shard_id) is session:
                del self.sessions[session.shard_id]
                self._changed.set()
        return ws

    async def _identify(self, ws: web.WebSocketResponse, d: dict[str, Any]) -> ShardSession:
        shard = d.get("shard")
        self.identified.append((int(shard[0]), int(shard[1])) if shard else None)
        shard_id, shard_count = (int(shard[0]), int(shard[1])) if shard else (0, 1)
        if not 0 <= shard_id < shard_count:
            await ws.close(code=4010)  # Discord: invalid shard
            raise ConnectionError(f"invalid shard {shard}")
        guild_ids = sorted(g for g in self.guilds if shard_for(g, shard_count) == shard_id)
        session = ShardSession(ws, shard_id, shard_count, guild_ids)
        await session.dispatch(
            "READY",
            {
                "v": 10,
                "user": _user(APP_ID, "chorus", bot=True),
                "session_id": secrets.token_hex(16),
                "resume_gateway_url": self.base.replace("http://", "ws://"),
                "shard": [shard_id, shard_count],
                "guilds": [{"id": str(g), "unavailable": True} for g in guild_ids],
                "application": {"id": str(APP_ID), "flags": 0},
                "private_channels": [],
                "relationships": [],
            },
        )
        for guild_id in guild_ids:
            await session.dispatch("GUILD_CREATE", guild_payload(guild_id, self.guilds[guild_id]))
        self.sessions[shard_id] = session
        session.ready.set()
        self._changed.set()
        return session

    async def wait_for_shards(self, shard_ids: set[int], timeout: float) -> None:
        """Until exactly these shards have live sessions."""

        async def until() -> None:
            while set(self.sessions) != shard_ids:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), timeout)

    # -- interactions ----------------------------------------------------------------------------------
    async def command(
        self,
        guild_id: int,
        name: str,
        sub: str | None = None,
        options: dict[str, str] | None = None,
        *,
        timeout: float = 30.0,
    ) -> tuple[int, dict[str, Any]]:
        """Send a slash command in `guild_id` down the shard that holds the guild; returns (that shard's id,
        the bot's interaction callback body)."""
        holders = [s for s in self.sessions.values() if guild_id in s.guild_ids]
        if not holders:
            raise LookupError(f"no connected shard holds guild {guild_id}")
        session = holders[0]
        opts = [{"type": 3, "name": k, "value": v} for k, v in (options or {}).items()]
        data: dict[str, Any] = {"id": str(secrets.randbits(60)), "name": name, "type": 1}
        data["options"] = [{"type": 1, "name": sub, "options": opts}] if sub else opts
        interaction_id = str(secrets.randbits(62))
        member = _member(OWNER_ID, "Owner")
        member["permissions"] = str((1 << 41) - 1)
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._callbacks[interaction_id] = future
        token = secrets.token_hex(16)
        self._tokens[token] = interaction_id
        await session.dispatch(
            "INTERACTION_CREATE",
            {
                "id": interaction_id,
                "application_id": str(APP_ID),
                "type": 2,
                "data": data,
                "guild_id": str(guild_id),
                "channel_id": str(guild_id + 1),
                "channel": {
                    "id": str(guild_id + 1),
                    "type": 0,
                    "name": "general",
                    "guild_id": str(guild_id),
                    "position": 0,
                    "permission_overwrites": [],
                    "nsfw": False,
                    "parent_id": None,
                },
                "member": member,
                "token": token,
                "version": 1,
                "locale": "en-US",
                "guild_locale": "en-US",
                "app_permissions": str((1 << 41) - 1),
                "entitlements": [],
                "authorizing_integration_owners": {"0": str(guild_id)},
                "context": 0,
                "attachment_size_limit": 10_485_760,
            },
        )
        try:
            return session.shard_id, await asyncio.wait_for(future, timeout)
        finally:
            self._callbacks.pop(interaction_id, None)
            self._tokens.pop(token, None)
