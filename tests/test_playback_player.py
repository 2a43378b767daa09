"""audio.playback.StreamPlayer: resampling, underrun without clicks, flush, first-packet time, seconds played."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from audio.playback import SILENCE_FRAME, StreamPlayer
from audio.types import DISCORD_FRAME_BYTES


def sine(freq: float, seconds: float, rate: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def read_frames(p: StreamPlayer, n: int) -> np.ndarray:
    out = []
    for _ in range(n):
        b = p.read()
        assert len(b) == DISCORD_FRAME_BYTES
        out.append(np.frombuffer(b, dtype="<i2").reshape(-1, 2))
    return np.concatenate(out).astype(np.float32) / 32768.0


def max_step(x: np.ndarray) -> float:
    return float(np.max(np.abs(np.diff(x[:, 0])))) if len(x) > 1 else 0.0


@pytest.mark.parametrize("rate", [16_000, 22_050, 24_000, 44_100, 48_000])
def test_any_rate_becomes_48k_stereo_with_the_right_pitch_and_length(rate):
    p = StreamPlayer()
    src = sine(440.0, 1.0, rate)
    p.feed((src * 32767).astype(np.int16), rate)  # int16 mono, like Piper
    p.end_of_utterance()
    out = read_frames(p, 60)
    assert np.array_equal(out[:, 0], out[:, 1])
    voiced = np.flatnonzero(np.abs(out[:, 0]) > 1e-3)
    length = voiced[-1] - voiced[0] + 1
    assert abs(length - 48_000) < 200, length
    assert abs(p.seconds_played - 1.0) < 0.01
    seg = out[voiced[0] + 2000 : voiced[0] + 2000 + 32768, 0]
    spec = np.abs(np.fft.rfft(seg * np.hanning(seg.size)))
    peak = np.fft.rfftfreq(seg.size, 1 / 48_000)[np.argmax(spec)]
    assert abs(peak - 440.0) < 3.0, peak
    ideal = sine(440.0, 1.0, 48_000)
    seg = out[voiced[0] + 1000 : voiced[0] + 40000, 0]
    corr = max(
        float(np.dot(seg, ideal[k : k + seg.size])) / (np.linalg.norm(seg) * np.linalg.norm(ideal[k : k + seg.size]))
        for k in range(0, 2000)
    )
    assert corr > 0.999
    assert abs(float(np.sqrt(np.mean(seg**2))) - 0.5 / np.sqrt(2)) < 0.01  # level preserved
    assert max_step(out) < 0.05  # no click at the start or the end (fades)


def test_stereo_and_float_input_and_bad_input():
    p = StreamPlayer()
    st = np.stack([sine(300, 0.2, 24_000), -sine(300, 0.2, 24_000)], axis=1)
    p.feed(st, 24_000)
    p.end_of_utterance()
    out = read_frames(p, 12)
    assert np.allclose(out[:, 0], -out[:, 1], atol=2 / 32768)
    with pytest.raises(ValueError):
        p.feed(np.zeros(10, np.float32), 0)
    with pytest.raises(ValueError):
        p.feed(np.zeros((2, 2, 2), np.float32), 16_000)
    with pytest.raises(ValueError):
        p.feed(np.array(["a", "b"]), 16_000)
    p.feed(np.array([np.nan, np.inf, -np.inf, 5.0], np.float32), 48_000)  # cleaned, not fatal


def test_silence_when_idle_and_underrun_fades_without_clicks():
    p = StreamPlayer()
    assert p.read() == SILENCE_FRAME and not p.is_playing_audio
    src = sine(200.0, 0.5, 22_050)
    # the producer delivers 30 ms pieces but falls behind: a gap of 100 ms after 0.25 s
    out = []
    pos = 0
    piece = int(0.03 * 22_050)
    for i in range(60):
        if pos < src.size and not (12 <= i < 17):
            p.feed(src[pos : pos + piece], 22_050)
            pos += piece
        out.append(read_frames(p, 1))
    p.end_of_utterance()
    out.append(read_frames(p, 10))
    x = np.concatenate(out)
    assert p.underruns > 0
    assert max_step(x) < 0.05  # 200 Hz at 0.5 moves < 0.014 per sample; a click would jump ~0.5
    zero_frames = [i for i in range(len(x) // 960) if not np.any(x[i * 960 : (i + 1) * 960])]
    assert zero_frames, "an underrun produces silent frames"
    assert abs(p.seconds_played - src.size / 22_050) < 0.01  # all the audio was sent, none invented


def test_flush_drops_at_once_with_a_short_fade_and_reports_dropped_seconds():
    p = StreamPlayer()
    p.feed(sine(250.0, 5.0, 22_050), 22_050)
    played = read_frames(p, 10)  # 0.2 s
    assert p.is_playing_audio
    dropped = p.flush()
    assert 4.7 < dropped < 4.81, dropped
    after = read_frames(p, 3)
    x = np.concatenate([played, after])
    assert max_step(x) < 0.05
    assert not np.any(after[960:])  # only the 2 ms fade tail, then silence
    assert not p.is_playing_audio
    assert abs(p.seconds_played - 0.2 - StreamPlayer.FADE / 48_000) < 0.005
    assert read_frames(p, 1).any() == False  # noqa: E712


def test_first_packet_callback_and_seconds_played_per_utterance():
    calls: list[tuple[float, str]] = []
    p = StreamPlayer(on_first_packet=lambda t: calls.append((t, threading.current_thread().name)))
    read_frames(p, 3)
    assert calls == []
    p.feed(sine(300, 0.5, 16_000), 16_000)
    p.end_of_utterance()
    before = time.monotonic()
    read_frames(p, 5)
    assert len(calls) == 1 and before <= calls[0][0] <= time.monotonic()
    read_frames(p, 30)
    assert len(calls) == 1
    assert abs(p.seconds_played - 0.5) < 0.01
    # a second line: new first-packet call, seconds_played restarts
    p.feed(sine(300, 0.3, 16_000), 16_000)
    p.end_of_utterance()
    read_frames(p, 2)
    assert len(calls) == 2
    assert p.seconds_played <= 0.04 + 1e-9
    read_frames(p, 20)
    assert abs(p.seconds_played - 0.3) < 0.01
    # flush mid-line then a new line: the callback fires again
    p.feed(sine(300, 2.0, 16_000), 16_000)
    read_frames(p, 5)
    assert len(calls) == 3
    p.flush()
    read_frames(p, 2)
    p.feed(sine(300, 0.2, 16_000), 16_000)
    read_frames(p, 2)
    assert len(calls) == 4


def test_feed_from_another_thread_while_the_player_reads():
    p = StreamPlayer()
    src = sine(220.0, 1.0, 24_000)

    def producer():
        for i in range(0, src.size, 1200):
            p.feed(src[i : i + 1200], 24_000)
            time.sleep(0.002)
        p.end_of_utterance()

    t = threading.Thread(target=producer)
    t.start()
    frames = []
    for _ in range(80):
        frames.append(read_frames(p, 1))
        time.sleep(0.001)
    t.join()
    frames.append(read_frames(p, 20))
    assert abs(p.seconds_played - 1.0) < 0.01
    assert p.is_opus() is False
    p.close()
    assert p.read() == b""


def test_pause_stops_the_voice_at_once_keeps_the_queue_and_resume_goes_on_without_clicks():
    p = StreamPlayer()
    src = sine(300.0, 1.0, 48_000)
    p.feed(src, 48_000)
    p.end_of_utterance()
    before = read_frames(p, 10)  # 200 ms played
    p.pause()
    assert p.paused
    paused = read_frames(p, 25)  # 500 ms: the first frame fades out, then silence
    assert np.abs(paused[960:]).max() == 0.0
    assert max_step(np.concatenate((before, paused[:960]))) < 0.05  # a fade, not a click
    assert p.is_playing_audio and p.seconds_played == pytest.approx(0.2, abs=0.01)
    p.resume()
    after = read_frames(p, 45)  # the rest of the second, then silence
    peaks = np.abs(after[: 960 * 45]).reshape(45, -1).max(axis=1)
    assert (peaks[:39] > 0.1).all() and (peaks[41:] == 0).all()  # the remaining 0.8 s, then silence
    assert max_step(after[: 960 * 40]) < 0.05
    assert p.seconds_played == pytest.approx(1.0, abs=0.01)  # nothing lost but the 2 ms fade
    assert not p.is_playing_audio


def test_flush_while_paused_then_resume_plays_the_next_line():
    p = StreamPlayer()
    p.feed(sine(300.0, 0.5, 48_000), 48_000)
    read_frames(p, 5)
    p.pause()
    read_frames(p, 3)
    p.flush()
    p.resume()
    read_frames(p, 3)
    p.feed(sine(500.0, 0.3, 48_000), 48_000)
    p.end_of_utterance()
    peaks = np.abs(read_frames(p, 20)).reshape(20, -1).max(axis=1)
    assert (peaks > 0.1).sum() >= 14


def test_a_turned_down_voice_talks_on_softer_without_a_click_and_comes_back():
    """`set_gain` (someone speaks over the bot): the next frame ramps to the new level, nothing is skipped or
    paused, and 1.0 brings the voice back the same way."""
    from bot.voice_output import DUCK_GAIN

    p = StreamPlayer()
    p.feed(sine(300.0, 1.0, 48_000), 48_000)
    p.end_of_utterance()
    before = read_frames(p, 10)
    p.set_gain(DUCK_GAIN)
    ducked = read_frames(p, 20)
    p.set_gain(1.0)
    after = read_frames(p, 20)
    peaks = lambda x: np.abs(x).reshape(-1, 1920).max(axis=1)  # noqa: E731
    assert peaks(before).min() > 0.45
    assert peaks(ducked)[1:] == pytest.approx([0.5 * DUCK_GAIN] * 19, abs=0.01)  # softer, never silent
    assert (peaks(after)[1:] > 0.45).all()
    whole = np.concatenate((before, ducked, after))
    assert max_step(whole) < 0.05  # ramps, not clicks (a 300 Hz sine at 0.5 steps at most 0.02)
    assert p.seconds_played == pytest.approx(1.0, abs=0.01)  # nothing lost while turned down
