"""VoiceReceiver's per-member drop hook (consent / opt-out): an opted-out member's packets are dropped before
DAVE decryption and Opus decoding, counted as ``opted_out``, and none of their frames reaches ``on_frame`` once
`opt_out` returned; changeable at runtime. Real UDP socket, real DAVE group, real Opus."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import pytest
import pytest_asyncio

from tests.fixtures_receive import Member, Rig, assert_matches, make_dave_group, speechlike, wait_for

pytestmark = pytest.mark.asyncio

A, B = 301, 302


class CountingSession:
    """The bot's davey session, counting DAVE decrypt calls per member (everything else passes through)."""

    def __init__(self, inner) -> None:
        self._inner = inner
        self.decrypts: Counter[int] = Counter()

    def decrypt(self, user_id, media_type, frame):
        self.decrypts[int(user_id)] += 1
        return self._inner.decrypt(user_id, media_type, frame)

    def __getattr__(self, name):
        return getattr(self._inner, name)


@pytest_asyncio.fixture
async def rig():
    r = Rig(asyncio.get_running_loop())
    yield r
    r.close()


async def two_members(rig: Rig, *, announce: bool = True) -> tuple[Member, Member, CountingSession]:
    group = make_dave_group([A, B], rig.conn.state.dave_session)
    a, b = Member(A, 3001, rig.conn.key, group[A]), Member(B, 3002, rig.conn.key, group[B])
    if announce:
        await rig.conn.speaking(A, a.ssrc)
        await rig.conn.speaking(B, b.ssrc)
    counting = CountingSession(rig.conn.state.dave_session)
    rig.conn.state.dave_session = counting
    return a, b, counting


async def test_opt_out_mid_stream_drops_before_dave_and_opus_then_opt_in(rig: Rig):
    a, b, session = await two_members(rig)
    src_a, src_b = speechlike(1.2, seed=51), speechlike(1.2, seed=52)
    pa, pb = a.packets(src_a), b.packets(src_b)  # 60 each
    rig.conn.send([p for pair in zip(pa[:20], pb[:20]) for p in pair])
    assert await wait_for(lambda: rig.col.count(A) == 20 and rig.col.count(B) == 20)
    decrypts_before = session.decrypts[A]

    rig.rx.opt_out(A)
    assert rig.rx.opted_out == {A}
    frames_at_opt_out = rig.col.count(A)
    rig.conn.send([p for pair in zip(pa[20:40], pb[20:40]) for p in pair])
    assert await wait_for(lambda: rig.col.count(B) == 40)
    d = await rig.settled()
    assert d["dropped_opted_out"] == 20
    assert session.decrypts[A] == decrypts_before  # never DAVE-decrypted after opting out
    assert rig.col.count(A) == frames_at_opt_out  # not one frame more
    assert d["decoded"] == 60  # 20 of A before, 40 of B

    rig.rx.opt_in(A)
    rig.conn.send([p for pair in zip(pa[40:], pb[40:]) for p in pair])
    assert await wait_for(lambda: rig.col.count(A) >= 38 and rig.col.count(B) == 60)
    d = await rig.settled()
    assert d["dropped_opted_out"] == 20 and d["decoded"] == 100
    assert_matches(rig.col.audio(B), src_b)


async def test_opted_out_before_speaking_and_replaced_as_a_set(rig: Rig):
    a, b, session = await two_members(rig)
    rig.rx.set_opted_out([A, B])
    rig.conn.send(a.packets(speechlike(0.4, seed=53)) + b.packets(speechlike(0.4, seed=54)))
    await wait_for(lambda: rig.rx.stats["received"] == 40)
    d = await rig.settled()
    assert d["dropped_opted_out"] == 40 and d["decoded"] == 0 and not rig.col.frames
    assert sum(session.decrypts.values()) == 0
    rig.rx.set_opted_out([A])  # B may be heard again
    src_b = speechlike(0.4, seed=55)
    rig.conn.send(b.packets(src_b) + a.packets(speechlike(0.2, seed=56)))
    assert await wait_for(lambda: rig.col.count(B) == 20)
    d = await rig.settled()
    assert d["dropped_opted_out"] == 50 and d["decoded"] == 20 and A not in rig.col.frames
    assert_matches(rig.col.audio(B), src_b)


async def test_drop_predicate_and_a_failing_one(rig: Rig, caplog):
    a, b, session = await two_members(rig)
    rig.rx.set_drop_predicate(lambda uid: uid == B)
    rig.conn.send(a.packets(speechlike(0.2, seed=57)) + b.packets(speechlike(0.2, seed=58)))
    assert await wait_for(lambda: rig.col.count(A) == 10)
    d = await rig.settled()
    assert d["dropped_opted_out"] == 10 and session.decrypts[B] == 0 and B not in rig.col.frames

    def broken(uid: int) -> bool:
        raise KeyError(uid)

    caplog.set_level(logging.ERROR, logger="audio")
    rig.rx.set_drop_predicate(broken)  # unsure means unheard
    rig.conn.send(a.packets(speechlike(0.2, seed=59)))
    await wait_for(lambda: rig.rx.stats["received"] == 30)
    d = await rig.settled()
    assert d["dropped_opted_out"] == 20 and rig.col.count(A) == 10
    assert len([r for r in caplog.records if "drop predicate failed" in r.getMessage()]) == 1  # once, not per packet
    rig.rx.set_drop_predicate(None)
    rig.conn.send(a.packets(speechlike(0.2, seed=60)))
    assert await wait_for(lambda: sum(not f.concealed for f in rig.col.frames[A]) == 20)


async def test_an_unannounced_opted_out_member_is_not_identified_by_decrypting(rig: Rig):
    """Identifying an unannounced SSRC tries the DAVE keys of group members: never an opted-out member's."""
    a, b, session = await two_members(rig, announce=False)
    rig.rx.opt_out(A)
    rig.conn.send(a.packets(speechlike(0.4, seed=61)))
    await wait_for(lambda: rig.rx.stats["received"] == 20)
    await asyncio.sleep(rig.rx.HOLD_SECONDS + 0.3)  # held, then expired: nobody could be named
    d = await rig.settled()
    assert session.decrypts[A] == 0 and d.get("ssrc_inferred", 0) == 0
    assert d["dropped_unmapped"] == 20 and not rig.col.frames
    # announced later: mapped, and dropped as opted out
    await rig.conn.speaking(A, a.ssrc)
    rig.conn.send(a.packets(speechlike(0.2, seed=62)))
    await wait_for(lambda: rig.rx.stats["received"] == 30)
    d = await rig.settled()
    assert d["dropped_opted_out"] == 10 and session.decrypts[A] == 0


async def test_held_packets_of_a_member_who_opted_out_are_dropped_when_mapped(rig: Rig):
    rig_plain_member = Member(A, 3101, rig.conn.key)  # plain Opus: DAVE cannot identify it, so it is held
    rig.conn.state.dave_protocol_version = 0
    rig.conn.send(rig_plain_member.packets(speechlike(0.2, seed=63)))
    await wait_for(lambda: rig.rx.stats["pending"] == 10)
    rig.rx.opt_out(A)
    await rig.conn.speaking(A, 3101)
    d = await rig.settled()
    assert d["dropped_opted_out"] == 10 and d["decoded"] == 0 and not rig.col.frames
