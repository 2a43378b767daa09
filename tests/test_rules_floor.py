"""While the bot holds the floor, on fake time, with the voice silenced at once (`duck_s=0`; the default
turns it down first: tests/test_rules_duck.py): anyone speaking over it pauses it at once; a backchannel
lets it go on; a takeover (its words, or long speech) makes it give up the line; and the end of a member's
turn (semantic model, words) decides how long the bot waits before answering."""

from __future__ import annotations

import pytest

from conversation.decision import Action, Policy
from conversation.rules import decide
from tests.fixtures_prompter import (
    ALICE,
    BOB,
    CAROL,
    POLICY,
    T0,
    bot_says,
    bot_speaking,
    final,
    make_room,
    partial,
    say,
    start_speaking,
    stop_speaking,
)


PAUSE_AT_ONCE = Policy(prepare_in_wait=False, duck_s=0.0)


def at(room, t, policy=PAUSE_AT_ONCE):
    return decide(room, t, policy)


def _paused_by(room, uid, t):
    """Someone starts over the bot at `t`: the rules pause it (as the session does when told to)."""
    start_speaking(room, uid, t)
    d = at(room, t + 0.01)
    assert d.action is Action.PAUSE and d.member_id == uid and d.rule == "floor", d
    room.bot_pause(t + 0.01, uid)
    return d


# --- pause at once, then go on or give up -----------------------------------------------------------


def test_anyone_speaking_over_the_bot_pauses_it_at_once():
    room = make_room(ALICE, BOB)
    bot_speaking(room, T0 + 1)
    _paused_by(room, ALICE, T0 + 2)
    d = at(room, T0 + 2.2)  # still speaking: the bot listens, nothing decided yet
    assert d.action is Action.STAY_SILENT and d.rule == "floor" and "paused" in d.reason


@pytest.mark.parametrize("words", ["Mm-hmm.", "Yeah.", "Ha ha ha!", "Oh wow.", "Right, right.", "in memory.", ""])
def test_a_backchannel_over_the_bot_lets_its_line_go_on(words):
    """Stock backchannels, a short burst Whisper misheard ("in memory." for a clipped "mm-hm"), or a sound
    it rejected (an empty final): the line goes on."""
    room = make_room(ALICE, BOB)
    bot_speaking(room, T0 + 1)
    _paused_by(room, BOB, T0 + 2)
    stop_speaking(room, BOB, T0 + 2.7)
    assert at(room, T0 + 2.75).action is Action.STAY_SILENT  # their words are still being transcribed
    final(room, BOB, words, T0 + 2, T0 + 2.4)
    d = at(room, T0 + 2.9)
    assert d.action is Action.RESUME and "Bob" in d.reason
    room.bot_resume()
    assert at(room, T0 + 3.0).rule == "bot_busy"


@pytest.mark.parametrize(
    "words", ["Wait.", "Stop, stop.", "Sorry, what?", "Excuse me,", "Hold on,", "Actually I think we should go."]
)
def test_a_takeover_over_the_bot_takes_the_floor(words):
    room = make_room(ALICE, BOB)
    bot_speaking(room, T0 + 1)
    _paused_by(room, BOB, T0 + 2)
    stop_speaking(room, BOB, T0 + 2.8)
    final(room, BOB, words, T0 + 2, T0 + 2.5)
    d = at(room, T0 + 2.85)
    assert d.action is Action.YIELD_FLOOR and d.member_id == BOB and "words over the bot" in d.reason
    assert words not in d.reason  # decisions are logged at INFO: no transcripts in them


def test_words_decide_as_soon_as_a_partial_shows_them():
    room = make_room(ALICE, BOB)
    bot_speaking(room, T0 + 1)
    _paused_by(room, ALICE, T0 + 2)
    partial(room, ALICE, "Wait, wait, I have a", T0 + 2, T0 + 2.6)
    assert at(room, T0 + 2.65).action is Action.YIELD_FLOOR


def test_long_speech_over_the_bot_takes_the_floor_before_its_words_are_known():
    room = make_room(ALICE, BOB)
    bot_speaking(room, T0 + 1)
    _paused_by(room, ALICE, T0 + 2)
    assert at(room, T0 + 2 + POLICY.barge_in_s - 0.05).action is Action.STAY_SILENT
    d = at(room, T0 + 2 + POLICY.barge_in_s + 0.01)
    assert d.action is Action.YIELD_FLOOR and "ms over the bot" in d.reason


def test_bursts_over_the_bot_add_up_to_a_takeover():
    """ "Wait, <pause> wait, <pause> hold on": short bursts in quick succession are one run of speech."""
    room = make_room(ALICE, BOB)
    bot_speaking(room, T0 + 1)
    _paused_by(room, ALICE, T0 + 2)
    stop_speaking(room, ALICE, T0 + 2.35)
    start_speaking(room, ALICE, T0 + 2.6)
    stop_speaking(room, ALICE, T0 + 2.95)
    start_speaking(room, ALICE, T0 + 3.2)
    assert at(room, T0 + 3.25).action is Action.STAY_SILENT  # 350 + 350 + 50 ms
    d = at(room, T0 + 3.51)  # 350 + 350 + 310 ms
    assert d.action is Action.YIELD_FLOOR and d.member_id == ALICE


def test_two_mm_hms_far_apart_do_not_add_up():
    room = make_room(ALICE, BOB)
    bot_speaking(room, T0 + 1)
    _paused_by(room, ALICE, T0 + 2)
    stop_speaking(room, ALICE, T0 + 2.5)
    final(room, ALICE, "Mm-hmm.", T0 + 2, T0 + 2.5)
    assert at(room, T0 + 2.6).action is Action.RESUME
    room.bot_resume()
    t = T0 + 2.5 + POLICY.barge_in_gap_s + 0.1
    _paused_by(room, ALICE, t)  # the second one, after a longer gap: a fresh run
    assert at(room, t + 0.6).action is Action.STAY_SILENT  # together with the first it would pass 1 s


def test_vad_tail_does_not_stretch_a_backchannel_into_a_takeover():
    """The stop event comes the VAD's end silence after the voice: a 0.8 s laugh reports a 1.1 s span."""
    policy = Policy(prepare_in_wait=False, speech_tail_s=0.3)
    room = make_room(ALICE, BOB)
    bot_speaking(room, T0 + 1)
    _paused_by(room, ALICE, T0 + 2)
    stop_speaking(room, ALICE, T0 + 3.1)
    assert at(room, T0 + 3.15, policy).action is Action.STAY_SILENT  # paused, waiting for the words
    assert at(room, T0 + 3.15, Policy(prepare_in_wait=False, speech_tail_s=0.0)).action is Action.YIELD_FLOOR


def test_paused_too_long_without_a_verdict_gives_up_the_line():
    room = make_room(ALICE, BOB)
    bot_speaking(room, T0 + 1)
    _paused_by(room, ALICE, T0 + 2)
    stop_speaking(room, ALICE, T0 + 2.5)  # stopped; the transcript never comes
    assert at(room, T0 + 2.5 + POLICY.final_timeout_s - 0.1).action is Action.STAY_SILENT
    assert at(room, T0 + 2.5 + POLICY.final_timeout_s + 0.1).action is Action.RESUME  # a lost final: go on


def test_a_member_whose_microphone_echoes_the_bot_does_not_pause_it():
    room = make_room(ALICE, BOB)
    bot_speaking(room, T0 + 1)
    room.members[BOB].echo_prone = True
    start_speaking(room, BOB, T0 + 2)
    assert at(room, T0 + 2.05).rule == "bot_busy"
    assert at(room, T0 + 4.0).rule == "bot_busy"  # not even long: it is the bot's own voice
    partial(room, BOB, "Hold on, hold on, that's wrong.", T0 + 2, T0 + 3)  # but real words still count
    assert at(room, T0 + 4.1).action is Action.YIELD_FLOOR


def test_someone_speaking_while_the_reply_is_prepared_holds_it_back():
    room = make_room(ALICE, BOB)
    line = say(room, ALICE, "Juniper, what's the time?", T0, T0 + 1)
    room.bot_begin("respond_now", T0 + 1.3, reply_to_seq=line.seq)
    _paused_by(room, BOB, T0 + 1.5)  # nothing heard yet: the reply waits
    stop_speaking(room, BOB, T0 + 2.0)
    final(room, BOB, "Hmm.", T0 + 1.5, T0 + 1.7)
    assert at(room, T0 + 2.1).action is Action.RESUME  # a "hmm": the reply goes out
    room.bot_resume()
    _paused_by(room, BOB, T0 + 2.2)
    partial(room, BOB, "I think it's about five o'clock", T0 + 2.2, T0 + 3.0)
    assert at(room, T0 + 3.1).action is Action.YIELD_FLOOR  # Bob answered her: the reply is dropped


def test_an_early_start_is_left_to_its_own_check_not_paused_for_its_speaker():
    room = make_room(ALICE, BOB)
    start_speaking(room, ALICE, T0 + 1)
    partial(room, ALICE, "Juniper, what time is it?", T0 + 1, T0 + 2.5, paused=T0 + 2.56)
    room.bot_begin(
        "respond_now", T0 + 2.57, preemptive=True, basis_user_id=ALICE, basis_text="Juniper, what time is it?"
    )
    assert at(room, T0 + 2.6).action is Action.STAY_SILENT  # her pause: no barge-in by the member it answers


# --- names against the people present -------------------------------------------------------------


def test_a_member_named_like_the_bot_is_the_one_spoken_to():
    room = make_room(ALICE, BOB)
    room.rename(BOB, "Jennifer")
    say(room, ALICE, "Jennifer, can you pass me the salt?", T0 + 1, T0 + 2.5)
    for t in (T0 + 2.8, T0 + 5):
        d = at(room, t)
        assert d.action is Action.STAY_SILENT and d.rule == "humans_talking" and "Jennifer" in d.reason
    say(room, ALICE, "Juniper, do you like salt?", T0 + 8, T0 + 9.5)
    assert at(room, T0 + 9.8).action is Action.RESPOND_NOW


def test_a_members_name_beats_the_bots_nickname():
    room = make_room(ALICE, BOB)
    room.bot_aliases = ("June", "Junie")
    room.rename(BOB, "Junie")
    say(room, ALICE, "Junie, are you coming tomorrow?", T0 + 1, T0 + 2.5)
    assert at(room, T0 + 3).rule == "humans_talking"
    room2 = make_room(ALICE, CAROL)  # without a Junie here, the alias is the bot's
    room2.bot_aliases = ("June", "Junie")
    say(room2, ALICE, "Junie, are you coming tomorrow?", T0 + 1, T0 + 2.5)
    assert at(room2, T0 + 3).action is Action.RESPOND_NOW


# --- after the bot's own line ---------------------------------------------------------------------


def test_an_answer_to_the_bots_question_is_answered_but_a_turn_to_another_member_is_not():
    room = make_room(ALICE, BOB)
    bot_says(room, "What did you all do this weekend?", T0 + 1, T0 + 3)
    say(room, ALICE, "Bob, what did you do this weekend?", T0 + 3.5, T0 + 5)
    assert at(room, T0 + 5.5).rule == "humans_talking"
    assert _answers_the_bots_question("What did you all do this weekend?", "I went hiking with my dog.", T0 + 3.5)


def _answers_the_bots_question(bot_line: str, said: str, said_at: float) -> bool:
    """The bot says `bot_line` (T0+1 to T0+3), Alice says `said` at `said_at`: is it answered as an answer?"""
    room = make_room(ALICE, BOB)
    bot_says(room, bot_line, T0 + 1, T0 + 3)
    say(room, ALICE, said, said_at, said_at + 1.5)
    d = at(room, said_at + 1.8)
    return d.action is Action.RESPOND_NOW and "answered the bot's question" in d.reason


def test_a_late_reply_to_the_bots_question_is_not_an_answer():
    room = make_room(ALICE, BOB)
    bot_says(room, "Anyone up for a game?", T0 + 1, T0 + 3)
    say(room, ALICE, "I think it will rain later.", T0 + 3 + POLICY.question_answer_window_s + 1, T0 + 16)
    assert at(room, T0 + 17).action is not Action.RESPOND_NOW


def test_a_yes_to_the_bots_question_is_an_answer_not_a_backchannel():
    room = make_room(ALICE, BOB)
    bot_says(room, "Do you like pizza?", T0 + 1, T0 + 2)
    say(room, ALICE, "Yes!", T0 + 2.5, T0 + 2.9)
    assert at(room, T0 + 3.2).action is Action.RESPOND_NOW


def test_a_follow_up_question_from_the_member_just_answered():
    room = make_room(ALICE, BOB)
    line = say(room, ALICE, "Juniper, what's the capital of France?", T0, T0 + 2)
    bot_says(room, "Paris, of course.", T0 + 2.5, T0 + 3.5, reply_to=line.seq)
    say(room, ALICE, "And what about Spain?", T0 + 4, T0 + 5)
    d = at(room, T0 + 5.3)
    assert d.action is Action.RESPOND_NOW and "follow-up" in d.reason
    room2 = make_room(ALICE, BOB)  # the same question from someone else is theirs to answer
    line = say(room2, ALICE, "Juniper, what's the capital of France?", T0, T0 + 2)
    bot_says(room2, "Paris, of course.", T0 + 2.5, T0 + 3.5, reply_to=line.seq)
    say(room2, BOB, "And what about Spain?", T0 + 4, T0 + 5)
    assert at(room2, T0 + 5.3).action is not Action.RESPOND_NOW


def test_a_short_how_about_is_no_question_yet():
    room = make_room(ALICE)
    say(room, ALICE, "How about...", T0 + 1, T0 + 1.5)
    d = at(room, T0 + 1.8)
    assert not (d.action is Action.RESPOND_NOW and "asked a question" in d.reason)


# --- the end of a member's turn ----------------------------------------------------------------------


def test_a_finished_turn_is_answered_after_a_short_silence_an_unfinished_one_later():
    """Words and voice finished: a short silence. Words finished, voice not ("I have a question about the sea."
    said as if more follows): the middle wait. Words unfinished ("… wondering if", or a frame that promises
    more, "I was wondering"): the longest, whatever the voice."""
    room = make_room(ALICE, BOB)
    say(room, ALICE, "Juniper, I have a question about the sea.", T0 + 1, T0 + 2.5, end_of_turn=0.05)
    d = at(room, T0 + 2.8)
    assert d.action is Action.WAIT and d.until == pytest.approx(T0 + 2.5 + POLICY.unsure_wait_s)
    say(room, ALICE, "Have you been there.", T0 + 3.4, T0 + 5, end_of_turn=0.9)  # merges
    d = at(room, T0 + 5 + POLICY.reply_silence_s + 0.01)
    assert d.action is Action.RESPOND_NOW
    room2 = make_room(ALICE, BOB)  # nobody goes on: answered after the middle wait
    say(room2, ALICE, "Juniper, I have a question about the sea.", T0 + 1, T0 + 2.5, end_of_turn=0.05)
    assert at(room2, T0 + 2.5 + POLICY.unsure_wait_s - 0.05).action is Action.WAIT
    assert at(room2, T0 + 2.5 + POLICY.unsure_wait_s + 0.01).action is Action.RESPOND_NOW
    for words in (
        "Juniper, I was wondering if",
        "Juniper, I was wondering.",
        "Juniper, my question is.",
        "Juniper, what I really want to know is...",  # a pseudo-cleft owes what it announces
        "Juniper, what I mean is.",
        "Juniper, all I'm saying is.",
        "Juniper, the best part is.",
        "Juniper, my point is.",
    ):
        room3 = make_room(ALICE, BOB)  # the words stop mid-sentence: the longest wait, whatever the voice
        say(room3, ALICE, words, T0 + 1, T0 + 2.5, end_of_turn=0.9)
        d = at(room3, T0 + 2.8)
        assert d.action is Action.WAIT and d.until == pytest.approx(T0 + 2.5 + POLICY.incomplete_wait_s), words
    assert POLICY.reply_silence_s < POLICY.unsure_wait_s < POLICY.incomplete_wait_s


@pytest.mark.parametrize(
    "text,eot,finished",
    [
        ("Juniper, what time is it?", 0.1, True),  # Whisper heard a question: finished whatever the model says
        ("Juniper, tell me about the sea and", 0.9, False),  # a sentence does not end on "and"
        ("Juniper, tell me about the sea.", 0.05, False),  # the model is sure they are not done
        ("Juniper, tell me about the sea.", 0.35, True),  # unsure: a closed sentence is taken as finished
        ("Juniper, tell me about the sea.", 0.8, True),
        ("Juniper, tell me about the sea.", None, True),  # no model: the words alone
        # a clause that owes its main clause, with Whisper's full stop at the pause, whatever the voice
        ("Juniper, if we took the boat out tomorrow.", 0.9, False),
        ("Okay June, unless the weather turns.", 0.9, False),
        ("So Juniper, I hope that.", 0.9, False),
        ("Juniper, we believed that.", 0.9, False),
        ("Juniper, what would you do if you could fly.", 0.9, True),  # the clause hangs on a question
        ("Juniper, I'd sail there, if I could.", 0.9, True),  # a main clause came first
        ("Juniper, if you like.", 0.9, True),  # whole as it is: its verb left out on purpose
        ("Juniper, if it rains?", 0.4, True),  # Whisper heard a question
        ("Juniper, I think that's lovely.", 0.9, True),
        # a statement that asks nothing may be the first of several (a list, a story, a preface): only a
        # confident model closes it; a question, a request or a short line closes at the model's bar
        ("Juniper, for the picnic we have bread.", 0.7, False),
        ("Juniper, for the picnic we have bread.", 0.95, True),
        ("Juniper, for the picnic we have bread.", None, True),  # no model: the words alone
        ("Juniper, I have a question.", 0.75, False),
        ("Juniper, my dad used to be a fisherman!", 0.6, False),
        ("Juniper, what did Alice want to cook.", 0.35, True),  # a question by its words, full stop or not
        ("Juniper, explain how bread is made.", 0.35, True),
        ("Juniper Tell me a long story about a pirate.", 0.35, True),  # no comma after the name: still a request
        ("Thanks so much, Juniper.", 0.35, True),
        ("Good night, Juniper.", 0.35, True),
    ],
)
def test_what_counts_as_finished(text, eot, finished):
    room = make_room(ALICE, BOB)
    say(room, ALICE, text, T0 + 1, T0 + 2.5, end_of_turn=eot)
    d = at(room, T0 + 2.5 + POLICY.reply_silence_s + 0.01)
    assert (d.action is Action.RESPOND_NOW) is finished, d


def test_a_statement_the_voice_may_go_on_from_waits_the_middle_wait_and_is_not_started_early():
    """ "Juniper, for the picnic we have bread," with a pause before "cheese": Whisper writes a full stop, the
    model is not sure. The bot does not start early on the paused partial, nor answer the final after the short
    silence: it answers after the middle wait (its member going on drops that reply: test_rules_prepare.py)."""
    room = make_room(ALICE, BOB)
    start_speaking(room, ALICE, T0 + 1)
    partial(room, ALICE, "Juniper, for the picnic we have bread.", T0 + 1, T0 + 2.5, end_of_turn=0.7, paused=T0 + 2.56)
    assert at(room, T0 + 2.57).action is Action.WAIT
    room = make_room(ALICE, BOB)
    say(room, ALICE, "Juniper, for the picnic we have bread.", T0 + 1, T0 + 2.5, end_of_turn=0.7)
    d = at(room, T0 + 2.5 + POLICY.reply_silence_s + 0.01)
    assert d.action is Action.WAIT and d.until == pytest.approx(T0 + 2.5 + POLICY.unsure_wait_s)
    assert at(room, T0 + 2.5 + POLICY.unsure_wait_s + 0.01).action is Action.RESPOND_NOW


def test_an_early_start_on_a_statement_is_dropped_by_an_unsure_final():
    """The partial came before the model judged the pause (it may start); the final carries the judgement."""
    room = make_room(ALICE, BOB)
    start_speaking(room, ALICE, T0 + 1)
    partial(room, ALICE, "Juniper, for the picnic we have bread.", T0 + 1, T0 + 2.5)
    stop_speaking(room, ALICE, T0 + 2.6)
    d = at(room, T0 + 2.65)
    assert d.action is Action.RESPOND_NOW and d.preemptive
    room.bot_begin(
        d.action.value, T0 + 2.65, preemptive=True, basis_user_id=ALICE, basis_text=room.members[ALICE].partial.text
    )
    final(room, ALICE, "Juniper, for the picnic we have bread.", T0 + 1, T0 + 2.6, end_of_turn=0.7)
    d = at(room, T0 + 2.9)
    assert d.action is Action.YIELD_FLOOR and "does not sound finished" in d.reason


def test_no_early_start_on_words_that_sound_unfinished():
    room = make_room(ALICE, BOB)
    start_speaking(room, ALICE, T0 + 1)
    partial(room, ALICE, "Juniper, I was wondering.", T0 + 1, T0 + 2.5, end_of_turn=0.04, paused=T0 + 2.56)
    assert at(room, T0 + 2.57).action is Action.WAIT
    partial(room, ALICE, "Juniper, what time is it?", T0 + 1, T0 + 2.5, end_of_turn=0.9, paused=T0 + 2.56)
    assert at(room, T0 + 2.57).action is Action.RESPOND_NOW


def test_a_short_burst_is_a_backchannel_whatever_whisper_wrote_but_a_longer_one_with_words_is_not():
    for spoke_s, words, action in (
        (0.4, "and I'm not.", Action.RESUME),  # a clipped "mm-hmm", misheard
        (0.9, "I disagree with that.", Action.YIELD_FLOOR),
    ):
        room = make_room(ALICE, BOB)
        bot_speaking(room, T0 + 1)
        _paused_by(room, BOB, T0 + 2)
        stop_speaking(room, BOB, T0 + 2 + spoke_s + 0.3)  # the VAD ends speech 0.3 s after the voice
        final(room, BOB, words, T0 + 2, T0 + 2 + spoke_s)
        d = at(
            room, T0 + 3.9, Policy(prepare_in_wait=False, speech_tail_s=0.3)
        )  # the final came well after: the run is over
        assert d.action is action, (words, d)


def test_a_bot_line_with_a_question_anywhere_in_it_asked_something():
    assert _answers_the_bots_question("You're on a diet, right? Ah, no!", "I love baking bread on Sundays.", T0 + 4)


def test_going_on_after_a_long_pause_mid_sentence_is_still_the_same_turn():
    """ "Trixie, if you could pick <1.5 s> any superpower, which one?": the second part names nobody, but
    it is the rest of a request to the bot, not a new line to the room."""
    room = make_room(ALICE, BOB)
    say(room, BOB, "Juniper, if you could pick", T0 + 1, T0 + 2.5, end_of_turn=0.02)
    assert at(room, T0 + 3.5).action is Action.WAIT  # unfinished: waiting for more
    line = say(room, BOB, "any superpower at all, which one would it be?", T0 + 4.1, T0 + 6.5, end_of_turn=0.9)
    assert line.text.startswith("Juniper, if you could pick any")
    assert at(room, T0 + 6.8).action is Action.RESPOND_NOW


def test_a_short_burst_is_judged_by_its_voice_while_the_vad_still_says_speaking():
    """A clipped "mm-hm" that Whisper wrote as three words, shown in a partial at the pause before the VAD
    ends the speech: a backchannel. The same words after 0.9 s of voice, still speaking: a takeover."""
    for spoke_s, action in ((0.4, Action.STAY_SILENT), (0.9, Action.YIELD_FLOOR)):
        room = make_room(ALICE, BOB)
        bot_speaking(room, T0 + 1)
        _paused_by(room, BOB, T0 + 2)
        partial(room, BOB, "I'm not sure.", T0 + 2, T0 + 2 + spoke_s, paused=T0 + 2 + spoke_s)
        d = at(room, T0 + 2 + spoke_s + 0.25)
        assert d.action is action, (spoke_s, d)


def _answering_alice_from(room, voice_at):
    """Alice asked the bot something, paused; the bot's answer is heard from `voice_at`. Returns her line."""
    line = say(room, ALICE, "Juniper, for the picnic we have bread.", voice_at - 2.8, voice_at - 0.8)
    turn = room.bot_begin("respond_now", voice_at - 0.5, reply_to_seq=line.seq)
    turn.add_text("Bread is a fine start.")
    turn.add_audio(3.0)
    room.bot_audio_started(voice_at)
    return line


def test_the_member_answered_going_on_as_the_bot_begins_gets_the_floor_back_at_once():
    """Alice paused mid-turn long enough for the reply to start; she goes on 0.2 s after the bot's first
    sound (she cannot be answering it): the bot yields at once, her words are not taken for a backchannel.
    The same member starting 1.5 s into the reply, with "Mm-hm.", is a backchannel: paused, then resumed."""
    for gap, words, action in ((0.2, "Cheese.", Action.YIELD_FLOOR), (1.5, "Mm-hm.", Action.PAUSE)):
        room = make_room(ALICE, BOB)
        _answering_alice_from(room, T0 + 3.8)
        start_speaking(room, ALICE, T0 + 3.8 + gap)
        partial(room, ALICE, words, T0 + 3.8 + gap, T0 + 4.0 + gap)
        d = at(room, T0 + 3.85 + gap)
        assert d.action is action and d.member_id == ALICE, (gap, d)


def test_after_yielding_to_the_member_who_went_on_their_whole_turn_is_answered():
    """The bot yields 20 ms into its reply (nothing of it heard): Alice's continuation joins her line, which
    named the bot, and that whole turn is answered once she is done."""
    room = make_room(ALICE, BOB)
    line = _answering_alice_from(room, T0 + 3.8)
    start_speaking(room, ALICE, T0 + 3.81)
    assert at(room, T0 + 3.82).action is Action.YIELD_FLOOR
    room.bot_end(T0 + 3.82, seconds_played=0.02, interrupted=True)
    stop_speaking(room, ALICE, T0 + 6)
    merged = final(room, ALICE, "Cheese and grapes. What else should we bring?", T0 + 3.81, T0 + 5.7)
    assert merged.seq == line.seq and merged.text.startswith("Juniper, for the picnic")
    d = at(room, T0 + 6.4)
    assert d.action is Action.RESPOND_NOW and d.member_id == ALICE, d


def test_a_line_cut_unheard_once_is_not_given_up_again_at_the_first_sound():
    """A microphone echoing the bot starts just after its first sound, like a member going on. The first time
    the bot yields (nothing of it heard); answering the same line again, a sound at its start only pauses it,
    so the usual rules (words, echo detection, a second of speech) decide."""
    room = make_room(ALICE, BOB)
    line = _answering_alice_from(room, T0 + 3.8)
    start_speaking(room, ALICE, T0 + 3.9)
    assert at(room, T0 + 3.92).action is Action.YIELD_FLOOR
    room.bot_end(T0 + 3.92, seconds_played=0.02, interrupted=True)
    stop_speaking(room, ALICE, T0 + 4.3)
    final(room, ALICE, "", T0 + 3.9, T0 + 4.0)  # rejected: nothing joins her line
    turn = room.bot_begin("respond_now", T0 + 4.5, reply_to_seq=line.seq)
    turn.add_text("Bread is a fine start.")
    turn.add_audio(3.0)
    room.bot_audio_started(T0 + 4.8)
    start_speaking(room, ALICE, T0 + 4.9)
    d = at(room, T0 + 4.92)
    assert d.action is Action.PAUSE and d.member_id == ALICE, d


# --- the bot's opening lines: the listening notice and its greeting ----------------------------------


def _opening(room, kind, since):
    turn = room.bot_begin(kind, since - 0.3)
    turn.add_text("Quick note: I listen and transcribe this channel to talk with you.")
    turn.add_audio(4.0)
    room.bot_audio_started(since)
    return turn


@pytest.mark.parametrize("kind", ["notice", "greet"])
def test_speaking_over_the_notice_or_greeting_takes_the_floor_at_once(kind):
    room = make_room(ALICE, BOB)
    _opening(room, kind, T0 + 1)
    start_speaking(room, ALICE, T0 + 2)
    d = at(room, T0 + 2.01)  # no pause-and-see: the opening line is given up at the voice's onset
    assert d.action is Action.YIELD_FLOOR and d.member_id == ALICE and kind in d.reason


def test_speaking_while_the_notice_is_prepared_drops_it_before_a_word_is_heard():
    room = make_room(ALICE, BOB)
    room.bot_begin("notice", T0 + 1)
    start_speaking(room, BOB, T0 + 1.2)
    assert at(room, T0 + 1.21).action is Action.YIELD_FLOOR


def test_a_member_whose_microphone_echoes_the_bot_does_not_cut_its_notice():
    room = make_room(ALICE, BOB)
    _opening(room, "notice", T0 + 1)
    room.members[BOB].echo_prone = True
    start_speaking(room, BOB, T0 + 1.3)
    assert at(room, T0 + 1.4).rule == "bot_busy"


def test_what_was_said_over_the_notice_is_answered_as_if_the_bot_had_been_quiet():
    room = make_room(ALICE, BOB)
    _opening(room, "notice", T0 + 1)
    start_speaking(room, ALICE, T0 + 2)
    assert at(room, T0 + 2.01).action is Action.YIELD_FLOOR
    room.bot_end(T0 + 2.05, seconds_played=1.05, interrupted=True)  # the session cuts it (what was heard stays)
    stop_speaking(room, ALICE, T0 + 4.5)
    line = final(room, ALICE, "Juniper, what should I cook tonight?", T0 + 2, T0 + 4.5)
    d = at(room, T0 + 4.8)
    assert d.action is Action.RESPOND_NOW and d.reply_to_seq == line.seq
    # the bot's name bent past recognition: a question to the room just after the join, taken when nobody else
    # takes it up; with no call in it at all, the members' (as if the bot had been quiet: no part of the talk yet)
    for text, taken in (("Always. What should I cook tonight?", True), ("What should I cook tonight.", False)):
        room2 = make_room(ALICE, BOB)
        _opening(room2, "notice", T0 + 1)
        start_speaking(room2, ALICE, T0 + 2)
        room2.bot_end(T0 + 2.05, seconds_played=1.05, interrupted=True)
        stop_speaking(room2, ALICE, T0 + 4.5)
        line = final(room2, ALICE, text, T0 + 2, T0 + 4.5)
        d = at(room2, T0 + 4.5 + POLICY.room_question_wait_s + 0.01)
        if taken:
            assert at(room2, T0 + 4.8).action is Action.WAIT
            assert d.action is Action.RESPOND_NOW and d.rule == "room_question" and d.reply_to_seq == line.seq
        else:
            assert all(at(room2, T0 + 4.5 + dt).action is not Action.RESPOND_NOW for dt in (0.3, 1.7, 3.0, 10.0))


def test_the_notice_comes_first_once_the_room_is_quiet_and_then_the_greeting():
    room = make_room(ALICE, BOB, greeted=False)
    room.notice_pending = True
    start_speaking(room, ALICE, T0 + 0.1)
    assert at(room, T0 + 0.2).rule == "someone_speaking"  # never over anyone
    stop_speaking(room, ALICE, T0 + 0.5)
    final(room, ALICE, "", T0 + 0.1, T0 + 0.5)  # a cough Whisper rejected
    d = at(room, T0 + 0.6)
    assert d.action is Action.NOTICE and d.speaks
    room.notice_pending = False  # (the session does this as it begins the line)
    room.bot_begin("notice", T0 + 0.6)
    room.bot_audio_started(T0 + 0.9)
    room.turn.add_text("Quick note: I listen.")
    room.bot_end(T0 + 5.0)
    assert at(room, T0 + 5.1).rule == "greet_room"  # a moment of quiet first
    d = at(room, T0 + 5.0 + POLICY.reply_silence_s + 0.01)
    assert d.action is Action.GREET and d.member_id is None


def test_no_greeting_once_someone_spoke_over_the_notice():
    room = make_room(ALICE, BOB, greeted=False)
    _opening(room, "notice", T0 + 1)
    room.bot_end(T0 + 2.0, seconds_played=1.0, interrupted=True)
    say(room, BOB, "Oh, hi there.", T0 + 1.9, T0 + 3.0)
    for t in (T0 + 3.5, T0 + 6.0, T0 + 20.0):
        assert at(room, t).action is not Action.GREET


@pytest.mark.parametrize("kind", ["notice", "greet"])
def test_after_an_opening_line_the_room_is_as_at_the_join(kind):
    """The notice and the greeting are no part of the talk: a line after them is no answer to the greeting's
    "What's up?", and a plain question is the members' as just after a silent join (their own chat goes on);
    a call Whisper bent is still the bot's when nobody takes it up."""
    for heard_s, text, taken in (
        (0.15, "What should I cook tonight?", False),  # cut before a word of it was heard
        (4.0, "What should I cook tonight?", False),  # said in full
        (4.0, "It is so hot today.", False),
        (4.0, "Always. What should I cook tonight?", True),
    ):
        room = make_room(ALICE, BOB)
        turn = _opening(room, kind, T0 + 1)
        turn.add_text(" What are we all up to tonight?")
        room.bot_end(T0 + 1 + heard_s, seconds_played=heard_s)
        line = final(room, ALICE, text, T0 + 1.5 + heard_s, T0 + 3.5 + heard_s)
        end = line.end
        decisions = [at(room, end + dt) for dt in (0.3, POLICY.room_question_wait_s + 0.01, 3.0, 10.0)]
        if taken:
            assert decisions[1].action is Action.RESPOND_NOW and decisions[1].rule == "room_question", text
        else:
            assert all(d.action is not Action.RESPOND_NOW for d in decisions), (heard_s, text, decisions)
    # a greeting to a member who joined later was theirs: their answer is answered, anyone else's line is not
    for who, taken in ((CAROL, True), (ALICE, False)) if kind == "greet" else ():
        room = make_room(ALICE, BOB)
        room.member_joined(CAROL, "Carol", T0 + 10)
        turn = room.bot_begin(kind, T0 + 11, to_member=CAROL)
        turn.add_text("Hi Carol! Juniper here. What have you been up to?")
        turn.add_audio(3.0)
        room.bot_audio_started(T0 + 11.3)
        room.bot_end(T0 + 14.3, seconds_played=3.0)
        line = final(room, who, "Just cooking some dinner.", T0 + 15, T0 + 16.5)
        d = at(room, T0 + 16.5 + POLICY.group_silence_s + 0.5)
        assert (d.action is Action.RESPOND_NOW and d.reply_to_seq == line.seq) is taken, (who, d)
    # alone with the bot, the greeting's question was theirs: the answer is answered as soon as a reply may start
    room = make_room(ALICE)
    turn = _opening(room, kind, T0 + 1)
    turn.add_text(" What are you up to tonight?")
    room.bot_end(T0 + 5, seconds_played=4.0)
    line = final(room, ALICE, "Just cooking some dinner.", T0 + 5.5, T0 + 7)
    d = at(room, T0 + 7 + POLICY.reply_silence_s + 0.01)
    assert d.action is Action.RESPOND_NOW and d.reply_to_seq == line.seq and "answered" in d.reason, d
