"""A real, connected `discord.VoiceClient` for a fake guild and voice channel, without Discord.

    async with LoopbackVoiceServer() as server:
        alice = await server.add_member(201, "Alice")
        async with connected_voice_client(server) as vc:     # discord.VoiceClient, DAVE handshake done
            vc.play(discord.PCMAudio(...))
            await alice.wait_for_audio(1.0)

Only the main gateway is fake; the voice connection is discord.py's own code talking the real protocol to
`LoopbackVoiceServer`. The seams into discord.py 2.7.1 (pinned), all private and all here:

1. ``client.ws`` = `LoopbackMainGateway`: ``Guild.change_voice_state`` calls
   ``client._connection._get_websocket(guild_id).voice_state(...)`` (opcode 4 on the real gateway); the fake answers
   like Discord, by feeding VOICE_STATE_UPDATE and VOICE_SERVER_UPDATE (endpoint = the loopback server) to
   ``client._connection.parsers`` (what the real gateway's dispatch calls). Leaving feeds VOICE_STATE_UPDATE with
   ``channel_id`` None, which completes discord.py's 10 s disconnect wait. READY (bot user + guild + voice channel)
   goes in the same way. Simulated members' joins/leaves become VOICE_STATE_UPDATEs too (so ``guild.get_member``
   knows their names).
2. ``client.http.ws_connect``: discord.py builds ``wss://{endpoint}/?v=8``; the loopback server speaks plain
   ``ws://``, so this one method is replaced by one that rewrites the scheme for the loopback endpoint only (and
   refuses anything else) and connects with discord.py's own websocket response class and arguments.
3. `voice_internals` reads the private attributes tests need (``_connection``, ``dave_session``, ``secret_key``,
   ``ssrc``, ``socket``, ``dave_protocol_version``); `tests/test_simulator_*.py` fails loudly if they move.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import logging
import functools
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord
from discord.gateway import DiscordClientWebSocketResponse

from .server import LoopbackVoiceServer

log = logging.getLogger(__name__)

DEFAULT_BOT_USER_ID = 600_000_000_000_000_001
PINNED_DISCORD_PY = "2.7.1"


def _user_payload(user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
    return {"id": str(user_id), "username": name, "discriminator": "0", "global_name": name, "avatar": None, "bot": bot}


def _member_payload(user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
    return {
        "user": _user_payload(user_id, name, bot=bot),
        "roles": [],
        "joined_at": _dt.datetime.now(_dt.UTC).isoformat(),
        "deaf": False,
        "mute": False,
        "flags": 0,
        "nick": None,
    }


class LoopbackMainGateway:
    """Stands where discord.py's main-gateway websocket (``client.ws``) stands; see the module docstring.

    One guild per voice server: ``servers`` may hold several (one bot process in many guilds), each a
    `LoopbackVoiceServer` or anything with its ``guild_id``, ``channel_id``, ``token``, ``endpoint`` and
    ``members`` (objects with ``user_id``, ``name``, ``present``), e.g. `simulator.world.RemoteServer`."""

    LEAVE_ANSWER_MAX_DELAY = 2.0  # seconds

    def __init__(
        self, client: discord.Client, server: LoopbackVoiceServer | Sequence[Any], *, bot_user_id: int, bot_name: str
    ):
        self.client = client
        self.servers: dict[int, Any] = {s.guild_id: s for s in ([server] if hasattr(server, "guild_id") else server)}
        self.server = next(iter(self.servers.values()))  # the first (the only one, in single-guild tests)
        self.bot_user_id = bot_user_id
        self.bot_name = bot_name
        self.session_id = secrets.token_hex(16)
        self.open = True
        self.voice_state_requests: list[dict[str, Any]] = []
        self._pending_leaves: dict[int, asyncio.Task] = {}

    # what Client.close() touches
    async def close(self, code: int = 1000) -> None:
        self.open = False

    def _dispatch(self, event: str, data: dict[str, Any]) -> None:
        self.client._connection.parsers[event](data)

    def feed_ready(self) -> None:
        guilds = [self._guild_payload(server) for server in self.servers.values()]
        self._dispatch(
            "READY",
            {
                "v": 10,
                "user": _user_payload(self.bot_user_id, self.bot_name, bot=True),
                "guilds": guilds,
                "session_id": secrets.token_hex(16),
                "resume_gateway_url": "ws://127.0.0.1:9",
                "shard": [self.client.shard_id or 0, self.client.shard_count or 1],  # as the client identified
                "application": {"id": str(self.bot_user_id), "flags": 0},
                "private_channels": [],
                "relationships": [],
            },
        )
        for server in self.servers.values():
            for member in server.members.values():
                if member.present:
                    self.member_presence(member, True, server=server)

    def _guild_payload(self, server: Any) -> dict[str, Any]:
        return {
            "id": str(server.guild_id),
            "name": "Loopback Guild",
            "owner_id": str(self.bot_user_id),
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
                    "id": str(server.guild_id),
                    "name": "@everyone",
                    "permissions": str(discord.Permissions.all().value),
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
                    "id": str(server.channel_id),
                    "type": 2,
                    "name": "Loopback Voice",
                    "position": 0,
                    "guild_id": str(server.guild_id),
                    "permission_overwrites": [],
                    "bitrate": 64000,
                    "user_limit": 0,
                    "rtc_region": None,
                    "nsfw": False,
                    "parent_id": None,
                }
            ],
            "threads": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "members": [_member_payload(self.bot_user_id, self.bot_name, bot=True)],
            "voice_states": [],
            "presences": [],
            "member_count": 1,
            "large": False,
            "unavailable": False,
            "joined_at": _dt.datetime.now(_dt.UTC).isoformat(),
        }

    def _voice_state(
        self,
        server: Any,
        user_id: int,
        channel_id: int | None,
        session_id: str,
        member: dict | None,
        self_mute: bool = False,
        self_deaf: bool = False,
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "guild_id": str(server.guild_id),
            "channel_id": None if channel_id is None else str(channel_id),
            "user_id": str(user_id),
            "session_id": session_id,
            "deaf": False,
            "mute": False,
            "self_deaf": self_deaf,
            "self_mute": self_mute,
            "self_video": False,
            "suppress": False,
            "request_to_speak_timestamp": None,
        }
        if member is not None:
            data["member"] = member
        return data

    def member_presence(self, member: Any, present: bool, *, server: Any = None) -> None:
        """A simulated member joined or left the voice channel: VOICE_STATE_UPDATE for it."""
        server = server or self.server
        self._dispatch(
            "VOICE_STATE_UPDATE",
            self._voice_state(
                server,
                member.user_id,
                server.channel_id if present else None,
                secrets.token_hex(8),
                _member_payload(member.user_id, member.name),
            ),
        )

    def presence_listener(self, server: Any) -> Callable[[Any, bool], None]:
        """What `server.add_presence_listener` takes: its members' joins and leaves, in its guild."""
        return functools.partial(self._presence_of, server)

    def _presence_of(self, server: Any, member: Any, present: bool) -> None:
        self.member_presence(member, present, server=server)

    # what Guild.change_voice_state calls (opcode 4 on the real gateway)
    async def voice_state(
        self, guild_id: int, channel_id: int | None, self_mute: bool = False, self_deaf: bool = False
    ) -> None:
        self.voice_state_requests.append({"guild_id": guild_id, "channel_id": channel_id})
        server = self.servers.get(guild_id)
        if server is None or channel_id not in (None, server.channel_id):
            log.warning("voice state request for an unknown guild/channel %s/%s", guild_id, channel_id)
            return
        loop = asyncio.get_running_loop()
        if channel_id is None:
            # Discord answers a leave after the voice websocket has gone (network latency). Answering at once
            # races discord.py's own close handling (its poller would disconnect a second time and unregister
            # the voice client, leaving the first disconnect waiting 30 s). So: answer once the voice
            # websocket poller has finished, or at once if a new join is requested first.
            self._pending_leaves[guild_id] = loop.create_task(
                self._answer_leave(server), name=f"loopback-gateway-leave-{guild_id}"
            )
            return
        self._flush_leave(server)
        loop.call_soon(self._answer_voice_state, server, channel_id, self_mute, self_deaf)

    def _flush_leave(self, server: Any) -> None:
        pending = self._pending_leaves.pop(server.guild_id, None)
        if pending is not None and not pending.done():
            pending.cancel()
            self._answer_voice_state(server, None, False, False)

    async def _answer_leave(self, server: Any) -> None:
        vc = self.client._connection._get_voice_client(server.guild_id)
        runner = getattr(getattr(vc, "_connection", None), "_runner", None)
        if runner is not None and not runner.done() and runner is not asyncio.current_task():
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(runner), self.LEAVE_ANSWER_MAX_DELAY)
        if self._pending_leaves.get(server.guild_id) is asyncio.current_task():
            del self._pending_leaves[server.guild_id]
        self._answer_voice_state(server, None, False, False)

    def _answer_voice_state(self, server: Any, channel_id: int | None, self_mute: bool, self_deaf: bool) -> None:
        state = self._voice_state(
            server,
            self.bot_user_id,
            channel_id,
            self.session_id,
            _member_payload(self.bot_user_id, self.bot_name, bot=True),
            self_mute,
            self_deaf,
        )
        self._dispatch("VOICE_STATE_UPDATE", state)
        if channel_id is not None:
            self._dispatch(
                "VOICE_SERVER_UPDATE",
                {"token": server.token, "guild_id": str(server.guild_id), "endpoint": server.endpoint},
            )

    async def settle(self) -> None:
        """Deliver the leave answers still waiting for discord.py's poller (before the client closes)."""
        for pending in list(self._pending_leaves.values()):
            if not pending.done():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pending


def install_plain_ws_seam(
    client: discord.Client, server: LoopbackVoiceServer | Sequence[Any], session: aiohttp.ClientSession
) -> None:
    """Seam 2: let discord.py's ``wss://<loopback endpoint>`` voice URLs reach the plain-ws loopback servers."""
    servers = [server] if hasattr(server, "endpoint") else list(server)
    secure_prefixes = tuple(f"wss://{s.endpoint}/" for s in servers)

    async def ws_connect(url: str, *, compress: int = 0) -> aiohttp.ClientWebSocketResponse:
        if not url.startswith(secure_prefixes):
            raise RuntimeError(f"loopback harness refuses to connect to {url!r}")
        return await session.ws_connect(
            "ws://" + url[len("wss://") :],
            max_msg_size=0,
            autoclose=False,
            compress=compress,
            timeout=aiohttp.ClientWSTimeout(ws_close=30.0),
            headers={"User-Agent": client.http.user_agent},
        )

    client.http.ws_connect = ws_connect  # type: ignore[method-assign]


@dataclass(frozen=True)
class VoiceInternals:
    """Seam 3: the private voice-connection state tests and the receive path read (discord.py 2.7.1)."""

    vc: discord.VoiceClient

    @property
    def connection(self) -> Any:
        return self.vc._connection

    @property
    def dave_session(self) -> Any:
        return self.vc._connection.dave_session

    @property
    def dave_protocol_version(self) -> int:
        return self.vc._connection.dave_protocol_version

    @property
    def can_encrypt(self) -> bool:
        return self.vc._connection.can_encrypt

    @property
    def secret_key(self) -> bytes:
        return bytes(self.vc._connection.secret_key)

    @property
    def ssrc(self) -> int:
        return self.vc._connection.ssrc

    @property
    def socket(self) -> Any:
        return self.vc._connection.socket


def voice_internals(vc: discord.VoiceClient) -> VoiceInternals:
    if discord.__version__ != PINNED_DISCORD_PY:
        raise RuntimeError(
            f"simulator seams are written for discord.py {PINNED_DISCORD_PY}, found {discord.__version__}"
        )
    return VoiceInternals(vc)


@contextlib.asynccontextmanager
async def connected_client(
    server: LoopbackVoiceServer | Sequence[Any],
    *,
    bot_user_id: int = DEFAULT_BOT_USER_ID,
    bot_name: str = "chorus",
    client: discord.Client | None = None,
) -> AsyncIterator[discord.Client]:
    """A `discord.Client` (or your subclass instance, not logged in) wired to the fake main gateway: its guild
    and voice channel exist (``client.get_channel(server.channel_id)``); ``channel.connect()`` reaches the server.
    ``server`` may be several servers: one guild each, all served by this one client."""
    servers: list[Any] = [server] if hasattr(server, "guild_id") else list(server)
    if client is None:
        intents = discord.Intents.none()
        intents.guilds = True
        intents.voice_states = True
        client = discord.Client(intents=intents, guild_ready_timeout=0.0)
    async with aiohttp.ClientSession(ws_response_class=DiscordClientWebSocketResponse) as session:
        async with client:
            gateway = LoopbackMainGateway(client, servers, bot_user_id=bot_user_id, bot_name=bot_name)
            client.ws = gateway  # type: ignore[assignment]  # seam 1
            install_plain_ws_seam(client, servers, session)  # seam 2
            gateway.feed_ready()
            listeners = [(s, gateway.presence_listener(s)) for s in servers]
            for s, listener in listeners:
                s.add_presence_listener(listener)
            try:
                yield client
            finally:
                for s, listener in listeners:
                    s.remove_presence_listener(listener)
                for vc in list(client.voice_clients):
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(vc.disconnect(force=True), 15)
                await gateway.settle()


@contextlib.asynccontextmanager
async def connected_voice_client(
    server: LoopbackVoiceServer,
    *,
    dave: bool | None = None,
    bot_user_id: int = DEFAULT_BOT_USER_ID,
    bot_name: str = "chorus",
    timeout: float = 30.0,
    wait_dave: bool = True,
    client: discord.Client | None = None,
) -> AsyncIterator[discord.VoiceClient]:
    """Connect a real `discord.VoiceClient` to ``server``; yields it once connected and (``wait_dave``) once the
    DAVE group holds every present member. ``dave``: set the server's DAVE version (True 1, False 0, None as is)."""
    if dave is not None:
        server.dave_protocol_version = 1 if dave else 0
    async with connected_client(server, bot_user_id=bot_user_id, bot_name=bot_name, client=client) as cl:
        channel = cl.get_channel(server.channel_id)
        assert isinstance(channel, discord.VoiceChannel), channel
        vc: discord.VoiceClient = await channel.connect(timeout=timeout, reconnect=True)
        await server.wait_connected(timeout)
        if wait_dave:
            await server.wait_dave_settled(timeout)
        yield vc
