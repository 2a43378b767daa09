"""Receive-path cost per member per 20 ms frame: transport decrypt + DAVE decrypt + Opus decode + 48k->16k.

    .venv/bin/python -m benchmarks.receive_bench [--frames 3000] [--speakers 8]

Prints one JSON object: per-stage and total p50/p95 (microseconds), the number of simultaneous speakers one core
sustains in real time (20 ms / mean total), and an end-to-end run through `VoiceReceiver` (socket-listener
callback -> worker thread -> frames on the event loop) with several speakers at once. Real codecs and crypto:
libopus via discord.py, NaCl AEAD, davey sessions in one MLS group.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
import types
from importlib import metadata

import davey
import numpy as np
from discord.opus import Encoder, _OpusStruct
from discord.voice_state import VoiceConnectionState

from audio import rtp
from audio.opus_streams import PcmDecoder
from audio.receive import VoiceReceiver
from audio.resample import Downsampler48kTo16k
from simulator.dave_external import ExternalSender, group_id_for_channel, proposals_payload

FRAME = 960
CHANNEL = 4242
BOT = 1


def speechlike(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * 48_000)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / 48_000)
    spec[(f < 100) | (f > 4000)] = 0
    x = np.fft.irfft(spec, n) * (0.55 + 0.45 * np.sin(2 * np.pi * 3 * np.arange(n) / 48_000))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def dave_group(user_ids: list[int]) -> tuple[davey.DaveSession, dict[int, davey.DaveSession]]:
    ext = ExternalSender()
    bot = davey.DaveSession(1, BOT, CHANNEL)
    members = {u: davey.DaveSession(1, u, CHANNEL) for u in user_ids}
    for s in (bot, *members.values()):
        s.set_external_sender(ext.package())
    bot.get_serialized_key_package()
    props = [
        ext.add_proposal(group_id_for_channel(CHANNEL), 0, s.get_serialized_key_package()) for s in members.values()
    ]
    cw = bot.process_proposals(davey.ProposalsOperationType.append, proposals_payload(props)[1:])
    assert cw is not None and cw.welcome is not None, "the bot made no commit and welcome for the members"
    bot.process_commit(cw.commit)
    for s in members.values():
        s.process_welcome(cw.welcome)
    return bot, members


def encode_packets(
    n_frames: int, user_id: int, ssrc: int, session: davey.DaveSession, key: bytes, seed: int
) -> list[bytes]:
    enc = Encoder()
    mono = speechlike(n_frames * 0.02, seed)
    st = np.repeat((mono * 32767).astype(np.int16)[:, None], 2, axis=1)
    out = []
    for i in range(n_frames):
        opus = enc.encode(st[i * FRAME : (i + 1) * FRAME].tobytes(), FRAME)
        frame = session.encrypt_opus(opus)
        out.append(
            rtp.encrypt_packet(
                key=key,
                sequence=i & 0xFFFF,
                timestamp=i * FRAME,
                ssrc=ssrc,
                payload=frame,
                nonce=i,
                extension=b"\x10\x80\x00\x00" if i % 2 else None,
            )
        )
    return out


def pct(values: list[float]) -> dict[str, float]:
    a = np.asarray(values)
    return {
        "p50_us": round(float(np.percentile(a, 50)), 2),
        "p95_us": round(float(np.percentile(a, 95)), 2),
        "mean_us": round(float(a.mean()), 2),
    }


def stage_breakdown(n_frames: int) -> dict:
    key = os.urandom(32)
    bot, members = dave_group([101])
    packets = encode_packets(n_frames, 101, 5000, members[101], key, seed=1)
    dec, down = PcmDecoder(), Downsampler48kTo16k()
    t_rtp, t_dave, t_opus, t_res, t_total = [], [], [], [], []
    pc = time.perf_counter_ns
    for pkt in packets:
        a = pc()
        header = rtp.parse_header(pkt)
        payload = rtp.decrypt_payload(pkt, header, key)
        b = pc()
        opus = bot.decrypt(101, davey.MediaType.audio, payload)
        c = pc()
        pcm = dec.decode(opus)
        d = pc()
        down.process(pcm)
        e = pc()
        t_rtp.append((b - a) / 1e3)
        t_dave.append((c - b) / 1e3)
        t_opus.append((d - c) / 1e3)
        t_res.append((e - d) / 1e3)
        t_total.append((e - a) / 1e3)
    total = pct(t_total)
    return {
        "frames": n_frames,
        "stages": {
            "transport_decrypt": pct(t_rtp),
            "dave_decrypt": pct(t_dave),
            "opus_decode": pct(t_opus),
            "resample_48k_stereo_to_16k_mono": pct(t_res),
        },
        "total": total,
        "speakers_per_core_realtime": int(20_000 // total["mean_us"]),
    }


async def end_to_end(n_speakers: int, seconds: float) -> dict:
    """All speakers' packets pushed through the real socket-listener callback as fast as the worker takes them."""
    loop = asyncio.get_running_loop()
    key = os.urandom(32)
    ids = [200 + i for i in range(n_speakers)]
    bot, members = dave_group(ids)
    vc = types.SimpleNamespace(loop=loop, user=types.SimpleNamespace(id=BOT))
    conn = VoiceConnectionState(vc)  # type: ignore[arg-type]
    vc._connection = conn
    conn.secret_key, conn.mode, conn.ssrc = list(key), rtp.MODE, 1
    conn.dave_protocol_version, conn.dave_session = 1, bot
    n_frames = int(seconds / 0.02)
    per = [encode_packets(n_frames, uid, 7000 + i, members[uid], key, seed=i) for i, uid in enumerate(ids)]
    got = {"n": 0}
    rx = VoiceReceiver(vc, on_frame=lambda f: got.__setitem__("n", got["n"] + 1))  # type: ignore[arg-type]
    rx.start()
    for i, uid in enumerate(ids):
        rx.handle_gateway_message({"op": 5, "d": {"user_id": str(uid), "ssrc": 7000 + i, "speaking": 1}})
    interleaved = [p for frame in zip(*per) for p in frame]
    cpu0, t0 = time.process_time(), time.perf_counter()
    for k, p in enumerate(interleaved):
        rx.on_packet(p)
        if k % 256 == 0:
            while rx.stats["pending"] > 512:
                await asyncio.sleep(0.001)
    while got["n"] < len(interleaved):
        await asyncio.sleep(0.002)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    rx.stop()
    rx.join(2)
    conn._socket_reader.stop()
    per_frame = wall / len(interleaved) * 1e6
    return {
        "speakers": n_speakers,
        "frames": len(interleaved),
        "audio_seconds": round(n_speakers * seconds, 2),
        "wall_seconds": round(wall, 3),
        "process_cpu_seconds": round(cpu, 3),
        "wall_us_per_frame": round(per_frame, 2),
        "cpu_us_per_frame": round(cpu / len(interleaved) * 1e6, 2),
        "realtime_factor": round(n_speakers * seconds / wall, 1),
        "speakers_per_core_realtime": int(20_000 // (cpu / len(interleaved) * 1e6)),
        "stats": {k: v for k, v in rx.stats.as_dict().items() if v},
    }


def machine() -> dict:
    def ver(p: str) -> str | None:
        try:
            return metadata.version(p)
        except metadata.PackageNotFoundError:
            return None

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "packages": {p: ver(p) for p in ("discord.py", "davey", "PyNaCl", "numpy")},
        "libopus": _OpusStruct.get_opus_version(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=3000, help="frames for the per-stage breakdown (one member)")
    ap.add_argument("--speakers", type=int, default=8, help="simultaneous speakers for the end-to-end run")
    ap.add_argument("--seconds", type=float, default=5.0, help="audio per speaker in the end-to-end run")
    args = ap.parse_args()
    result = {
        "benchmark": "receive",
        "command": " ".join([os.path.basename(sys.executable), "-m", "benchmarks.receive_bench", *sys.argv[1:]]),
        "machine": machine(),
        "per_member_frame": stage_breakdown(args.frames),
        "end_to_end": asyncio.run(end_to_end(args.speakers, args.seconds)),
        "note": "CPU shared with other jobs while measured: treat as indicative",
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
