"""Helpers for tests on the loopback voice server: test signals, the bot-side packet tap, correlation."""

from __future__ import annotations

import asyncio
import io
import threading

import davey
import discord
import numpy as np
import pytest
from discord import opus

from audio import rtp
from simulator.audio_files import DISCORD_RATE, to_discord_pcm
from simulator.harness import voice_internals
from simulator.member_dave import IMPLEMENTATIONS


def chirp(seconds: float = 1.0, f0: float = 200.0, f1: float = 2000.0, amplitude: float = 0.4) -> np.ndarray:
    """A non-periodic test signal (48 kHz stereo int16): correlation has one clear peak."""
    t = np.arange(int(seconds * DISCORD_RATE)) / DISCORD_RATE
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * seconds))
    env = np.minimum(1.0, np.minimum(t, seconds - t) / 0.02)
    return to_discord_pcm((amplitude * env * np.sin(phase)).astype(np.float32))


def pcm_source(pcm: np.ndarray) -> discord.PCMAudio:
    return discord.PCMAudio(io.BytesIO(np.ascontiguousarray(pcm, dtype=np.int16).tobytes()))


def best_correlation(reference: np.ndarray, received: np.ndarray, max_lag: int = 48_000) -> float:
    """Peak normalized cross-correlation of the left channels (reference must fit inside received + lag)."""
    ref = reference[:, 0].astype(np.float64)
    rec = received[:, 0].astype(np.float64)
    if rec.shape[0] < ref.shape[0]:
        rec = np.concatenate([rec, np.zeros(ref.shape[0] - rec.shape[0])])
    n = 1 << int(np.ceil(np.log2(rec.shape[0] + ref.shape[0])))
    corr = np.fft.irfft(np.fft.rfft(rec, n) * np.conj(np.fft.rfft(ref, n)), n)[: min(max_lag, rec.shape[0])]
    lag = int(np.argmax(corr))
    seg = rec[lag : lag + ref.shape[0]]
    denom = np.sqrt(np.sum(ref[: seg.shape[0]] ** 2) * np.sum(seg**2))
    return float(corr[lag] / denom) if denom else 0.0


class BotSocketTap:
    """Collects every UDP packet the bot's voice socket receives (discord.py's socket-reader listener)."""

    def __init__(self, vc: discord.VoiceClient) -> None:
        self.vc = vc
        self.packets: list[bytes] = []
        self._lock = threading.Lock()
        vc._connection.add_socket_listener(self._on_packet)

    def _on_packet(self, data: bytes) -> None:
        with self._lock:
            self.packets.append(bytes(data))

    def close(self) -> None:
        self.vc._connection.remove_socket_listener(self._on_packet)

    def decode_from(self, ssrc: int, user_id: int) -> tuple[np.ndarray, dict[str, int]]:
        """Transport-decrypt, DAVE-decrypt (the bot's own session) and Opus-decode what ``ssrc`` sent."""
        internals = voice_internals(self.vc)
        key = internals.secret_key
        decoder = opus.Decoder()
        stats = {"packets": 0, "dave": 0, "plain": 0, "silence": 0, "extension": 0, "padding": 0}
        out = []
        with self._lock:
            packets = list(self.packets)
        for packet in packets:
            if rtp.is_rtcp(packet):
                continue
            header, frame = rtp.decrypt_packet(packet, key)
            if header.ssrc != ssrc:
                continue
            stats["packets"] += 1
            stats["extension"] += header.extension
            stats["padding"] += header.padding
            if frame == b"\xf8\xff\xfe":
                stats["silence"] += 1
                continue
            if frame.endswith(b"\xfa\xfa"):
                frame = internals.dave_session.decrypt(user_id, davey.MediaType.audio, frame)
                stats["dave"] += 1
            else:
                stats["plain"] += 1
            out.append(np.frombuffer(decoder.decode(frame, fec=False), dtype=np.int16).reshape(-1, 2))
        pcm = np.concatenate(out) if out else np.zeros((0, 2), np.int16)
        return pcm, stats

    async def wait_total(self, count: int, timeout: float = 20.0) -> None:
        """Poll until ``count`` packets of any kind arrived."""

        async def _wait() -> None:
            while len(self.packets) < count:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(_wait(), timeout)

    async def wait_packets(self, ssrc: int, count: int, timeout: float = 20.0) -> None:
        """Poll (the reader is a thread) until ``count`` packets from ``ssrc`` arrived."""

        async def _wait() -> None:
            while sum(1 for p in list(self.packets) if not rtp.is_rtcp(p) and rtp.parse_header(p).ssrc == ssrc) < count:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(_wait(), timeout)


async def play_and_wait(vc: discord.VoiceClient, pcm: np.ndarray, timeout: float = 30.0) -> None:
    """Play through discord.py's own player and wait for it to finish."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    vc.play(pcm_source(pcm), after=lambda err: loop.call_soon_threadsafe(lambda: done.done() or done.set_result(err)))
    err = await asyncio.wait_for(done, timeout)
    assert err is None, err


# Run a test once with members on davey, once on libdave (Discord's own library): @each_member_dave
each_member_dave = pytest.mark.parametrize("member_dave", IMPLEMENTATIONS)
