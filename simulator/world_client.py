"""The bot process's side of `simulator.world`: start the world, drive its members, see its servers.

    async with World.start(env, guilds) as world:           # one loopback voice server per guild, in a child
        async with connected_client(world.servers, client=bot):   # the bot's fake main gateway, all guilds
            said = await world.say(guild_id, "Alice", "Juniper, what should I cook?")
            world.ears[guild_id].first_voiced_after(said["true_end"])   # the bot's voice at a member

`RemoteServer` stands in for a `LoopbackVoiceServer` where the harness needs one (guild, channel, token,
endpoint, members and their presence); `RemoteEars` holds the arrival times of the bot's voiced packets at
the guild's members, as the world reports them.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import json
import logging
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Sequence

from runtime import executors
from simulator.voices import CastMember

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 300.0
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RemoteMember:
    user_id: int
    name: str
    present: bool


class RemoteServer:
    """One guild's voice server in the world process, as the bot's fake main gateway needs it."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.guild_id: int = info["guild_id"]
        self.channel_id: int = info["channel_id"]
        self.token: str = info["token"]
        self.endpoint: str = info["endpoint"]
        self.members: dict[int, RemoteMember] = {
            m["user_id"]: RemoteMember(m["user_id"], m["name"], m["present"]) for m in info["members"]
        }
        self._listeners: list[Callable[[RemoteMember, bool], None]] = []

    def add_presence_listener(self, listener: Callable[[RemoteMember, bool], None]) -> None:
        self._listeners.append(listener)

    def remove_presence_listener(self, listener: Callable[[RemoteMember, bool], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _presence(self, user_id: int, name: str, present: bool) -> None:
        member = self.members.setdefault(user_id, RemoteMember(user_id, name, present))
        member.present = present
        for listener in list(self._listeners):
            try:
                listener(member, present)
            except Exception:
                log.exception("presence listener failed")


class RemoteEars:
    """Arrival times of the bot's voiced packets at a guild's members (sorted; as the world reports them), the
    last `keep_s` seconds of them (a soak runs for an hour)."""

    def __init__(self, keep_s: float = 600.0) -> None:
        self.voiced: list[float] = []
        self.keep_s = keep_s

    def add(self, times: Sequence[float]) -> None:
        for t in times:
            if not self.voiced or t >= self.voiced[-1]:
                self.voiced.append(t)
            else:
                bisect.insort(self.voiced, t)
        if self.voiced and self.voiced[-1] - self.voiced[0] > 1.5 * self.keep_s:
            del self.voiced[: bisect.bisect_left(self.voiced, self.voiced[-1] - self.keep_s)]

    def first_voiced_after(self, t: float, within_s: float = 5.0) -> float | None:
        i = bisect.bisect_left(self.voiced, t - 0.005)
        if i < len(self.voiced) and self.voiced[i] - t < within_s:
            return self.voiced[i]
        return None

    def voiced_between(self, start: float, end: float = float("inf")) -> list[float]:
        return self.voiced[bisect.bisect_left(self.voiced, start) : bisect.bisect_left(self.voiced, end)]


def cast_spec(cast: CastMember, *, present: bool = True) -> dict[str, Any]:
    return {"user_id": cast.user_id, "name": cast.name, "voice": asdict(cast.voice), "present": present}


class World:
    """The running world process (see the module docstring)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self.servers: list[RemoteServer] = []
        self.by_guild: dict[int, RemoteServer] = {}
        self.ears: dict[int, RemoteEars] = {}
        self._reader: asyncio.Task | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls, env: dict[str, str], guilds: Sequence[dict[str, Any]], *, log_path: Path | None = None
    ) -> AsyncIterator["World"]:
        """Start `python -m simulator.world` with ``guilds`` ({guild_id, channel_id, members: [cast_spec]})."""
        stderr = await executors.run("io", log_path.open, "ab") if log_path is not None else None
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "simulator.world",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            cwd=str(PROJECT_ROOT),
            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
            limit=1 << 24,
        )
        world = cls(proc)
        world._reader = asyncio.create_task(world._read(), name="world-reader")
        try:
            for info in await world.call("setup", env=env, guilds=list(guilds)):
                server = RemoteServer(info)
                world.servers.append(server)
                world.by_guild[server.guild_id] = server
                world.ears.setdefault(server.guild_id, RemoteEars())
            yield world
        finally:
            await world._stop()
            if stderr is not None:
                stderr.close()

    async def _stop(self) -> None:
        if self._proc.returncode is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.call("quit"), 15)
            try:
                await asyncio.wait_for(self._proc.wait(), 15)
            except asyncio.TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self) -> None:
        assert self._proc.stdout is not None
        try:
            while True:
                raw = await self._proc.stdout.readline()
                if not raw:
                    break
                message = json.loads(raw)
                if "event" in message:
                    self._event(message)
                    continue
                future = self._pending.pop(message.get("id"), None)
                if future is None or future.done():
                    continue
                if message.get("ok"):
                    future.set_result(message.get("result"))
                else:
                    future.set_exception(RuntimeError(f"world: {message.get('error')}"))
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(RuntimeError("the world process exited"))
            self._pending.clear()

    def _event(self, message: dict[str, Any]) -> None:
        guild_id = int(message.get("guild_id", 0))
        if message["event"] == "voiced":
            self.ears.setdefault(guild_id, RemoteEars()).add(message["t"])
        elif message["event"] == "presence":
            server = self.by_guild.get(guild_id)
            if server is not None:
                server._presence(message["user_id"], message["name"], message["present"])

    async def call(self, cmd: str, *, timeout: float = CALL_TIMEOUT_S, **args: Any) -> Any:
        if self._proc.returncode is not None or self._proc.stdin is None:
            raise RuntimeError("the world process is not running")
        ident = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        self._proc.stdin.write((json.dumps({"id": ident, "cmd": cmd, **args}) + "\n").encode())
        await self._proc.stdin.drain()
        return await asyncio.wait_for(future, timeout)

    # -- conveniences -------------------------------------------------------------------------
    async def say(self, guild_id: int, name: str, text: str, *, at: float | None = None) -> dict[str, Any]:
        """``name`` says ``text`` in real time; returns when sent: start, onset, true_end (monotonic), packets."""
        return await self.call("say", guild_id=guild_id, name=name, text=text, at=at)

    async def synthesize(self, lines: Sequence[tuple[int, str, str]]) -> list[dict[str, float]]:
        return await self.call("synthesize", lines=[list(line) for line in lines])

    async def join(self, guild_id: int, name: str) -> dict[str, Any]:
        return await self.call("join", guild_id=guild_id, name=name)

    async def leave(self, guild_id: int, name: str) -> None:
        await self.call("leave", guild_id=guild_id, name=name)

    async def server(self, guild_id: int, method: str, *args: Any, **kwargs: Any) -> Any:
        return await self.call("server", guild_id=guild_id, method=method, args=list(args), kwargs=kwargs)

    async def server_state(self, guild_id: int) -> dict[str, Any]:
        return await self.call("server_state", guild_id=guild_id)

    async def usage(self) -> dict[str, float]:
        return await self.call("usage")
