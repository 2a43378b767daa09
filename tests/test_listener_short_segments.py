"""A bare name said before a pause ("Juniper, ... what is your favorite color?") is heard, in real time.

Piper leaves ~360 ms after "Juniper," (longer than VAD_END_SILENCE_MS), so the name is its own segment.
Fed as the receive layer delivers it (20 ms MemberFrames stamped on arrival, fill_gaps on, nothing sent
after the speech), every segment must give exactly one final Utterance: its text, or an empty (rejected)
final; never nothing. The event loop stalling mid-word must not be heard as silence (that cut "Juniper"
into "June" + "per", and "June" was rejected, silently).
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import pytest

from audio.listener import Listener
from audio.stt import WhisperTranscriber
from audio.types import MemberFrame
from audio.vad_model import load_silero_vad
from tests.fixtures_listening import frames, settings, silence, speech, words

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

SENTENCE = "Juniper, what is your favorite color?"
UID = 7


@pytest.fixture(scope="module")
def models():
    s = settings()
    return s, WhisperTranscriber(s), load_silero_vad()


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def on_speaking(self, e) -> None:
        self.events.append(("speaking", e))

    def on_utterance(self, u) -> None:
        self.events.append(("utterance", u))

    @property
    def finals(self):
        return [u for kind, u in self.events if kind == "utterance" and u.final]

    @property
    def starts(self):
        return [e for kind, e in self.events if kind == "speaking" and e.speaking]


def make(models, rec, s=None) -> Listener:
    base, transcriber, vad = models
    if s is not None:
        transcriber = WhisperTranscriber(s)  # the guards read the transcriber's settings (same shared model)
    return Listener(
        s or base,
        name_of=lambda uid: "Alice",
        on_speaking=rec.on_speaking,
        on_utterance=rec.on_utterance,
        transcriber=transcriber,
        vad_model=vad,
        fill_gaps=True,
    )


async def speak_live(
    listener: Listener,
    pcm: np.ndarray,
    *,
    stall_at: int | None = None,
    stall_s: float = 0.0,
    late_at: int | None = None,
    late_s: float = 0.0,
) -> None:
    """20 ms frames in real time, stamped with their arrival; optionally the event loop blocks once
    (`stall_at`), or the sender's frames are held up once and then come in a burst (`late_at`: jitter)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i, frame in enumerate(frames(pcm)):
        if i == stall_at:
            time.sleep(stall_s)  # the loop is blocked (a blocking call, GIL pressure): frames come late, in a burst
        if i == late_at:
            await asyncio.sleep(late_s)  # the loop runs; the member's packets are late (network, a stalled sender)
        listener.feed(MemberFrame(UID, frame, time.monotonic()))
        delay = start + (i + 1) * 0.02 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)


async def wait_finals(listener: Listener, rec: Recorder, timeout: float = 30.0) -> None:
    """Frames stopped (Discord sends nothing in silence): wait until every started segment has its final."""
    deadline = time.monotonic() + timeout
    while True:
        await asyncio.sleep(0.05)
        idle = not any(v.in_speech for v in listener._members.values()) and listener.scheduler.idle()
        if idle and len(rec.finals) >= len(rec.starts) and listener._outstanding == 0:
            return
        assert time.monotonic() < deadline, f"finals {[u.text for u in rec.finals]} for {len(rec.starts)} segments"


async def hear_live(models, pcm: np.ndarray, s=None, **speak) -> tuple[Recorder, Listener]:
    """Speak `pcm` live to a fresh listener (see `speak_live` for `speak`), wait for every final, close it."""
    rec = Recorder()
    listener = make(models, rec, s)
    try:
        await speak_live(listener, pcm, **speak)
        await wait_finals(listener, rec)
    finally:
        await listener.close()
    return rec, listener


def check_heard(rec: Recorder) -> None:
    finals = rec.finals
    # exactly one final per segment, each after that segment's speaking -> silent event
    assert len(finals) == len(rec.starts), [u.text for u in finals]
    stops = [i for i, (kind, e) in enumerate(rec.events) if kind == "speaking" and not e.speaking]
    final_at = [i for i, (kind, u) in enumerate(rec.events) if kind == "utterance" and u.final]
    assert len(stops) == len(final_at) and all(s < f for s, f in zip(stops, final_at)), rec.events
    heard = words(" ".join(u.text for u in finals))
    assert heard[0] == "juniper", heard  # the name: a final of its own or the start of the merged one
    assert heard[-4:] == ["is", "your", "favorite", "color"], heard
    assert all(u.user_id == UID and u.name == "Alice" for u in finals)


async def test_bare_name_before_a_long_pause_is_heard_live(models):
    pcm = np.concatenate((silence(0.3), speech(SENTENCE)))  # then nothing: the sender went quiet
    rec, listener = await hear_live(models, pcm)
    check_heard(rec)
    assert listener.stats.gap_fills > 0  # the end came from the missing frames, as on Discord
    assert listener.stats.finals_duplicate == 0


@pytest.mark.parametrize("stall_at", [28, 33])  # frames into "Juniper" (speech starts at frame 15)
async def test_a_stalled_event_loop_does_not_cut_the_name(models, stall_at):
    pcm = np.concatenate((silence(0.3), speech(SENTENCE)))
    rec, listener = await hear_live(models, pcm, stall_at=stall_at, stall_s=0.28)
    check_heard(rec)
    assert listener.stats.finals_rejected == 0, rec.finals


@pytest.mark.parametrize("late_at", [25, 30])  # inside "Juniper"
async def test_late_frames_mid_word_continue_the_word(models, late_at):
    pcm = np.concatenate((silence(0.3), speech(SENTENCE)))
    rec, listener = await hear_live(models, pcm, late_at=late_at, late_s=0.26)
    check_heard(rec)
    assert listener.stats.finals_rejected == 0, rec.finals
    assert len(rec.finals) <= 2  # the name, then the question: nothing cut in between


async def test_a_rejected_segment_gets_an_empty_logged_final(models, caplog):
    """The guards reject (here: no text can pass a 0.0 log-probability floor): the segment is still closed."""
    strict = models[0].replace(stt_logprob_threshold=0.0)
    rec = Recorder()
    listener = make(models, rec, strict)
    try:
        with caplog.at_level(logging.INFO, logger="audio.listener"):
            await speak_live(listener, np.concatenate((silence(0.3), speech("Hello there, how are you?"))))
            await wait_finals(listener, rec)
    finally:
        await listener.close()
    assert len(rec.starts) >= 1
    assert [u.text for u in rec.finals] == [""] * len(rec.starts)
    assert listener.stats.finals_rejected == len(rec.starts) and listener.stats.finals == 0
    assert any("rejected: avg_logprob" in r.getMessage() for r in caplog.records), caplog.text


async def test_silent_frames_before_the_gap_count_toward_the_end(models):
    """A client that sends silence and then nothing (Discord's five silent frames) has stopped: the end
    comes one end-of-speech silence after the last voice, not one end-of-speech silence after the
    last frame. (Frames that merely stop, mid-word, still need the whole silence as a gap: see above.)"""
    s = settings(VAD_END_SILENCE_MS="600")
    pcm = np.concatenate((silence(0.3), speech("What is your favorite color?"), silence(0.3)))
    rec, listener = await hear_live(models, pcm, s)
    (final,) = rec.finals
    assert words(final.text)[-2:] == ["favorite", "color"], final.text
    waited = final.timings["vad_end"] - final.timings["speech_end"]
    # 0.6 s after the last voice (+ detection slack); counting the gap alone would take 0.3 s more
    assert 0.55 <= waited < 0.6 + 0.2, waited


async def test_a_pause_is_marked_on_the_partials_and_its_end_when_they_go_on(models):
    """At a pause the latest partial goes out again marked "paused", then the speculative transcript
    of all the words marked "speculative" (a partial that already heard all the words stands in for it,
    and then comes first); voice again re-sends it marked "resumed". In between no unmarked partial (the
    prompter reads the member as paused from the latest partial)."""
    # the 0.2 s pause (+ the voice's own) stays a pause; without the end-of-turn model the pause's mark goes out
    # at the pause itself (with it, once the model has judged the pause: a mark the member may overtake)
    s = settings(STT_PARTIAL_INTERVAL_S="0.3", VAD_END_SILENCE_MS="600", TURN_MODEL="off")
    pcm = np.concatenate(
        (
            silence(0.3),
            speech("What is your favorite color"),
            silence(0.2),
            speech("and your favorite food?"),
            silence(0.1),
        )
    )
    rec, listener = await hear_live(models, pcm, s)
    marks = []
    for kind, item in rec.events:
        if kind == "utterance":
            mark = next((m for m in ("paused", "speculative", "resumed") if m in item.timings), "")
            marks.append("final" if item.final else mark or "partial")
    assert marks[-1] == "final" and marks.count("final") == 1, marks
    assert "resumed" in marks, marks  # the 200 ms pause ended with more voice
    first_pause = min(marks.index(m) for m in ("paused", "speculative") if m in marks)
    assert first_pause < marks.index("resumed"), marks
    # between a pause mark and the end of that pause ("resumed" or the final) only pause marks come
    in_pause = False
    for mark in marks:
        if mark in ("paused", "speculative"):
            in_pause = True
        elif mark in ("resumed", "final"):
            in_pause = False
        elif in_pause:
            assert mark in ("speculative", "paused"), marks
    final = rec.finals[0]
    assert words(final.text)[-2:] == ["favorite", "food"], final.text
