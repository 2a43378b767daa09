"""Helpers to build rooms and conversations on fake time for the prompter's tests."""

from __future__ import annotations

from audio.types import SpeakingEvent, Utterance
from conversation.decision import Policy
from conversation.room import Room

T0 = 1000.0
BOT_ID = 999
ALICE, BOB, CAROL = 1, 2, 3
NAMES = {ALICE: "Alice", BOB: "Bob", CAROL: "Carol"}
# reply .25 s (1.8 s unfinished), alone 1.2 s, idle 45 s, cooldown 4 s, takeover 1 s. The timing tests read
# the waits themselves; a reply prepared during a wait is tested apart (test_rules_prepare.py).
POLICY = Policy(prepare_in_wait=False)


def make_room(*members: int, bot: str = "Juniper", greeted: bool = True) -> Room:
    room = Room(bot_name=bot, bot_user_id=BOT_ID, now=T0)
    room.room_greeted = greeted
    for uid in members:
        room.member_joined(uid, NAMES.get(uid, f"member {uid}"), T0, initial=True)
    return room


def start_speaking(room: Room, uid: int, t: float) -> None:
    room.on_speaking(SpeakingEvent(uid, True, t))


def stop_speaking(room: Room, uid: int, t: float) -> None:
    room.on_speaking(SpeakingEvent(uid, False, t))


def partial(
    room: Room, uid: int, text: str, start: float, end: float, *, end_of_turn: float | None = None, **marks: float
) -> None:
    """A partial transcript; `marks` are the listener's timings marks (paused=, speculative=, resumed=)."""
    room.on_utterance(
        Utterance(uid, NAMES.get(uid, str(uid)), text, start, end, False, 0.8, dict(marks), end_of_turn=end_of_turn)
    )


def final(room: Room, uid: int, text: str, start: float, end: float, *, end_of_turn: float | None = None):
    return room.on_utterance(
        Utterance(
            uid,
            NAMES.get(uid, str(uid)),
            text,
            start,
            end,
            True,
            0.9,
            {"speech_end": end, "final": end + 0.4},
            end_of_turn=end_of_turn,
        )
    )


def say(room: Room, uid: int, text: str, start: float, end: float, *, end_of_turn: float | None = None):
    """A whole segment: speaking on, off at `end`, then its final transcript."""
    start_speaking(room, uid, start)
    stop_speaking(room, uid, end)
    return final(room, uid, text, start, end, end_of_turn=end_of_turn)


def bot_speaking(room: Room, since: float, audio_s: float = 4.0):
    """The bot has been speaking a line since `since` (its first sound), `audio_s` of it synthesized."""
    turn = room.bot_begin("respond_now", since - 0.5)
    turn.add_text("Well, let me tell you about the time I climbed a mountain in the rain.")
    turn.add_audio(audio_s)
    room.bot_audio_started(since)
    return turn


def bot_says(
    room: Room, text: str, start: float, end: float, *, kind: str = "respond_now", reply_to: int | None = None
):
    turn = room.bot_begin(kind, start - 0.3, reply_to_seq=reply_to)
    turn.add_text(text)
    turn.add_audio(end - start)
    room.bot_audio_started(start)
    return room.bot_end(end)
