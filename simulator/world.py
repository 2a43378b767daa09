"""The world outside the bot, in a process of its own: one loopback voice server per guild, and its members.

A benchmark measures one bot process (its CPU, memory, threads, tasks, file descriptors). The simulated
members encode Opus, run DAVE and decode the bot's voice for every member: work that belongs to Discord and
to the people in the call, not to the bot. So `benchmarks.load_bench` and `benchmarks.soak` run it here,
`python -m simulator.world`, driven by `simulator.world_client.World` over stdin/stdout:

* one JSON object per line each way; a command ``{"id": n, "cmd": ..., ...}`` is answered by
  ``{"id": n, "ok": true, "result": ...}`` or ``{"id": n, "ok": false, "error": "..."}``; commands run
  concurrently (members of different guilds speak at once);
* events, unasked: ``{"event": "presence", "guild_id", "user_id", "name", "present"}`` when a member joins or
  leaves (the bot's fake main gateway turns them into VOICE_STATE_UPDATEs), and ``{"event": "voiced",
  "guild_id", "t": [...]}``: arrival times of the bot's voiced packets at the guild's members (batched, 50 ms);
* logs go to stderr.

Times are `time.monotonic()`, the same clock in both processes (CLOCK_MONOTONIC on Linux).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import resource
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from runtime.settings import load_settings
from simulator.member import SimMember
from simulator.server import LoopbackVoiceServer
from simulator.voices import CastMember, MemberVoice, SpokenLine, synthesize_line, voiced_frames

log = logging.getLogger("simulator.world")

VOICED_FLUSH_S = 0.05
HEARD_SECONDS = 5.0  # members keep this much of the bot's decoded audio (the world only needs arrival times)
SERVER_METHODS = frozenset({"disconnect_client", "block_udp", "wait_dave_settled", "transition_dave"})


@dataclass
class _Guild:
    server: LoopbackVoiceServer
    cast: dict[str, CastMember]
    voiced: list[float] = field(default_factory=list)  # not yet sent to the bot side


class WorldProcess:
    """The child side: servers, members, and the command loop."""

    def __init__(self) -> None:
        self.guilds: dict[int, _Guild] = {}
        self.settings: Any = None
        self._lines: dict[tuple[Any, str], SpokenLine] = {}
        self._out = sys.stdout
        self._tasks: set[asyncio.Task] = set()

    # -- output ----------------------------------------------------------------------------
    def emit(self, message: dict[str, Any]) -> None:
        self._out.write(json.dumps(message) + "\n")
        self._out.flush()

    async def _flush_voiced(self) -> None:
        while True:
            await asyncio.sleep(VOICED_FLUSH_S)
            for guild_id, guild in self.guilds.items():
                if guild.voiced:
                    batch, guild.voiced = guild.voiced, []
                    self.emit({"event": "voiced", "guild_id": guild_id, "t": batch})

    # -- members ---------------------------------------------------------------------------
    def _listen(self, guild_id: int, member: SimMember) -> None:
        """Record the arrival of every voiced packet of the bot at this member (its own first voiced packet
        after a gap per member would do; all of them keep the lookup simple)."""
        member.MAX_HEARD_SECONDS = HEARD_SECONDS
        original = member._on_bot_frame
        guild = self.guilds[guild_id]

        def tap(from_user_id: int, ssrc: int, frame: bytes, arrival: float) -> None:
            heard = member._heard.get(from_user_id)
            before = heard.last_voiced if heard is not None else None
            original(from_user_id, ssrc, frame, arrival)
            heard = member._heard.get(from_user_id)
            if heard is not None and heard.last_voiced == arrival and heard.last_voiced != before:
                guild.voiced.append(arrival)

        member._on_bot_frame = tap  # type: ignore[method-assign]

    def _presence(self, guild_id: int, member: SimMember, present: bool) -> None:
        self.emit(
            {
                "event": "presence",
                "guild_id": guild_id,
                "user_id": member.user_id,
                "name": member.name,
                "present": present,
            }
        )

    async def _add(self, guild_id: int, cast: CastMember) -> SimMember:
        guild = self.guilds[guild_id]
        member = guild.server.members.get(cast.user_id)
        if member is None:
            member = await guild.server.add_member(cast.user_id, cast.name)
            self._listen(guild_id, member)
        elif not member.present:
            await member.rejoin()
        return member

    def _member(self, guild_id: int, name: str) -> SimMember:
        guild = self.guilds[guild_id]
        cast = guild.cast[name]
        return guild.server.members[cast.user_id]

    def _line(self, guild_id: int, name: str, text: str) -> SpokenLine:
        cast = self.guilds[guild_id].cast[name]
        key = (cast.voice, text)
        line = self._lines.get(key)
        if line is None:
            line = self._lines[key] = synthesize_line(self.settings, cast.voice, text)
        return line

    # -- commands --------------------------------------------------------------------------
    async def cmd_setup(self, env: dict[str, str], guilds: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.settings = load_settings(env=env, env_file=None)
        out = []
        for spec in guilds:
            server = await LoopbackVoiceServer(
                guild_id=spec["guild_id"], channel_id=spec["channel_id"], member_dave=spec.get("member_dave", "davey")
            ).start()
            cast = {m["name"]: CastMember(m["user_id"], m["name"], MemberVoice(**m["voice"])) for m in spec["members"]}
            guild_id = spec["guild_id"]
            self.guilds[guild_id] = _Guild(server, cast)
            server.add_presence_listener(functools.partial(self._presence, guild_id))
            for m in spec["members"]:
                if m.get("present", True):
                    await self._add(guild_id, cast[m["name"]])
            out.append(
                {
                    "guild_id": guild_id,
                    "channel_id": server.channel_id,
                    "token": server.token,
                    "endpoint": server.endpoint,
                    "members": [
                        {
                            "user_id": c.user_id,
                            "name": c.name,
                            "present": c.user_id in server.members and server.members[c.user_id].present,
                        }
                        for c in cast.values()
                    ],
                }
            )
        return out

    async def cmd_synthesize(self, lines: list[list[Any]]) -> list[dict[str, float]]:
        out = []
        for guild_id, name, text in lines:
            line = await asyncio.to_thread(self._line, guild_id, name, text)
            out.append({"seconds": line.seconds, "voiced_s": line.voiced_s})
        return out

    async def cmd_say(self, guild_id: int, name: str, text: str, at: float | None = None) -> dict[str, Any]:
        line = await asyncio.to_thread(self._line, guild_id, name, text)
        member = self._member(guild_id, name)
        voiced = voiced_frames(line.pcm)
        first = int(voiced.argmax()) if voiced.any() else 0
        report = await member.speak(line.pcm, at=at if at is not None else time.monotonic() + 0.02)
        frame_s = 0.020
        return {
            "start": report.start,
            "onset": report.start + first * frame_s,
            "true_end": report.start + (line.last_voiced_frame + 1) * frame_s,
            "sent": report.sent,
            "frames": report.frames,
            "speech_s": line.voiced_s,
        }

    async def cmd_join(self, guild_id: int, name: str) -> dict[str, Any]:
        member = await self._add(guild_id, self.guilds[guild_id].cast[name])
        return {"user_id": member.user_id, "ssrc": member.ssrc}

    async def cmd_leave(self, guild_id: int, name: str) -> None:
        await self._member(guild_id, name).leave()

    async def cmd_server(
        self, guild_id: int, method: str, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None
    ) -> Any:
        if method not in SERVER_METHODS:
            raise ValueError(f"server method {method!r} is not one the world exposes")
        result = getattr(self.guilds[guild_id].server, method)(*(args or ()), **(kwargs or {}))
        if asyncio.iscoroutine(result):
            result = await result
        return result

    async def cmd_server_state(self, guild_id: int) -> dict[str, Any]:
        server = self.guilds[guild_id].server
        bot = server.bot
        return {
            "connections": server.connections,
            "resumes": server.resumes,
            "close_codes_sent": list(server.close_codes_sent),
            "dave_settled": server.dave.settled(),
            "bot_connected": bot is not None and bot.ws is not None and not bot.ws.closed and bot.mode is not None,
            "bot_ssrc": bot.ssrc if bot else None,
            "packets_from_bot": bot.packets_from_bot if bot else 0,
            "errors": list(server.dave.errors),
        }

    async def cmd_usage(self) -> dict[str, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # a TTS or codec helper process, if any
        cpu = usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime
        return {"cpu_s": cpu, "max_rss_mb": usage.ru_maxrss / 1024.0}

    # -- loop -------------------------------------------------------------------------------
    async def _handle(self, message: dict[str, Any]) -> None:
        ident = message.pop("id", None)
        cmd = message.pop("cmd", "")
        try:
            handler = getattr(self, f"cmd_{cmd}", None)
            if handler is None:
                raise ValueError(f"unknown world command {cmd!r}")
            result = await handler(**message)
            self.emit({"id": ident, "ok": True, "result": result})
        except Exception as exc:
            log.warning("world command %s failed: %s", cmd, traceback.format_exc())
            self.emit({"id": ident, "ok": False, "error": f"{type(exc).__name__}: {exc}"})

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 24)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        flusher = asyncio.create_task(self._flush_voiced(), name="voiced-flush")
        try:
            while True:
                raw = await reader.readline()
                if not raw:
                    break  # the bot side is gone
                message = json.loads(raw)
                if message.get("cmd") == "quit":
                    self.emit({"id": message.get("id"), "ok": True, "result": None})
                    break
                task = asyncio.create_task(self._handle(message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            flusher.cancel()
            for task in list(self._tasks):
                task.cancel()
            for guild in self.guilds.values():
                await guild.server.close()


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("CHORUS_WORLD_LOG", "WARNING"),
        stream=sys.stderr,
        format="%(asctime)s world %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(WorldProcess().run())


if __name__ == "__main__":
    main()
