"""Hostile input: >=100,000 malformed packets through the real socket-listener callback (and a slice through the
real UDP socket + discord.py SocketReader) with two members' valid DAVE audio interleaved."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import struct
import threading

import pytest
import pytest_asyncio

from audio.receive import VoiceReceiver
from audio.receive_stats import ReceiveStats
from simulator.hostile import HostilePackets
from tests.fixtures_receive import (
    Collector,
    Connection,
    Member,
    best_alignment,
    make_dave_group,
    source_16k,
    speechlike,
)

pytestmark = pytest.mark.asyncio

N_HOSTILE = 100_000
N_UDP_HOSTILE = 4_000


@pytest_asyncio.fixture
async def setup():
    loop = asyncio.get_running_loop()
    conn = Connection(loop)
    col = Collector(loop)
    rx = VoiceReceiver(conn.vc, on_frame=col.on_frame)
    rx.start()
    group = make_dave_group([11, 12, 13], conn.state.dave_session)
    a = Member(11, 1011, conn.key, group[11])
    b = Member(12, 1012, conn.key, group[12])
    vandal = Member(13, 1013, conn.key, group[13])
    for m in (a, b, vandal):
        await conn.speaking(m.user_id, m.ssrc)
    await conn.gateway(12, {"user_id": "14", "audio_ssrc": 0, "video_ssrc": 1014, "rtx_ssrc": 1015})
    yield conn, col, rx, a, b, vandal
    rx.stop()
    rx.join(2)
    conn.close()


async def test_fuzz_100k_hostile_packets_with_valid_audio_interleaved(setup, caplog):
    conn, col, rx, a, b, vandal = setup
    caplog.set_level(logging.WARNING, logger="audio")
    rng = random.Random(1234)
    src_a, src_b = speechlike(2.0, seed=31), speechlike(2.0, seed=32)
    valid_a, valid_b = a.packets(src_a), b.packets(src_b)  # 100 each
    video = Member(14, 1014, conn.key)
    already_sent: list[bytes] = []
    gen = HostilePackets(rng, conn.key, [a.ssrc, b.ssrc, vandal.ssrc], valid_a + valid_b, vandal, already_sent)

    # direct path: the socket-listener callback, called from a non-loop thread like discord.py's reader
    total = N_HOSTILE
    every = total // len(valid_a)
    done = threading.Event()
    sent = {"n": 0}

    def pump() -> None:
        va, vb = iter(valid_a), iter(valid_b)
        for i in range(total):
            if i % every == 0:
                for p in (next(va, None), next(vb, None)):
                    if p is not None:
                        rx.on_packet(p)
                        already_sent.append(p)
                        sent["n"] += 1
            if i % 997 == 0:
                rx.on_packet(video.packet(b"\x00" * 50))  # PT 0x78 on an announced video SSRC
                sent["n"] += 1
            _, pkt = next(gen)
            rx.on_packet(pkt)
            sent["n"] += 1
            if i % 256 == 0:  # never outrun the worker (a real socket would pace us; overload is tested apart)
                while rx.stats["pending"] > 200:
                    threading.Event().wait(0.001)
        done.set()

    t = threading.Thread(target=pump)
    t.start()
    while not done.is_set():
        await asyncio.sleep(0.05)
    t.join()

    # a slice through the real UDP socket and discord.py's SocketReader thread
    for _ in range(N_UDP_HOSTILE):
        conn.sender.sendto(next(gen)[1] or b"\x00", conn.addr)  # empty datagrams are not observable on UDP
        sent["n"] += 1
        if _ % 200 == 0:
            await asyncio.sleep(0.005)

    async def all_in():
        while rx.stats["received"] < sent["n"] or rx.stats["pending"]:
            await asyncio.sleep(0.05)

    await asyncio.wait_for(all_in(), 60)
    await asyncio.sleep(VoiceReceiver.HOLD_SECONDS + 0.2)  # let held packets of unknown SSRCs expire
    await asyncio.sleep(0.1)
    d = rx.stats.as_dict()
    assert d["received"] == sent["n"] >= N_HOSTILE + N_UDP_HOSTILE
    assert ReceiveStats.balance(d) == 0, d
    assert d["pending"] == 0
    assert d["dropped_internal"] == 0
    assert d["dropped_video"] >= 100 and d["dropped_rtcp"] > 0 and d["dropped_malformed"] > 0
    assert d["dropped_decrypt"] > 0 and d["dropped_not_opus"] > 0 and d["dropped_duplicate"] > 0
    assert d["dropped_dave_unencrypted"] + d["dropped_dave_error"] > 0  # authenticated junk stopped at DAVE
    assert d["dropped_opus"] == 0  # nothing undecryptable reached libopus
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
    # the valid audio is intact and attributed
    assert col.count(11) == 100 and col.count(12) == 100
    assert not any(f.concealed for f in col.frames[11] + col.frames[12])
    assert best_alignment(col.audio(11), source_16k(src_a))[0] >= 0.9
    assert best_alignment(col.audio(12), source_16k(src_b))[0] >= 0.9
    assert 13 not in col.frames  # the vandal's junk never became audio
    assert col.wrong_thread == 0


async def test_overload_is_counted_not_fatal(setup):
    conn, col, rx, a, b, vandal = setup
    pkt = bytes([0x80, 0x78]) + struct.pack(">HII", 1, 2, a.ssrc) + os.urandom(100)
    n = VoiceReceiver.QUEUE_MAX * 4
    for _ in range(n):  # far faster than the worker: the bounded queue overflows
        rx.on_packet(pkt)
    await asyncio.sleep(0.5)
    d = rx.stats.as_dict()
    assert d["received"] == n and ReceiveStats.balance(d) == 0
    assert d["pending"] == 0
    assert d["dropped_overload"] + d["dropped_decrypt"] == n
    # still alive afterwards
    src = speechlike(0.4, seed=33)
    conn.send(a.packets(src))
    for _ in range(100):
        if col.count(11) >= 20:
            break
        await asyncio.sleep(0.05)
    assert col.count(11) == 20
    assert best_alignment(col.audio(11), source_16k(src))[0] >= 0.9


async def test_fuzz_benchmark_through_the_real_udp_socket():
    """The 1,000,000-packet benchmark's own code at CI size: every datagram through the real socket and
    discord.py's SocketReader thread, every one accounted for, nothing crashes, the valid speech is intact."""
    from benchmarks.fuzz_bench import run

    r = await run(30_000, seed=99, valid_every=300)
    assert r["hostile_sent"] == 30_000 and r["received"] == r["packets_sent"]
    assert r["unaccounted"] == 0 and r["pending"] == 0
    assert r["crashes"] == {
        "errors_logged": 0,
        "internal_drops": 0,
        "worker_alive_until_stop": True,
        "first_errors": [],
    }
    assert set(r["sent_by_kind"]) >= {"random", "bitflip", "auth_garbage", "replay", "rtcp", "valid"}
    drops = r["dropped_by_reason"]
    assert {"malformed", "rtcp", "not_opus", "video", "decrypt", "duplicate", "dave_unencrypted"} <= set(drops)
    assert "opus" not in drops  # nothing undecryptable reached libopus
    for audio in r["valid_audio"].values():
        assert audio["frames"] == audio["packets_sent"] == 100 and audio["concealed_frames"] == 0
        assert audio["correlation"] >= 0.9
    assert r["vandal_frames"] == 0
