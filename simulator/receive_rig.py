"""A bare receive rig, without a voice server: a real discord.py `VoiceConnectionState` (its real SocketReader
thread and UDP socket) that packets are sent to, and members that encode with real libopus, encrypt with real
DAVE (davey sessions in one MLS group, the server's external sender from `simulator.dave_external`) and real
transport AEAD (`audio.rtp`, the server's side). Used by the receive tests and benchmarks."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
import types
from dataclasses import dataclass, field

import davey
import numpy as np
from discord.gateway import DiscordVoiceWebSocket
from discord.opus import Encoder
from discord.voice_state import VoiceConnectionState

from audio import rtp
from audio.resample import resample_once
from simulator.dave_external import ExternalSender, group_id_for_channel, proposals_payload

BOT_ID = 1000
CHANNEL_ID = 4242
FRAME = 960  # samples per channel per 20 ms at 48 kHz


def speechlike(seconds: float, seed: int, rate: int = 48_000) -> np.ndarray:
    """Deterministic, non-periodic, band-limited (<4 kHz) noise with a syllable-like envelope, mono float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / rate)
    spec[(freqs < 100) | (freqs > 4000)] = 0
    x = np.fft.irfft(spec, n)
    t = np.arange(n) / rate
    env = 0.55 + 0.45 * np.sin(2 * np.pi * (3 + seed % 3) * t + seed)
    x = x * env
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def to_stereo_s16(mono: np.ndarray) -> np.ndarray:
    s = np.clip(mono * 32767, -32768, 32767).astype(np.int16)
    return np.repeat(s[:, None], 2, axis=1)


def best_alignment(received: np.ndarray, source: np.ndarray, max_lag: int = 1600) -> tuple[float, int]:
    """Max normalized cross-correlation of ``received`` against ``source`` over lags 0..max_lag (received later)."""
    best = (-1.0, 0)
    for lag in range(0, max_lag):
        n = min(received.size - lag, source.size)
        if n < 1000:
            break
        a = received[lag : lag + n]
        b = source[:n]
        denom = float(np.linalg.norm(a) * np.linalg.norm(b))
        if denom == 0:
            continue
        c = float(np.dot(a, b) / denom)
        if c > best[0]:
            best = (c, lag)
    return best


def source_16k(mono48: np.ndarray) -> np.ndarray:
    return resample_once(mono48, 48_000, 16_000)


@dataclass
class Member:
    user_id: int
    ssrc: int
    key: bytes
    dave: davey.DaveSession | None = None
    seq: int = field(default_factory=lambda: random.randrange(65536))
    timestamp: int = field(default_factory=lambda: random.randrange(2**32))
    nonce: int = 0

    def __post_init__(self) -> None:
        self.encoder = Encoder()

    def opus_frames(self, mono48: np.ndarray) -> list[bytes]:
        stereo = to_stereo_s16(mono48)
        pad = (-len(stereo)) % FRAME
        if pad:
            stereo = np.concatenate((stereo, np.zeros((pad, 2), np.int16)))
        return [self.encoder.encode(stereo[i : i + FRAME].tobytes(), FRAME) for i in range(0, len(stereo), FRAME)]

    def packet(self, opus: bytes, *, encrypt_dave: bool = True, **kw) -> bytes:
        frame = self.dave.encrypt_opus(opus) if (self.dave is not None and encrypt_dave) else opus
        pkt = rtp.encrypt_packet(
            key=self.key,
            sequence=self.seq,
            timestamp=self.timestamp,
            ssrc=self.ssrc,
            payload=frame,
            nonce=self.nonce,
            **kw,
        )
        self.seq = (self.seq + 1) & 0xFFFF
        self.timestamp = (self.timestamp + FRAME) & 0xFFFFFFFF
        self.nonce += 1
        return pkt

    def packets(self, mono48: np.ndarray, **kw) -> list[bytes]:
        return [self.packet(f, **kw) for f in self.opus_frames(mono48)]


def make_dave_group(
    user_ids: list[int], bot: davey.DaveSession, channel_id: int = CHANNEL_ID
) -> dict[int, davey.DaveSession]:
    """A real MLS group: the bot commits external Add proposals for every member; members join by welcome."""
    ext = ExternalSender()
    members = {uid: davey.DaveSession(1, uid, channel_id) for uid in user_ids}
    for s in (bot, *members.values()):
        s.set_external_sender(ext.package())
    bot.get_serialized_key_package()
    props = [
        ext.add_proposal(group_id_for_channel(channel_id), bot.epoch or 0, s.get_serialized_key_package())
        for s in members.values()
    ]
    cw = bot.process_proposals(davey.ProposalsOperationType.append, proposals_payload(props)[1:])
    assert cw is not None and cw.welcome is not None, "the bot made no commit and welcome for the members"
    bot.process_commit(cw.commit)
    for s in members.values():
        s.process_welcome(cw.welcome)
    assert bot.ready and all(s.ready for s in members.values())
    return members


class Connection:
    """A real `VoiceConnectionState` (with its real SocketReader thread) whose UDP socket we send to."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, bot_id: int = BOT_ID, dave: bool = True) -> None:
        self.vc = types.SimpleNamespace(loop=loop, user=types.SimpleNamespace(id=bot_id))
        self.state = VoiceConnectionState(self.vc)  # type: ignore[arg-type]
        self.vc._connection = self.state
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.state.socket = self.sock
        self.state._socket_reader.resume()  # what VoiceConnectionState._create_socket does
        self.sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addr = self.sock.getsockname()
        self.state.secret_key = list(os.urandom(32))
        self.state.mode = rtp.MODE
        self.state.ssrc = 1
        if dave:
            self.state.dave_protocol_version = 1
            self.state.dave_session = davey.DaveSession(1, bot_id, CHANNEL_ID)
        self.ws = self.new_websocket()

    @property
    def key(self) -> bytes:
        return bytes(self.state.secret_key)

    def new_websocket(self) -> DiscordVoiceWebSocket:
        """What `_connect_websocket` does: a voice websocket created with the connection's current hook."""
        ws = DiscordVoiceWebSocket(None, self.vc.loop, hook=self.state.hook)  # type: ignore[arg-type]
        ws._connection = self.state
        self.state.ws = ws
        return ws

    async def gateway(self, op: int, d: dict, ws: DiscordVoiceWebSocket | None = None) -> None:
        """Deliver a voice gateway JSON message through discord.py's own dispatch (which then awaits the hook)."""
        await (ws or self.state.ws).received_message({"op": op, "d": d})

    async def speaking(self, user_id: int, ssrc: int) -> None:
        await self.gateway(5, {"user_id": str(user_id), "ssrc": ssrc, "speaking": 1})

    def send(self, packets: list[bytes], *, pace: float = 0.0) -> None:
        for p in packets:
            self.sender.sendto(p, self.addr)
            if pace:
                time.sleep(pace)

    def close(self) -> None:
        self.state._socket_reader.stop()
        self.sock.close()
        self.sender.close()
