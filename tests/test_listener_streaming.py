"""The Listener end to end on real models: several members at once, attribution, guards, own voice."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from audio.listener import Listener
from audio.stt import WhisperTranscriber
from audio.types import MemberFrame
from audio.vad_model import load_silero_vad
from tests.fixtures_listening import feed_streams, music, settings, silence, speech, white_noise, words

NAMES = {1: "Alice", 2: "Bob", 3: "Carol", 99: "Chorus"}


@pytest.fixture(scope="module")
def models():
    s = settings()
    return s, WhisperTranscriber(s), load_silero_vad()


class Recorder:
    def __init__(self):
        self.utterances = []
        self.speaking = []
        self.threads = set()

    def on_utterance(self, u):
        self.threads.add(threading.get_ident())
        self.utterances.append(u)

    def on_speaking(self, e):
        self.threads.add(threading.get_ident())
        self.speaking.append(e)

    @property
    def finals(self):
        return [u for u in self.utterances if u.final]


def make(models, rec, **kw):
    """A Listener on the shared models; fed faster than real time unless the test says otherwise."""
    kw.setdefault("fill_gaps", False)
    s, transcriber, vad = models
    return Listener(
        s,
        name_of=NAMES.__getitem__,
        on_speaking=rec.on_speaking,
        on_utterance=rec.on_utterance,
        transcriber=transcriber,
        vad_model=vad,
        **kw,
    )


@pytest.mark.asyncio
async def test_three_overlapping_members_get_their_own_finals(models):
    texts = {
        1: "I think we should order pizza for dinner tonight.",
        2: "The weather was lovely last spring.",
        3: "Turn left at the second light.",
    }
    # overlapping: Bob starts 0.4 s after Alice, Carol 0.9 s after Alice
    streams = {
        1: np.concatenate((silence(0.3), speech(texts[1]), silence(1.0))),
        2: np.concatenate((silence(0.7), speech(texts[2]), silence(1.0))),
        3: np.concatenate((silence(1.2), speech(texts[3]), silence(1.0))),
    }
    rec = Recorder()
    listener = make(models, rec)
    try:
        await feed_streams(listener, streams)
        await listener.flush()
    finally:
        await listener.close()
    finals = {u.user_id: u for u in rec.finals}
    assert sorted(finals) == [1, 2, 3], [(u.user_id, u.text) for u in rec.finals]
    for uid, text in texts.items():
        u = finals[uid]
        assert u.name == NAMES[uid]
        assert words(u.text) == words(text), (uid, u.text)
        assert u.start < u.end and 0 < u.confidence <= 1
        assert {"speech_end", "final", "stt_start", "vad_end"} <= set(u.timings)
        assert u.timings["final"] >= u.timings["stt_start"]
    # speaking start/stop per member, in order, delivered on the event loop thread
    for uid in texts:
        assert [e.speaking for e in rec.speaking if e.user_id == uid] == [True, False]
    assert rec.threads == {threading.get_ident()}


@pytest.mark.asyncio
async def test_real_time_speech_gets_partials_and_a_quick_final(models):
    text = "My favourite colour is green, and I like to walk in the park on Sunday mornings."
    rec = Recorder()
    listener = make(models, rec, fill_gaps=True)
    loop = asyncio.get_running_loop()
    try:
        pcm = np.concatenate((silence(0.3), speech(text), silence(0.8)))
        t0 = loop.time()
        for i in range(0, len(pcm) - 319, 320):
            listener.feed(MemberFrame(1, pcm[i : i + 320], asyncio.get_running_loop().time()))
            delay = t0 + (i + 320) / 16000 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        await listener.flush()
    finally:
        await listener.close()
    partials = [u for u in rec.utterances if not u.final]
    assert partials, "no partial while speaking"
    assert all(p.user_id == 1 and p.text for p in partials)
    got = " ".join(u.text for u in rec.finals)
    assert len(set(words(got)) & set(words(text))) >= len(set(words(text))) - 2, got
    assert listener.stats.finals >= 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "make_audio",
    [lambda: silence(10.0), lambda: white_noise(10.0, level=0.1), lambda: music(10.0)],
    ids=["silence", "white-noise", "music"],
)
async def test_no_transcript_from_silence_noise_or_music(models, make_audio):
    rec = Recorder()
    listener = make(models, rec)
    try:
        await feed_streams(listener, {1: make_audio()})
        await listener.flush()
    finally:
        await listener.close()
    assert [u.text for u in rec.utterances if u.text] == []
    # a segment the VAD let through still gets its one (empty) final, which closes it
    starts = [e for e in rec.speaking if e.speaking]
    assert len(rec.finals) == len(starts) and all(u.text == "" for u in rec.finals)


@pytest.mark.asyncio
async def test_own_voice_is_never_transcribed(models):
    rec = Recorder()
    listener = make(models, rec, ignore_user_ids={99})
    try:
        await feed_streams(
            listener,
            {
                99: np.concatenate((speech("I am the bot and nobody should transcribe me."), silence(1.0))),
                2: np.concatenate((silence(0.5), speech("Hello there."), silence(1.0))),
            },
        )
        await listener.flush()
    finally:
        await listener.close()
    assert [u.user_id for u in rec.finals if u.text] == [2]
    assert all(u.user_id == 2 for u in rec.utterances)
    assert all(e.user_id == 2 for e in rec.speaking)
    assert listener.stats.ignored_own > 100


@pytest.mark.asyncio
async def test_member_leaving_mid_sentence_and_bad_frames(models):
    rec = Recorder()
    listener = make(models, rec)
    try:
        listener.feed(MemberFrame(5, np.zeros((2, 160), np.float32), 1.0))  # wrong shape: logged and dropped
        listener.feed(MemberFrame(5, np.full(320, np.nan, np.float32), 1.02))
        await feed_streams(listener, {5: np.concatenate((silence(0.3), speech("Good morning everyone.")))})
        listener.forget(5)  # left while still (maybe) speaking: what they said is still transcribed
        await listener.flush()
    finally:
        await listener.close()
    assert listener.stats.bad_frames == 2
    assert [words(u.text) for u in rec.finals] == [["good", "morning", "everyone"]]
    assert 5 not in listener._members


@pytest.mark.asyncio
async def test_speech_ends_when_a_member_stops_sending(models):
    """Discord sends no packets while a member is silent: the end still comes, in real time."""
    rec = Recorder()
    listener = make(models, rec, fill_gaps=True)
    loop = asyncio.get_running_loop()
    try:
        pcm = np.concatenate((silence(0.2), speech("Is anybody there?")))
        t0 = loop.time()
        for i in range(0, len(pcm) - 319, 320):
            listener.feed(MemberFrame(4, pcm[i : i + 320], time.monotonic()))
            delay = t0 + (i + 320) / 16000 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        last_frame = time.monotonic()
        for _ in range(300):  # no more frames: wait for the end and the final
            if rec.finals:
                break
            await asyncio.sleep(0.02)
    finally:
        await listener.close()
    assert [e.speaking for e in rec.speaking] == [True, False]
    assert rec.speaking[1].t - last_frame < 0.6  # ~ the configured end silence after the last frame
    assert [words(u.text) for u in rec.finals] == [["is", "anybody", "there"]]


@pytest.mark.asyncio
async def test_a_pause_within_speech_reports_when_the_voice_stopped_and_when_it_came_back(models):
    """The VAD says a member speaks until its end-of-speech silence has run out; `on_quiet` tells the room when
    their voice stopped within that (so a short "Oh wow." over the bot is not counted 0.3 s longer) and when it
    came back. The speaking start and stop events are unchanged."""
    rec = Recorder()
    listener = make(models, rec)
    quiet: list[tuple[int, float | None]] = []
    listener.on_quiet = lambda uid, since: quiet.append((uid, since))
    first, second = speech("Oh wow."), speech("That is great.")
    # no silence added between them: the clips' own edges (about 0.2 s) are over the VAD's pause, under its end
    try:
        await feed_streams(listener, {1: np.concatenate((silence(0.3), first, second, silence(1.0)))})
        await listener.flush()
    finally:
        await listener.close()
    assert [e.speaking for e in rec.speaking] == [True, False]
    first_end = 1000.0 + 0.3 + _voice_end_s(first)
    second_end = 1000.0 + 0.3 + len(first) / 16000 + _voice_end_s(second)
    stopped = rec.speaking[1].t
    assert [since is None for _, since in quiet] == [False, True, False], quiet  # pause, voice again, pause
    assert all(uid == 1 for uid, _ in quiet)
    assert abs(quiet[0][1] - first_end) < 0.15 and abs(quiet[2][1] - second_end) < 0.15, (quiet, first_end)
    assert quiet[2][1] < stopped - 0.15  # the stop event comes after the end-of-speech silence


def _voice_end_s(clip: np.ndarray) -> float:
    """Seconds into `clip` where its voice ends (its last sample above a quiet level)."""
    return float(np.nonzero(np.abs(clip) > 0.02)[0][-1] + 1) / 16000
