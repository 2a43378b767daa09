"""VoiceReceiver on a real discord.py VoiceConnectionState: real UDP socket + SocketReader thread, real voice
websocket dispatch for gateway ops, real Opus, real transport AEAD, real DAVE (an MLS group of davey sessions)."""

from __future__ import annotations

import asyncio
import os
import random

import davey
import numpy as np
import pytest
import pytest_asyncio

from audio.receive import VoiceReceiver
from tests.fixtures_receive import (
    BOT_ID,
    Rig,
    assert_matches,
    Collector,
    Connection,
    Member,
    best_alignment,
    make_dave_group,
    source_16k,
    speechlike,
    wait_for,
)

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def rig():
    r = Rig(asyncio.get_running_loop())
    yield r
    r.close()


@pytest_asyncio.fixture
async def rig_plain():
    r = Rig(asyncio.get_running_loop(), dave=False)
    yield r
    r.close()


async def test_three_members_under_dave_are_attributed_and_match(rig: Rig):
    ids = [201, 202, 203]
    group = make_dave_group(ids, rig.conn.state.dave_session)
    members = [Member(uid, 100 + i, rig.conn.key, group[uid]) for i, uid in enumerate(ids)]
    for m in members:
        await rig.conn.speaking(m.user_id, m.ssrc)
    sources = [speechlike(1.2, seed=i + 1) for i in range(3)]
    streams = [m.packets(s) for m, s in zip(members, sources)]
    # overlapping: interleave the three streams packet by packet, member 3 starts 10 frames late
    order = []
    for i in range(max(len(s) for s in streams) + 10):
        for k, s in enumerate(streams):
            j = i - (10 if k == 2 else 0)
            if 0 <= j < len(s):
                order.append(s[j])
    rig.conn.send(order)
    assert await wait_for(lambda: all(rig.col.count(uid) >= 60 for uid in ids))
    d = await rig.settled()
    assert d["decoded"] == 180 and d["received"] == 180
    assert rig.col.wrong_thread == 0
    for k, uid in enumerate(ids):
        audio = rig.col.audio(uid)
        assert_matches(audio, sources[k])
        for other in range(3):
            if other != k:  # no crossing between members
                corr, _ = best_alignment(audio, source_16k(sources[other]))
                assert corr < 0.3
    f = rig.col.frames[201][0]
    assert f.pcm.dtype == np.float32 and f.pcm.shape == (320,) and not f.concealed


async def test_dave_off_plain_opus(rig_plain: Rig):
    m = Member(301, 77, rig_plain.conn.key)
    await rig_plain.conn.speaking(301, 77)
    src = speechlike(1.0, seed=5)
    rig_plain.conn.send(m.packets(src))
    assert await wait_for(lambda: rig_plain.col.count(301) >= 50)
    d = await rig_plain.settled()
    assert d["decoded"] == 50
    assert_matches(rig_plain.col.audio(301), src)


async def test_dave_frames_while_dave_is_off_never_reach_opus(rig_plain: Rig):
    # a member still encrypting (its own session) while our connection says DAVE is off
    bot = davey.DaveSession(1, BOT_ID, 4242)
    group = make_dave_group([302], bot)
    m = Member(302, 78, rig_plain.conn.key, group[302])
    await rig_plain.conn.speaking(302, 78)
    rig_plain.conn.send(m.packets(speechlike(0.4, seed=6)))
    d = await rig_plain.settled()
    assert d["dropped_dave_unexpected"] == 20 and d["decoded"] == 0
    assert rig_plain.col.count(302) == 0


async def test_plain_frames_under_active_dave_are_dropped_not_decoded(rig: Rig):
    group = make_dave_group([303], rig.conn.state.dave_session)
    m = Member(303, 79, rig.conn.key, group[303])
    await rig.conn.speaking(303, 79)
    frames = m.opus_frames(speechlike(0.2, seed=7))
    rig.conn.send([m.packet(f, encrypt_dave=False) for f in frames])
    d = await rig.settled()
    assert d["dropped_dave_unencrypted"] == 10 and d["decoded"] == 0


async def test_member_outside_the_group_counts_no_decryptor(rig: Rig):
    make_dave_group([304], rig.conn.state.dave_session)
    other_bot = davey.DaveSession(1, 9999, 4242)
    outsider = make_dave_group([305], other_bot)[305]  # encrypts under a different group
    m = Member(305, 80, rig.conn.key, outsider)
    await rig.conn.speaking(305, 80)
    rig.conn.send(m.packets(speechlike(0.2, seed=8)))
    d = await rig.settled()
    assert d["dropped_dave_no_decryptor"] == 10 and d["decoded"] == 0


async def test_silence_frames_pass_and_decode(rig: Rig):
    group = make_dave_group([306], rig.conn.state.dave_session)
    m = Member(306, 81, rig.conn.key, group[306])
    await rig.conn.speaking(306, 81)
    rig.conn.send([m.packet(b"\xf8\xff\xfe", encrypt_dave=False) for _ in range(5)])
    assert await wait_for(lambda: rig.col.count(306) == 5)
    assert np.allclose(rig.col.audio(306), 0.0, atol=1e-3)


async def test_loss_and_reordering_are_concealed(rig: Rig):
    group = make_dave_group([401], rig.conn.state.dave_session)
    m = Member(401, 90, rig.conn.key, group[401])
    await rig.conn.speaking(401, 90)
    src = speechlike(2.0, seed=9)
    pkts = m.packets(src)  # 100 packets
    lost = {10, 30, 31, 60}
    sent = [p for i, p in enumerate(pkts) if i not in lost]
    # swap a few neighbours (reordering within tolerance) and duplicate one
    for i in (5, 40, 70):
        sent[i], sent[i + 1] = sent[i + 1], sent[i]
    sent.insert(50, sent[49])
    rig.conn.send(sent)
    assert await wait_for(lambda: rig.col.count(401) >= 100)
    d = await rig.settled()
    assert d["decoded"] == 96
    assert d["dropped_duplicate"] == 1, d
    assert d["plc_frames"] + d["fec_frames"] == 4
    frames = rig.col.frames[401]
    assert len(frames) == 100  # every 20 ms slot filled: 96 decoded + 4 concealed
    assert sum(f.concealed for f in frames) == 4
    assert [i for i, f in enumerate(frames) if f.concealed] == sorted(lost)
    assert_matches(rig.col.audio(401), src, threshold=0.85)


async def test_late_packet_after_concealment_is_dropped(rig: Rig):
    group = make_dave_group([402], rig.conn.state.dave_session)
    m = Member(402, 91, rig.conn.key, group[402])
    await rig.conn.speaking(402, 91)
    pkts = m.packets(speechlike(0.4, seed=10))  # 20
    late = pkts[5]
    rig.conn.send(pkts[:5] + pkts[6:])
    await wait_for(lambda: rig.col.count(402) >= 20)
    rig.conn.send([late])
    d = await rig.settled()
    assert d["dropped_late"] + d["dropped_duplicate"] == 1 and d["decoded"] == 19
    assert rig.col.count(402) == 20


async def test_long_gap_conceals_at_most_max_frames(rig: Rig):
    group = make_dave_group([403], rig.conn.state.dave_session)
    m = Member(403, 92, rig.conn.key, group[403])
    await rig.conn.speaking(403, 92)
    pkts = m.packets(speechlike(1.0, seed=11))  # 50
    rig.conn.send(pkts[:10] + pkts[40:])  # 30 lost
    await wait_for(lambda: rig.col.count(403) >= 20)
    d = await rig.settled()
    assert d["decoded"] == 20
    assert d["plc_frames"] + d["fec_frames"] == 5
    assert rig.col.count(403) == 25


async def test_member_leave_drops_state_and_rejoin_with_new_ssrc(rig: Rig):
    group = make_dave_group([501], rig.conn.state.dave_session)
    m = Member(501, 111, rig.conn.key, group[501])
    await rig.conn.speaking(501, 111)
    rig.conn.send(m.packets(speechlike(0.4, seed=12)))
    assert await wait_for(lambda: rig.col.count(501) >= 20)
    await rig.conn.gateway(13, {"user_id": "501"})
    assert rig.col.left == [501]
    assert rig.rx.user_for_ssrc(111) is None
    # stale packets on the old SSRC are not attributed to anyone
    rig.conn.send(m.packets(speechlike(0.1, seed=13)))
    await asyncio.sleep(0.2)
    assert rig.col.count(501) == 20
    # rejoin with a new SSRC (same DAVE member)
    m.ssrc = 222
    m.seq = random.randrange(65536)
    await rig.conn.gateway(11, {"user_ids": ["501"]})
    await rig.conn.speaking(501, 222)
    src = speechlike(0.6, seed=14)
    rig.conn.send(m.packets(src))
    assert await wait_for(lambda: rig.col.count(501) >= 50)
    assert_matches(np.concatenate([f.pcm for f in rig.col.frames[501][20:]]), src)
    await asyncio.sleep(VoiceReceiver.HOLD_SECONDS + 0.2)
    d = await rig.settled()
    assert d["dropped_unmapped"] == 5  # the 5 stale packets on the old SSRC


async def test_packets_before_speaking_are_held_then_released(rig_plain: Rig):
    rig = rig_plain  # DAVE off: nothing identifies an unannounced SSRC but op 5
    m = Member(601, 333, rig.conn.key)
    src = speechlike(0.3, seed=15)
    rig.conn.send(m.packets(src))  # 15 packets, SSRC unknown yet
    await wait_for(lambda: rig.rx.stats["pending"] == 15)
    assert rig.col.count(601) == 0
    await rig.conn.speaking(601, 333)
    assert await wait_for(lambda: rig.col.count(601) == 15)
    d = await rig.settled()
    assert d["decoded"] == 15
    assert_matches(rig.col.audio(601), src)


async def test_unmapped_packets_expire_bounded(rig: Rig):
    m = Member(602, 444, rig.conn.key)
    rig.conn.send(m.packets(speechlike(1.4, seed=16), encrypt_dave=False))  # 70 > HOLD_PER_SSRC
    await asyncio.sleep(VoiceReceiver.HOLD_SECONDS + 0.3)
    d = await rig.settled()
    assert d["dropped_unmapped"] == 70 and d["pending"] == 0


async def test_own_ssrc_own_user_video_and_rtcp_are_dropped(rig: Rig):
    key = rig.conn.key
    own = Member(BOT_ID, rig.conn.state.ssrc, key)
    rig.conn.send(own.packets(speechlike(0.1, seed=17)))  # own SSRC: 5
    own_user = Member(BOT_ID, 555, key)
    await rig.conn.speaking(BOT_ID, 555)
    rig.conn.send(own_user.packets(speechlike(0.1, seed=18)))  # mapped to our own user id: 5
    await rig.conn.gateway(12, {"user_id": "701", "audio_ssrc": 0, "video_ssrc": 556, "rtx_ssrc": 557})
    video = Member(701, 556, key)
    rig.conn.send([video.packet(b"\x00" * 100) for _ in range(3)])  # PT 0x78 on a video SSRC: 3
    rig.conn.send([video.packet(b"\x00" * 100, payload_type=103) for _ in range(4)])  # VP8 PT: 4
    rig.conn.send([bytes([0x81, 200]) + os.urandom(30) for _ in range(2)])  # RTCP SR: 2
    await wait_for(lambda: rig.rx.stats["received"] == 19)
    d = await rig.settled()
    assert d["dropped_own"] == 10
    assert d["dropped_video"] == 3 and d["dropped_not_opus"] == 4 and d["dropped_rtcp"] == 2
    assert d["decoded"] == 0 and not rig.col.frames


async def test_new_secret_key_and_new_websocket_after_reconnect(rig: Rig):
    group = make_dave_group([801], rig.conn.state.dave_session)
    m = Member(801, 900, rig.conn.key, group[801])
    await rig.conn.speaking(801, 900)
    rig.conn.send(m.packets(speechlike(0.2, seed=19)))
    assert await wait_for(lambda: rig.col.count(801) == 10)
    # reconnect: discord.py builds a new websocket with the connection's hook, a new key and a new SSRC arrive
    ws2 = rig.conn.new_websocket()
    rig.conn.state.secret_key = list(os.urandom(32))
    # READY on the new websocket (discord.py's own handling would open UDP; the hook part is what we test)
    await rig.rx._hook_fn(ws2, {"op": 2, "d": {"ssrc": 2, "ip": "127.0.0.1", "port": 1, "modes": []}})
    old_key_packet = m.packet(m.opus_frames(speechlike(0.02, seed=20))[0])  # still under the old key
    m.key = rig.conn.key
    m.ssrc = 901
    await rig.conn.gateway(5, {"user_id": "801", "ssrc": 901, "speaking": 1}, ws=ws2)
    assert rig.rx.user_for_ssrc(901) == 801
    src = speechlike(0.4, seed=21)
    rig.conn.send([old_key_packet] + m.packets(src))
    assert await wait_for(lambda: rig.col.count(801) >= 30)
    d = await rig.settled()
    assert d["dropped_decrypt"] == 1 and d["decoded"] == 30
    assert_matches(np.concatenate([f.pcm for f in rig.col.frames[801][10:]]), src)


async def test_listener_never_raises_and_stop_restores_seams(rig: Rig):
    state = rig.conn.state
    # an RTP header cut short (random after the version and payload-type bytes: random in the second byte would
    # be RTCP, counted apart, about one run in fifty)
    for junk in (b"", b"\x80", b"\x80\x78" + os.urandom(9), b"\x00\x02" + bytes(72)):
        rig.rx.on_packet(junk)  # called directly, as the socket reader would
    d = await rig.settled()
    assert d["dropped_malformed"] == 4
    assert state.hook == rig.rx._hook_fn
    assert rig.rx.on_packet in state._socket_reader._callbacks
    rig.rx.stop()
    assert state.hook is None
    assert rig.rx.on_packet not in state._socket_reader._callbacks
    assert "_hook" not in vars(state.ws)
    rig.rx.start()  # can start again
    assert state.hook == rig.rx._hook_fn
    rig.rx.start()  # idempotent
    assert state._socket_reader._callbacks.count(rig.rx.on_packet) == 1


async def test_gateway_hook_chains_to_an_existing_hook():
    loop = asyncio.get_running_loop()
    seen = []

    async def user_hook(ws, msg):
        seen.append(msg["op"])

    conn = Connection(loop)
    conn.state.hook = user_hook
    ws = conn.new_websocket()
    col = Collector(loop)
    rx = VoiceReceiver(conn.vc, on_frame=col.on_frame)
    rx.start()
    try:
        await conn.gateway(5, {"user_id": "9", "ssrc": 99, "speaking": 1}, ws=ws)
        assert seen == [5] and rx.user_for_ssrc(99) == 9
        await conn.gateway(5, {"user_id": "10", "ssrc": 100, "speaking": 1}, ws=conn.new_websocket())
        assert seen == [5, 5] and rx.user_for_ssrc(100) == 10
        await conn.gateway(5, {"user_id": "not-a-number"}, ws=ws)  # bad message: logged, never raised
        await conn.gateway(13, {}, ws=ws)
    finally:
        rx.stop()
        rx.join(2)
        conn.close()
    assert conn.state.hook is user_hook


async def test_padding_and_extensions_from_the_server(rig: Rig):
    group = make_dave_group([901], rig.conn.state.dave_session)
    m = Member(901, 1234, rig.conn.key, group[901])
    await rig.conn.speaking(901, 1234)
    src = speechlike(0.6, seed=22)
    frames = m.opus_frames(src)
    pkts = [
        m.packet(f, padding=(i % 4) * 3, extension=(b"\x51\x00\x00\x00" * (i % 3)) if i % 2 else None)
        for i, f in enumerate(frames)
    ]
    rig.conn.send(pkts)
    assert await wait_for(lambda: rig.col.count(901) >= 30)
    d = await rig.settled()
    assert d["decoded"] == 30
    assert_matches(rig.col.audio(901), src)


async def test_unannounced_ssrc_is_identified_by_its_dave_key(rig: Rig):
    """op 5 missed (sent before we started): under DAVE the member whose key opens the frame is the sender."""
    group = make_dave_group([1101, 1102], rig.conn.state.dave_session)
    a = Member(1101, 5001, rig.conn.key, group[1101])
    b = Member(1102, 5002, rig.conn.key, group[1102])
    await rig.conn.speaking(1101, 5001)  # only a is announced
    src_a, src_b = speechlike(0.6, seed=41), speechlike(0.6, seed=42)
    pa, pb = a.packets(src_a), b.packets(src_b)
    rig.conn.send([p for pair in zip(pa, pb) for p in pair])
    assert await wait_for(lambda: rig.col.count(1101) >= 30 and rig.col.count(1102) >= 30)
    d = await rig.settled()
    assert d["ssrc_inferred"] == 1 and d["decoded"] == 60
    assert rig.rx.user_for_ssrc(5002) == 1102
    assert_matches(rig.col.audio(1102), src_b)
    assert_matches(rig.col.audio(1101), src_a)


async def test_held_packets_go_first_when_the_mapping_lands_between_packets(rig_plain: Rig):
    """The loop thread maps the SSRC; the worker sees the next packet before the 'map' control: order is kept."""
    rig = rig_plain
    m = Member(602, 334, rig.conn.key)
    pkts = m.packets(speechlike(0.4, seed=43))  # 20
    rig.conn.send(pkts[:10])
    await wait_for(lambda: rig.rx.stats["pending"] == 10)
    rig.rx.members.map(334, 602)  # the mapping is visible, its control message not yet processed
    rig.conn.send(pkts[10:])
    assert await wait_for(lambda: rig.col.count(602) == 20)
    d = await rig.settled()
    assert d["decoded"] == 20 and d["dropped_late"] == 0
