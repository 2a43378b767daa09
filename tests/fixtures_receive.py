"""Helpers for receive tests: the bare receive rig (`simulator.receive_rig`) with a started `VoiceReceiver`,
a frame collector and audio checks."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from audio.receive import VoiceReceiver
from audio.receive_stats import ReceiveStats
from simulator.receive_rig import (
    BOT_ID,
    CHANNEL_ID,
    FRAME,
    Connection,
    Member,
    best_alignment,
    make_dave_group,
    source_16k,
    speechlike,
    to_stereo_s16,
)

__all__ = [
    "BOT_ID",
    "CHANNEL_ID",
    "FRAME",
    "Collector",
    "Connection",
    "Member",
    "Rig",
    "assert_matches",
    "best_alignment",
    "make_dave_group",
    "source_16k",
    "speechlike",
    "to_stereo_s16",
    "wait_for",
]


async def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return predicate()


class Collector:
    """on_frame / on_member_left sink that records per-user audio (must be called on the loop thread)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.frames: dict[int, list] = {}
        self.left: list[int] = []
        self.wrong_thread = 0

    def on_frame(self, frame) -> None:
        try:
            if asyncio.get_running_loop() is not self.loop:
                self.wrong_thread += 1
        except RuntimeError:
            self.wrong_thread += 1
        self.frames.setdefault(frame.user_id, []).append(frame)

    def on_member_left(self, user_id: int) -> None:
        self.left.append(user_id)

    def count(self, user_id: int) -> int:
        return len(self.frames.get(user_id, []))

    def audio(self, user_id: int) -> np.ndarray:
        fr = self.frames.get(user_id, [])
        return np.concatenate([f.pcm for f in fr]) if fr else np.zeros(0, np.float32)


class Rig:
    def __init__(self, loop, *, dave: bool = True) -> None:
        self.conn = Connection(loop, dave=dave)
        self.col = Collector(loop)
        self.rx = VoiceReceiver(self.conn.vc, on_frame=self.col.on_frame, on_member_left=self.col.on_member_left)
        self.rx.start()

    def stats(self) -> dict[str, int]:
        return self.rx.stats.as_dict()

    async def settled(self, timeout: float = 5.0) -> dict[str, int]:
        await wait_for(lambda: self.rx.stats["pending"] == 0 and self.rx.stats["received"] > 0, timeout)
        await asyncio.sleep(0.05)  # let call_soon_threadsafe deliveries run
        d = self.stats()
        assert ReceiveStats.balance(d) == 0, d
        return d

    def close(self) -> None:
        self.rx.stop()
        assert self.rx.join(2.0)
        self.conn.close()


def assert_matches(audio: np.ndarray, source48: np.ndarray, threshold: float = 0.9) -> int:
    corr, lag = best_alignment(audio, source_16k(source48))
    assert corr >= threshold, (corr, lag)
    return lag
