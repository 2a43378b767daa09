"""audio.opus_streams.OpusStream: sequence logic, PLC bounds and accounting with real libopus."""

from __future__ import annotations

import numpy as np
import pytest
from discord.opus import Encoder

from audio.opus_streams import OpusStream, seq_distance
from audio.receive_stats import ReceiveStats
from tests.fixtures_receive import FRAME, speechlike, to_stereo_s16


@pytest.fixture(scope="module")
def opus_frames() -> list[bytes]:
    enc = Encoder()
    st = to_stereo_s16(speechlike(1.0, seed=3))
    return [enc.encode(st[i : i + FRAME].tobytes(), FRAME) for i in range(0, len(st), FRAME)]


def feed(stream: OpusStream, stats: ReceiveStats, items, t0: float = 100.0):
    out = []
    for i, (seq, frame) in enumerate(items):
        stats.received()
        stats.pend()
        out += stream.push(seq, frame, t0 + i * 0.02)
    return out


def test_seq_distance_wraps():
    assert seq_distance(0, 65535) == 1
    assert seq_distance(65535, 0) == -1
    assert seq_distance(5, 5) == 0
    assert seq_distance(40000, 10) == 40000 - 10 - 65536


def test_in_order_across_wraparound(opus_frames):
    stats = ReceiveStats()
    s = OpusStream(1, 7, stats)
    seqs = [(65530 + i) % 65536 for i in range(20)]
    out = feed(s, stats, zip(seqs, opus_frames))
    assert len(out) == 20 and not any(f.concealed for f in out)
    assert stats["decoded"] == 20 and stats["pending"] == 0
    assert all(f.pcm.shape == (320,) and f.pcm.dtype == np.float32 and f.user_id == 7 for f in out)


def test_hole_waits_then_tick_conceals(opus_frames):
    stats = ReceiveStats()
    s = OpusStream(1, 7, stats)
    out = feed(s, stats, [(0, opus_frames[0]), (2, opus_frames[2])])
    assert len(out) == 1 and s.pending == 1  # seq 2 waits for seq 1
    assert s.tick(100.0 + 0.02 + OpusStream.REORDER_WAIT / 2) == []
    late = s.tick(100.0 + 0.02 + OpusStream.REORDER_WAIT + 0.001)
    assert [f.concealed for f in late] == [True, False]
    assert stats["fec_frames"] == 1 and stats["decoded"] == 2 and stats["pending"] == 0
    # seq 1 finally arrives: late
    stats.received()
    stats.pend()
    assert s.push(1, opus_frames[1], 101.0) == []
    assert stats["dropped_late"] == 1
    assert ReceiveStats.balance(stats.as_dict()) == 0


def test_reorder_within_window_is_not_concealed(opus_frames):
    stats = ReceiveStats()
    s = OpusStream(1, 7, stats)
    order = [0, 2, 1, 3, 5, 4, 6]
    out = feed(s, stats, [(q, opus_frames[q]) for q in order])
    assert len(out) == 7 and not any(f.concealed for f in out)


def test_sender_restart_resynchronises_but_replays_do_not(opus_frames):
    stats = ReceiveStats()
    s = OpusStream(1, 7, stats)
    feed(s, stats, [(30000 + i, opus_frames[i]) for i in range(20)])
    # replays of old packets, not in sequence order: all late, no resync
    old = [30000 + (i * 7) % 13 for i in range(30)]
    assert feed(s, stats, [(q, opus_frames[0]) for q in old]) == []
    # a restarted sequence (consecutive, far behind): after RESYNC_LATE_RUN it plays again
    out = feed(s, stats, [(100 + i, opus_frames[20 + i]) for i in range(20)])
    assert len(out) == 20 - OpusStream.RESYNC_LATE_RUN + 1
    assert ReceiveStats.balance(stats.as_dict()) == 0


def test_close_counts_buffered(opus_frames):
    stats = ReceiveStats()
    s = OpusStream(1, 7, stats)
    feed(s, stats, [(0, opus_frames[0]), (2, opus_frames[2])])
    assert s.close("member_left") == 1
    d = stats.as_dict()
    assert d["dropped_member_left"] == 1 and d["pending"] == 0 and ReceiveStats.balance(d) == 0


def test_garbage_opus_is_counted(opus_frames):
    stats = ReceiveStats()
    s = OpusStream(1, 7, stats)
    out = feed(s, stats, [(0, b"\xff\xff\xff\xff\xff"), (1, opus_frames[1])])
    assert len(out) == 1
    assert stats["dropped_opus"] == 1 and stats["decoded"] == 1


def test_stats_snapshot_balance_and_interval_logging(caplog):
    import logging

    stats = ReceiveStats()
    log = logging.getLogger("test.receive.stats")
    for _ in range(3):
        stats.received()
    stats.drop("malformed")
    stats.pend()
    stats.pend()
    stats.decoded()
    d = stats.as_dict()
    assert d["received"] == 3 and d["pending"] == 1 and ReceiveStats.balance(d) == 0
    stats.drop("no_such_reason", was_pending=True)  # unknown reasons land in dropped_internal, never lost
    assert stats["dropped_internal"] == 1 and ReceiveStats.balance(stats.as_dict()) == 0
    with caplog.at_level(logging.INFO, logger="test.receive.stats"):
        assert not stats.maybe_log(log, 30.0, now=stats._last_log_t + 10)  # too soon
        assert stats.maybe_log(log, 30.0, now=stats._last_log_t + 31)
        assert not stats.maybe_log(log, 30.0, now=stats._last_log_t + 31)  # unchanged: quiet
        stats.received()
        stats.drop("rtcp")
        assert stats.maybe_log(log, 30.0, now=stats._last_log_t + 31)
    assert "dropped_rtcp=1" in caplog.text and "dropped_video" not in caplog.text  # zero counters omitted
