"""Each turn-taking rule on fake time: when the bot answers, waits, keeps out, yields, starts a topic."""

from __future__ import annotations

import pytest

from conversation.decision import Action, Policy
from conversation.room_lines import BotState
from conversation.rules import decide
from tests.fixtures_prompter import (
    ALICE,
    BOB,
    CAROL,
    POLICY,
    T0,
    bot_says,
    final,
    make_room,
    partial,
    say,
    start_speaking,
    stop_speaking,
)


def at(room, t, policy=POLICY):
    return decide(room, t, policy)


# --- answering when addressed -------------------------------------------------------------------


def test_named_question_waits_reply_silence_then_answers():
    room = make_room(ALICE, BOB)
    line = say(room, ALICE, "Juniper, what's your favourite colour?", T0 + 1, T0 + 3)
    d = at(room, T0 + 3.1)
    assert d.action is Action.WAIT and d.rule == "respond_when_addressed"
    assert d.until == pytest.approx(T0 + 3.25)
    d = at(room, T0 + 3.26)
    assert d.action is Action.RESPOND_NOW and d.addressed and d.reply_to_seq == line.seq
    assert "name" in d.reason


@pytest.mark.parametrize(
    "text",
    [
        "Jennifer, can you hear me?",
        "hey junipur how are you",
        "Juni per, tell us a joke.",
        "What do you think, Juniper?",
    ],
)
def test_whisper_spellings_of_the_name_address_the_bot(text):
    room = make_room(ALICE, BOB)
    say(room, ALICE, text, T0 + 1, T0 + 2)
    d = at(room, T0 + 2.5)
    assert d.action is Action.RESPOND_NOW and d.rule == "respond_when_addressed"


@pytest.mark.parametrize(
    "text",
    [
        "Have you read any good books lately? Juniper",  # the name after a pause: its own segment, merged
        "What should we cook tonight? Juniper.",
        "Tell us a joke. Hey Juniper",
    ],
)
def test_a_name_after_a_finished_question_closes_it_even_when_the_voice_model_doubts(text):
    """The end-of-turn model heard only the name (alone it sounds unfinished): the sentence before it decides."""
    room = make_room(ALICE, BOB)
    line = say(room, ALICE, text, T0 + 1, T0 + 3, end_of_turn=0.05)
    d = at(room, T0 + 3.1)
    assert d.action is Action.WAIT and d.until == pytest.approx(T0 + 3 + POLICY.reply_silence_s)
    d = at(room, T0 + 3 + POLICY.reply_silence_s + 0.01)
    assert d.action is Action.RESPOND_NOW and d.reply_to_seq == line.seq


@pytest.mark.parametrize("text", ["I was wondering. Juniper", "What do you think? Juniper what", "So the. Juniper"])
def test_a_name_after_words_that_are_not_done_does_not_close_them(text):
    room = make_room(ALICE, BOB)
    say(room, ALICE, text, T0 + 1, T0 + 3, end_of_turn=0.05)
    d = at(room, T0 + 3 + POLICY.reply_silence_s + 0.01)
    assert d.action is Action.WAIT and d.until > T0 + 3 + POLICY.reply_silence_s + 0.3


@pytest.mark.parametrize(
    "text", ["In June we went to the lake.", "Jupiter is huge.", "My junior year was rough.", "I jumped off the pier."]
)
def test_near_names_are_not_an_address(text):
    room = make_room(ALICE, BOB, CAROL)
    say(room, ALICE, text, T0 + 1, T0 + 2)
    for t in (T0 + 2.5, T0 + 5, T0 + 20):
        d = at(room, t)
        assert d.rule != "respond_when_addressed"
        assert d.action is Action.STAY_SILENT and d.rule == "join_in"  # a remark to the group: left to the group


def test_question_when_alone_with_the_bot_is_answered_quickly():
    room = make_room(ALICE)
    say(room, ALICE, "what should I cook tonight", T0 + 1, T0 + 2)
    d = at(room, T0 + 2.3)
    assert d.action is Action.RESPOND_NOW and d.addressed
    assert "only other one" in d.reason


def test_same_question_in_a_group_is_not_an_address_and_is_left_to_the_group():
    """The bot joined long ago and has kept quiet since: the members talk among themselves."""
    room = make_room(ALICE, BOB, CAROL)
    late = T0 + POLICY.room_question_context_s + 5.0
    say(room, ALICE, "what should I cook tonight?", late + 1, late + 2)
    for t in (late + 2.3, late + 3.25, late + 10):
        d = at(room, t)
        assert d.action is Action.STAY_SILENT and d.rule == "join_in", t
    # ...until the room has been quiet long enough for the bot to bring something up itself
    assert at(room, late + 2 + POLICY.idle_topic_s + 0.1).action is Action.START_TOPIC


@pytest.mark.parametrize(
    "text",
    [
        "Always. What is the best way to learn sailing?",  # "Hollis, what is…"
        "Gereple. Tell me something nice about bicycles.",  # "Juniper, tell me…"
        "Help him. Ask us something about music.",  # "Captain, ask us…"
    ],
)
@pytest.mark.parametrize("greeted", [True, False])
def test_a_bent_call_just_after_the_bot_joined_is_taken_up_when_nobody_does(text, greeted):
    """Whoever ran /join a moment ago most likely called the newcomer: a question or request that opens with a
    call the transcript could not spell is the bot's when nobody takes it up, even before the bot has spoken
    (its greeting skipped because someone spoke first, or off)."""
    room = make_room(ALICE, BOB, CAROL, greeted=greeted)
    line = say(room, ALICE, text, T0 + 1, T0 + 4)
    d = at(room, T0 + 4.3)
    assert d.action is Action.WAIT and d.rule == "room_question"
    d = at(room, T0 + 4 + POLICY.room_question_wait_s + 0.01)
    assert d.action is Action.RESPOND_NOW and d.rule == "room_question" and d.reply_to_seq == line.seq
    late = make_room(ALICE, BOB, CAROL, greeted=greeted)  # joined long ago and quiet since: the members' talk
    start = T0 + POLICY.room_question_context_s + 5.0
    say(late, ALICE, text, start, start + 3)
    assert all(at(late, start + 3 + dt).action is not Action.RESPOND_NOW for dt in (0.3, 2.0, 5.0, 10.0))


@pytest.mark.parametrize(
    "text",
    [
        "How was the concert last night?",
        "Is anyone watching the game tonight?",
        # a word that opens the sentence without calling anyone is no bent name
        "Right. Where did you put the keys?",
        "Anyway. Who wants pizza tonight?",
        "Sorry. What did you say about the trip?",
        "Actually. What time does the match start?",
        "Guys. What should we play next?",
        "Yeah. Did you see the new trailer?",
    ],
)
def test_a_plain_question_just_after_the_bot_joined_is_left_to_the_members(text):
    """A question with no call in it, before the bot has said a word, is the members' (they answer each other
    in up to 3 s in the corpus's slow chats)."""
    room = make_room(ALICE, BOB, CAROL)
    say(room, ALICE, text, T0 + 1, T0 + 3)
    assert all(at(room, T0 + 3 + dt).action is not Action.RESPOND_NOW for dt in (0.3, 1.7, 3.0, 10.0))


def test_statement_when_alone_waits_the_longer_silence():
    room = make_room(ALICE)
    say(room, ALICE, "I had a long day at work.", T0 + 1, T0 + 2)
    assert at(room, T0 + 2.5).action is Action.WAIT
    d = at(room, T0 + 3.3)
    assert d.action is Action.RESPOND_NOW and d.rule == "join_in"


def test_answer_to_the_bots_question_is_addressed():
    room = make_room(ALICE, BOB)
    bot_says(room, "What's everyone having for dinner?", T0 + 1, T0 + 3)
    say(room, BOB, "Pizza, probably.", T0 + 4, T0 + 5)
    d = at(room, T0 + 5.3)
    assert d.action is Action.RESPOND_NOW and d.addressed and "answered the bot's question" in d.reason


def test_an_answer_to_the_bots_question_may_talk_about_a_member_but_one_that_calls_a_member_is_theirs():
    for text, answered in (
        ("I went hiking with Alice.", True),
        ("Alice and I went hiking.", True),
        ("Alice, you went hiking too, right?", False),
        ("We went hiking, right Alice?", False),
    ):
        room = make_room(ALICE, BOB)
        bot_says(room, "What did everyone do this weekend?", T0 + 1, T0 + 3)
        say(room, BOB, text, T0 + 4, T0 + 5.5)
        d = at(room, T0 + 5.8)
        assert (d.action is Action.RESPOND_NOW and "answered the bot's question" in d.reason) is answered, (text, d)


def test_only_the_first_reply_to_the_bots_question_counts():
    room = make_room(ALICE, BOB)
    bot_says(room, "Who's seen the new film?", T0 + 1, T0 + 3)
    say(room, BOB, "I have.", T0 + 3.5, T0 + 4)
    room.responded_to_seq = room.last_human_line().seq  # pretend the bot handled it
    say(room, ALICE, "Me too, it was long.", T0 + 4.3, T0 + 5)
    d = at(room, T0 + 5.3)
    assert d.rule != "respond_when_addressed"


def test_stale_addressed_line_is_not_answered():
    room = make_room(ALICE, BOB)
    say(room, ALICE, "Juniper, you there?", T0 + 1, T0 + 2)
    assert at(room, T0 + 30).rule != "respond_when_addressed"


def test_answered_line_is_not_answered_twice():
    room = make_room(ALICE, BOB)
    line = say(room, ALICE, "Juniper, hello!", T0 + 1, T0 + 2)
    bot_says(room, "Hi Alice!", T0 + 2.5, T0 + 3.5, reply_to=line.seq)
    d = at(room, T0 + 4)
    assert d.action is not Action.RESPOND_NOW


# --- never over anyone ------------------------------------------------------------------------


def test_never_answers_while_someone_is_speaking():
    room = make_room(ALICE, BOB)
    say(room, ALICE, "Juniper, what's the time?", T0 + 1, T0 + 2)
    start_speaking(room, BOB, T0 + 2.1)
    d = at(room, T0 + 3)
    assert d.action is Action.WAIT and d.rule == "someone_speaking"
    stop_speaking(room, BOB, T0 + 3.5)
    final(room, BOB, "Hmm.", T0 + 2.1, T0 + 3.5)
    d = at(room, T0 + 3.6)
    assert d.action is Action.WAIT  # silence counts from the latest speech end
    d = at(room, T0 + 3.8)  # Bob's "Hmm." was a backchannel: Alice's question is still open
    assert d.action is Action.RESPOND_NOW and d.addressed and d.member_id == ALICE


def test_waits_for_the_final_transcript_after_speech_ends():
    room = make_room(ALICE, BOB)
    start_speaking(room, ALICE, T0 + 1)
    stop_speaking(room, ALICE, T0 + 2)
    d = at(room, T0 + 2.2)
    assert d.action is Action.WAIT and d.rule == "awaiting_final"
    assert d.until == pytest.approx(T0 + 2 + POLICY.final_timeout_s)
    # a segment whose final never comes (dropped as noise) stops blocking after the timeout
    assert at(room, T0 + 5).rule != "awaiting_final"


# --- keeping out of human conversations -----------------------------------------------------------


def test_line_naming_another_member_is_left_to_them():
    room = make_room(ALICE, BOB)
    say(room, ALICE, "Bob, did you finish the game?", T0 + 1, T0 + 2)
    d = at(room, T0 + 10)
    assert d.action is Action.STAY_SILENT and d.rule == "humans_talking" and "Bob" in d.reason


@pytest.mark.parametrize(
    "text, called",
    [
        ("Did you finish the game, Bob?", True),
        ("Did you finish the game Bob?", True),  # the comma Whisper left out
        ("Bob?", True),
        ("Bob what did you think of the ending?", True),
        ("Did Bob finish the game?", False),  # talked about: no call
        ("I played the game with Bob.", False),
    ],
)
def test_a_line_is_left_to_a_member_it_calls_not_to_one_it_talks_about(text, called):
    room = make_room(ALICE, BOB, CAROL)
    say(room, ALICE, text, T0 + 1, T0 + 2)
    d = at(room, T0 + 10)
    assert ("spoke to Bob by name" in d.reason) is called, (text, d)


def test_alternating_humans_are_talking_to_each_other():
    room = make_room(ALICE, BOB)
    say(room, ALICE, "I finally finished the game last night.", T0 + 1, T0 + 3)
    say(room, BOB, "Oh nice, how was the ending?", T0 + 3.8, T0 + 5)
    for t in (T0 + 6, T0 + 10, T0 + 30):
        d = at(room, t)
        assert d.action is Action.STAY_SILENT and d.rule == "humans_talking", t
    # ...but once the room has been quiet long enough, the bot brings it back to life
    d = at(room, T0 + 5 + POLICY.idle_topic_s + 0.1)
    assert d.action is Action.START_TOPIC


def test_naming_the_bot_beats_the_human_exchange():
    room = make_room(ALICE, BOB)
    say(room, ALICE, "I finished the game.", T0 + 1, T0 + 3)
    say(room, BOB, "Juniper, have you played it?", T0 + 3.5, T0 + 5)
    d = at(room, T0 + 5.3)
    assert d.action is Action.RESPOND_NOW and d.addressed


def test_display_names_with_digits_are_recognised():
    room = make_room(ALICE, CAROL)
    room.rename(CAROL, "carol_99")
    say(room, ALICE, "Carol, are you coming tomorrow?", T0 + 1, T0 + 2)
    assert at(room, T0 + 5).rule == "humans_talking"


def test_backchannel_gets_no_reply():
    room = make_room(ALICE)
    bot_says(room, "I love rainy days.", T0 + 1, T0 + 3)
    say(room, ALICE, "Mm-hm.", T0 + 3.5, T0 + 3.9)
    for t in (T0 + 4.5, T0 + 10):
        d = at(room, t)
        assert d.action is not Action.RESPOND_NOW


# --- early start on a partial transcript -------------------------------------------------------------


def _paused_with_partial(room, text):
    start_speaking(room, ALICE, T0 + 1)
    partial(room, ALICE, text, T0 + 1, T0 + 2.5)
    stop_speaking(room, ALICE, T0 + 2.6)


def test_complete_addressed_partial_starts_early():
    room = make_room(ALICE, BOB)
    _paused_with_partial(room, "Juniper, what time is it?")
    d = at(room, T0 + 2.65)
    assert d.action is Action.RESPOND_NOW and d.preemptive and d.member_id == ALICE


def test_early_start_is_a_policy_flag():
    room = make_room(ALICE, BOB)
    _paused_with_partial(room, "Juniper, what time is it?")
    d = at(room, T0 + 2.65, Policy(prepare_in_wait=False, preemptive_start=False))
    assert d.action is Action.WAIT and d.rule == "awaiting_final"


@pytest.mark.parametrize("text", ["Juniper, what time", "So what time is it?", "juniper"])
def test_incomplete_or_unaddressed_partial_waits_for_the_final(text):
    room = make_room(ALICE, BOB)
    _paused_with_partial(room, text)
    d = at(room, T0 + 2.65)
    assert d.action is Action.WAIT and d.rule == "awaiting_final"


def _early_turn(room, setup=_paused_with_partial, t=T0 + 2.65):
    """The bot starts early on Alice's "Juniper, what time is it?" (after the VAD end, or in a pause)."""
    setup(room, "Juniper, what time is it?")
    d = at(room, t)
    assert d.action is Action.RESPOND_NOW and d.preemptive
    room.bot_begin(d.action.value, t, preemptive=True, basis_user_id=ALICE, basis_text=room.members[ALICE].partial.text)


def test_early_start_confirmed_by_a_matching_final():
    room = make_room(ALICE, BOB)
    _early_turn(room)
    assert at(room, T0 + 2.8).action is Action.STAY_SILENT  # thinking, final not in yet
    line = final(room, ALICE, "Juniper, what time is it?", T0 + 1, T0 + 2.6)
    d = at(room, T0 + 3.0)
    assert d.action is Action.RESPOND_NOW and d.confirm and d.reply_to_seq == line.seq


def test_early_start_dropped_when_the_final_differs():
    room = make_room(ALICE, BOB)
    _early_turn(room)
    final(room, ALICE, "Juniper, what kind of tea is best for a cold?", T0 + 1, T0 + 2.6)
    d = at(room, T0 + 3.0)
    assert d.action is Action.YIELD_FLOOR and "differs" in d.reason


def test_early_start_dropped_when_the_member_keeps_speaking():
    room = make_room(ALICE, BOB)
    _early_turn(room)
    start_speaking(room, ALICE, T0 + 2.9)
    d = at(room, T0 + 3.0)
    assert d.action is Action.YIELD_FLOOR and "kept speaking" in d.reason


def test_early_start_dropped_when_no_final_comes():
    room = make_room(ALICE, BOB)
    _early_turn(room)
    d = at(room, T0 + 2.65 + POLICY.final_timeout_s + 0.1)
    assert d.action is Action.YIELD_FLOOR and "no final" in d.reason


def test_discarded_early_start_reopens_the_line():
    room = make_room(ALICE, BOB)
    _early_turn(room)
    final(room, ALICE, "Juniper, what kind of tea is best for a cold?", T0 + 1, T0 + 2.6)
    room.bot_end(T0 + 3.0, discard=True)
    d = at(room, T0 + 3.1)
    assert d.action is Action.RESPOND_NOW and d.addressed and not d.preemptive


# --- early start in a pause, before the end of speech is confirmed ------------------------------------


def _in_a_pause(room, text, uid=ALICE, t_pause=T0 + 2.56):
    """Speaking per the VAD; the listener repeated their latest partial at a pause (64 ms of silence)."""
    start_speaking(room, uid, T0 + 1)
    partial(room, uid, text, T0 + 1, T0 + 2.5)
    partial(room, uid, text, T0 + 1, T0 + 2.5, paused=t_pause)


def test_complete_addressed_words_start_early_in_a_pause():
    room = make_room(ALICE, BOB)
    _in_a_pause(room, "Juniper, what time is it?")
    d = at(room, T0 + 2.57)
    assert d.action is Action.RESPOND_NOW and d.preemptive and d.member_id == ALICE


@pytest.mark.parametrize("text", ["Hey Juniper.", "Juniper, what time", "What time is it?"])
def test_a_bare_call_or_unfinished_or_unaddressed_words_in_a_pause_wait(text):
    room = make_room(ALICE, BOB)
    _in_a_pause(room, text)
    d = at(room, T0 + 2.57)
    assert d.action is Action.WAIT and d.rule == "someone_speaking"


def test_an_answer_to_the_bots_question_starts_early_only_when_alone_with_it():
    for members, expected in (((ALICE, BOB), Action.WAIT), ((ALICE,), Action.RESPOND_NOW)):
        room = make_room(*members)
        bot_says(room, "What did everyone eat today?", T0, T0 + 0.8)
        _in_a_pause(room, "Pasta with lots of cheese.")
        d = at(room, T0 + 2.57)
        assert d.action is expected, (members, d)
        if expected is Action.WAIT:  # the final is answered as usual
            stop_speaking(room, ALICE, T0 + 2.8)
            final(room, ALICE, "Pasta with lots of cheese.", T0 + 1, T0 + 2.5)
            assert at(room, T0 + 3.0).action is Action.RESPOND_NOW


def test_no_early_start_on_a_line_begun_over_the_bot():
    room = make_room(ALICE, BOB)
    turn = room.bot_begin("respond_now", T0 + 0.5)
    turn.add_text("Well, it is a long story.")
    turn.add_audio(1.0)
    room.bot_audio_started(T0 + 0.6)
    room.bot_end(T0 + 1.2)
    _in_a_pause(room, "Juniper, what time is it?")  # began at T0 + 1, while the bot was still speaking
    assert at(room, T0 + 2.57).action is Action.WAIT


def test_no_early_start_while_someone_else_speaks():
    room = make_room(ALICE, BOB)
    _in_a_pause(room, "Juniper, what time is it?")
    start_speaking(room, BOB, T0 + 2.4)
    assert at(room, T0 + 2.57).action is Action.WAIT


def test_the_name_said_in_the_previous_segment_addresses_the_continuation():
    room = make_room(ALICE, BOB)
    say(room, ALICE, "Hey Juniper.", T0, T0 + 0.6)  # its own segment: a long pause after the name
    assert at(room, T0 + 0.7).action is Action.WAIT  # a bare call: wait for the request
    _in_a_pause(room, "What time is it?")
    d = at(room, T0 + 2.57)
    assert d.action is Action.RESPOND_NOW and d.preemptive and "said the bot's name" in d.reason
    assert room.history_with(room.members[ALICE].partial)[-1].text == "Hey Juniper. What time is it?"


def _early_turn_in_a_pause(room):
    _early_turn(room, _in_a_pause, T0 + 2.57)


def test_early_start_in_a_pause_survives_the_pause_and_is_confirmed_by_the_final():
    room = make_room(ALICE, BOB)
    _early_turn_in_a_pause(room)
    partial(room, ALICE, "Juniper, what time is it?", T0 + 1, T0 + 2.5, speculative=T0 + 2.75)
    for t in (T0 + 2.6, T0 + 2.76, T0 + 3.4):  # still paused: no barge-in by the member it answers
        assert at(room, t).action is Action.STAY_SILENT
    stop_speaking(room, ALICE, T0 + 2.8)
    line = final(room, ALICE, "Juniper, what time is it?", T0 + 1, T0 + 2.5)
    d = at(room, T0 + 2.85)
    assert d.action is Action.RESPOND_NOW and d.confirm and d.reply_to_seq == line.seq


def test_early_start_in_a_pause_dropped_when_they_go_on():
    room = make_room(ALICE, BOB)
    _early_turn_in_a_pause(room)
    partial(room, ALICE, "Juniper, what time is it?", T0 + 1, T0 + 2.5, resumed=T0 + 2.7)  # voice again
    d = at(room, T0 + 2.71)
    assert d.action is Action.YIELD_FLOOR and "kept speaking" in d.reason


def test_early_start_in_a_pause_dropped_when_the_speculative_transcript_reads_otherwise():
    room = make_room(ALICE, BOB)
    _early_turn_in_a_pause(room)
    partial(room, ALICE, "Juniper, what kind of tea is best for a cold?", T0 + 1, T0 + 2.5, speculative=T0 + 2.75)
    d = at(room, T0 + 2.76)
    assert d.action is Action.YIELD_FLOOR and "read otherwise" in d.reason
    room.bot_end(T0 + 2.77, discard=True)
    d = at(room, T0 + 2.78)  # and starts again on the words as they now read
    assert d.action is Action.RESPOND_NOW and d.preemptive
    room.bot_begin(
        d.action.value, T0 + 2.78, preemptive=True, basis_user_id=ALICE, basis_text=room.members[ALICE].partial.text
    )
    assert "tea" in room.turn.basis_text


# --- quiet rooms, cooldowns, greetings ---------------------------------------------------------


def test_idle_room_gets_a_topic_only_with_humans_present():
    room = make_room()
    d = at(room, T0 + 100)
    assert d.action is Action.STAY_SILENT and d.rule == "nobody_here"
    room.member_joined(ALICE, "Alice", T0, initial=True)
    assert at(room, T0 + 44).action is Action.WAIT
    assert at(room, T0 + 45.1).action is Action.START_TOPIC


def test_unprompted_lines_are_capped_until_a_human_replies():
    room = make_room(ALICE)
    bot_says(room, "Anyone into board games?", T0 + 46, T0 + 48, kind="start_topic")
    assert at(room, T0 + 60).action is Action.WAIT
    assert at(room, T0 + 48 + 45.1).action is Action.START_TOPIC
    bot_says(room, "What about hiking?", T0 + 94, T0 + 96, kind="start_topic")
    d = at(room, T0 + 500)
    assert d.action is Action.STAY_SILENT and "without a human reply" in d.reason
    say(room, ALICE, "Mm, not really.", T0 + 501, T0 + 502)
    room.responded_to_seq = room.last_human_line().seq
    assert at(room, T0 + 502 + 45.1).action is Action.START_TOPIC


def test_cooldown_delays_answering_a_remark_after_the_bot_spoke():
    room = make_room(CAROL)
    bot_says(room, "Rain again today.", T0 + 1, T0 + 2)
    say(room, CAROL, "Typical November.", T0 + 2.2, T0 + 2.5)
    d = at(room, T0 + 4)
    assert d.action is Action.WAIT and d.until == pytest.approx(T0 + 2 + POLICY.cooldown_s)
    assert at(room, T0 + 6.1).action is Action.RESPOND_NOW


def test_greets_the_room_when_joining_and_members_who_join_later():
    room = make_room(ALICE, greeted=False)
    d = at(room, T0 + 1)
    assert d.action is Action.GREET and d.member_id is None
    room.room_greeted = True
    room.member_joined(BOB, "Bob", T0 + 10)
    d = at(room, T0 + 10.5)
    assert d.action is Action.GREET and d.member_id == BOB
    assert at(room, T0 + 10.5, Policy(prepare_in_wait=False, greet_members=False)).action is not Action.GREET
    room.members[BOB].greeted = True
    assert at(room, T0 + 11).action is not Action.GREET


def test_greeting_waits_for_quiet_and_expires():
    room = make_room(ALICE)
    room.member_joined(BOB, "Bob", T0 + 10)
    start_speaking(room, ALICE, T0 + 10.1)
    assert at(room, T0 + 10.5).rule == "someone_speaking"
    stop_speaking(room, ALICE, T0 + 11)
    final(room, ALICE, "Hi Bob!", T0 + 10.1, T0 + 11)
    d = at(room, T0 + 11.1)
    assert d.action is not Action.GREET
    assert at(room, T0 + 10 + POLICY.greet_window_s + 1).action is not Action.GREET


def test_farewell_for_a_member_who_took_part():
    room = make_room(ALICE, BOB)
    say(room, BOB, "Right, I have to go, bye all.", T0 + 1, T0 + 2)
    room.responded_to_seq = room.last_human_line().seq
    room.member_left(BOB, T0 + 3)
    d = at(room, T0 + 3.5)
    assert d.action is Action.FAREWELL and d.member_id == BOB
    room.member_left(ALICE, T0 + 4)
    assert at(room, T0 + 4.5).rule == "nobody_here"


def test_no_farewell_for_a_silent_lurker():
    room = make_room(ALICE, BOB)
    room.member_left(BOB, T0 + 3)
    assert at(room, T0 + 3.5).action is not Action.FAREWELL


def test_busy_bot_stays_silent():
    room = make_room(ALICE, BOB)
    room.bot_begin("respond_now", T0 + 1)
    assert room.bot_state is BotState.THINKING
    d = at(room, T0 + 1.5)
    assert d.action is Action.STAY_SILENT and d.rule == "bot_busy"


def test_every_decision_has_a_reason():
    room = make_room(ALICE, BOB)
    say(room, ALICE, "Juniper, hi!", T0 + 1, T0 + 2)
    for t in (T0 + 1.5, T0 + 2.1, T0 + 2.5, T0 + 50):
        d = at(room, t)
        assert d.reason and d.rule


def test_reply_silence_counts_from_the_speech_end_not_the_vad_end_event():
    room = make_room(ALICE, BOB)
    start_speaking(room, ALICE, T0 + 1)
    line = final(room, ALICE, "Juniper, are you there?", T0 + 1, T0 + 2)  # speculative final: before the end event
    stop_speaking(room, ALICE, T0 + 2.3)  # VAD confirms the end after its 300 ms of silence
    d = at(room, T0 + 2.3)
    assert d.action is Action.RESPOND_NOW and d.reply_to_seq == line.seq


def test_every_time_dependent_decision_says_when_to_look_again():
    """The session sleeps until `until` when no event comes: a rule that will change its mind
    later without an event must say when, or the bot would stay quiet until someone speaks."""
    room = make_room(ALICE, BOB, greeted=False)
    d = at(room, T0 + 0.1)
    assert d.action is Action.WAIT and at(room, d.until).action is Action.GREET
    room.room_greeted = True
    say(room, ALICE, "I finally finished the game last night.", T0 + 1, T0 + 3)
    say(room, BOB, "Oh nice, how was the ending?", T0 + 3.8, T0 + 5)
    d = at(room, T0 + 6)
    assert d.rule == "humans_talking" and d.until is not None
    assert at(room, d.until).action is Action.START_TOPIC
    room.member_left(BOB, T0 + 5.1)
    d = at(room, T0 + 5.2)
    assert d.action is Action.WAIT and d.rule == "farewell" and at(room, d.until).action is Action.FAREWELL


def test_a_bare_call_waits_for_the_request_that_usually_follows():
    room = make_room(ALICE, BOB)
    say(room, ALICE, "Hey Juniper.", T0 + 1, T0 + 1.6)
    d = at(room, T0 + 1.9)
    assert d.action is Action.WAIT and d.rule == "respond_when_addressed"
    assert d.until == pytest.approx(T0 + 1.6 + POLICY.incomplete_wait_s)
    say(room, ALICE, "What's the capital of Peru?", T0 + 2.3, T0 + 3.5)  # merges into one addressed line
    assert room.last_human_line().text == "Hey Juniper. What's the capital of Peru?"
    d = at(room, T0 + 3.8)
    assert d.action is Action.RESPOND_NOW and d.addressed
    # ...and if nothing follows, the call alone is answered after the longer silence
    room2 = make_room(ALICE, BOB)
    say(room2, ALICE, "Juniper?", T0 + 1, T0 + 1.5)
    assert at(room2, T0 + 1.5 + POLICY.incomplete_wait_s).action is Action.RESPOND_NOW


def test_member_going_on_before_the_reply_is_heard_cancels_it_at_once():
    room = make_room(ALICE, BOB)
    line = say(room, ALICE, "Juniper, tell me", T0 + 1, T0 + 2)
    room.bot_begin("respond_now", T0 + 2.3, reply_to_seq=line.seq)
    start_speaking(room, ALICE, T0 + 2.5)
    d = at(room, T0 + 2.55)
    assert d.action is Action.YIELD_FLOOR and "kept talking" in d.reason
    room.bot_end(T0 + 2.55, discard=True)
    stop_speaking(room, ALICE, T0 + 3.5)
    final(room, ALICE, "what time it is.", T0 + 2.5, T0 + 3.4)
    assert room.last_human_line().text == "Juniper, tell me what time it is."
    assert at(room, T0 + 3.7).action is Action.RESPOND_NOW


def test_policy_from_settings():
    from runtime.settings import load_settings

    s = load_settings(
        env={
            "PROMPTER_REPLY_SILENCE_MS": "100",
            "PROMPTER_GROUP_SILENCE_MS": "2000",
            "PROMPTER_BARGE_IN_MS": "900",
            "PROMPTER_MAX_UNPROMPTED": "0",
            "PROMPTER_PREEMPTIVE": "false",
            "PROMPTER_GREET": "no",
        },
        env_file=None,
    )
    p = Policy.from_settings(s)
    assert (p.reply_silence_s, p.group_silence_s, p.barge_in_s) == (0.1, 2.0, 0.9)
    assert p.max_unprompted_in_row == 0 and not p.preemptive_start and not p.greet_members
    assert p.incomplete_wait_s == 1.8 and Policy.from_settings(s, barge_in_s=1.5).barge_in_s == 1.5
    room = make_room(ALICE)
    assert at(room, T0 + 100, p).action is Action.STAY_SILENT  # 0 unprompted lines: no topics at all


# --- a question put to the room ----------------------------------------------------------------------
# The bot answered someone a moment ago (it takes part in the conversation); then a member asks the room.


def _room_after_a_bot_line(*members):
    room = make_room(*members)
    say(room, CAROL if CAROL in members else BOB, "Juniper, any plans for tonight?", T0 + 1, T0 + 2)
    bot_says(room, "Just hanging out here with you all!", T0 + 2.5, T0 + 4.5)
    return room


QUESTION_END = T0 + 8.0


def _ask_the_room(room, text, uid=ALICE):
    return say(room, uid, text, QUESTION_END - 2.0, QUESTION_END)


def _sweep(room, until_s=20.0, step=0.25):
    t = QUESTION_END + 0.05
    out = []
    while t < QUESTION_END + until_s:
        out.append((t, at(room, t)))
        t += step
    return out


@pytest.mark.parametrize(
    "text",
    [
        "What should I cook tonight?",
        "What should I cook tonight with eggs and rice.",  # Whisper closed the question with a full stop
        "So, what did Alice want to cook.",  # the bot's name lost ("Juniper, …"): a question opener after the comma
        "Did anyone see the game last night.",
        "Can we get pizza later on.",
        "So how long does it take to boil an egg",
        # requests for talk are taken up the same way ("Juniper, …" lost, or said to the room)
        "Tell me something nice about bicycles.",
        "Gereple. Tell us a fun fact about octopuses.",
        "Okay, somebody explain how tides work.",
        "Please name one good thing about rainy days.",
        "Ask us a question about movies.",
        "Describe your perfect weekend",
        "Come on, say something funny.",
    ],
)
def test_a_question_to_the_room_nobody_takes_up_is_answered_after_the_wait(text):
    room = _room_after_a_bot_line(ALICE, BOB, CAROL)
    line = _ask_the_room(room, text, uid=BOB if "Alice" in text else ALICE)
    d = at(room, QUESTION_END + 0.3)
    assert d.action is Action.WAIT and d.rule == "room_question"
    assert d.until == pytest.approx(QUESTION_END + POLICY.room_question_wait_s)
    d = at(room, QUESTION_END + POLICY.room_question_wait_s + 0.01)
    assert d.action is Action.RESPOND_NOW and d.rule == "room_question" and d.reply_to_seq == line.seq
    assert d.addressed and d.member_id == line.user_id


@pytest.mark.parametrize(
    "text",
    [
        "What a day that was.",
        "How nice of them to come.",
        "Had a great time yesterday.",
        "Can't wait for the weekend.",
        "Do it later.",
        "I wonder what she wants.",
        # no request for talk
        "Tell me about it.",
        "Ugh, tell me about it.",
        "Tell him I said hi.",
        "I told them about the trip.",
        "Name the dog Rex.",
        "Say no more.",
        "They explained it twice.",
        "Pass me the salt.",
    ],
)
def test_exclamations_and_statements_are_no_question_to_the_room(text):
    room = _room_after_a_bot_line(ALICE, BOB, CAROL)
    _ask_the_room(room, text)
    assert all(d.action is not Action.RESPOND_NOW and d.rule != "room_question" for _, d in _sweep(room))


@pytest.mark.parametrize("answer_after", [0.3, 0.8, 1.2, 1.7])
def test_a_member_who_begins_to_answer_keeps_the_bot_out_even_before_the_transcript(answer_after):
    room = _room_after_a_bot_line(ALICE, BOB, CAROL)
    _ask_the_room(room, "What should I cook tonight?")
    start_speaking(room, CAROL, QUESTION_END + answer_after)
    assert at(room, QUESTION_END + answer_after + 0.1).rule == "someone_speaking"
    stop_speaking(room, CAROL, QUESTION_END + answer_after + 1.0)
    # no transcript came (yet, or ever: Whisper rejected it): the bot still keeps out
    for t, d in _sweep(room):
        assert d.action is not Action.RESPOND_NOW, (t, d)
    d = at(room, QUESTION_END + answer_after + 1.0 + POLICY.final_timeout_s + 0.1)
    assert d.action is Action.STAY_SILENT and d.rule == "room_question" and "Carol" in d.reason


def test_the_answer_of_a_member_closes_the_question():
    room = _room_after_a_bot_line(ALICE, BOB, CAROL)
    _ask_the_room(room, "What should I cook tonight?")
    say(room, BOB, "Make an omelette.", QUESTION_END + 0.6, QUESTION_END + 1.6)
    assert all(d.action is not Action.RESPOND_NOW for _, d in _sweep(room))


@pytest.mark.parametrize(
    "text", ["Bob, what should I cook tonight?", "What should I cook tonight, Bob?", "Hey Bob, did you see the game."]
)
def test_a_question_put_to_a_member_by_name_stays_theirs_when_they_stay_silent(text):
    room = _room_after_a_bot_line(ALICE, BOB, CAROL)
    _ask_the_room(room, text)
    decisions = _sweep(room, until_s=30.0)
    assert all(d.action is not Action.RESPOND_NOW for _, d in decisions)
    assert decisions[-1][1].rule == "humans_talking" and "Bob" in decisions[-1][1].reason


def test_a_name_only_mentioned_is_no_address():
    room = _room_after_a_bot_line(ALICE, BOB, CAROL)
    _ask_the_room(room, "What did Alice want to cook?", uid=BOB)
    d = at(room, QUESTION_END + POLICY.room_question_wait_s + 0.01)
    assert d.action is Action.RESPOND_NOW and d.rule == "room_question"


def test_a_question_inside_two_members_back_and_forth_is_for_the_other_one():
    room = _room_after_a_bot_line(ALICE, BOB)
    say(room, BOB, "I finally saw that new film.", T0 + 5.0, T0 + 6.0)
    say(room, ALICE, "Oh, how was it?", T0 + 6.6, QUESTION_END)
    decisions = _sweep(room)
    assert all(d.action is not Action.RESPOND_NOW for _, d in decisions)
    assert decisions[-1][1].rule == "humans_talking"


def test_members_talking_among_themselves_while_the_bot_keeps_out_ask_each_other():
    room = make_room(ALICE, BOB)
    bot_says(room, "Hey hey, Juniper here!", T0 + 1, T0 + 2)
    late = T0 + 2 + POLICY.room_question_context_s + 5.0
    say(room, ALICE, "How was the concert last night?", late, late + 1.5)
    for t in (late + 1.6, late + 3.5, late + 10.0):
        assert at(room, t).action is Action.STAY_SILENT, t


def test_room_questions_wait_is_a_setting_and_zero_turns_it_off():
    room = _room_after_a_bot_line(ALICE, BOB, CAROL)
    _ask_the_room(room, "What should I cook tonight?")
    slow = Policy(prepare_in_wait=False, room_question_wait_s=3.0)
    assert at(room, QUESTION_END + 2.0, slow).action is Action.WAIT
    assert at(room, QUESTION_END + 3.01, slow).action is Action.RESPOND_NOW
    off = Policy(prepare_in_wait=False, room_question_wait_s=0.0)
    assert all(at(room, t, off).action is not Action.RESPOND_NOW for t in (QUESTION_END + 2.0, QUESTION_END + 10.0))


def test_a_question_to_the_room_is_prepared_while_the_room_has_its_chance():
    """The reply to a question the bot may take is prefilled during the wait (`bot.prefill`), not after it;
    a question calling a member, or asked while the bot is out of the conversation, is not."""
    from bot.prefill import asks_the_room, reply_likely

    room = _room_after_a_bot_line(ALICE, BOB, CAROL)
    line = _ask_the_room(room, "What should I cook tonight?")
    assert asks_the_room(room, line, POLICY, QUESTION_END + 0.1)
    assert "asked the room" in (reply_likely(room, ALICE, POLICY, QUESTION_END + 0.1) or "")
    named = _room_after_a_bot_line(ALICE, BOB, CAROL)
    assert not asks_the_room(
        named, _ask_the_room(named, "Bob, what should I cook tonight?"), POLICY, QUESTION_END + 0.1
    )
    quiet_bot = make_room(ALICE, BOB, CAROL)  # joined long ago, quiet since
    late = POLICY.room_question_context_s + 5.0
    quiet_line = say(quiet_bot, ALICE, "What should I cook tonight?", QUESTION_END + late - 2.0, QUESTION_END + late)
    assert not asks_the_room(quiet_bot, quiet_line, POLICY, QUESTION_END + late + 0.1)
