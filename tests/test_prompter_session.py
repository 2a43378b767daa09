"""VoiceSession orchestration on real time: answering, barge-in, early start, captions, persona switch.

The listener's callbacks are played by the test (the real Listener has its own tests; an end-to-end
run with it is in test_prompter_integration.py); the responder and player are the paced doubles of
tests/fixtures_prompter_session.py, so these tests are fast and exact.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

from audio.types import MemberFrame, SpeakingEvent, Utterance
from runtime.settings import load_settings
from bot.voice_session import VoiceSession
from conversation.decision import Action, Policy
from conversation.room_lines import BotState
from tests.fixtures_prompter_session import PacedPlayer, RecordingListener, ScriptedResponder

ALICE, BOB, BOT = 1, 2, 999
SETTINGS = load_settings(env={}, env_file=None)
FAST = Policy(
    reply_silence_s=0.05,
    group_silence_s=0.3,
    idle_topic_s=30,
    cooldown_s=0.5,
    barge_in_s=0.3,
    greet_members=False,
    final_timeout_s=1.0,
)


@dataclass
class P:
    name: str = "Juniper"
    greeting: str = "Hi!"
    topics: tuple = ("board games",)
    aliases: tuple = field(default_factory=tuple)


async def make(responder, *, policy=FAST, members=((ALICE, "Alice"), (BOB, "Bob")), captions=None, metrics=None):
    player = PacedPlayer()
    session = VoiceSession(
        settings=SETTINGS,
        persona=P(),
        responder=responder,
        player=player,
        guild_id=7,
        bot_user_id=BOT,
        members=members,
        make_listener=RecordingListener,
        policy=policy,
        captions=captions,
        tick_s=0.01,
        metrics=metrics,
    )
    await session.start()
    return session, player


def speak(session, uid, text, *, dur=0.5, final=True, name=None):
    """What the listener reports for one segment that just ended now."""
    end = time.monotonic()
    start = end - dur
    session.on_speaking(SpeakingEvent(uid, True, start))
    session.on_speaking(SpeakingEvent(uid, False, end))
    if final:
        session.on_utterance(
            Utterance(
                uid,
                name or session.room.name_of(uid),
                text,
                start,
                end,
                True,
                0.9,
                {"speech_end": end, "final": end + 0.01},
            )
        )


async def until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_answers_a_direct_question_and_records_the_turn():
    from runtime.metrics import Metrics

    metrics = Metrics()
    responder = ScriptedResponder(["It's half past two.", "Time for tea?"], seconds_each=0.2)
    session, player = await make(responder, metrics=metrics.for_guild(7))
    try:
        speak(session, ALICE, "Juniper, what time is it?")
        await until(lambda: responder.finished == 1 and session.room.bot_state is BotState.IDLE)
        call = responder.calls[0]
        assert "Alice is talking to you" in call["situation"]
        assert [(h.speaker, h.text, h.is_bot) for h in call["history"]] == [
            ("Alice", "Juniper, what time is it?", False)
        ]
        bot_line = session.room.last_line()
        assert bot_line.is_bot and bot_line.text == "It's half past two. Time for tea?" and not bot_line.interrupted
        assert player.fed_s == pytest.approx(0.4) and player.flushes == []
        trace = session.traces[-1]
        assert trace.outcome == "spoken" and trace.rule == "respond_when_addressed"
        for stage in (
            "speech_end",
            "final",
            "decided",
            "request",
            "first_token",
            "first_fragment",
            "first_audio",
            "first_packet",
            "end",
        ):
            assert stage in trace.times, stage
        ms = trace.relative_ms()
        assert 0 <= ms["decided"] < 1000 and ms["first_packet"] >= ms["first_audio"]
        assert [d.action for _, d in session.decisions] == [Action.RESPOND_NOW]
        await asyncio.sleep(0.2)
        assert len(responder.calls) == 1  # answered once
        # the line's stages went to the guild's metrics (when metrics are on)
        assert metrics.registry.get_sample_value("chorus_turns_total", {"guild": "7", "outcome": "spoken"}) == 1
        assert metrics.registry.get_sample_value("chorus_turn_latency_seconds_count", {"guild": "7"}) == 1
    finally:
        await session.close()
        player.close()


@pytest.mark.asyncio
async def test_barge_in_cuts_playback_cancels_generation_and_keeps_what_was_heard():
    words = "Let me tell you a very long story about a dragon who lived on a hill near the sea."
    responder = ScriptedResponder([words, "And then one day it flew away."], seconds_each=2.0)
    session, player = await make(responder)
    try:
        speak(session, ALICE, "Juniper, tell me a story.")
        await until(lambda: session.room.bot_state is BotState.SPEAKING)
        await asyncio.sleep(0.6)
        session.on_speaking(SpeakingEvent(BOB, True, time.monotonic()))  # Bob takes the floor
        await until(lambda: session.room.bot_state is BotState.IDLE, timeout=2)
        assert player.flushes and player.flushes[0] > 0.5  # the rest was dropped
        assert responder.cancelled.is_set() or responder.finished == 1
        line = session.room.last_bot_line()
        assert line.interrupted and line.text.endswith("…")
        heard = line.text.rstrip("…").split()
        assert 2 <= len(heard) < len(words.split())  # some, not all, of the first sentence
        assert words.startswith(" ".join(heard))
        assert session.traces[-1].outcome == "interrupted"
        assert any(d.action is Action.YIELD_FLOOR and d.member_id == BOB for _, d in session.decisions)
        # Bob finishes; the bot does not talk over him and then answers his question
        session.on_speaking(SpeakingEvent(BOB, False, time.monotonic()))
        session.on_utterance(
            Utterance(BOB, "Bob", "Juniper, wait, what dragon?", time.monotonic() - 1, time.monotonic(), True, 0.9, {})
        )
        await until(lambda: len(responder.calls) == 2)
    finally:
        await session.close()
        player.close()


@pytest.mark.asyncio
async def test_a_backchannel_does_not_stop_the_bot():
    responder = ScriptedResponder(["One.", "Two.", "Three."], seconds_each=0.3)
    session, player = await make(responder)
    try:
        speak(session, ALICE, "Juniper, count to three.")
        await until(lambda: session.room.bot_state is BotState.SPEAKING)
        t = time.monotonic()
        session.on_speaking(SpeakingEvent(BOB, True, t))
        await asyncio.sleep(0.15)
        session.on_speaking(SpeakingEvent(BOB, False, time.monotonic()))
        session.on_utterance(Utterance(BOB, "Bob", "Mm-hm.", t, time.monotonic(), True, 0.9, {}))
        await until(lambda: responder.finished == 1 and session.room.bot_state is BotState.IDLE)
        assert player.flushes == []
        assert session.room.last_bot_line().text == "One. Two. Three."
        await asyncio.sleep(0.5)
        assert len(responder.calls) == 1  # "mm-hm" gets no reply
    finally:
        await session.close()
        player.close()


@pytest.mark.asyncio
async def test_a_member_over_the_turned_down_voice_holds_its_next_run_until_they_stop():
    """The prompter's side of `StreamPlayer.hold_new_runs` (the player's side: tests/test_playback_hold.py):
    while Bob voices over the line, the voice is turned down and its next run held; his pause lets it go."""
    responder = ScriptedResponder(["One.", "Two.", "Three."], seconds_each=0.3)
    session, player = await make(responder)
    try:
        speak(session, ALICE, "Juniper, count to three.")
        await until(lambda: session.room.bot_state is BotState.SPEAKING)
        assert player.holds == [] and player.gains == []
        t = time.monotonic()
        session.on_speaking(SpeakingEvent(BOB, True, t))
        await until(lambda: player.holds[-1:] == [True], timeout=1)
        assert player.gains and player.gains[-1] < 1.0  # turned down, still speaking
        assert session.room.bot_state is BotState.SPEAKING
        session.on_speaking(SpeakingEvent(BOB, False, time.monotonic()))
        await until(lambda: player.holds[-1:] == [False], timeout=1)  # his pause: the voice may go on
        session.on_utterance(Utterance(BOB, "Bob", "Mm-hm.", t, time.monotonic(), True, 0.9, {}))
        await until(lambda: responder.finished == 1 and session.room.bot_state is BotState.IDLE)
        assert player.holds == [True, False] and player.gains[-1] == 1.0 and player.flushes == []
        assert session.room.last_bot_line().text == "One. Two. Three."
    finally:
        await session.close()
        player.close()


def alice_asks_and_stops(session) -> float:
    """Alice said "Juniper, what time is it?" (a partial so far) and went silent now; returns now."""
    t = time.monotonic()
    session.on_speaking(SpeakingEvent(ALICE, True, t - 1))
    session.on_utterance(Utterance(ALICE, "Alice", "Juniper, what time is it?", t - 1, t, False, 0.8, {}))
    session.on_speaking(SpeakingEvent(ALICE, False, t))
    return t


@pytest.mark.asyncio
async def test_early_start_holds_audio_until_the_final_confirms_it():
    responder = ScriptedResponder(["It's two."], seconds_each=0.2, delay_s=0.01)
    session, player = await make(responder)
    try:
        t = alice_asks_and_stops(session)
        await until(lambda: responder.finished == 1)  # generated on the partial...
        assert player.fed_s == 0.0 and session.room.turn.preemptive  # ...but held back
        assert responder.calls[0]["history"][-1].text == "Juniper, what time is it?"
        session.on_utterance(
            Utterance(
                ALICE,
                "Alice",
                "Juniper, what time is it?",
                t - 1,
                t,
                True,
                0.9,
                {"speech_end": t, "final": time.monotonic()},
            )
        )
        await until(lambda: session.room.bot_state is BotState.IDLE and player.fed_s > 0)
        assert session.room.last_bot_line().text == "It's two."
        assert "confirmed" in session.traces[-1].times and len(responder.calls) == 1
    finally:
        await session.close()
        player.close()


@pytest.mark.asyncio
async def test_early_start_is_dropped_when_the_final_differs():
    responder = ScriptedResponder(["It's two."], seconds_each=0.2, delay_s=0.01)
    session, player = await make(responder)
    try:
        t = alice_asks_and_stops(session)
        await until(lambda: responder.finished == 1)
        session.on_utterance(
            Utterance(ALICE, "Alice", "Juniper, what tea is best for a sore throat?", t - 1, t, True, 0.9, {})
        )
        await until(lambda: len(responder.calls) == 2 and session.room.bot_state is BotState.IDLE)
        assert session.traces[0].outcome == "discarded"
        assert responder.calls[1]["history"][-1].text == "Juniper, what tea is best for a sore throat?"
        assert player.fed_s == pytest.approx(0.2)  # only the second answer was played
    finally:
        await session.close()
        player.close()


@pytest.mark.asyncio
async def test_early_start_in_a_pause_plays_nothing_when_they_go_on_and_answers_the_whole_line():
    responder = ScriptedResponder(["It's two."], seconds_each=0.2, delay_s=0.01)
    session, player = await make(responder)
    try:
        t = time.monotonic()
        session.on_speaking(SpeakingEvent(ALICE, True, t - 1))
        words = "Juniper, what time is it?"
        session.on_utterance(Utterance(ALICE, "Alice", words, t - 1, t, False, 0.8, {}))
        session.on_utterance(Utterance(ALICE, "Alice", words, t - 1, t, False, 0.8, {"paused": t + 0.06}))
        await until(lambda: responder.finished == 1)  # prepared in the pause, while still "speaking"
        assert session.room.turn is not None and session.room.turn.preemptive and player.fed_s == 0.0
        session.on_utterance(Utterance(ALICE, "Alice", words, t - 1, t, False, 0.8, {"resumed": t + 0.2}))
        await until(lambda: session.room.turn is None)
        assert session.traces[0].outcome == "discarded" and player.fed_s == 0.0  # not a sound over her
        end = time.monotonic()
        session.on_speaking(SpeakingEvent(ALICE, False, end))
        whole = "Juniper, what time is it? In Tokyo, I mean."
        session.on_utterance(Utterance(ALICE, "Alice", whole, t - 1, end, True, 0.9, {"speech_end": end}))
        await until(lambda: len(responder.calls) == 2 and session.room.bot_state is BotState.IDLE)
        assert responder.calls[1]["history"][-1].text == whole
        assert player.fed_s == pytest.approx(0.2)  # only the answer to the whole line was played
    finally:
        await session.close()
        player.close()


@pytest.mark.asyncio
async def test_captions_persona_switch_members_and_failures():
    captions: list[str] = []

    async def caption(text):
        captions.append(text)

    responder = ScriptedResponder(["Hello Alice."], seconds_each=0.1)
    session, player = await make(responder, captions=caption)
    try:
        session.set_persona(P(name="Trixie"))
        speak(session, ALICE, "Trixie, hi!")
        await until(lambda: responder.finished == 1 and session.room.bot_state is BotState.IDLE)
        await until(lambda: len(captions) == 2)
        assert captions == ["**Alice**: Trixie, hi!", "**Trixie**: Hello Alice."]
        assert responder.calls[0]["persona"].name == "Trixie"
        # frames: members are fed to the listener, the bot's own voice never is
        session.on_frame(MemberFrame(ALICE, np.zeros(320, np.float32), time.monotonic()))
        session.on_frame(MemberFrame(BOT, np.zeros(320, np.float32), time.monotonic()))
        assert [f.user_id for f in session.listener.frames] == [ALICE]
        session.member_left(BOB)
        assert session.listener.forgotten == [BOB] and BOB not in session.room.members
        session.sync_members([(ALICE, "Alice"), (3, "Carol")])
        assert set(session.room.members) == {ALICE, 3}
        # a failing responder is logged, not retried in a loop, and the session keeps going
        responder.fail = True
        speak(session, ALICE, "Trixie, again?")
        await until(lambda: len(responder.calls) == 2 and session.room.bot_state is BotState.IDLE)
        await asyncio.sleep(0.3)
        assert len(responder.calls) == 2 and session.traces[-1].outcome == "failed"
    finally:
        await session.close()
        player.close()
    assert session.listener.closed


@pytest.mark.asyncio
async def test_greets_a_member_who_joins():
    responder = ScriptedResponder(["Hey Carol!"], seconds_each=0.1)
    session, player = await make(responder, policy=dataclasses.replace(FAST, greet_members=True))
    try:
        await until(lambda: responder.finished == 1)  # the room greeting at start: the persona's, as written
        assert responder.calls[0]["script"] == "Hi!"
        session.member_joined(3, "Carol")
        await until(lambda: len(responder.calls) == 2)
        assert "Carol just joined" in responder.calls[1]["situation"]
    finally:
        await session.close()
        player.close()


@pytest.mark.asyncio
async def test_the_notice_then_the_persona_greeting_open_the_call_spoken_as_written():
    responder = ScriptedResponder(["(spoken as given)"], seconds_each=0.1)
    player = PacedPlayer()
    session = VoiceSession(
        settings=SETTINGS,
        persona=P(greeting="Hello {{user}}!"),
        responder=responder,
        player=player,
        bot_user_id=BOT,
        members=((ALICE, "Alice"), (BOB, "Bob")),
        make_listener=RecordingListener,
        policy=dataclasses.replace(FAST, greet_members=True),
        tick_s=0.01,
        notice="Quick note: I listen.",
    )
    await session.start()
    try:
        await until(lambda: responder.finished == 2)
        assert [c["script"] for c in responder.calls] == ["Quick note: I listen.", "Hello Alice and Bob!"]
        assert [t.kind for t in session.traces] == ["notice", "greet"]
    finally:
        await session.close()
        player.close()


@pytest.mark.asyncio
async def test_speaking_over_the_notice_takes_the_floor_and_is_answered():
    responder = ScriptedResponder(
        ["Quick note: I listen and transcribe this channel to talk with you."], seconds_each=3.0
    )
    player = PacedPlayer()
    session = VoiceSession(
        settings=SETTINGS,
        persona=P(),
        responder=responder,
        player=player,
        bot_user_id=BOT,
        members=((ALICE, "Alice"), (BOB, "Bob")),
        make_listener=RecordingListener,
        policy=FAST,
        tick_s=0.01,
        notice="Quick note: I listen and transcribe this channel to talk with you.",
    )
    await session.start()
    try:
        await until(lambda: session.room.bot_state is BotState.SPEAKING)
        await asyncio.sleep(0.3)
        session.on_speaking(SpeakingEvent(ALICE, True, time.monotonic()))
        await until(lambda: session.room.bot_state is BotState.IDLE, timeout=1)  # at once, no pause-and-see
        assert session.traces[0].kind == "notice" and session.traces[0].outcome == "interrupted"
        assert not session.room.notice_pending  # said once: the text notice stands for the rest
        speak(session, ALICE, "Juniper, what should I cook tonight?", dur=1.5)
        await until(lambda: len(responder.calls) == 2)
        assert responder.calls[1].get("script") is None and "Alice is talking to you" in responder.calls[1]["situation"]
    finally:
        await session.close()
        player.close()


@pytest.mark.asyncio
async def test_a_player_nobody_pulls_does_not_keep_the_bot_speaking(monkeypatch):
    import bot.line_runner as line_runner

    monkeypatch.setattr(line_runner, "DRAIN_MARGIN_S", 0.2)
    responder = ScriptedResponder(["Hello there."], seconds_each=0.3)
    session, player = await make(responder)
    player.close()  # the voice connection dropped: nothing reads the player any more
    try:
        speak(session, ALICE, "Juniper, hi!")
        await until(lambda: responder.finished == 1)
        started = time.monotonic()
        await until(lambda: session.room.bot_state is BotState.IDLE, timeout=3)
        assert time.monotonic() - started < 1.5
        assert player.flushes and not player.is_playing_audio
    finally:
        await session.close()


class PrefillingResponder(ScriptedResponder):
    """A scripted responder that also records prefill requests (what `Responder.prefill` receives)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.prefills: list[list[tuple[str, str]]] = []
        self.situations: list[str] = []
        self.groups: list[object] = []

    def prefill(self, persona, history, cancel, *, situation, group=None, give_way=None) -> str:
        time.sleep(0.05)  # evaluating takes a while: requests meanwhile are coalesced
        self.prefills.append([(h.speaker, h.text) for h in history])
        self.situations.append(situation)
        self.groups.append(group)
        return "done"


@pytest.mark.asyncio
async def test_conversation_so_far_is_prefilled_while_a_member_speaks_and_not_during_a_line():
    responder = PrefillingResponder(["Lovely.", "Tell me more."], seconds_each=0.5)
    session, player = await make(responder, members=((BOB, "Bob"),))  # alone with the bot: it answers
    try:
        speak(session, BOB, "I baked bread today.", final=True)
        await until(lambda: len(responder.prefills) == 1)
        assert responder.prefills[0] == []  # Bob started speaking before any line existed
        assert responder.groups == [7]  # the guild: its own reply does not preempt it
        await until(lambda: session.room.bot_state is BotState.SPEAKING, 10)
        await asyncio.sleep(0.6)  # a sound at the bot's first word would be Bob going on with his turn
        session.on_speaking(SpeakingEvent(BOB, True, time.monotonic()))  # over the bot: no prefill
        session.on_speaking(SpeakingEvent(BOB, False, time.monotonic()))
        await until(lambda: responder.finished == 1 and session.room.bot_state is BotState.IDLE, 10)
        assert len(responder.prefills) == 1
        session.on_speaking(SpeakingEvent(BOB, True, time.monotonic()))  # the room so far, bot line included
        await until(lambda: len(responder.prefills) == 2)
        assert responder.prefills[1][0] == ("Bob", "I baked bread today.")
        assert responder.prefills[1][-1][0] == "Juniper"
        assert session.prefill.stats.completed == 2
    finally:
        await session.close()
        player.close()


@pytest.mark.asyncio
async def test_each_partial_prefills_the_reply_prompt_so_the_final_adds_nothing():
    """The prefill is the prompt the reply will have: the member's words so far as their (merged) line
    and the reply's situation; partials arriving during one prefill are coalesced into the newest."""
    responder = PrefillingResponder(["Soup."], seconds_each=0.2)
    session, player = await make(responder)
    try:
        start = time.monotonic()
        session.on_speaking(SpeakingEvent(ALICE, True, start))
        await asyncio.sleep(0.2)
        assert responder.prefills == []  # in a group, nothing says yet that this is for the bot
        for words in ("Juniper,", "Juniper, what", "Juniper, what soup", "Juniper, what soup do you like?"):
            session.on_utterance(Utterance(ALICE, "Alice", words, start, time.monotonic(), False, 0.9, {}))
        await until(
            lambda: (
                not session.prefill.running and responder.prefills and responder.prefills[-1][-1][1].endswith("like?")
            )
        )
        assert 1 <= len(responder.prefills) <= 2  # the first named partial's prefill, then the newest one
        assert responder.prefills[-1] == [("Alice", "Juniper, what soup do you like?")]
        assert "Alice is talking to you" in responder.situations[-1]
        end = time.monotonic()
        session.on_speaking(SpeakingEvent(ALICE, False, end))
        session.on_utterance(
            Utterance(
                ALICE,
                "Alice",
                "Juniper, what soup do you like?",
                start,
                end,
                True,
                0.9,
                {"speech_end": end, "final": end},
            )
        )
        await until(lambda: responder.calls, 5)
        call = responder.calls[0]
        assert [(h.speaker, h.text) for h in call["history"]] == responder.prefills[-1]
        assert call["situation"] == responder.situations[-1]
        await until(lambda: session.room.turn is None, 5)
        count = len(responder.prefills)
        session.on_speaking(SpeakingEvent(ALICE, True, time.monotonic()))
        session.on_speaking(SpeakingEvent(BOB, True, time.monotonic()))  # both at once: no cache thrashing
        session.on_utterance(Utterance(BOB, "Bob", "So anyway", time.monotonic(), time.monotonic(), False, 0.9, {}))
        session.on_utterance(
            Utterance(ALICE, "Alice", "I made soup too", time.monotonic(), time.monotonic(), False, 0.9, {})
        )
        await asyncio.sleep(0.2)
        assert len(responder.prefills) == count  # a group remark: no reply likely, nothing to prefill
        assert session.prefill.stats.not_likely >= 3
    finally:
        await session.close()
        player.close()


@pytest.mark.asyncio
async def test_a_prefill_for_a_member_who_left_or_a_line_for_someone_else_is_cancelled():
    release = threading.Event()
    cancels: list[threading.Event] = []

    class SlowPrefill(PrefillingResponder):
        def prefill(self, persona, history, cancel, *, situation, group=None, give_way=None) -> str:
            cancels.append(cancel)
            while not cancel.is_set() and not release.is_set():
                time.sleep(0.01)
            return "cancelled" if cancel.is_set() else "done"

    responder = SlowPrefill(["Hi."], seconds_each=0.2)
    session, player = await make(responder)
    try:
        now = time.monotonic()
        session.on_speaking(SpeakingEvent(ALICE, True, now))
        session.on_utterance(Utterance(ALICE, "Alice", "Juniper, do you", now, now, False, 0.9, {}))
        await until(lambda: session.prefill.running and cancels)
        session.member_left(ALICE)
        await until(lambda: not session.prefill.running)
        assert cancels[0].is_set() and session.prefill.stats.stale == 1
        assert session.prefill.stats.preempted == 0  # stale, not shed
        # Bob asks the bot; the bot begins a line for Bob: a prefill for Bob goes on, none for anyone else
        now = time.monotonic()
        session.on_speaking(SpeakingEvent(BOB, True, now))
        session.on_utterance(Utterance(BOB, "Bob", "Juniper, say hi", now, now, False, 0.9, {}))
        await until(lambda: session.prefill.running and len(cancels) == 2)
        session.prefill.stale("the bot began another line", unless_for=BOB)
        await asyncio.sleep(0.05)
        assert not cancels[1].is_set()
        session.prefill.stale("the bot began another line", unless_for=None)
        await until(lambda: not session.prefill.running)
        assert cancels[1].is_set() and session.prefill.stats.stale == 2
    finally:
        release.set()
        await session.close()
        player.close()


@pytest.mark.asyncio
async def test_the_listeners_second_look_asks_the_room_what_to_listen_for():
    """What `names_for` answers the listener: the bot's names and the others present, for a final that names
    nobody; nothing to look for when it names a member or mentions the bot."""
    session, _ = await make(ScriptedResponder(["Sure."]))
    try:
        query = session._names_to_listen_for(ALICE, "What did Alice want to cook?")
        assert query is not None and query.names == ("Juniper",) and query.others == ("Bob",) and not query.named
        assert session._names_to_listen_for(ALICE, "Juniper, hi").named
        assert session._names_to_listen_for(ALICE, "Bob, did you eat?") is None
        assert session._names_to_listen_for(ALICE, "I told Juniper about it.") is None
        session.member_left(BOB)
        assert session._names_to_listen_for(ALICE, "What did you want to cook?") is None  # alone: for the bot anyway
    finally:
        await session.close()


@pytest.mark.asyncio
async def test_a_question_asked_again_after_the_bot_quoted_it_is_answered_not_taken_for_an_echo(monkeypatch):
    """An echo comes while the bot's line plays or just after (ECHO_LAG_S); the same words said later are the
    member repeating their question, as people do when the answer missed the point."""
    import bot.voice_session as voice_session

    monkeypatch.setattr(voice_session, "ECHO_LAG_S", 1.0)  # a stalled loop only makes the echo sooner, the repeat later
    question = "Juniper, what should I cook tonight?"
    responder = ScriptedResponder(["What should I cook tonight, you ask? Fried rice."], seconds_each=0.2)
    session, player = await make(responder)
    try:
        speak(session, ALICE, question)
        await until(lambda: responder.finished == 1 and session.room.bot_state is BotState.IDLE)
        speak(session, BOB, question, dur=0.3)  # at once: Bob's microphone picked the bot up
        await asyncio.sleep(0.3)
        assert session.echoes_ignored == 1 and len(responder.calls) == 1
        await asyncio.sleep(1.2)  # past the lag: said again, it is Alice asking again
        speak(session, ALICE, question, dur=0.3)
        await until(lambda: responder.finished == 2 and session.room.bot_state is BotState.IDLE)
        assert session.echoes_ignored == 1
        assert [h.text for h in responder.calls[1]["history"] if not h.is_bot][-1] == question
    finally:
        await session.close()
        player.close()


def _unsure_final(session, uid, text, end):
    """A final whose words read finished while the end-of-turn model heard an unfinished voice."""
    session.on_speaking(SpeakingEvent(uid, True, end - 1))
    session.on_speaking(SpeakingEvent(uid, False, end))
    session.on_utterance(
        Utterance(uid, session.room.name_of(uid), text, end - 1, end, True, 0.9, {"speech_end": end}, end_of_turn=0.05)
    )


@pytest.mark.asyncio
async def test_a_reply_prepared_during_the_wait_is_held_and_goes_out_when_the_wait_ends():
    responder = ScriptedResponder(["The sea is wide."], seconds_each=0.2, delay_s=0.01)
    policy = dataclasses.replace(FAST, unsure_wait_s=1.5)  # long: a loaded machine still makes it in time
    session, player = await make(responder, policy=policy)
    try:
        end = time.monotonic()
        _unsure_final(session, ALICE, "Juniper, tell me about the sea.", end)
        await until(lambda: responder.finished == 1)  # made during the wait...
        assert time.monotonic() < end + 1.5 and player.fed_s == 0.0  # ...and held back until it ends
        assert session.room.turn is not None and session.room.turn.prepared_seq is not None
        await until(lambda: session.room.bot_state is BotState.IDLE and player.fed_s > 0)
        trace = session.traces[-1]
        assert trace.times["confirmed"] >= end + 1.5 - 0.02 and trace.outcome == "spoken"
        assert session.room.last_bot_line().text == "The sea is wide." and len(responder.calls) == 1
    finally:
        await session.close()
        player.close()


@pytest.mark.asyncio
async def test_a_prepared_reply_is_dropped_unheard_when_the_member_goes_on():
    responder = ScriptedResponder(["The sea is wide."], seconds_each=0.2, delay_s=0.01)
    policy = dataclasses.replace(FAST, unsure_wait_s=1.5)
    session, player = await make(responder, policy=policy)
    try:
        end = time.monotonic()
        _unsure_final(session, ALICE, "Juniper, I have a question about the sea.", end)
        await until(lambda: responder.finished == 1)
        session.on_speaking(SpeakingEvent(ALICE, True, time.monotonic()))  # she goes on
        await until(lambda: session.room.turn is None)
        assert session.traces[0].outcome == "discarded" and player.fed_s == 0.0
        again = time.monotonic()
        session.on_speaking(SpeakingEvent(ALICE, False, again))
        session.on_utterance(
            Utterance(ALICE, "Alice", "Can I sail on it?", again - 0.5, again, True, 0.9, {"speech_end": again})
        )
        await until(lambda: len(responder.calls) == 2 and session.room.bot_state is BotState.IDLE)
        assert responder.calls[1]["history"][-1].text == "Juniper, I have a question about the sea. Can I sail on it?"
        assert player.fed_s == pytest.approx(0.2)  # only the answer to her whole turn was played
    finally:
        await session.close()
        player.close()


@pytest.mark.asyncio
async def test_no_reply_is_prepared_while_other_guilds_replies_fill_the_models():
    from runtime.scheduler import ModelScheduler

    responder = ScriptedResponder(["The sea is wide."], seconds_each=0.2, delay_s=0.01)
    responder.scheduler = ModelScheduler("exclusive")
    session, player = await make(responder, policy=dataclasses.replace(FAST, unsure_wait_s=1.0))
    try:
        with responder.scheduler.foreground("another guild"):
            end = time.monotonic()
            _unsure_final(session, ALICE, "Juniper, tell me about the sea.", end)
            await asyncio.sleep(0.3)
            assert session.room.turn is None and responder.calls == []  # only waiting, as without preparing
            assert session.lines.shedding.counts() == {"models busy": 1}
        await until(lambda: session.room.bot_state is BotState.IDLE and player.fed_s > 0)
        assert session.traces[-1].times["decided"] >= end + 1.0 - 0.02  # made when the wait ended
    finally:
        await session.close()
        player.close()
