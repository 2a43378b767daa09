"""How long the bot could neither hear nor be heard around a network fault (a reconnect, a UDP outage).

    probe = ContinuityProbe(scenario, "Alice")
    await probe.start()           # Alice streams quiet room noise; the bot plays a steady tone through its player
    t0 = time.monotonic(); await scenario.server.disconnect_client(4006)
    outage = await probe.wait_back(t0)   # Outage(heard_s=..., spoken_s=...)
    await probe.stop()

Hearing: the arrival of Alice's frames at the session's listener (`ListenerTap`); speaking: the arrival of the
bot's voiced packets at Alice (`BotEars`). Around the fault each stream has one longest silence; the time from
the fault to its end is how long that direction was out (0 when it never stopped). The noise is far below the
VAD's threshold and the tone is no speech, so neither starts a turn. Used by the reconnect tests and
`benchmarks.reconnect_bench`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from simulator import audio_files

NOISE_AMPLITUDE = 0.002  # about -54 dBFS: audible to a decoder, silence to the VAD
TONE_AMPLITUDE = 0.3
CHUNK_S = 1.0
GAP_S = 0.08  # a silence this long (4 packets) is an outage; shorter ones are jitter


@dataclass(frozen=True)
class Outage:
    heard_s: float  # fault -> the member's audio reaches the listener again
    spoken_s: float  # fault -> the bot's voice reaches the member again

    @property
    def seconds(self) -> float:
        return max(self.heard_s, self.spoken_s)


def back_after(times: list[float], t0: float, now: float, *, gap_s: float = GAP_S) -> float | None:
    """Seconds from `t0` to the end of the longest silence (>= `gap_s`) in `times` that reaches past `t0`;
    0.0 when the stream never paused there; None while it is silent now (or nothing came after `t0`)."""
    later = [t for t in times if t > t0]
    if not later or now - later[-1] > gap_s:
        return None
    before = [t for t in times if t <= t0]
    points = ([before[-1]] if before else [t0]) + later
    gaps = np.diff(np.asarray(points))
    i = int(np.argmax(gaps))
    if gaps[i] < gap_s:
        return 0.0
    return max(0.0, points[i + 1] - t0)


class ContinuityProbe:
    def __init__(self, scenario: Any, member: str) -> None:
        self.sc = scenario
        self.member = member
        self._tasks: list[asyncio.Task] = []
        rng = np.random.default_rng(7)
        n = int(CHUNK_S * audio_files.DISCORD_RATE)
        self._noise = audio_files.to_int16((NOISE_AMPLITUDE * rng.standard_normal((n, 2))).astype(np.float32))
        t = np.arange(n) / audio_files.DISCORD_RATE
        self._tone = (TONE_AMPLITUDE * np.sin(2 * np.pi * 330.0 * t)).astype(np.float32)

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._talk(), name="probe-member"),
            asyncio.create_task(self._play(), name="probe-bot"),
        ]
        await self.sc.wait_for(lambda: self.heard_times() and self.spoken_times(), 20, "the probe streams")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        session = self.sc.session
        session.player.flush()
        session.output.stop_playing()

    async def _talk(self) -> None:
        member = self.sc.members[self.member]
        while True:
            with contextlib.suppress(RuntimeError):  # not in the channel for a moment
                await member.speak(self._noise)
                continue
            await asyncio.sleep(0.1)

    async def _play(self) -> None:
        session = self.sc.session
        while True:
            if session.player.queued_seconds < 2 * CHUNK_S:
                session.player.feed(self._tone, audio_files.DISCORD_RATE)
            session.output.ensure_playing()  # (re)starts discord.py's player when the connection is back
            await asyncio.sleep(0.1)

    def heard_times(self) -> list[float]:
        user_id = self.sc.cast[self.member].user_id
        return [fed for uid, _t, fed, _peak in list(self.sc.heard.frames) if uid == user_id]

    def spoken_times(self) -> list[float]:
        return list(self.sc.ears[self.member].voiced)

    def outage(self, t0: float) -> Outage | None:
        """The outage since `t0`, once both streams flow again (None while one is still silent)."""
        now = time.monotonic()
        heard = back_after(self.heard_times(), t0, now)
        spoken = back_after(self.spoken_times(), t0, now)
        if heard is None or spoken is None:
            return None
        return Outage(round(heard, 3), round(spoken, 3))

    async def wait_back(self, t0: float, timeout: float = 60.0, settle_s: float = 1.0) -> Outage:
        """Once both streams flow again (for `settle_s`): the outage. Raises AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            outage = self.outage(t0)
            if outage is not None and now - (t0 + outage.seconds) >= settle_s:
                return outage
            if now > deadline:
                raise AssertionError(
                    f"hearing and speaking not back {timeout:.0f} s after the fault "
                    f"(so far: {outage}); {self.sc.describe()}"
                )
            await asyncio.sleep(0.05)
