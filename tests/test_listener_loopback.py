"""Listening end to end on the loopback voice channel: real discord.py VoiceClient, real UDP, DAVE, Opus.

Three simulated members speak different Piper sentences that overlap in time; `VoiceReceiver` hands their
MemberFrames to one `Listener` (silero + faster-whisper tiny.en, fill_gaps on, as live): each member gets
the right final transcript under their own id and name. Then the bot speaks through `StreamPlayer`: its own
SSRC never reaches the listener, and even its own audio fed back under its user id (an echo) gives no
transcript to a Listener built with ignore_user_ids={bot id}.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from audio.listener import Listener
from audio.playback import StreamPlayer
from audio.receive import VoiceReceiver
from audio.types import MemberFrame
from simulator.harness import connected_voice_client
from simulator.server import LoopbackVoiceServer
from tests.fixtures_listening import frames, settings, silence, speech, words

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

ALICE, BOB, CAROL = 201, 202, 203
NAMES = {ALICE: "Alice", BOB: "Bob", CAROL: "Carol"}
SENTENCES = {
    ALICE: "I think we should order pizza for dinner tonight.",
    BOB: "The weather was lovely last spring.",
    CAROL: "Turn left at the second light.",
}
OFFSETS = {ALICE: 0.0, BOB: 0.6, CAROL: 1.2}  # each starts while the one before is still talking


class Heard:
    def __init__(self) -> None:
        self.utterances: list = []
        self.speaking: list = []
        self.frame_users: set[int] = set()

    def finals(self, uid: int | None = None) -> list:
        return [u for u in self.utterances if u.final and u.text and (uid is None or u.user_id == uid)]


async def until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_overlapping_members_are_transcribed_and_attributed_and_the_bot_is_not():
    s = settings()
    await Listener.preload(s)  # off the loop: constructing the Listener below does not block it
    clips = {uid: speech(text) for uid, text in SENTENCES.items()}
    heard = Heard()
    async with LoopbackVoiceServer() as server:
        members = {uid: await server.add_member(uid, name) for uid, name in NAMES.items()}
        async with connected_voice_client(server, dave=True) as vc:
            bot_id = vc.user.id
            listener = Listener(
                s,
                name_of=lambda uid: NAMES.get(uid, str(uid)),
                on_speaking=heard.speaking.append,
                on_utterance=heard.utterances.append,
                ignore_user_ids={bot_id},
            )

            def on_frame(frame: MemberFrame) -> None:
                heard.frame_users.add(frame.user_id)
                listener.feed(frame)

            rx = VoiceReceiver(vc, on_frame=on_frame, on_member_left=listener.forget, own_user_id=bot_id)
            rx.start()
            try:
                t0 = time.monotonic() + 0.3
                reports = await asyncio.gather(
                    *(members[uid].speak(clips[uid], at=t0 + OFFSETS[uid], rate=16_000) for uid in SENTENCES)
                )
                assert all(r.dave_encrypted > 0 and r.dropped == 0 for r in reports)
                # every member's speech ends (frames stop: fill_gaps hears the silence) and gets its final
                await until(
                    lambda: (
                        all(heard.finals(uid) for uid in SENTENCES)
                        and not any(e for e in listener._members.values() if e.in_speech)
                        and listener.scheduler.idle()
                    ),
                    30,
                    "three finals",
                )
                await asyncio.sleep(0.3)
                for uid, text in SENTENCES.items():
                    finals = heard.finals(uid)
                    assert words(" ".join(u.text for u in finals)) == words(text), (NAMES[uid], finals)
                    assert all(u.name == NAMES[uid] for u in finals)
                    assert {"speech_end", "final"} <= set(finals[-1].timings)
                    assert [e.speaking for e in heard.speaking if e.user_id == uid][:2] == [True, False]
                # the three segments overlapped in time
                span = {
                    uid: (min(u.start for u in heard.finals(uid)), max(u.end for u in heard.finals(uid)))
                    for uid in SENTENCES
                }
                assert span[BOB][0] < span[ALICE][1] and span[CAROL][0] < span[BOB][1], span
                assert heard.frame_users == set(SENTENCES)

                # the bot speaks: nothing of it is transcribed
                before = len(heard.utterances)
                bot_line = speech("Pizza sounds great, and I would pick the one with mushrooms.")
                player = StreamPlayer()
                vc.play(player)
                player.feed(bot_line, 16_000)
                player.end_of_utterance()
                # its own audio coming back under its own id (an echo): the listener drops it
                loop = asyncio.get_running_loop()
                start = loop.time()
                for i, frame in enumerate(frames(np.concatenate((bot_line, silence(0.5))))):
                    listener.feed(MemberFrame(bot_id, frame, time.monotonic()))
                    delay = start + (i + 1) * 0.02 - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await members[ALICE].wait_for_audio(1.0, from_user_id=bot_id)  # the bot really spoke
                await until(lambda: not player.is_playing_audio, 15, "the bot's line to finish")
                vc.stop()
                await listener.flush()
                assert heard.utterances[before:] == []
                assert all(e.user_id != bot_id for e in heard.speaking)
                assert bot_id not in heard.frame_users  # the receiver never hands us our own SSRC
                assert listener.stats.ignored_own >= len(bot_line) // 320
            finally:
                rx.stop()
                await listener.close()
