"""Room bookkeeping: members, speaking, partial/final transcripts, merging, the bot's own lines, bounds."""

from __future__ import annotations

import pytest

from audio.types import SpeakingEvent
from conversation.bot_turn import BotTurn
from conversation.room import Room
from conversation.room_lines import BotState
from tests.fixtures_prompter import (
    ALICE,
    BOB,
    BOT_ID,
    T0,
    bot_says,
    final,
    make_room,
    partial,
    say,
    start_speaking,
    stop_speaking,
)


def test_members_join_leave_and_departures_remember_who_took_part():
    room = make_room(ALICE)
    room.member_joined(BOB, "Bob", T0 + 5)
    assert room.members[BOB].joined_at == T0 + 5 and not room.members[BOB].greeted
    assert room.members[ALICE].greeted  # present at the start: greeted with the room
    say(room, BOB, "hello", T0 + 6, T0 + 7)
    departure = room.member_left(BOB, T0 + 8)
    assert departure.spoke and departure.name == "Bob" and BOB not in room.members
    assert room.member_left(BOB, T0 + 9) is None
    assert not room.member_left(ALICE, T0 + 9).spoke
    with pytest.raises(ValueError):
        room.member_joined(BOT_ID, "me", T0)


def test_rejoin_keeps_one_member_and_updates_the_name():
    room = make_room(ALICE)
    room.member_joined(ALICE, "Alice B.", T0 + 1)
    assert len(room.members) == 1 and room.name_of(ALICE) == "Alice B."
    assert room.name_of(12345) == "member 12345"


def test_speaking_events_and_time_since_spoke():
    room = make_room(ALICE, BOB)
    assert room.since_member_spoke(ALICE, T0 + 1) is None
    start_speaking(room, ALICE, T0 + 1)
    start_speaking(room, ALICE, T0 + 1.5)  # a repeated start keeps the first
    assert room.members[ALICE].speaking_since == T0 + 1
    assert [m.name for m in room.speaking_members()] == ["Alice"]
    assert room.since_member_spoke(ALICE, T0 + 2) == 0.0
    stop_speaking(room, ALICE, T0 + 2)
    assert room.since_member_spoke(ALICE, T0 + 5) == pytest.approx(3.0)
    assert room.since_member_spoke(999_999, T0) is None


def test_partial_is_kept_aside_and_the_final_becomes_a_line():
    room = make_room(ALICE)
    start_speaking(room, ALICE, T0 + 1)
    partial(room, ALICE, "what is the", T0 + 1, T0 + 1.8)
    assert room.members[ALICE].partial.text == "what is the" and not room.history
    stop_speaking(room, ALICE, T0 + 2.5)
    assert room.members[ALICE].segment_open
    line = final(room, ALICE, "What is the plan?", T0 + 1, T0 + 2.5)
    member = room.members[ALICE]
    assert member.partial is None and not member.segment_open and member.finals == 1
    assert (line.name, line.text, line.is_bot) == ("Alice", "What is the plan?", False)
    assert room.last_line() is line and room.last_human_line() is line


def test_empty_final_closes_the_segment_without_a_line():
    room = make_room(ALICE)
    start_speaking(room, ALICE, T0 + 1)
    stop_speaking(room, ALICE, T0 + 1.5)
    assert final(room, ALICE, "   ", T0 + 1, T0 + 1.5) is None
    assert not room.members[ALICE].segment_open and not room.history


def test_close_finals_of_one_speaker_merge_into_one_turn():
    room = make_room(ALICE, BOB)
    first = say(room, ALICE, "So I was thinking,", T0 + 1, T0 + 2)
    second = say(room, ALICE, "maybe we go hiking.", T0 + 2.6, T0 + 4)
    assert second.seq == first.seq and second.text == "So I was thinking, maybe we go hiking."
    assert len(room.history) == 1 and second.start == T0 + 1 and second.end == T0 + 4
    third = say(room, ALICE, "Or not.", T0 + 10, T0 + 11)  # long gap: a new line
    assert third.seq != first.seq


def test_no_merge_into_a_line_the_bot_already_answers():
    room = make_room(ALICE)
    first = say(room, ALICE, "Juniper, hi", T0 + 1, T0 + 2)
    room.bot_begin("respond_now", T0 + 2.3, reply_to_seq=first.seq)
    second = say(room, ALICE, "how are you?", T0 + 2.5, T0 + 3.5)
    assert second.seq != first.seq


def test_unknown_speaker_is_added_but_not_greeted_and_the_bot_is_ignored():
    room = make_room(ALICE)
    room.on_speaking(SpeakingEvent(77, True, T0 + 1))
    assert room.members[77].greeted and room.members[77].speaking
    room.on_speaking(SpeakingEvent(BOT_ID, True, T0 + 1))
    final(room, BOT_ID, "I am the bot", T0, T0 + 1)
    assert BOT_ID not in room.members and not room.history


def test_heard_text_follows_the_audio_actually_played():
    turn = BotTurn("respond_now", T0)
    turn.add_text("Hello there.")
    turn.add_audio(1.0)
    turn.add_text("I have a long story to tell you today.")
    turn.add_audio(1.5)
    turn.add_audio(0.5)  # TTS gave this fragment in two chunks
    assert turn.text == "Hello there. I have a long story to tell you today."
    assert turn.audio_s == pytest.approx(3.0)
    assert turn.heard_text(3.0) == ("Hello there. I have a long story to tell you today.", False)
    assert turn.heard_text(0.2) == ("", True)
    assert turn.heard_text(0.5) == ("Hello", True)
    assert turn.heard_text(1.0)[0] == "Hello there."
    text, cut = turn.heard_text(2.0)  # half of the 9-word second fragment
    assert cut and text == "Hello there. I have a long"


def test_barge_in_puts_only_the_heard_part_in_history():
    room = make_room(ALICE)
    turn = room.bot_begin("respond_now", T0 + 1)
    assert room.bot_state is BotState.THINKING
    turn.add_text("Once upon a time there was a dragon.")
    turn.add_audio(2.0)
    turn.add_text("It lived on a hill.")
    turn.add_audio(1.0)
    room.bot_audio_started(T0 + 1.5)
    assert room.bot_state is BotState.SPEAKING and room.last_bot_start_t == T0 + 1.5
    line = room.bot_end(T0 + 2.5, seconds_played=1.0)
    assert line.is_bot and line.interrupted and line.text == "Once upon a time…"
    assert room.bot_state is BotState.IDLE and room.turn is None and room.last_bot_line_t == T0 + 2.5


def test_discarded_line_is_not_history_and_reopens_what_it_answered():
    room = make_room(ALICE)
    line = say(room, ALICE, "Juniper?", T0 + 1, T0 + 2)
    room.bot_begin("respond_now", T0 + 2.3, reply_to_seq=line.seq)
    assert room.responded_to_seq == line.seq
    assert room.bot_end(T0 + 2.5, discard=True) is None
    assert room.responded_to_seq == 0 and room.last_bot_line_t is None and len(room.history) == 1


def test_line_that_failed_before_audio_still_counts_as_an_attempt():
    room = make_room(ALICE)
    line = say(room, ALICE, "Juniper?", T0 + 1, T0 + 2)
    room.bot_begin("respond_now", T0 + 2.3, reply_to_seq=line.seq)
    assert room.bot_end(T0 + 3) is None
    assert room.responded_to_seq == line.seq and room.last_bot_line_t == T0 + 3  # no retry loop


def test_a_second_line_while_busy_is_refused():
    room = make_room(ALICE)
    room.bot_begin("start_topic", T0)
    with pytest.raises(RuntimeError):
        room.bot_begin("start_topic", T0)


def test_human_line_over_the_bot_is_marked():
    room = make_room(ALICE)
    turn = room.bot_begin("respond_now", T0 + 1)
    turn.add_text("a long line")
    turn.add_audio(3)
    room.bot_audio_started(T0 + 1.2)
    over = say(room, ALICE, "mm", T0 + 2, T0 + 2.2)
    room.bot_end(T0 + 4.2)
    after = say(room, ALICE, "So anyway.", T0 + 6, T0 + 7)
    assert over.overlapped_bot and not after.overlapped_bot


def test_activity_counters_and_recent_speakers():
    room = make_room(ALICE, BOB)
    assert room.last_activity() == T0
    say(room, ALICE, "hi", T0 + 1, T0 + 2)
    bot_says(room, "Hello!", T0 + 3, T0 + 4)
    bot_says(room, "Nice weather.", T0 + 10, T0 + 11, kind="start_topic")
    assert room.bot_lines_in_a_row() == 2 and room.last_activity() == T0 + 11
    say(room, BOB, "yes", T0 + 12, T0 + 13)
    assert room.bot_lines_in_a_row() == 0
    assert room.recent_speakers(T0 + 13, 100) == [ALICE, None, None, BOB]
    assert room.recent_speakers(T0 + 13, 5) == [None, BOB]
    snap = room.describe(T0 + 14)
    assert snap["bot"] == "idle" and snap["lines"] == 4 and snap["quiet_s"] == pytest.approx(1.0)


def test_history_and_lines_are_bounded():
    room = Room(bot_name="Juniper", now=T0, max_history=50)
    room.member_joined(ALICE, "Alice", T0)
    for i in range(500):
        say(room, ALICE, f"line {i} " + "word " * 10, T0 + i * 10, T0 + i * 10 + 1)
    assert len(room.history) == 50 and room.history[-1].text.startswith("line 499")
    long = say(room, ALICE, "x" * 10_000, T0 + 6000, T0 + 6001)
    assert len(long.text) <= 1200


def test_final_before_the_silent_event_closes_the_segment():
    # The listener's speculative final often lands before its speaking → silent event.
    room = make_room(ALICE)
    start_speaking(room, ALICE, T0 + 1)
    final(room, ALICE, "Hi there.", T0 + 0.9, T0 + 2)
    assert room.members[ALICE].segment_open  # still speaking
    stop_speaking(room, ALICE, T0 + 2.3)
    assert not room.members[ALICE].segment_open


def test_new_speech_after_a_final_opens_a_new_segment():
    room = make_room(ALICE)
    say(room, ALICE, "One.", T0 + 1, T0 + 2)
    start_speaking(room, ALICE, T0 + 2.8)
    stop_speaking(room, ALICE, T0 + 3.5)
    assert room.members[ALICE].segment_open
    final(room, ALICE, "Two.", T0 + 2.7, T0 + 3.3)
    assert not room.members[ALICE].segment_open


def test_cut_between_fragments_is_still_marked_interrupted():
    room = make_room(ALICE)
    turn = room.bot_begin("respond_now", T0)
    turn.add_text("First sentence.")
    turn.add_audio(1.0)
    room.bot_audio_started(T0 + 0.1)
    line = room.bot_end(T0 + 1.5, seconds_played=1.0, interrupted=True)  # the next fragment never came
    assert line.interrupted and line.text == "First sentence.…"


def test_last_words_after_leaving_enter_history_without_a_ghost_member():
    room = make_room(ALICE, BOB)
    start_speaking(room, BOB, T0 + 1)
    room.member_left(BOB, T0 + 1.5)
    stop_speaking(room, BOB, T0 + 1.6)
    line = final(room, BOB, "Gotta go, bye!", T0 + 1, T0 + 1.5)  # the listener finishes what he said
    assert line.name == "Bob" and BOB not in room.members
    room.member_joined(BOB, "Bob", T0 + 30)  # and back: the farewell no longer applies
    assert room.departures[-1].handled and room.members[BOB].joined_at == T0 + 30


def test_speaking_spans_are_bounded_and_add_up_across_short_gaps():
    from conversation.member import MAX_SPEECH_SPANS

    room = make_room(ALICE)
    member = room.members[ALICE]
    for i in range(MAX_SPEECH_SPANS + 10):
        start_speaking(room, ALICE, T0 + i)
        stop_speaking(room, ALICE, T0 + i + 0.5)
    assert len(member.speech_spans) == MAX_SPEECH_SPANS
    last_end = T0 + MAX_SPEECH_SPANS + 9.5
    assert member.speech_since(T0, last_end + 0.1, max_gap_s=0.4) == pytest.approx(0.5)  # 0.5 s gaps: one span
    assert member.speech_since(T0, last_end + 0.1, max_gap_s=0.6) == pytest.approx(0.5 * MAX_SPEECH_SPANS)
    assert member.speech_since(last_end - 0.2, last_end + 0.1, max_gap_s=0.6) == pytest.approx(0.2)  # clipped
    assert member.speech_since(T0, last_end + 0.65, max_gap_s=0.6) == 0.0  # silent for the gap: the run is over
    start_speaking(room, ALICE, last_end + 0.3)
    assert member.speech_since(T0, last_end + 0.5, max_gap_s=0.4) == pytest.approx(0.7)  # open span + the last
