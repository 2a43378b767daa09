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
from tests.fixtures_receive import Collector, Connection, Member, best_alignment, make_dave_group, source_16k, speechlike

pytestmark = pytest.mark.asyncio

N_HOSTILE = 100_000
N_UDP_HOSTILE = 4_000


def hostile_packets(rng: random.Random, key: bytes, mapped_ssrcs: list[int], valid: list[bytes], vandal: Member,
                    already_sent: list[bytes]):
    """Yield (kind, packet) of many hostile kinds (replays only of packets already sent: nobody replays the future)."""
    kinds = ["random", "truncated", "bad_tag", "bitflip", "huge_cc", "ext_lies", "video_pt", "rtcp", "replay",
             "auth_garbage", "auth_bad_padding", "auth_huge_ext", "tiny", "wrong_version", "empty_payload"]
    while True:
        kind = rng.choice(kinds)
        if kind == "random":
            yield kind, rng.randbytes(rng.randrange(0, 1500))
        elif kind == "truncated":
            p = rng.choice(valid)
            yield kind, p[: rng.randrange(0, len(p))]
        elif kind == "bad_tag":
            ssrc = rng.choice(mapped_ssrcs + [rng.randrange(2**32)])
            yield kind, bytes([0x80, 0x78]) + struct.pack(">HII", rng.randrange(65536), rng.randrange(2**32), ssrc) \
                + rng.randbytes(rng.randrange(0, 200))
        elif kind == "bitflip":
            p = bytearray(rng.choice(valid))
            i = rng.randrange(12, len(p))  # keep the header parseable so it reaches decryption
            p[i] ^= 1 << rng.randrange(8)
            yield kind, bytes(p)
        elif kind == "huge_cc":
            yield kind, bytes([0x8F, 0x78]) + rng.randbytes(rng.randrange(10, 90))
        elif kind == "ext_lies":
            words = rng.randrange(65536)
            yield kind, bytes([0x90 | rng.randrange(16), 0x78]) + rng.randbytes(10 + 4 * 15) \
                + struct.pack(">HH", 0xBEDE, words) + rng.randbytes(rng.randrange(0, 64))
        elif kind == "video_pt":
            yield kind, bytes([0x80, rng.choice([96, 97, 101, 102, 103, 104, 105])]) + rng.randbytes(rng.randrange(10, 400))
        elif kind == "rtcp":
            yield kind, bytes([0x80 | rng.randrange(32), rng.randrange(200, 205)]) + rng.randbytes(rng.randrange(6, 100))
        elif kind == "replay":
            yield kind, rng.choice(already_sent) if already_sent else b""
        elif kind == "auth_garbage":
            # authenticated by the transport, but the frame is junk: DAVE must reject it, Opus never sees it
            yield kind, vandal.packet(rng.randbytes(rng.randrange(1, 300)), encrypt_dave=False)
        elif kind == "auth_bad_padding":
            hdr = bytes([0xA0, 0x78]) + struct.pack(">HII", 1, 2, vandal.ssrc)
            trailer = rng.randbytes(4)
            from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_encrypt

            body = rng.randbytes(rng.randrange(0, 20)) + bytes([rng.choice([0, 200, 255])])
            yield kind, hdr + crypto_aead_xchacha20poly1305_ietf_encrypt(body, hdr, trailer + bytes(20), key) + trailer
        elif kind == "auth_huge_ext":
            hdr = bytes([0x90, 0x78]) + struct.pack(">HII", 1, 2, vandal.ssrc) + struct.pack(">HH", 0xBEDE, 5000)
            trailer = rng.randbytes(4)
            from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_encrypt

            yield kind, hdr + crypto_aead_xchacha20poly1305_ietf_encrypt(b"x" * 40, hdr, trailer + bytes(20), key) + trailer
        elif kind == "tiny":
            yield kind, rng.randbytes(rng.randrange(0, 12))
        elif kind == "wrong_version":
            p = bytearray(rng.choice(valid))
            p[0] = (p[0] & 0x3F) | (rng.choice([0, 1, 3]) << 6)
            yield kind, bytes(p)
        elif kind == "empty_payload":
            yield kind, vandal.packet(b"", encrypt_dave=False)


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
    gen = hostile_packets(rng, conn.key, [a.ssrc, b.ssrc, vandal.ssrc], valid_a + valid_b, vandal, already_sent)

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
