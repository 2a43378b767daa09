"""`StreamPlayer`: a discord.AudioSource fed with PCM at any rate, cut at once on barge-in.

discord.py's AudioPlayer thread calls `read()` every 20 ms and Opus-encodes (and DAVE-encrypts) what it gets.
`feed()` only queues (any thread); resampling to 48 kHz stereo happens lazily in `read()`, a few tens of ms of
input at a time, so feeding a long sentence costs the caller nothing and `flush()` is instant.

No clicks: a full frame is only sent while ``FADE`` samples more are buffered (or the line has ended), so when
the producer falls behind, the audio that is sent ends in a short fade-out; audio resuming after a gap fades in;
`flush()` keeps just a faded tail of what was playing.

`pause()` stops the voice at the next frame (a 2 ms fade-out; what is queued stays) and sends silence
until `resume()`, which goes on where it stopped (fading in): the bot listens while someone speaks over
it, and carries on after a backchannel. `set_gain()` turns the voice down (or back up) from the next frame,
ramped over it: the bot talks on, softer, through someone's brief "yeah".
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Callable

import discord
import numpy as np

from audio.resample import StreamResampler
from audio.types import DISCORD_FRAME_BYTES, DISCORD_FRAME_SAMPLES, DISCORD_RATE

log = logging.getLogger(__name__)

_END = "end"
SILENCE_FRAME = bytes(DISCORD_FRAME_BYTES)


class StreamPlayer(discord.AudioSource):
    """Always 48 kHz stereo s16 20 ms frames out; silence when there is nothing to say."""

    FADE = 96  # samples (2 ms at 48 kHz)
    SLICE_SECONDS = 0.04  # input resampled per step inside read()
    MAX_QUEUED_SECONDS = 600.0
    # `hold_new_runs`: after this much silence (a sentence's end, a comma's pause: Piper leaves 120-220 ms, a
    # stop consonant within a word under 100 ms) the next voiced frame waits
    HOLD_AFTER_SILENCE_S = 0.12
    VOICED_RMS = 0.003  # a frame quieter than this (about -50 dBFS) is silence

    def __init__(self, *, on_first_packet: Callable[[float], None] | None = None) -> None:
        self.on_first_packet = on_first_packet
        self._lock = threading.Lock()
        self._items: deque[list] = deque()  # [pcm (n, ch) float32, rate, offset] or [_END]
        self._queued_in = 0.0  # seconds of input audio in _items
        self._out = np.zeros((0, 2), dtype=np.float32)  # resampled, ready to send
        self._resampler: StreamResampler | None = None
        self._res_key: tuple[int, int] | None = None
        self._fed_since_end = False
        self._in_utterance = False  # the player side: sending an utterance now
        self._ended = False  # the current utterance's end marker reached _out
        self._seconds_played = 0.0
        self._first_sent = True
        self._fade_in_next = True
        self._last_audible = False
        self._closed = False
        self._paused = False
        self._fade_out_pending = False  # paused: the next frame fades out what was about to play
        self._gain = 1.0  # applied to every frame sent; changes ramp over one frame (no click)
        self._gain_target = 1.0
        self._hold_runs = False  # someone speaks over the (turned-down) voice: it does not start again meanwhile
        self._quiet_frames = 0  # frames sent in a row that were silent
        self.frames_sent = 0
        self.underruns = 0
        self.frames_held = 0  # silent frames sent because a run of voice waited (`hold_new_runs`)

    # --- producer side (any thread) ---------------------------------------------------------------------------

    def feed(self, pcm: np.ndarray, rate: int) -> None:
        """Queue mono (n,) or (n, channels) float32 [-1, 1] / int16 audio at ``rate`` Hz for the current line."""
        audio = _as_float_frames(pcm)
        if not isinstance(rate, (int, np.integer)) or rate <= 0:
            raise ValueError(f"sample rate must be a positive integer, got {rate!r}")
        if audio.shape[0] == 0:
            return
        seconds = audio.shape[0] / rate
        with self._lock:
            if self._queued_in + seconds > self.MAX_QUEUED_SECONDS:
                log.warning(
                    "StreamPlayer: %.1f s already queued; dropping %.2f s of new audio", self._queued_in, seconds
                )
                return
            self._items.append([audio, int(rate), 0])
            self._queued_in += seconds
            self._fed_since_end = True

    def end_of_utterance(self) -> None:
        """Mark the end of the current line: its tail is flushed out of the resampler, `seconds_played` restarts
        with the next line."""
        with self._lock:
            if self._fed_since_end:
                self._items.append([_END])
                self._fed_since_end = False

    def flush(self) -> float:
        """Barge-in: drop everything queued now (a 2 ms fade-out tail stays). Returns seconds of audio dropped."""
        with self._lock:
            dropped = self._queued_in
            self._items.clear()
            self._queued_in = 0.0
            self._fed_since_end = False
            tail = self._out[: self.FADE].copy()
            dropped += (self._out.shape[0] - tail.shape[0]) / DISCORD_RATE
            if tail.shape[0]:
                tail *= np.linspace(1.0, 0.0, tail.shape[0], dtype=np.float32)[:, None]
            self._out = tail
            self._resampler = None
            self._res_key = None
            self._ended = True
            return dropped

    def pause(self) -> None:
        """Stop the voice now (after a 2 ms fade-out), keeping everything queued."""
        with self._lock:
            if not self._paused:
                self._paused = True
                self._fade_out_pending = self._in_utterance

    def resume(self) -> None:
        """Go on where `pause()` stopped."""
        with self._lock:
            if self._paused:
                self._paused = False
                self._fade_in_next = True

    def set_gain(self, gain: float) -> None:
        """Play on at ``gain`` (0..1) from the next frame, ramped over that frame: turned down while someone
        speaks over the bot, back to 1.0 after."""
        with self._lock:
            self._gain_target = min(1.0, max(0.0, float(gain)))

    def hold_new_runs(self, hold: bool) -> None:
        """While `hold`, the voice goes on where it is, but once it has fallen silent (between sentences, at a
        comma) it does not start again: a person does not start a sentence over someone who began talking in
        their pause. Queued audio waits; `hold_new_runs(False)` lets it go on."""
        with self._lock:
            self._hold_runs = bool(hold)

    @property
    def gain(self) -> float:
        with self._lock:
            return self._gain_target

    @property
    def paused(self) -> bool:
        with self._lock:
            return self._paused

    def close(self) -> None:
        """Make `read()` return b"" so discord.py's player stops."""
        with self._lock:
            self._closed = True

    # --- state ------------------------------------------------------------------------------------------------

    @property
    def seconds_played(self) -> float:
        """Seconds of the current (or last) utterance actually handed to discord.py."""
        with self._lock:
            return self._seconds_played

    @property
    def is_playing_audio(self) -> bool:
        with self._lock:
            has_audio = any(item[0] is not _END for item in self._items)
            return has_audio or self._out.shape[0] > 0 or self._last_audible

    @property
    def queued_seconds(self) -> float:
        with self._lock:
            return self._queued_in + self._out.shape[0] / DISCORD_RATE

    # --- discord.AudioSource (player thread) ------------------------------------------------------------------

    def is_opus(self) -> bool:
        return False

    def read(self) -> bytes:
        first_packet_at: float | None = None
        with self._lock:
            if self._closed:
                return b""
            if self._paused:
                frame, real = self._paused_frame()
            elif self._holding():
                frame, real = None, 0
                self.frames_held += 1
            else:
                frame, real = self._next_frame()
            quiet = frame is None or float(np.sqrt(np.mean(frame * frame))) < self.VOICED_RMS
            self._quiet_frames = self._quiet_frames + 1 if quiet else 0
            if frame is not None:
                frame = self._apply_gain(frame)
            if real:
                if not self._first_sent:
                    self._first_sent = True
                    first_packet_at = time.monotonic()
                self._seconds_played += real / DISCORD_RATE
            self._last_audible = real > 0
            self.frames_sent += 1
        if first_packet_at is not None and self.on_first_packet is not None:
            try:
                self.on_first_packet(first_packet_at)
            except Exception:
                log.exception("on_first_packet callback failed")
        if frame is None:
            return SILENCE_FRAME
        return np.clip(np.rint(frame * 32767.0), -32768, 32767).astype("<i2").tobytes()

    def cleanup(self) -> None:
        pass

    # --- internals (lock held) --------------------------------------------------------------------------------

    def _next_frame(self) -> tuple[np.ndarray | None, int]:
        need = DISCORD_FRAME_SAMPLES + self.FADE
        self._fill(need)
        avail = self._out.shape[0]
        if avail == 0:
            if self._ended:
                self._in_utterance = False
            return None, 0
        if not self._in_utterance:
            self._start_utterance()
        if avail >= need or self._ended:
            n = min(DISCORD_FRAME_SAMPLES, avail)
            fade_out = self._ended and n == avail  # the very end of the line
        else:  # producer behind: send what we have, fading out, then silence
            n = min(DISCORD_FRAME_SAMPLES, avail)
            fade_out = True
            self.underruns += 1
        chunk = self._out[:n].copy()
        self._out = self._out[n:]
        if self._fade_in_next:
            k = min(self.FADE, n)
            chunk[:k] *= np.linspace(0.0, 1.0, k, dtype=np.float32)[:, None]
            self._fade_in_next = False
        if fade_out:
            k = min(self.FADE, n)
            chunk[n - k :] *= np.linspace(1.0, 0.0, k, dtype=np.float32)[:, None]
            self._fade_in_next = True
        if n < DISCORD_FRAME_SAMPLES:
            chunk = np.concatenate((chunk, np.zeros((DISCORD_FRAME_SAMPLES - n, 2), dtype=np.float32)))
        if self._ended and self._out.shape[0] == 0:
            self._in_utterance = False
        return chunk, n

    def _holding(self) -> bool:
        """A run of voice is held (`hold_new_runs`): the voice has been silent long enough, and what comes
        next is voiced."""
        if not self._hold_runs or self._quiet_frames * DISCORD_FRAME_SAMPLES < self.HOLD_AFTER_SILENCE_S * DISCORD_RATE:
            return False
        self._fill(DISCORD_FRAME_SAMPLES)
        upcoming = self._out[:DISCORD_FRAME_SAMPLES]
        return upcoming.shape[0] > 0 and float(np.sqrt(np.mean(upcoming * upcoming))) >= self.VOICED_RMS

    def _apply_gain(self, frame: np.ndarray) -> np.ndarray:
        if self._gain == self._gain_target:
            return frame if self._gain == 1.0 else frame * np.float32(self._gain)
        ramp = np.linspace(self._gain, self._gain_target, frame.shape[0], dtype=np.float32)[:, None]
        self._gain = self._gain_target
        return frame * ramp

    def _paused_frame(self) -> tuple[np.ndarray | None, int]:
        """Silence while paused; the first paused frame fades out the samples that were due."""
        if not self._fade_out_pending or self._out.shape[0] == 0:
            self._fade_out_pending = False
            return None, 0
        self._fade_out_pending = False
        k = min(self.FADE, self._out.shape[0])
        chunk = np.zeros((DISCORD_FRAME_SAMPLES, 2), dtype=np.float32)
        chunk[:k] = self._out[:k] * np.linspace(1.0, 0.0, k, dtype=np.float32)[:, None]
        self._out = self._out[k:]
        return chunk, k

    def _start_utterance(self) -> None:
        self._in_utterance = True
        self._seconds_played = 0.0
        self._first_sent = False
        self._fade_in_next = True

    def _fill(self, need: int) -> None:
        """Resample queued input into _out until ``need`` samples are ready or the current line ends."""
        if self._ended and self._out.shape[0] == 0 and self._items:
            self._ended = False  # the next line begins
            self._in_utterance = False
        while self._out.shape[0] < need and self._items and not self._ended:
            item = self._items[0]
            if item[0] is _END:
                self._items.popleft()
                if self._resampler is not None:
                    self._append(self._resampler.drain(self._res_key[1] if self._res_key else 1))
                self._resampler = None
                self._res_key = None
                self._ended = True
                break
            pcm, rate, off = item
            step = max(1, int(rate * self.SLICE_SECONDS))
            piece = pcm[off : off + step]
            item[2] = off + piece.shape[0]
            if item[2] >= pcm.shape[0]:
                self._items.popleft()
            self._queued_in = max(0.0, self._queued_in - piece.shape[0] / rate)
            key = (rate, pcm.shape[1])
            if key != self._res_key:
                if self._resampler is not None and self._res_key is not None:
                    self._append(self._resampler.drain(self._res_key[1]))
                self._resampler = StreamResampler(rate, DISCORD_RATE)
                self._res_key = key
            assert self._resampler is not None
            self._append(self._resampler.process(piece))

    def _append(self, audio: np.ndarray) -> None:
        if audio.ndim == 1:
            audio = audio[:, None]
        if audio.shape[0] == 0:
            return
        if audio.shape[1] == 1:
            audio = np.repeat(audio, 2, axis=1)
        self._out = np.concatenate((self._out, audio.astype(np.float32, copy=False)))


def _as_float_frames(pcm: np.ndarray) -> np.ndarray:
    """(n, 1) or (n, 2) float32 in [-1, 1] from int16/float mono or multi-channel input."""
    a = np.asarray(pcm)
    if a.dtype == np.int16:
        a = a.astype(np.float32) / 32768.0
    elif np.issubdtype(a.dtype, np.floating):
        a = np.nan_to_num(a.astype(np.float32, copy=False), nan=0.0, posinf=1.0, neginf=-1.0)
        a = np.clip(a, -1.0, 1.0)
    else:
        raise ValueError(f"PCM must be int16 or float, got {a.dtype}")
    if a.ndim == 1:
        return a[:, None]
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(f"PCM must be shaped (n,) or (n, channels), got {a.shape}")
    if a.shape[1] > 2:
        return a.mean(axis=1, keepdims=True)
    return a
