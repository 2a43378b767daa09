"""StreamPlayer.hold_new_runs: while someone speaks over the turned-down bot, its voice goes on where it is but
does not start again after a pause of its own (a sentence's end, a comma); nothing queued is lost."""

from __future__ import annotations

import numpy as np

from audio.playback import StreamPlayer
from tests.test_playback_player import read_frames, sine

RATE = 22_050  # Piper's rate
FRAME_S = 0.02


def voiced_frames(audio: np.ndarray) -> np.ndarray:
    """Per 20 ms frame of the player's output: voiced or not."""
    frames = audio[: len(audio) // 960 * 960, 0].reshape(-1, 960)
    return np.sqrt(np.mean(frames * frames, axis=1)) >= StreamPlayer.VOICED_RMS


def two_sentences(pause_s: float) -> np.ndarray:
    silence = np.zeros(int(pause_s * RATE), dtype=np.float32)
    return np.concatenate((sine(220.0, 0.4, RATE), silence, sine(220.0, 0.4, RATE)))


def test_the_next_sentence_waits_while_held_and_plays_whole_when_let_go():
    player = StreamPlayer()
    player.feed(two_sentences(0.2), RATE)
    player.end_of_utterance()
    first = voiced_frames(read_frames(player, 5))
    player.hold_new_runs(True)  # someone began speaking over the first sentence
    during = voiced_frames(read_frames(player, 60))
    assert first.all() and during[:10].sum() >= 9  # the sentence under way is not cut
    held_from = int(np.argmax(~during))  # its end
    assert not during[held_from:].any()  # the second sentence does not start while held
    assert player.frames_held >= 30  # 60 frames: the rest of the first (15), its pause (10), then held
    assert player.queued_seconds > 0.35  # ... and is still all there
    player.hold_new_runs(False)
    after = voiced_frames(read_frames(player, 40))
    assert 19 <= after.sum() <= 21  # the whole second sentence, 0.4 s


def test_a_short_stop_within_a_sentence_is_not_a_pause_to_hold_at():
    player = StreamPlayer()
    player.feed(two_sentences(0.06), RATE)  # a stop consonant's silence, not a pause
    player.end_of_utterance()
    player.hold_new_runs(True)
    out = voiced_frames(read_frames(player, 50))
    assert out.sum() >= 38 and player.frames_held == 0


def test_without_a_hold_the_pause_is_kept_as_it_is():
    player = StreamPlayer()
    player.feed(two_sentences(0.2), RATE)
    player.end_of_utterance()
    out = voiced_frames(read_frames(player, 60))
    assert player.frames_held == 0
    assert 39 <= out.sum() <= 42 and 8 <= (~out[:52]).sum() <= 12  # 0.4 s, 0.2 s pause, 0.4 s
