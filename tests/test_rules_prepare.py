"""A reply prepared during the wait before it (`prepare_in_wait`): it goes out when the quiet bot would have begun
it, and is dropped unheard whenever the quiet bot would not answer that line after all."""

from __future__ import annotations

import random

import pytest

from conversation.decision import Action, Decision, Policy
from conversation.room import Room
from conversation.rules import decide
from tests.fixtures_prompter import (
    ALICE,
    BOB,
    CAROL,
    T0,
    bot_says,
    final,
    make_room,
    say,
    start_speaking,
    stop_speaking,
)

PREPARE = Policy()
QUIET = Policy(prepare_in_wait=False)


def _begin(room: Room, d: Decision, t: float) -> None:
    """What `LineRunner.begin` does to the room for a decision that speaks."""
    room.bot_begin(
        d.action.value,
        t,
        reply_to_seq=d.reply_to_seq,
        preemptive=d.preemptive,
        basis_user_id=d.member_id if d.preemptive else None,
    )


def _act(room: Room, d: Decision, t: float) -> None:
    if d.action is Action.YIELD_FLOOR:
        room.bot_end(t, discard=True)
    elif d.action is Action.RESPOND_NOW and d.confirm:
        room.bot_confirm(d.reply_to_seq or room.responded_to_seq, t)
    elif d.speaks and room.turn is None:
        _begin(room, d, t)


def _unsure_line(room: Room, text: str = "Juniper, tell me about the sea.") -> float:
    end = T0 + 2.5
    say(room, ALICE, text, T0 + 1, end, end_of_turn=0.05)  # the words read finished, the voice did not
    return end


def test_an_unsure_end_of_turn_prepares_the_reply_and_releases_it_when_the_wait_ends():
    room = make_room(ALICE, BOB)
    end = _unsure_line(room)
    due = end + PREPARE.unsure_wait_s
    assert decide(room, end + 0.1, QUIET).action is Action.WAIT  # the quiet rules wait...
    d = decide(room, end + 0.1, PREPARE)  # ...and the reply is made meanwhile, its audio held
    assert (d.action, d.rule, d.preemptive, d.reply_to_seq) == (Action.RESPOND_NOW, "prepare_in_wait", True, 1)
    _begin(room, d, end + 0.1)
    assert room.turn is not None and room.turn.prepared_seq == 1 and room.turn.reply_to_seq is None
    assert room.responded_to_seq == 0  # the line stays open until the wait ends: a continuation merges into it
    held = decide(room, due - 0.05, PREPARE)
    assert held.action is Action.WAIT and held.rule == "prepared_check" and held.until == pytest.approx(due)
    out = decide(room, due + 0.01, PREPARE)
    assert out.action is Action.RESPOND_NOW and out.confirm and out.reply_to_seq == 1
    _act(room, out, due + 0.01)
    assert room.turn.reply_to_seq == 1 and room.responded_to_seq == 1 and not room.turn.preemptive


def test_a_line_whisper_left_without_its_full_stop_is_prepared_during_the_longer_wait():
    room = make_room(ALICE, BOB)
    say(room, ALICE, "Juniper, my favourite film is the one about the talking car", T0 + 1, T0 + 2.5, end_of_turn=0.05)
    waits = decide(room, T0 + 2.6, QUIET)
    assert waits.action is Action.WAIT and waits.until == pytest.approx(T0 + 2.5 + QUIET.incomplete_wait_s)
    d = decide(room, T0 + 2.6, PREPARE)
    assert d.rule == "prepare_in_wait" and d.until == waits.until


def test_a_remark_alone_with_the_bot_is_prepared_during_its_longer_silence():
    room = make_room(ALICE)
    say(room, ALICE, "I had a really long day at work.", T0 + 1, T0 + 2.5, end_of_turn=0.9)
    waits = decide(room, T0 + 2.6, QUIET)
    assert waits.action is Action.WAIT and waits.rule == "join_in"
    d = decide(room, T0 + 2.6, PREPARE)
    assert d.rule == "prepare_in_wait" and d.preemptive and not d.addressed  # the prompt a join-in gets
    _begin(room, d, T0 + 2.6)
    assert decide(room, waits.until - 0.02, PREPARE).action is Action.WAIT
    out = decide(room, waits.until + 0.01, PREPARE)
    assert out.confirm and out.reply_to_seq == 1


def test_the_member_going_on_drops_the_prepared_reply_and_their_whole_turn_is_answered():
    room = make_room(ALICE, BOB)
    end = _unsure_line(room, "Juniper, I have a question about the sea.")
    d = decide(room, end + 0.1, PREPARE)
    _begin(room, d, end + 0.1)
    start_speaking(room, ALICE, end + 0.6)
    dropped = decide(room, end + 0.65, PREPARE)
    assert dropped.action is Action.YIELD_FLOOR and dropped.rule == "prepared_check"
    _act(room, dropped, end + 0.65)
    assert room.turn is None and room.responded_to_seq == 0
    stop_speaking(room, ALICE, end + 2.0)
    line = final(room, ALICE, "Have you sailed on it.", end + 0.6, end + 2.0, end_of_turn=0.9)
    assert line is not None and line.seq == 1 and "Have you sailed" in line.text  # merged into one turn
    answer = decide(room, end + 2.3, PREPARE)
    assert answer.action is Action.RESPOND_NOW and not answer.preemptive and answer.reply_to_seq == 1


def test_a_question_to_the_room_taken_up_by_a_member_drops_the_prepared_reply():
    room = make_room(ALICE, BOB, CAROL)
    say(room, CAROL, "Juniper, any plans for tonight?", T0 + 1, T0 + 2)
    bot_says(room, "Just hanging out here with you all!", T0 + 2.5, T0 + 4.5)
    say(room, ALICE, "What should I cook tonight?", T0 + 6, T0 + 8)
    d = decide(room, T0 + 8.1, PREPARE)
    assert d.action is Action.RESPOND_NOW and d.preemptive and d.reply_to_seq is not None
    _begin(room, d, T0 + 8.1)
    start_speaking(room, BOB, T0 + 8.7)  # Bob answers her
    dropped = decide(room, T0 + 8.75, PREPARE)
    assert dropped.action is Action.YIELD_FLOOR
    _act(room, dropped, T0 + 8.75)
    assert all(decide(room, T0 + 8.8 + i * 0.5, PREPARE).action is not Action.RESPOND_NOW for i in range(8))


@pytest.mark.parametrize(
    "text, eot",
    [
        ("Juniper, I was wondering if", 0.05),  # broken off: they most likely go on
        ("Juniper, the thing is", 0.05),  # a frame that promises more
        ("Hey Juniper.", 0.9),  # a bare call: the request follows
        ("Juniper, tell me about the sea.", 0.9),  # finished: answered after the short silence, nothing to prepare
    ],
)
def test_no_reply_is_prepared_where_the_speaker_most_likely_goes_on_or_the_wait_is_short(text, eot):
    room = make_room(ALICE, BOB)
    say(room, ALICE, text, T0 + 1, T0 + 2.5, end_of_turn=eot)
    for dt in (0.05, 0.1, 0.2):
        d = decide(room, T0 + 2.5 + dt, PREPARE)
        assert not (d.action is Action.RESPOND_NOW and d.preemptive), d


def test_a_dropped_preparation_is_not_made_again_for_the_same_words_and_the_setting_turns_it_off():
    room = make_room(ALICE, BOB)
    end = _unsure_line(room)
    _begin(room, decide(room, end + 0.1, PREPARE), end + 0.1)
    start_speaking(room, BOB, end + 0.3)  # a cough from Bob
    _act(room, decide(room, end + 0.32, PREPARE), end + 0.32)
    stop_speaking(room, BOB, end + 0.4)
    final(room, BOB, "", end + 0.3, end + 0.4)  # nothing Whisper would write
    again = decide(room, end + 0.5, PREPARE)
    assert again.action is Action.WAIT and again.rule == "respond_when_addressed"
    room2 = make_room(ALICE, BOB)
    end2 = _unsure_line(room2)
    assert decide(room2, end2 + 0.1, Policy(prepare_in_wait=False)).action is Action.WAIT


def _first_reply_at(
    room_for, policy: Policy, events, until: float, prepared: list[float] | None = None
) -> float | None:
    """Step the rules every 10 ms, applying `events` (time, fn(room)) as they come: when the bot's reply to the
    line is first released to be heard (begun, not held; or confirmed). `prepared` collects when replies were
    prepared."""
    room = room_for()
    t, pending = T0 + 2.55, sorted(events, key=lambda e: e[0])
    while t < until:
        while pending and pending[0][0] <= t:
            pending.pop(0)[1](room)
        d = decide(room, t, policy)
        if d.rule == "prepare_in_wait" and prepared is not None:
            prepared.append(t)
        heard = (d.action is Action.RESPOND_NOW and (d.confirm or not d.preemptive)) and (
            room.turn is None or room.turn.preemptive
        )
        _act(room, d, t)
        if heard:
            return round(t, 2)
        t += 0.01
    return None


def test_preparing_never_changes_whether_or_when_the_bot_speaks():
    """Random rooms: a member's line (finished or unsure, addressed or to the room), then maybe someone speaks
    during the wait. The first sound may go out at the same moment with the reply prepared as without it."""
    rng = random.Random(7)
    prepared: list[float] = []
    texts = [
        "Juniper, tell me about the sea.",
        "What should I cook tonight?",
        "Juniper, I have a question.",
        "I had a long day at work.",
        "Juniper, my favourite film is the one about the talking car",
        "Juniper, I was wondering",
    ]
    for _ in range(60):
        text, eot = rng.choice(texts), rng.choice([0.05, 0.3, 0.9])
        members = (ALICE,) if rng.random() < 0.3 else (ALICE, BOB, CAROL)

        def room_for(text: str = text, eot: float = eot, members: tuple[int, ...] = members) -> Room:
            room = make_room(*members)
            bot_says(room, "Hello there, everyone!", T0 - 3.0, T0 - 1.0)
            say(room, ALICE, text, T0 + 1, T0 + 2.5, end_of_turn=eot)
            return room

        events = []
        if rng.random() < 0.6:
            who, at = rng.choice(members[:2]), T0 + 2.5 + rng.uniform(0.2, 2.0)
            events += [(at, lambda r, w=who, a=at: start_speaking(r, w, a))]
            events += [(at + 0.4, lambda r, w=who, a=at: stop_speaking(r, w, a + 0.4))]
        quiet = _first_reply_at(room_for, QUIET, events, T0 + 8)
        released = _first_reply_at(room_for, PREPARE, events, T0 + 8, prepared)
        assert released == quiet, (text, eot, events and round(events[0][0] - T0, 2))
    assert len(prepared) >= 10  # the rooms did put replies in the making during waits
