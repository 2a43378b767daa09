"""The channel as one recording: the members' lines and the bot's audio as a member heard it, placed in time.

`ArrivalTap` notes when each bot packet reached a member; `channel_mix` lays the member lines and the bot's
received audio on one mono timeline (`simulator.scripted` writes it as channel.wav).
"""

from __future__ import annotations

import bisect
import wave
from pathlib import Path

import numpy as np

from simulator import audio_files
from simulator.member import FRAME_SECONDS, SimMember

WAV_RATE = 24_000


class ArrivalTap:
    """Arrival time of every bot packet a member decoded (so the channel recording places the bot's audio
    where it was heard). Wraps that member's `_on_bot_frame` (the server's per-packet call into the
    member; simulator 1.x) on the instance: one decoded packet = one 20 ms chunk of `received_pcm()`."""

    def __init__(self, member: SimMember) -> None:
        self.member = member
        self.arrivals: list[float] = []
        self._inner = member._on_bot_frame

        def tapped(from_user_id: int, ssrc: int, frame: bytes, arrival: float) -> None:
            failed = member.stats["dave_failed"] + member.stats["decode_failed"]
            self._inner(from_user_id, ssrc, frame, arrival)
            if member.stats["dave_failed"] + member.stats["decode_failed"] == failed:
                self.arrivals.append(arrival)

        member._on_bot_frame = tapped  # type: ignore[method-assign]

    def first_voiced_after(self, t: float, within_s: float = 5.0) -> float | None:
        """Arrival of the first bot packet at or after ``t`` whose audio is voiced (peak >= VOICED_PEAK)."""
        pcm = self.member.received_pcm()
        n = audio_files.FRAME_SAMPLES
        if pcm.shape[0] != len(self.arrivals) * n:  # history trimmed: use the member's own bookkeeping
            later = [s for s in self.member.utterance_starts() if s >= t - 0.005]
            return later[0] if later and later[0] - t < within_s else None
        i0 = bisect.bisect_left(self.arrivals, t - 0.005)
        i1 = bisect.bisect_right(self.arrivals, t + within_s)
        if i1 <= i0:
            return None
        peaks = np.abs(pcm[i0 * n : i1 * n].reshape(i1 - i0, n * pcm.shape[1]).astype(np.int32)).max(axis=1)
        voiced = np.flatnonzero(peaks >= SimMember.VOICED_PEAK)
        return self.arrivals[i0 + int(voiced[0])] if voiced.size else None


def bot_onsets(pcm: np.ndarray) -> list[int]:
    """Sample offsets (in `pcm`, 48 kHz (n, 2)) where the member would have logged a bot utterance start:
    a 20 ms packet with a peak >= SimMember.VOICED_PEAK after > UTTERANCE_GAP s without one."""
    n = audio_files.FRAME_SAMPLES
    frames = pcm.shape[0] // n
    if frames == 0:
        return []
    peaks = np.abs(pcm[: frames * n].reshape(frames, n * pcm.shape[1]).astype(np.int32)).max(axis=1)
    onsets, last = [], -1e9
    for i in np.flatnonzero(peaks >= SimMember.VOICED_PEAK):
        if (i - last) * FRAME_SECONDS > SimMember.UTTERANCE_GAP:
            onsets.append(int(i) * n)
        last = int(i)
    return onsets


def place_packets(bot_pcm: np.ndarray, arrivals: list[float], origin: float) -> list[tuple[float, np.ndarray]]:
    """The bot's received audio cut into runs of packets, each run at its arrival time (seconds after
    ``origin``). A packet that arrives early (a burst after the sender fell behind) is queued after the
    previous one, as a jitter buffer would play it."""
    n = audio_files.FRAME_SAMPLES
    mono = bot_pcm.astype(np.float32).mean(axis=1) / 32768.0
    pieces: list[tuple[float, np.ndarray]] = []
    run_start, run_from, cursor = None, 0, -1e9
    for i, arrival in enumerate(arrivals):
        t = arrival - origin
        if run_start is None or t > cursor + 0.06:  # a gap: start a new run at this packet's arrival
            if run_start is not None:
                pieces.append((run_start, mono[run_from * n : i * n]))
            run_start, run_from, cursor = t, i, t
        cursor += FRAME_SECONDS
    if run_start is not None:
        pieces.append((run_start, mono[run_from * n : len(arrivals) * n]))
    return pieces


def channel_mix(
    member_audio: list[tuple[float, np.ndarray]],
    bot_pcm: np.ndarray,
    bot_starts: list[float],
    arrivals: list[float] | None = None,
    *,
    origin: float,
    rate: int = WAV_RATE,
) -> np.ndarray:
    """One mono float32 timeline of the channel: each member line at its start, and the bot's audio as a
    member received it, placed by packet arrival times (else each bot utterance at its `utterance_starts`)."""
    pieces: list[tuple[float, np.ndarray]] = []
    for start_s, pcm in member_audio:
        pieces.append((start_s, pcm.astype(np.float32).mean(axis=1) / 32768.0))
    if arrivals and bot_pcm.shape[0] == len(arrivals) * audio_files.FRAME_SAMPLES:
        pieces.extend(place_packets(bot_pcm, arrivals, origin))
    elif bot_pcm.size and bot_starts:
        onsets = bot_onsets(bot_pcm)
        mono = bot_pcm.astype(np.float32).mean(axis=1) / 32768.0
        if len(onsets) == len(bot_starts):  # anchor each utterance at its own arrival
            bounds = onsets[1:] + [mono.shape[0]]
            for onset, end, t in zip(onsets, bounds, bot_starts):
                pieces.append((t - origin, mono[onset:end]))
        elif onsets:  # counts differ (trimmed history): one anchor for the whole stream
            pieces.append((bot_starts[0] - origin, mono[onsets[0] :]))
    if not pieces:
        return np.zeros(0, dtype=np.float32)
    pieces = [(max(0.0, t), audio_files.resample(p, audio_files.DISCORD_RATE, rate)) for t, p in pieces if p.size]
    if not pieces:
        return np.zeros(0, dtype=np.float32)
    total = max(int(t * rate) + p.shape[0] for t, p in pieces) + rate // 2
    out = np.zeros(total, dtype=np.float32)
    for t, p in pieces:
        i = int(t * rate)
        out[i : i + p.shape[0]] += p
    return np.clip(out, -1.0, 1.0)


def write_wav(path: Path, mono: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(audio_files.to_int16(mono).tobytes())


def voiced_seconds(pcm: np.ndarray) -> float:
    """Seconds of 20 ms packets with a peak >= SimMember.VOICED_PEAK."""
    n = audio_files.FRAME_SAMPLES
    frames = pcm.shape[0] // n
    if frames == 0:
        return 0.0
    peaks = np.abs(pcm[: frames * n].reshape(frames, n * pcm.shape[1]).astype(np.int32)).max(axis=1)
    return float((peaks >= SimMember.VOICED_PEAK).sum()) * FRAME_SECONDS
