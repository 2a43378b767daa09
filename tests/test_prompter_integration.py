"""VoiceSession end to end on the real models: Piper speech in, Whisper, SmolLM2 and Piper out.

MemberFrames of Piper speech are fed in real time to a session built with the real Listener
(silero VAD + faster-whisper tiny.en) and the real Responder (llama.cpp SmolLM2 + Piper). The
player is audio.playback.StreamPlayer when it exists (pulled every 20 ms like discord.py's
AudioPlayer), else the paced double. Checks: a direct question gets a spoken answer, and a
member talking over the bot cuts it off with only the heard words kept.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time

import numpy as np
import pytest

from audio.types import MemberFrame
from conversation.decision import Policy
from conversation.room_lines import BotState
from tests.fixtures_listening import frames, settings as make_settings, silence, speech

ALICE, BOB, BOT = 1, 2, 999

pytestmark = pytest.mark.timeout(240)


class Pull:
    """Pulls a discord.AudioSource every 20 ms on a thread, as discord.py's AudioPlayer does."""

    def __init__(self, source) -> None:
        self.source = source
        self.packets = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="pull")
        self._thread.start()

    def _run(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            self.source.read()
            self.packets += 1
            next_t += 0.02
            time.sleep(max(0.0, next_t - time.monotonic()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)


def make_player():
    if importlib.util.find_spec("audio.playback") is not None:
        from audio.playback import StreamPlayer

        player = StreamPlayer()
        return player, Pull(player)
    from tests.fixtures_prompter_session import PacedPlayer

    player = PacedPlayer()
    return player, player


@pytest.fixture(scope="module")
def parts():
    from audio.stt import WhisperTranscriber
    from audio.vad_model import load_silero_vad
    from runtime.scheduler import ModelScheduler
    from brain.llm import make_backend
    from brain.responder import Responder
    from conversation.persona_library import load_persona

    s = make_settings()
    responder = Responder.from_settings(s, llm=make_backend(s), scheduler=ModelScheduler("pipelined"))
    return s, WhisperTranscriber(s), load_silero_vad(), responder, load_persona("personas/juniper.toml")


async def make_session(parts, **persona_changes):
    import dataclasses

    from audio.listener import Listener
    from bot.voice_session import VoiceSession

    s, transcriber, vad, responder, persona = parts
    persona = dataclasses.replace(persona, **persona_changes)
    player, pump = make_player()

    def listener(settings, **callbacks):
        return Listener(settings, transcriber=transcriber, vad_model=vad, ignore_user_ids=(BOT,), **callbacks)

    session = VoiceSession(
        settings=s,
        persona=persona,
        responder=responder,
        player=player,
        guild_id=1,
        bot_user_id=BOT,
        members=[(ALICE, "Alice"), (BOB, "Bob")],
        make_listener=listener,
        policy=Policy.from_settings(s, greet_members=False),
    )
    await session.start()
    # as the bot does at /join (`PrompterCog._warm_up`): the persona prompt in the LLM's cache before anyone
    # speaks, so the first answer is not a cold evaluation that a loaded machine stretches past the hold bound
    await asyncio.to_thread(responder.warm_up, persona, 1)
    return session, player, pump


async def say(session, uid: int, text: str, *, tail_s: float = 0.8) -> None:
    """Feed a member's Piper speech in real time, then `tail_s` of silence (Discord stops sending
    packets in silence; the receiver's PLC/silence frames stand in for that here)."""
    pcm = np.concatenate([speech(text), silence(tail_s)])
    start = time.monotonic()
    for i, frame in enumerate(frames(pcm)):
        session.on_frame(MemberFrame(uid, frame, time.monotonic()))
        delay = start + (i + 1) * 0.02 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


async def until(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_answers_a_direct_question_out_loud(parts):
    session, player, pump = await make_session(parts, max_reply_words=12, max_reply_sentences=1)
    try:
        await say(session, ALICE, "Juniper, what is your favorite color?")
        await until(lambda: session.room.last_bot_line() is not None and session.room.bot_state is BotState.IDLE, 120)
        human = [line for line in session.room.history if not line.is_bot]
        # The name may land as its own line when Piper's pause after "Juniper," ends the segment.
        assert human and {line.name for line in human} == {"Alice"}
        assert "color" in " ".join(line.text for line in human).lower()
        bot = session.room.last_bot_line()
        assert bot.text and not bot.interrupted
        trace = session.traces[-1]
        assert trace.kind == "respond_now" and trace.outcome == "spoken"
        for stage in ("speech_end", "final", "request", "first_token", "first_fragment", "first_audio", "first_packet"):
            assert stage in trace.times, (stage, trace.times)
        print("trace ms:", trace.relative_ms())
    finally:
        await session.close()
        pump.close()


@pytest.mark.asyncio
async def test_member_talking_over_the_bot_cuts_it_off(parts):
    # A longer reply than Juniper's usual two sentences leaves room to talk over it on a busy CPU.
    session, player, pump = await make_session(parts, max_reply_words=80, max_reply_sentences=5)
    heard_bob: list[float] = []
    on_speaking = session.on_speaking

    def spy(event):
        if event.user_id == BOB and event.speaking:
            heard_bob.append(time.monotonic())
        on_speaking(event)

    session.on_speaking = spy  # what the listener calls (bound at start: rebind the listener's callback)
    session.listener.on_speaking = spy
    interruption = "Wait, wait, hold on a second, I want to ask something about that dragon."
    speech(interruption)  # synthesized now (cached): Bob starts the moment the bot does
    barge_in_s = session.settings.barge_in_ms / 1000
    try:
        for attempt in range(1, 4):
            asked_at = time.monotonic()
            # a short tail: the bot starts speaking ~0.5 s after Alice, while a longer tail would still be fed
            await say(session, ALICE, "Juniper, tell me a long story about a dragon and a lighthouse.", tail_s=0.4)
            await until(lambda: session.room.bot_state is BotState.SPEAKING, 120)
            bob_from = time.monotonic()
            await say(session, BOB, interruption, tail_s=0.3)
            await until(
                lambda: (
                    any(t.outcome == "interrupted" for t in session.traces)
                    or (session.room.bot_state is BotState.IDLE and session.room.last_bot_line() is not None)
                ),
                30,
            )
            # early starts dropped unheard come first
            first = next(
                t for t in session.traces if t.outcome != "discarded" and t.times.get("decided", 0) >= asked_at
            )
            # Bob's voice starts ~0.2 s into his clip, and the VAD confirms speech a moment after that.
            if first.outcome != "spoken" or first.times["end"] > bob_from + barge_in_s + 0.6:
                break
            # The model chose a reply too short to talk over: the precondition failed, not the barge-in.
            print(f"attempt {attempt}: the reply {first.text!r} ended before Bob's takeover")
            await until(lambda: session.room.bot_state is BotState.IDLE, 30)
        assert first.outcome == "interrupted", (
            first.outcome,
            first.text,
            first.relative_ms(),
            f"bob heard at {heard_bob} (bot ended {first.times.get('end')})",
        )
        # Bob began as the bot did: it turned down or held at once, so little or nothing of the line was heard; what was
        # heard (if a word) is in the history, marked as cut short.
        line = next((line for line in reversed(session.room.history) if line.is_bot), None)
        assert line is None or (line.interrupted and line.text.endswith("…"))
        held = min([*first.ducks, first.times.get("paused", float("inf"))])  # voice turned down or held
        assert held < first.times["yielded"]
    finally:
        await session.close()
        pump.close()
