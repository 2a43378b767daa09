"""Hostile packets at scale through the real UDP socket: 0 crashes, every packet accounted for, audio intact.

    .venv/bin/python -m benchmarks.fuzz_bench [--packets 1000000] [--seed 1234]

A real discord.py `VoiceConnectionState` (its SocketReader thread on a real UDP socket) with a `VoiceReceiver`
on it, in a real DAVE group with two talking members and a vandal. A sender thread sends ``--packets`` hostile
datagrams of every kind in `simulator.hostile` to the socket, with the two members' valid DAVE-encrypted
speech interleaved (one packet each every ``--valid-every`` hostile ones) and video packets on an announced
video SSRC. It paces itself by what the socket reader took (at most ``--window`` datagrams in flight), so no
datagram is lost in the kernel unseen (the kernel's own UDP drop counter is reported to show it), and by the
worker's queue (``--max-pending``; 0 = do not wait: a flood then overflows the bounded queue, counted as
``overload``, and valid packets are lost with the hostile ones).

Prints one JSON object (also written to ``out/bench/fuzz.json``): packets sent by kind, the receiver's counters
(received = decoded + dropped by reason + pending), crashes (errors logged, worker exceptions, ``internal``
drops), and the valid audio: frames decoded per member, concealed frames, correlation with what was sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from audio.receive import VoiceReceiver
from audio.receive_stats import ReceiveStats
from benchmarks.receive_bench import machine
from simulator.hostile import HostilePackets
from simulator.receive_rig import Connection, Member, best_alignment, make_dave_group, source_16k, speechlike

OUT = Path("out/bench/fuzz.json")
A, B, VANDAL, VIDEO = 11, 12, 13, 14


class ErrorCounter(logging.Handler):
    """Counts log records at ERROR or above (an exception caught and logged inside the receive path)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.name}: {record.getMessage()}")


def udp_receive_buffer_errors() -> int | None:
    """The kernel's count of UDP datagrams dropped for a full receive buffer (Linux), or None."""
    try:
        lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
        return int(lines[1][lines[0].index("RcvbufErrors")])
    except (OSError, ValueError, IndexError):
        return None


def correlation_at_best_lag(received: np.ndarray, source48: np.ndarray) -> float:
    """Find the lag on the first 2 s, then correlate the whole signal at that lag."""
    ref = source_16k(source48)
    _, lag = best_alignment(received[: 32_000 + 1600], ref[:32_000])
    n = min(received.size - lag, ref.size)
    a, b = received[lag : lag + n], ref[:n]
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / denom) if denom else 0.0


async def run(
    packets: int,
    *,
    seed: int = 1234,
    valid_every: int = 500,
    window: int = 64,
    max_pending: int = 512,
    timeout_s: float = 3600.0,
) -> dict:
    max_pending = max_pending or 1 << 62
    loop = asyncio.get_running_loop()
    conn = Connection(loop)
    frames: dict[int, list] = {}
    rx = VoiceReceiver(conn.vc, on_frame=lambda f: frames.setdefault(f.user_id, []).append(f))  # type: ignore[arg-type]  # a stand-in VoiceClient (loop, user, _connection)
    errors = ErrorCounter()
    logging.getLogger().addHandler(errors)
    rx.start()
    try:
        assert conn.state.dave_session is not None
        group = make_dave_group([A, B, VANDAL], conn.state.dave_session)
        a, b, vandal = (Member(u, 1000 + u, conn.key, group[u]) for u in (A, B, VANDAL))
        video = Member(VIDEO, 1000 + VIDEO, conn.key)
        for m in (a, b, vandal):
            await conn.speaking(m.user_id, m.ssrc)
        await conn.gateway(12, {"user_id": str(VIDEO), "audio_ssrc": 0, "video_ssrc": video.ssrc, "rtx_ssrc": 1015})
        n_valid = max(1, packets // valid_every)
        src = {A: speechlike(n_valid * 0.02, seed=31), B: speechlike(n_valid * 0.02, seed=32)}
        valid = {A: a.packets(src[A]), B: b.packets(src[B])}
        already_sent: list[bytes] = []
        hostile = HostilePackets(
            random.Random(seed),
            conn.key,
            [a.ssrc, b.ssrc, vandal.ssrc],
            valid[A][:50] + valid[B][:50],
            vandal,
            already_sent,
        )
        sent: Counter[str] = Counter()
        done = threading.Event()
        kernel_errors_before = udp_receive_buffer_errors()

        def send(kind: str, datagram: bytes) -> None:
            while sum(sent.values()) - rx.stats["received"] >= window or rx.stats["pending"] >= max_pending:
                time.sleep(0.0002)
            conn.sender.sendto(datagram or b"\x00", conn.addr)  # an empty datagram is not observable on UDP
            sent[kind] += 1

        def sender() -> None:
            try:
                va, vb = iter(valid[A]), iter(valid[B])
                for i in range(packets):
                    if i % valid_every == 0:
                        for p in (next(va, None), next(vb, None)):
                            if p is not None:
                                send("valid", p)
                                already_sent.append(p)
                    if i % 997 == 0:
                        send("video_ssrc", video.packet(b"\x00" * 50))  # PT 0x78 on an announced video SSRC
                    kind, datagram = next(hostile)
                    send(kind, datagram)
            finally:
                done.set()

        t0, cpu0 = time.perf_counter(), time.process_time()
        thread = threading.Thread(target=sender, name="fuzz-sender", daemon=True)
        thread.start()
        while not done.is_set():
            await asyncio.sleep(0.05)
        total = sum(sent.values())
        deadline = time.monotonic() + timeout_s
        while (rx.stats["received"] < total or rx.stats["pending"]) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        await asyncio.sleep(VoiceReceiver.HOLD_SECONDS + 0.3)  # held packets of unknown SSRCs expire
        d = rx.stats.as_dict()
        kernel_errors_after = udp_receive_buffer_errors()
        worker_alive = not rx.join(0)  # still running: nothing killed it
    finally:
        rx.stop()
        rx.join(2)
        conn.close()
        logging.getLogger().removeHandler(errors)

    def audio(uid: int) -> np.ndarray:
        fr = frames.get(uid, [])
        return np.concatenate([f.pcm for f in fr]) if fr else np.zeros(0, np.float32)

    valid_audio = {}
    for uid in (A, B):
        fr = frames.get(uid, [])
        valid_audio[str(uid)] = {
            "packets_sent": len(valid[uid]),
            "frames": len(fr),
            "concealed_frames": sum(f.concealed for f in fr),
            "correlation": round(correlation_at_best_lag(audio(uid), src[uid]), 4) if fr else 0.0,
        }
    drops = {k[len("dropped_") :]: v for k, v in d.items() if k.startswith("dropped_") and v}
    kernel = (
        None
        if kernel_errors_before is None or kernel_errors_after is None
        else kernel_errors_after - kernel_errors_before
    )
    return {
        "packets_sent": total,
        "hostile_sent": total - sent["valid"] - sent["video_ssrc"],
        "sent_by_kind": dict(sent),
        "received": d["received"],
        "decoded": d["decoded"],
        "pending": d["pending"],
        "dropped_by_reason": drops,
        "unaccounted": ReceiveStats.balance(d) + (total - d["received"]),
        "crashes": {
            "errors_logged": len(errors.records),
            "internal_drops": d["dropped_internal"],
            "worker_alive_until_stop": worker_alive,
            "first_errors": errors.records[:5],
        },
        "valid_audio": valid_audio,
        "vandal_frames": len(frames.get(VANDAL, [])),
        "kernel_udp_rcvbuf_errors": kernel,
        "wall_s": round(wall, 1),
        "process_cpu_s": round(cpu, 1),
        "packets_per_s": round(total / wall),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000, help="hostile datagrams to send")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--valid-every", type=int, default=500, help="one valid packet per member every N hostile ones")
    ap.add_argument("--window", type=int, default=64, help="datagrams in flight at most (sent, not yet read)")
    ap.add_argument(
        "--max-pending",
        type=int,
        default=512,
        help="wait while the worker has this many queued (0: never wait, flood it)",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = {
        "benchmark": "fuzz",
        "command": " ".join([os.path.basename(sys.executable), "-m", "benchmarks.fuzz_bench", *sys.argv[1:]]),
        "machine": machine(),
        **asyncio.run(
            run(
                args.packets,
                seed=args.seed,
                valid_every=args.valid_every,
                window=args.window,
                max_pending=args.max_pending,
            )
        ),
        "note": "CPU shared with other jobs while measured: the rate is indicative, the counts are exact",
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
