"""STT and TTS behind the real Wyoming servers (wyoming-faster-whisper, wyoming-piper) on the embedded models.

The servers run as subprocesses on 127.0.0.1. A spoken round trip: the TTS server speaks a line, the STT server
hears it back word for word; a Listener whose transcription goes to the server still gets partials while a
member speaks and the right final (VAD and end of turn stay in the process).
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from audio.listener import Listener
from audio.resample import resample_once
from audio.stt import make_transcriber
from audio.tts import TtsError
from audio.tts_factory import make_tts
from audio.types import STT_RATE, MemberFrame
from audio.wyoming_client import WyomingError
from audio.wyoming_stt import WyomingTranscriber
from audio.tts_engines.wyoming import WyomingTts
from conversation.persona import VoiceSpec
from simulator.model_servers import free_port, stt_server, tts_server
from tests.fixtures_listening import settings, silence, speech, words

pytest.importorskip("wyoming_faster_whisper", reason="the speech servers are in the dev extra")
pytest.importorskip("wyoming_piper", reason="the speech servers are in the dev extra")

pytestmark = pytest.mark.timeout(180)

LINE = "The library opens early on Saturday morning."


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("speech-servers")
    with stt_server(log_dir) as stt, tts_server(log_dir) as tts:
        yield settings(STT_BACKEND="wyoming", STT_SERVER_URI=stt.url, TTS_BACKEND="wyoming", TTS_SERVER_URI=tts.url)


def speak(s, text: str) -> tuple[np.ndarray, int, int]:
    """The TTS server's audio for `text` (int16, rate) and how many chunks it came in."""
    engine = make_tts(s, VoiceSpec())
    chunks = list(engine.synthesize(text, threading.Event()))
    rates = {rate for _, rate in chunks}
    assert len(rates) == 1, rates
    return np.concatenate([pcm for pcm, _ in chunks]), rates.pop(), len(chunks)


def test_settings_pick_the_server_backends(servers) -> None:
    assert isinstance(make_transcriber(servers), WyomingTranscriber)
    engine = make_tts(servers, VoiceSpec())
    assert isinstance(engine, WyomingTts) and engine.uri == servers.tts_server_uri


def test_spoken_round_trip_through_both_servers(servers) -> None:
    pcm, rate, n_chunks = speak(servers, LINE)
    assert pcm.dtype == np.int16 and rate == 22_050 and n_chunks > 1  # streamed, not one blob
    assert 1.5 < pcm.size / rate < 8.0
    heard = make_transcriber(servers).transcribe([resample_once(pcm.astype(np.float32) / 32768.0, rate, STT_RATE)])
    assert len(heard) == 1 and words(heard[0].text) == words(LINE), heard[0]


def test_a_batch_of_clips_is_transcribed_in_order(servers) -> None:
    lines = ["Turn left at the second light.", "I think we should order pizza for dinner tonight.", ""]
    clips = [speech(lines[0]), speech(lines[1]), silence(1.0)]
    results = make_transcriber(servers).transcribe(clips)
    assert [words(r.text) for r in results[:2]] == [words(lines[0]), words(lines[1])]
    assert results[2].text == "" and results[2].rejected  # silence: nothing, with the reason
    assert all(r.batch == 3 for r in results)


@pytest.mark.asyncio
async def test_listener_gets_partials_and_the_final_from_the_server(servers) -> None:
    text = "My favourite colour is green, and I like to walk in the park on Sunday mornings."
    utterances: list = []
    await Listener.preload(servers)  # nothing to load for the server; the VAD and end-of-turn models load here
    listener = Listener(
        servers, name_of=lambda uid: "Alice", on_speaking=lambda e: None, on_utterance=utterances.append, fill_gaps=True
    )
    assert isinstance(listener.transcriber, WyomingTranscriber)
    loop = asyncio.get_running_loop()
    try:
        pcm = np.concatenate((silence(0.3), speech(text), silence(0.8)))
        t0 = loop.time()
        for i in range(0, len(pcm) - 319, 320):  # in real time, as a member speaks
            listener.feed(MemberFrame(1, pcm[i : i + 320], loop.time()))
            delay = t0 + (i + 320) / STT_RATE - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        await listener.flush()
    finally:
        await listener.close()
    partials = [u for u in utterances if not u.final and u.text]
    finals = [u for u in utterances if u.final and u.text]
    assert partials, "no partial while the member spoke"
    got = " ".join(u.text for u in finals)
    assert len(set(words(got)) & set(words(text))) >= len(set(words(text))) - 2, got


def test_cancel_ends_speech_at_once_and_the_server_serves_the_next_line(servers) -> None:
    engine = make_tts(servers, VoiceSpec())
    cancel = threading.Event()
    got = 0
    long_line = " ".join([LINE] * 8)
    for _pcm, _rate in engine.synthesize(long_line, cancel):
        got += 1
        if got == 1:
            cancelled_at = time.monotonic()
            cancel.set()
    assert got == 1 and time.monotonic() - cancelled_at < 0.1
    pcm, _, _ = speak(servers, "Hello there.")
    assert pcm.size > 0


def test_unreachable_servers_are_one_clear_line() -> None:
    s = settings(
        STT_BACKEND="wyoming",
        STT_SERVER_URI=f"tcp://127.0.0.1:{free_port()}",
        TTS_BACKEND="wyoming",
        TTS_SERVER_URI=f"tcp://127.0.0.1:{free_port()}",
    )
    with pytest.raises(WyomingError, match=r"cannot reach the Wyoming STT server at tcp://127\.0\.0\.1:\d+"):
        make_transcriber(s).transcribe([silence(0.5)])
    with pytest.raises(TtsError, match=r"cannot reach the Wyoming TTS server"):
        list(make_tts(s, VoiceSpec()).synthesize("Hello.", threading.Event()))


def test_server_settings_are_checked() -> None:
    from runtime.settings import SettingsError

    for bad in ("127.0.0.1:10300", "http://127.0.0.1:10300", "tcp://127.0.0.1"):
        with pytest.raises(SettingsError, match="STT_SERVER_URI"):
            settings(STT_SERVER_URI=bad)
