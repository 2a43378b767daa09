"""Speech over the bot, with the default policy, on fake time: its voice goes down at once and it talks on
through a brief "yeah" (no gap the room hears); a member who goes on silences it to listen; a takeover's
words still make it give up the line; before its first sound it holds at once, as before."""

from __future__ import annotations

import pytest

from conversation.decision import Action
from conversation.rules import decide
from tests.fixtures_prompter import (
    ALICE,
    BOB,
    POLICY,
    T0,
    bot_speaking,
    final,
    make_room,
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


def test_before_its_first_sound_the_bot_holds_at_once():
    """Nothing to turn down yet: a line being prepared is held silent while someone speaks."""
    room = make_room(ALICE, BOB)
    room.bot_begin("respond_now", T0 + 1)
    start_speaking(room, ALICE, T0 + 1.5)
    d = at(room, T0 + 1.51)
    assert d.action is Action.PAUSE, d
