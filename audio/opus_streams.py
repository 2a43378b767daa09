"""One member's Opus stream: a small reorder buffer, one libopus decoder, bounded loss concealment, 16 kHz output.

Sequence numbers (16-bit, wrapping) drive it:

* the next expected packet is decoded at once;
* a packet ahead of a hole waits in the reorder buffer until the hole fills, or until ``REORDER_DEPTH`` packets
  wait or the oldest waited ``REORDER_WAIT`` seconds: then the hole is declared lost and concealed, at most
  ``MAX_CONCEAL`` frames (libopus PLC, the last lost frame recovered from the next packet's in-band FEC);
* a packet behind the playout point is ``late`` (or a ``duplicate`` when it was decoded already) and dropped;
  a long consecutive run of them means the sender restarted its sequence, and the stream resynchronises.

Callers count each packet in `ReceiveStats` as pending before `push`; this class resolves it exactly once.
"""

from __future__ import annotations

import ctypes
import logging
from collections import deque

import numpy as np
from discord import opus as dopus
from discord.opus import OpusError

from audio.receive_stats import ReceiveStats
from audio.resample import Downsampler48kTo16k
from audio.types import STT_FRAME_SAMPLES, MemberFrame

log = logging.getLogger(__name__)

_SEQ_MOD = 1 << 16
_HALF = 1 << 15


def seq_distance(seq: int, ref: int) -> int:
    """Signed distance ``seq - ref`` on the 16-bit circle, in [-32768, 32767]."""
    d = (seq - ref) % _SEQ_MOD
    return d - _SEQ_MOD if d >= _HALF else d


class PcmDecoder:
    """One libopus decoder (48 kHz stereo, the library discord.py loaded) writing int16 straight into numpy.

    Same calls as `discord.opus.Decoder`, without its per-frame Python list copy of the output (which costs
    about twice the decoding itself). The returned array is a view, valid until the next call.
    """

    RATE = 48_000
    CHANNELS = 2
    MAX_SAMPLES = 5760  # 120 ms, the longest Opus packet
    FRAME = 960

    def __init__(self) -> None:
        dopus.Decoder.get_opus_version()  # loads libopus, or raises OpusNotLoaded
        self._lib = dopus._lib
        err = ctypes.c_int()
        self._state = self._lib.opus_decoder_create(self.RATE, self.CHANNELS, ctypes.byref(err))
        self._buf = np.zeros(self.MAX_SAMPLES * self.CHANNELS, dtype=np.int16)
        self._ptr = self._buf.ctypes.data_as(dopus.c_int16_ptr)

    def __del__(self) -> None:
        state = getattr(self, "_state", None)
        if state is not None:
            self._lib.opus_decoder_destroy(state)
            self._state = None

    def _last_duration(self) -> int:
        ret = ctypes.c_int32()
        self._lib.opus_decoder_ctl(self._state, dopus.CTL_LAST_PACKET_DURATION, ctypes.byref(ret))
        return ret.value or self.FRAME

    def decode(self, data: bytes) -> np.ndarray:
        """Decode one packet -> interleaved stereo int16 (raises OpusError on a corrupt packet)."""
        n = self._lib.opus_decode(self._state, data, len(data), self._ptr, self.MAX_SAMPLES, 0)
        return self._buf[: n * self.CHANNELS]

    def conceal(self) -> np.ndarray:
        """Packet-loss concealment for one lost frame (the length of the last one)."""
        n = self._lib.opus_decode(self._state, None, 0, self._ptr, min(self._last_duration(), self.MAX_SAMPLES), 0)
        return self._buf[: n * self.CHANNELS]

    def recover(self, next_packet: bytes) -> np.ndarray:
        """The frame lost just before ``next_packet``, from its in-band FEC (libopus falls back to PLC)."""
        size = min(self._last_duration(), self.MAX_SAMPLES)
        n = self._lib.opus_decode(self._state, next_packet, len(next_packet), self._ptr, size, 1)
        return self._buf[: n * self.CHANNELS]


class OpusStream:
    REORDER_DEPTH = 3  # packets waiting behind a hole before it is declared lost
    REORDER_WAIT = 0.06  # seconds the oldest waiting packet may wait
    MAX_CONCEAL = 5  # frames of PLC/FEC per hole (100 ms); longer holes are skipped
    RESYNC_AHEAD = 1500  # a jump this far ahead (30 s) starts over instead of concealing
    RESYNC_LATE_RUN = 10  # this many late packets in sequence order: the sender restarted its sequence
    RECENT = 64  # decoded sequence numbers remembered to tell duplicates from late packets

    def __init__(self, ssrc: int, user_id: int, stats: ReceiveStats) -> None:
        self.ssrc = ssrc
        self.user_id = user_id
        self._stats = stats
        self._decoder = PcmDecoder()
        self._down = Downsampler48kTo16k()
        self._expected: int | None = None
        self._buffer: dict[int, tuple[bytes, float]] = {}
        self._wait_since: float | None = None
        self._recent: deque[int] = deque(maxlen=self.RECENT)
        self._recent_set: set[int] = set()
        self._late_run = 0
        self._late_next = -1
        self._acc = np.zeros(0, dtype=np.float32)
        self.last_activity = 0.0

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def is_duplicate(self, seq: int) -> bool:
        """Already decoded or already waiting: checked before DAVE, which rejects replays with a vaguer error."""
        return seq in self._recent_set or seq in self._buffer

    # --- input ------------------------------------------------------------------------------------------------

    def push(self, seq: int, opus: bytes, t: float) -> list[MemberFrame]:
        """Accept one pending packet; returns the frames that became ready (in order)."""
        self.last_activity = t
        out: list[MemberFrame] = []
        if self._expected is None:
            self._expected = seq
        d = seq_distance(seq, self._expected)
        if d < 0:
            if seq in self._recent_set:
                self._stats.drop("duplicate", was_pending=True)
                return out
            # a restarted sender produces a *consecutive* run behind us; replays of old packets do not
            self._late_run = self._late_run + 1 if seq == self._late_next else 1
            self._late_next = (seq + 1) % _SEQ_MOD
            if self._late_run < self.RESYNC_LATE_RUN:
                self._stats.drop("late", was_pending=True)
                return out
            log.info("ssrc %d: sequence restarted (%d after %d); resynchronising", self.ssrc, seq, self._expected)
            out += self._release_all()
            self._expected = seq
            d = 0
        self._late_run = 0
        if d > self.RESYNC_AHEAD:
            out += self._release_all()
            self._expected = seq
        if seq in self._buffer:
            self._stats.drop("duplicate", was_pending=True)
            return out
        self._buffer[seq] = (opus, t)
        if self._wait_since is None:
            self._wait_since = t
        out += self._drain(t)
        return out

    def tick(self, now: float) -> list[MemberFrame]:
        """Give up on holes that waited too long (call every ~20 ms)."""
        if self._buffer and self._wait_since is not None and now - self._wait_since >= self.REORDER_WAIT:
            return self._drain(now, force=True)
        return []

    def close(self, reason: str) -> int:
        """Drop what is still buffered (counted under ``reason``); returns how many packets."""
        n = len(self._buffer)
        self._stats.drop_many(reason, n)
        self._buffer.clear()
        self._wait_since = None
        return n

    # --- internals --------------------------------------------------------------------------------------------

    def _drain(self, now: float, *, force: bool = False) -> list[MemberFrame]:
        out: list[MemberFrame] = []
        while self._buffer:
            assert self._expected is not None
            item = self._buffer.pop(self._expected, None)
            if item is not None:
                out += self._decode(self._expected, item[0], item[1])
                self._expected = (self._expected + 1) % _SEQ_MOD
                continue
            waited = self._wait_since is not None and now - self._wait_since >= self.REORDER_WAIT
            if not (force or waited or len(self._buffer) >= self.REORDER_DEPTH):
                break
            force = False
            nxt = min(self._buffer, key=lambda s: seq_distance(s, self._expected))  # type: ignore[arg-type]
            gap = seq_distance(nxt, self._expected)
            out += self._conceal(min(gap, self.MAX_CONCEAL), self._buffer[nxt][0], now)
            self._expected = nxt
        if not self._buffer:
            self._wait_since = None
        return out

    def _release_all(self) -> list[MemberFrame]:
        """Decode everything buffered in sequence order, without concealing holes."""
        out: list[MemberFrame] = []
        if self._buffer and self._expected is not None:
            ref = self._expected
            for seq in sorted(self._buffer, key=lambda s: seq_distance(s, ref)):
                opus, t = self._buffer.pop(seq)
                out += self._decode(seq, opus, t)
        self._buffer.clear()
        self._wait_since = None
        return out

    def _decode(self, seq: int, opus: bytes, t: float) -> list[MemberFrame]:
        try:
            pcm = self._decoder.decode(opus)
        except (OpusError, ValueError, OverflowError, TypeError) as exc:
            log.debug("ssrc %d seq %d: opus decode failed: %s", self.ssrc, seq, exc)
            self._stats.drop("opus", was_pending=True)
            return []
        self._remember(seq)
        frames = self._frames(pcm, t, concealed=False)
        self._stats.decoded()
        return frames

    def _conceal(self, n: int, next_opus: bytes, t: float) -> list[MemberFrame]:
        out: list[MemberFrame] = []
        for i in range(n):
            last = i == n - 1
            try:
                pcm = self._decoder.recover(next_opus) if last else self._decoder.conceal()
            except (OpusError, ValueError, OverflowError, TypeError):
                try:
                    pcm = self._decoder.conceal()
                except (OpusError, ValueError, OverflowError, TypeError):
                    continue
            self._stats.add("fec_frames" if last else "plc_frames")
            out += self._frames(pcm, t, concealed=True)
        return out

    def _remember(self, seq: int) -> None:
        if len(self._recent) == self._recent.maxlen:
            self._recent_set.discard(self._recent[0])
        self._recent.append(seq)
        self._recent_set.add(seq)

    def _frames(self, pcm48: np.ndarray, t: float, *, concealed: bool) -> list[MemberFrame]:
        pcm16 = self._down.process(pcm48)
        if self._acc.size:
            pcm16 = np.concatenate((self._acc, pcm16))
        n = pcm16.size // STT_FRAME_SAMPLES
        self._acc = pcm16[n * STT_FRAME_SAMPLES :].copy()
        frames = [
            MemberFrame(self.user_id, pcm16[i * STT_FRAME_SAMPLES : (i + 1) * STT_FRAME_SAMPLES], t, concealed)
            for i in range(n)
        ]
        self._stats.add("frames_out", len(frames))
        return frames
