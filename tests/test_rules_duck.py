"""Speech over the bot, with the default policy, on fake time: its voice goes down at once and it talks on
through a brief "yeah" (no gap the room hears); a member who goes on silences it to listen; a takeover's
words still make it give up the line; before its first sound it holds at once, as before."""

from __future__ import annotations

import dataclasses

import pytest

from conversation.decision import Action
from conversation.rules import decide
from runtime.settings import load_settings
from tests.fixtures_prompter import (
    ALICE,
    BOB,
    POLICY,
    T0,
    bot_speaking,
    final,
    make_room,
    partial,
    start_speaking,
    stop_speaking,
)


def at(room, t):
    return decide(room, t, POLICY)


def _bot_speaking(room, since):
    return bot_speaking(room, since, audio_s=6.0)


def _ducked_by(room, uid, t):
    start_speaking(room, uid, t)
    d = at(room, t + 0.01)
    assert d.action is Action.DUCK and d.member_id == uid and d.rule == "floor", d
    room.bot_duck(t + 0.01, uid)


def test_the_default_turns_the_voice_down_rather_than_stopping_it():
    assert POLICY.duck_s > 0


@pytest.mark.parametrize("words", ["Yeah.", "Mm-hmm.", "Right.", ""])
def test_a_brief_backchannel_is_talked_through_softer_then_at_full_voice(words):
    room = make_room(ALICE, BOB)
    turn = _bot_speaking(room, T0 + 1)
    _ducked_by(room, BOB, T0 + 2)
    d = at(room, T0 + 2.2)
    assert d.action is Action.STAY_SILENT and "softer" in d.reason  # talks on, turned down
    stop_speaking(room, BOB, T0 + 2.3 + POLICY.speech_tail_s)
    d = at(room, T0 + 2.35 + POLICY.speech_tail_s)
    assert d.action is Action.STAY_SILENT and "softer" in d.reason  # their words are still being transcribed
    final(room, BOB, words, T0 + 2, T0 + 2.3)
    d = at(room, T0 + 2.5 + POLICY.speech_tail_s)
    assert d.action is Action.RESUME and "Bob" in d.reason, d
    room.bot_resume()
    assert turn.paused_since is None and turn.ducked_since is None and turn.pauses == 0  # never silent


@pytest.mark.parametrize("voice_s", [0.3, 0.42, POLICY.duck_s - 0.04])
def test_the_vads_end_silence_after_a_backchannel_is_not_counted_as_voice(voice_s):
    """ "Oh wow." over the bot: the VAD still says they speak while its end-of-speech silence runs, but it
    reported the pause when their voice stopped (`Room.on_quiet`), so the bot is never silenced for it, at
    any step of the prompter's loop."""
    policy = dataclasses.replace(POLICY, speech_tail_s=load_settings(env={}, env_file=None).vad_end_silence_ms / 1000)
    assert policy.speech_tail_s >= 0.2  # the silence the VAD waits before it says they stopped
    room = make_room(ALICE, BOB)
    turn = _bot_speaking(room, T0 + 1)
    _ducked_by(room, BOB, T0 + 2)
    voice_end = T0 + 2 + voice_s
    room.on_quiet(BOB, voice_end)  # the VAD's pause (reported about 64 ms after the voice stopped)
    stop_at = voice_end + policy.speech_tail_s
    t = T0 + 2.02
    while t < stop_at:
        d = decide(room, t, policy)
        assert d.action is Action.STAY_SILENT and "softer" in d.reason, (round(t - T0, 2), d)
        t += 0.01
    stop_speaking(room, BOB, stop_at)
    final(room, BOB, "Oh wow.", T0 + 2, voice_end)
    assert decide(room, stop_at + 0.2, policy).action is Action.RESUME
    assert turn.pauses == 0


def test_voice_that_comes_back_after_the_vads_pause_counts_again():
    room = make_room(ALICE, BOB)
    _bot_speaking(room, T0 + 1)
    _ducked_by(room, ALICE, T0 + 2)
    room.on_quiet(ALICE, T0 + 2.3)  # a breath ...
    assert at(room, T0 + 2.45).action is Action.STAY_SILENT
    room.on_quiet(ALICE, None)  # ... and she goes on
    d = at(room, T0 + 2.0 + POLICY.duck_s + 0.06)
    assert d.action is Action.PAUSE and d.member_id == ALICE, d


def test_a_member_who_goes_on_over_the_bot_silences_it_to_listen():
    room = make_room(ALICE, BOB)
    turn = _bot_speaking(room, T0 + 1)
    _ducked_by(room, ALICE, T0 + 2)
    assert at(room, T0 + 2.0 + POLICY.duck_s - 0.05).action is Action.STAY_SILENT
    d = at(room, T0 + 2.0 + POLICY.duck_s + 0.06)
    assert d.action is Action.PAUSE and d.member_id == ALICE, d
    room.bot_pause(T0 + 2.6, ALICE)
    assert turn.ducked_since is None and turn.paused_since is not None and ALICE in turn.paused_for
    d = at(room, T0 + 2.7)
    assert d.action is Action.STAY_SILENT and "paused" in d.reason


def test_bursts_add_up_while_the_voice_is_down():
    """ "Wait, <pause> wait": the second burst counts on from the first; the voice is silenced once their
    voice since the duck reaches duck_s."""
    room = make_room(ALICE, BOB)
    _bot_speaking(room, T0 + 1)
    _ducked_by(room, ALICE, T0 + 2)
    stop_speaking(room, ALICE, T0 + 2.3 + POLICY.speech_tail_s)  # 0.3 s of voice
    start_speaking(room, ALICE, T0 + 2.35 + POLICY.speech_tail_s)
    assert at(room, T0 + 2.40 + POLICY.speech_tail_s).action is Action.STAY_SILENT
    d = at(room, T0 + 2.35 + POLICY.speech_tail_s + POLICY.duck_s - 0.25)
    assert d.action is Action.PAUSE, d


def test_a_takeover_cue_heard_while_the_voice_is_down_takes_the_floor():
    room = make_room(ALICE, BOB)
    _bot_speaking(room, T0 + 1)
    _ducked_by(room, BOB, T0 + 2)
    stop_speaking(room, BOB, T0 + 2.3 + POLICY.speech_tail_s)
    final(room, BOB, "Wait.", T0 + 2, T0 + 2.3)
    d = at(room, T0 + 2.4 + POLICY.speech_tail_s)
    assert d.action is Action.YIELD_FLOOR and "Bob" in d.reason, d


def test_a_second_member_over_the_turned_down_voice_is_listened_for_too():
    room = make_room(ALICE, BOB)
    turn = _bot_speaking(room, T0 + 1)
    _ducked_by(room, BOB, T0 + 2)
    start_speaking(room, ALICE, T0 + 2.1)
    d = at(room, T0 + 2.11)
    assert d.action is Action.DUCK and d.member_id == ALICE
    room.bot_duck(T0 + 2.11, ALICE)
    assert turn.paused_for == {ALICE, BOB} and turn.ducked_since == pytest.approx(T0 + 2.01)


def test_a_backchannel_in_the_bots_pause_lets_its_voice_go_on_as_soon_as_it_is_known():
    """Words that only acknowledge ("Oh wow.") end the hold when their voice stops, without waiting out
    `barge_in_gap_s`; words that claim the floor ("Excuse me,") hold it through their pause."""
    from conversation.floor_rules import holds_new_runs

    room = make_room(ALICE, BOB)
    _bot_speaking(room, T0 + 1)
    _ducked_by(room, BOB, T0 + 2)
    room.on_quiet(BOB, T0 + 2.3)
    assert holds_new_runs(room, T0 + 2.4, POLICY)  # no words yet: his pause may be a comma's
    partial(room, BOB, "Excuse me,", T0 + 2, T0 + 2.3, paused=T0 + 2.3)
    assert holds_new_runs(room, T0 + 2.5, POLICY)
    room.on_quiet(BOB, None)
    partial(room, BOB, "Oh wow.", T0 + 2, T0 + 2.3, paused=T0 + 2.3)
    assert holds_new_runs(room, T0 + 2.5, POLICY)  # voicing again
    room.on_quiet(BOB, T0 + 2.5)
    assert not holds_new_runs(room, T0 + 2.6, POLICY)
    stop_speaking(room, BOB, T0 + 2.8)
    final(room, BOB, "Oh wow.", T0 + 2, T0 + 2.5)
    assert not holds_new_runs(room, T0 + 2.9, POLICY)


def test_before_its_first_sound_the_bot_holds_at_once():
    """Nothing to turn down yet: a line being prepared is held silent while someone speaks."""
    room = make_room(ALICE, BOB)
    room.bot_begin("respond_now", T0 + 1)
    start_speaking(room, ALICE, T0 + 1.5)
    d = at(room, T0 + 1.51)
    assert d.action is Action.PAUSE, d


def test_the_turned_down_voice_holds_its_next_sentence_while_they_talk():
    """`holds_new_runs`: the player holds the next run of the bot's voice while the member it turned down
    for is talking, through their own short pauses ("Excuse me, <0.3 s> um, …"); once they have been silent
    `barge_in_gap_s` (their pause inside the span, or after its end, before any transcript) it goes on; not
    for a microphone that echoes the bot, not while paused (the pause itself holds everything)."""
    from conversation.floor_rules import holds_new_runs

    gap, tail = POLICY.barge_in_gap_s, POLICY.speech_tail_s
    room = make_room(ALICE, BOB)
    _bot_speaking(room, T0 + 1)
    assert not holds_new_runs(room, T0 + 1.5, POLICY)
    _ducked_by(room, BOB, T0 + 2)
    assert holds_new_runs(room, T0 + 2.2, POLICY)
    room.on_quiet(BOB, T0 + 2.4)  # a comma's pause: still his talk
    assert holds_new_runs(room, T0 + 2.4 + gap - 0.05, POLICY)
    assert not holds_new_runs(room, T0 + 2.4 + gap + 0.01, POLICY)  # "mm-hm" over: the next sentence may start
    room.on_quiet(BOB, None)  # voice again
    assert holds_new_runs(room, T0 + 3.0, POLICY)
    stop_speaking(room, BOB, T0 + 3.2 + tail)  # his span ended (the VAD's tail after it)
    assert holds_new_runs(room, T0 + 3.2 + gap - 0.05, POLICY)
    assert not holds_new_runs(room, T0 + 3.2 + gap + 0.01, POLICY)
    start_speaking(room, BOB, T0 + 3.8)
    room.bot_pause(T0 + 3.9, BOB)
    assert not holds_new_runs(room, T0 + 4.0, POLICY)
    room.bot_resume()
    assert not holds_new_runs(room, T0 + 4.0, POLICY)
    room.members[BOB].echo_prone = True
    room.bot_duck(T0 + 4.1, BOB)
    assert not holds_new_runs(room, T0 + 4.2, POLICY)
