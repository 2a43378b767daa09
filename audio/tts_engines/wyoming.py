"""Speech from a Wyoming TTS server (`wyoming-piper`), as a chorus `TtsEngine` (TTS_BACKEND=wyoming).

One line is one request on its own connection: `synthesize` goes out, the server streams audio-start, audio
chunks and audio-stop back, and each chunk is yielded as it arrives. Cancelling closes the connection (the
server stops at its next write). The voice's pace is the server's (`--length-scale`): Wyoming's synthesize
event carries a voice name, not a speed.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.tts import Synthesize, SynthesizeVoice

from audio import wyoming_client
from audio.tts import TtsEngine, TtsError

log = logging.getLogger(__name__)

_DONE = object()


def server_voice_name(server_voice: str, persona_voice: Any) -> str | None:
    """`server_voice` (TTS_SERVER_VOICE), else the persona's own Piper voice by name (the server must have it),
    else the server's default voice."""
    if server_voice:
        return str(server_voice)
    voice = getattr(persona_voice, "voice", "embedded") or "embedded"
    if getattr(persona_voice, "engine", "piper") == "piper" and voice != "embedded":
        name = Path(voice).name
        return name[: -len(".onnx")] if name.endswith(".onnx") else name
    return None


class WyomingTts(TtsEngine):
    """Thread-safe: every call has its own connection, so sessions synthesize in parallel on the server."""

    def __init__(self, uri: str, voice: str | None = None) -> None:
        wyoming_client.check_uri(uri, "TTS_SERVER_URI")
        self.uri = uri
        self.voice = voice
        self.name = "wyoming"

    def describe(self) -> str:
        return f"wyoming {self.uri} ({self.voice or 'server default voice'})"

    def synthesize(self, text: str, cancel: threading.Event) -> Iterator[tuple[np.ndarray, int]]:
        if not text.strip() or cancel.is_set():
            return
        chunks: queue.Queue[Any] = queue.Queue()
        future = wyoming_client.submit(self._stream(text, chunks))
        try:
            while True:
                if cancel.is_set():
                    return
                try:
                    item = chunks.get(timeout=0.02)
                except queue.Empty:
                    continue
                if item is _DONE:
                    break
                yield item
            error = future.exception()
            if error is not None:
                raise TtsError(str(error)) from None
        finally:
            future.cancel()  # closes the connection if the server is still sending

    async def _stream(self, text: str, out: queue.Queue[Any]) -> None:
        try:
            client = await wyoming_client.connect(self.uri, "TTS")
            try:
                voice = SynthesizeVoice(name=self.voice) if self.voice else None
                await client.write_event(Synthesize(text=text, voice=voice).event())
                rate = 0
                while True:
                    event = await wyoming_client.read_event(client, self.uri, "TTS")
                    if AudioStart.is_type(event.type):
                        rate = AudioStart.from_event(event).rate
                    elif AudioChunk.is_type(event.type):
                        chunk = AudioChunk.from_event(event)
                        if chunk.width != 2:
                            raise wyoming_client.WyomingError(
                                f"the Wyoming TTS server at {self.uri} sent {chunk.width * 8}-bit audio (expected 16)"
                            )
                        pcm = np.frombuffer(chunk.audio, dtype="<i2")
                        if chunk.channels > 1:
                            pcm = (
                                pcm[: pcm.size - pcm.size % chunk.channels]
                                .reshape(-1, chunk.channels)
                                .mean(axis=1)
                                .astype(np.int16)
                            )
                        if pcm.size:
                            out.put((pcm, chunk.rate or rate))
                    elif AudioStop.is_type(event.type):
                        return
            finally:
                await wyoming_client.close(client)
        finally:
            out.put(_DONE)
