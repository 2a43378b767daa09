"""Thread safety of what the receive path shares between discord.py's socket reader thread, the receive worker
thread and the event loop (`audio.receive_members.MemberDirectory`): deterministic interleavings of the races
that matter, then a stress test that churns membership on the loop while packets stream through the real UDP
socket and the worker identifies unannounced SSRCs by their DAVE keys."""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import threading
import time

import pytest
import pytest_asyncio

from audio.receive_members import MemberDirectory
from audio.receive_stats import ReceiveStats
from tests.fixtures_receive import Member, Rig, make_dave_group, speechlike, wait_for

pytestmark = pytest.mark.asyncio


# --- the races, one interleaving at a time --------------------------------------------------------------------


async def test_an_identified_sender_who_left_meanwhile_is_not_adopted():
    d = MemberDirectory(own_user_id=1)
    d.connected(7)
    candidates = d.candidates([1, 7, 8])  # worker: proposes 7 and 8 (not us)
    assert candidates == [7, 8]
    d.left(7)  # loop: op 13 for 7 lands while the worker decrypts with 7's key
    assert d.adopt(5000, 7) is None  # the worker's adoption is refused
    assert d.user_for(5000) is None and 7 not in d.present_user_ids and d.has_left(7)
    d.map(5000, 7)  # a later op 5 (they are back) maps it
    assert d.user_for(5000) == 7 and not d.has_left(7)


async def test_the_gateway_mapping_wins_over_an_adoption():
    d = MemberDirectory(own_user_id=1)
    d.map(5000, 8)
    assert d.adopt(5000, 7) == 8 and d.user_for(5000) == 8


async def test_leaving_unmaps_every_ssrc_at_once():
    d = MemberDirectory(own_user_id=1, max_ssrcs=8)
    for ssrc in (10, 11, 12):
        d.map(ssrc, 7)
    d.map(13, 8)
    assert d.left(7) == (10, 11, 12)
    assert [d.user_for(s) for s in (10, 11, 12, 13)] == [None, None, None, 8]
    assert d.present_user_ids == {8}


async def test_bounded_maps():
    d = MemberDirectory(own_user_id=1, max_ssrcs=4)
    for ssrc in range(10):
        d.map(100 + ssrc, ssrc)
        d.mark_video(200 + ssrc)
    assert [d.user_for(100 + s) for s in range(10)] == [None] * 6 + [6, 7, 8, 9]
    assert sum(d.is_video(200 + s) for s in range(10)) == 4


# --- stress ---------------------------------------------------------------------------------------------------


class OrderedSink:
    """Records frames and member-left callbacks in the order the loop saw them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.events: list[tuple[str, int]] = []
        self.wrong_thread = 0

    def on_frame(self, frame) -> None:
        if threading.get_ident() != self.loop._thread_id:  # type: ignore[attr-defined]
            self.wrong_thread += 1
        self.events.append(("frame", frame.user_id))

    def on_member_left(self, user_id: int) -> None:
        self.events.append(("left", user_id))


@pytest_asyncio.fixture
async def fast_switching():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # many more thread switches: races show up
    yield
    sys.setswitchinterval(old)


@pytest.mark.timeout(120)
async def test_membership_churn_while_packets_stream(fast_switching, caplog):
    caplog.set_level(logging.WARNING)
    loop = asyncio.get_running_loop()
    rig = Rig(loop)
    sink = OrderedSink(loop)
    rig.rx._on_frame = sink.on_frame
    rig.rx._on_member_left = sink.on_member_left
    ids = list(range(401, 409))
    group = make_dave_group(ids, rig.conn.state.dave_session)
    members = {uid: Member(uid, 4000 + uid, rig.conn.key, group[uid]) for uid in ids}
    announced = set(ids[:4])  # the other four are only ever identified by their DAVE keys
    frames = {uid: members[uid].opus_frames(speechlike(0.4, seed=uid)) for uid in ids}
    for uid in announced:
        await rig.conn.speaking(uid, members[uid].ssrc)

    stop = threading.Event()
    sent = {"n": 0}

    def sender() -> None:
        i = 0
        while not stop.is_set():
            for uid in ids:
                m = members[uid]
                rig.conn.sender.sendto(m.packet(frames[uid][i % len(frames[uid])]), rig.conn.addr)
                sent["n"] += 1
            i += 1
            # pace by what the socket reader took: a UDP socket buffer that overflows loses packets unseen
            while sent["n"] - rig.rx.stats["received"] > 100 or rig.rx.stats["pending"] > 150:
                if stop.is_set():
                    return
                time.sleep(0.001)

    def reader() -> None:  # another thread reading what the loop and the worker write
        while not stop.is_set():
            rig.rx.present_user_ids
            for m in members.values():
                rig.rx.user_for_ssrc(m.ssrc)
            rig.rx.opted_out

    threads = [threading.Thread(target=sender), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    rng = random.Random(7)
    leaves = 0

    def enough() -> bool:  # churn until every race had its chance, however loaded the machine is
        d = rig.rx.stats.as_dict()
        return (
            sent["n"] >= 3000
            and d["dropped_opted_out"] > 0
            and d.get("ssrc_inferred", 0) > 0
            and d["dropped_member_left"] + d["dropped_unmapped"] > 0
        )

    started = time.monotonic()
    try:
        while time.monotonic() - started < 3.0 or (not enough() and time.monotonic() - started < 90.0):
            uid = rng.choice(ids)
            action = rng.random()
            if action < 0.35:
                await rig.conn.gateway(13, {"user_id": str(uid)})
                leaves += 1
            elif action < 0.6:
                await rig.conn.gateway(11, {"user_ids": [str(uid)]})
            elif action < 0.8 and uid in announced:
                await rig.conn.speaking(uid, members[uid].ssrc)
            elif action < 0.9:
                rig.rx.opt_out(uid)
            else:
                rig.rx.opt_in(uid)
            await asyncio.sleep(rng.choice([0, 0, 0.001, 0.005]))
        # end state: every member has left
        for uid in ids:
            await rig.conn.gateway(13, {"user_id": str(uid)})
            leaves += 1
        after_final_leave = len(sink.events)
        await asyncio.sleep(0.3)  # packets keep coming for a while
    finally:
        stop.set()
        for t in threads:
            t.join()
    churned_enough = enough()
    await wait_for(lambda: rig.rx.stats["received"] == sent["n"] and rig.rx.stats["pending"] == 0, 60)
    await asyncio.sleep(rig.rx.HOLD_SECONDS + 0.3)  # held packets of unknown SSRCs expire
    d = rig.rx.stats.as_dict()
    rig.close()

    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("audio")]
    assert not errors, errors[:5]
    assert d["dropped_internal"] == 0
    assert ReceiveStats.balance(d) == 0 and d["pending"] == 0, d
    assert d["received"] == sent["n"]
    assert churned_enough, d  # opt-outs, leaves and adoptions all met packets in flight
    assert d["decoded"] > 0
    # every op 13 reached the session, none lost
    assert sum(1 for kind, _ in sink.events if kind == "left") == leaves
    # after everyone left, not one frame reached the session, and nobody is mapped or present
    assert not [e for e in sink.events[after_final_leave:] if e[0] == "frame"]
    assert all(rig.rx.user_for_ssrc(m.ssrc) is None for m in members.values())
    assert rig.rx.present_user_ids == frozenset()
    assert sink.wrong_thread == 0
