"""Discord's REST API and main gateway, as far as logging in goes, on loopback (the boundary for start-up tests).

discord.py's own HTTP client and gateway code talk to it: `point_discord_py_at(api)` aims ``Route.BASE`` and the
default gateway URL there. It answers ``/users/@me`` (or 401 for a rejected token), the application, command
sync (or 403 Missing Access) and, on the gateway, HELLO then a close code after IDENTIFY.
"""

from __future__ import annotations

import json
import socket

import discord
import yarl
from aiohttp import web
from discord.gateway import DiscordWebSocket

APP_ID = "900000000000000001"


def _json(data, status: int = 200) -> web.Response:
    """JSON as Discord sends it: discord.py parses a body only when the content type is exactly this."""
    return web.Response(body=json.dumps(data).encode(), status=status, content_type="application/json")


def free_port() -> int:
    """A loopback TCP port nobody listens on (right now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeDiscordApi:
    def __init__(
        self, *, port: int | None = None, token_ok: bool = True, sync_status: int = 200, gateway_close: int = 4014
    ) -> None:
        self.port = port or free_port()
        self.token_ok = token_ok
        self.sync_status = sync_status
        self.gateway_close = gateway_close
        self.requests: list[str] = []
        self._runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> "FakeDiscordApi":
        app = web.Application()
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest)
        app.router.add_get("/", self._gateway)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        self.requests.append(f"{request.method} {path}")
        if not self.token_ok:
            return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        if path == "/users/@me":
            return _json(
                {
                    "id": APP_ID,
                    "username": "chorus",
                    "discriminator": "0",
                    "avatar": None,
                    "bot": True,
                    "global_name": None,
                }
            )
        if path == "/oauth2/applications/@me":
            return _json(
                {
                    "id": APP_ID,
                    "name": "chorus",
                    "icon": None,
                    "description": "",
                    "bot_public": True,
                    "bot_require_code_grant": False,
                    "verify_key": "00",
                    "flags": 0,
                    "owner": {"id": "1", "username": "o", "discriminator": "0", "avatar": None},
                }
            )
        if path.endswith("/commands") and request.method == "PUT":
            if self.sync_status == 403:
                return _json({"message": "Missing Access", "code": 50001}, status=403)
            return _json([])
        return _json({"message": "404: Not Found", "code": 0}, status=404)

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        self.requests.append("GATEWAY")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 45000}, "s": None, "t": None}))
        async for msg in ws:
            data = json.loads(msg.data)
            if data.get("op") == 2:  # IDENTIFY
                self.requests.append("IDENTIFY")
                await ws.close(code=self.gateway_close)
                break
        return ws


def point_discord_py_at(monkeypatch, base: str) -> None:
    """Aim discord.py's REST base URL and default gateway at ``base`` (http://host:port)."""
    monkeypatch.setattr(discord.http.Route, "BASE", f"{base}/api/v10")
    monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(base.replace("http://", "ws://") + "/"))
